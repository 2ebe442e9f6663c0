//! The convergent, field-level merge used identically by the city and the
//! wards.
//!
//! A record is kept as a map of fields. Each field holds the writes to it
//! that no other known write has superseded: a write supersedes another if
//! its writer had seen that one (its version vector includes it). One write
//! is the usual case; several means concurrent writes by writers who had not
//! seen each other's: a conflict when their values differ. The value shown
//! is the largest write under the field's policy, a total order, so every
//! replica that has received the same writes, in any order and however
//! often, holds the same state (the merge is commutative, associative and
//! idempotent). Deletion is a write of the pseudo-field `_exists`, so a
//! deleted record never comes back by accident, and a delete concurrent with
//! an edit is a conflict like any other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::hlc::{Stamp, VersionVector};
use super::{Kind, Record, RecordKey};

/// The pseudo-field that says whether the record exists.
pub const EXISTS: &str = "_exists";
/// The field naming the owning ward.
pub const OWNER: &str = "ward";

/// How concurrent writes to a field are settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// The latest write (hybrid clock, then writer) wins.
    Lww,
    /// The owning ward's write beats any other ward's; then latest wins.
    OwnerWins,
    /// The latest write is shown, but the record is disputed until someone resolves the conflict.
    Manual,
}

/// One write of one field: its value (canonical JSON), stamp and the
/// writer's version vector of the record when it wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldWrite {
    /// The value as JSON text.
    pub value: String,
    /// Who wrote it, and when.
    pub stamp: Stamp,
    /// What the writer had seen of the record.
    pub context: VersionVector,
}

/// A record's replicated state: the unsuperseded writes of every field.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Versioned {
    /// Field name → its unsuperseded writes (one unless concurrent).
    pub fields: BTreeMap<String, Vec<FieldWrite>>,
    /// Everything this replica has seen of the record.
    pub seen: VersionVector,
}

/// A field whose unsuperseded writes disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldConflict {
    /// The field.
    pub field: String,
    /// Its policy.
    pub policy: Policy,
    /// Every contending write; the first is the one shown.
    pub contenders: Vec<FieldWrite>,
}

/// Field policies of every kind; fields not listed use the default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policies {
    /// Policy of fields not listed.
    pub default: Policy,
    /// `kind.field` → policy, e.g. `land.owners` → manual.
    pub fields: BTreeMap<String, Policy>,
}

impl Default for Policies {
    /// Contact and residence details last-writer-wins; owner-controlled
    /// fields owner-wins; land ownership, area and certificates, and
    /// civil-status fields manual.
    fn default() -> Self {
        let mut fields = BTreeMap::new();
        for f in [
            "citizen.full_name",
            "citizen.household_id",
            "citizen.relationship_to_head",
            "business.name",
            "business.status",
            "business.sector_code",
            "business.owner_personal_id",
            "business.form",
            "land.land_use_type",
            "land.address",
            "land.registrations",
        ] {
            fields.insert(f.to_string(), Policy::OwnerWins);
        }
        for f in [
            "citizen.date_of_birth",
            "citizen.sex",
            "citizen.marital_status",
            "citizen.events",
            "citizen.ethnicity",
            "citizen.nationality",
            "land.owners",
            "land.area_m2",
            "land.certificate_serial",
        ] {
            fields.insert(f.to_string(), Policy::Manual);
        }
        Policies { default: Policy::Lww, fields }
    }
}

/// The fields of a record of `kind`, as [`flatten`] names them (besides
/// `ward` and `_exists`): what a policy may name.
pub fn field_names(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Citizen => &[
            "personal_id",
            "full_name",
            "date_of_birth",
            "sex",
            "ethnicity",
            "nationality",
            "household_id",
            "relationship_to_head",
            "permanent_residence",
            "temporary_residence",
            "marital_status",
            "phone",
            "events",
        ],
        Kind::Business => &[
            "enterprise_code",
            "form",
            "name",
            "owner_personal_id",
            "address",
            "sector_code",
            "status",
            "registration_date",
        ],
        Kind::Land => &[
            "commune_code",
            "map_sheet",
            "parcel_number",
            "aliases",
            "area_m2",
            "land_use_type",
            "owners",
            "certificate_serial",
            "address",
            "registrations",
        ],
    }
}

impl Policies {
    /// The policy of `field` of records of `kind`.
    pub fn of(&self, kind: Kind, field: &str) -> Policy {
        self.fields.get(&format!("{kind}.{field}")).copied().unwrap_or(self.default)
    }
}

/// A record's fields as canonical JSON text, plus `_exists`.
pub fn flatten(record: &Record) -> BTreeMap<String, String> {
    let body = serde_json::to_value(&record.body).expect("records serialize");
    let mut out = BTreeMap::new();
    out.insert(OWNER.to_string(), serde_json::to_string(&record.ward).expect("serializes"));
    if let serde_json::Value::Object(outer) = body {
        for (_, inner) in outer {
            if let serde_json::Value::Object(fields) = inner {
                for (k, v) in fields {
                    out.insert(k, v.to_string());
                }
            }
        }
    }
    out.insert(EXISTS.to_string(), "true".to_string());
    out
}

/// The record `values` (as made by [`flatten`]) describe, if complete and well formed.
pub fn unflatten(kind: Kind, values: &BTreeMap<String, String>) -> Option<Record> {
    let mut body = serde_json::Map::new();
    let mut ward = None;
    for (field, text) in values {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        match field.as_str() {
            EXISTS => {}
            OWNER => ward = Some(v),
            _ => {
                body.insert(field.clone(), v);
            }
        }
    }
    let json = serde_json::json!({ "ward": ward?, "body": { kind.as_str(): body } });
    serde_json::from_value(json).ok()
}

fn order_key<'a>(policy: Policy, owner: Option<&str>, w: &'a FieldWrite) -> (bool, &'a Stamp) {
    match policy {
        Policy::OwnerWins => (owner == Some(w.stamp.writer.as_str()), &w.stamp),
        Policy::Lww | Policy::Manual => (false, &w.stamp),
    }
}

impl Versioned {
    /// Adds one write to one field (the merge step). Returns true if it changed the state.
    ///
    /// The same write (the same stamp) arriving with a wider context
    /// widens the one here: a city that lost data cuts a claim down to the
    /// writes it holds, and takes the rest of the claim once they are back
    /// (see [`Versioned::adds`]); what it now saw is superseded.
    pub fn merge_write(&mut self, field: &str, write: FieldWrite) -> bool {
        if let Some(same) =
            self.fields.get_mut(field).and_then(|heads| heads.iter_mut().find(|h| h.stamp == write.stamp))
        {
            if same.context.covers(&write.context) {
                return false;
            }
            same.context.merge(&write.context);
            let context = same.context.clone();
            let heads = self.fields.get_mut(field).expect("found above");
            heads.retain(|h| !context.has_seen(&h.stamp));
            return true;
        }
        if self.holds(field, &write) {
            return false; // superseded
        }
        let heads = self.fields.entry(field.to_string()).or_default();
        heads.retain(|h| !write.context.has_seen(&h.stamp));
        heads.push(write);
        heads.sort_by(|a, b| a.stamp.cmp(&b.stamp));
        true
    }

    /// True if merging `write` into `field` would change this state: it is
    /// not held ([`Versioned::holds`]), or it is held with a context that
    /// says less (a claim cut down while what it claimed was lost).
    pub fn adds(&self, field: &str, write: &FieldWrite) -> bool {
        match self.fields.get(field).and_then(|heads| heads.iter().find(|h| h.stamp == write.stamp)) {
            Some(same) => !same.context.covers(&write.context),
            None => !self.holds(field, write),
        }
    }

    /// True if `write` to `field` is here, or superseded by a write here
    /// (what [`Versioned::merge_write`] would not add). Not the same as
    /// `seen` covering its stamp: a replica that lost data may hold a
    /// writer's later write without an earlier one.
    pub fn holds(&self, field: &str, write: &FieldWrite) -> bool {
        self.fields.get(field).is_some_and(|heads| {
            heads.iter().any(|h| h.stamp == write.stamp || h.context.has_seen(&write.stamp))
        })
    }

    /// Applies a whole change: the listed fields of `values`, all with the
    /// same stamp and context. Returns true if anything changed.
    pub fn apply(
        &mut self,
        values: &BTreeMap<String, String>,
        stamp: &Stamp,
        context: &VersionVector,
    ) -> bool {
        let mut changed = false;
        for (field, value) in values {
            let w = FieldWrite { value: value.clone(), stamp: stamp.clone(), context: context.clone() };
            changed |= self.merge_write(field, w);
        }
        self.seen.merge(context);
        self.seen.add(stamp);
        changed
    }

    /// Merges every write of `other` into this state.
    pub fn merge(&mut self, other: &Versioned) {
        for (field, writes) in &other.fields {
            for w in writes {
                self.merge_write(field, w.clone());
            }
        }
        self.seen.merge(&other.seen);
    }

    /// The owning ward the state shows: its latest `ward` write.
    pub fn owner_value(&self) -> Option<String> {
        serde_json::from_str::<String>(&self.newest(OWNER)?.value).ok()
    }

    /// The newest write of `field` (by stamp), whatever the policies show.
    pub fn newest(&self, field: &str) -> Option<&FieldWrite> {
        self.fields.get(field)?.iter().max_by(|a, b| a.stamp.cmp(&b.stamp))
    }

    /// The write shown for `field` under `policies`.
    pub fn winner(&self, kind: Kind, field: &str, policies: &Policies) -> Option<&FieldWrite> {
        self.winner_given(kind, field, policies, self.owner_value().as_deref())
    }

    /// [`Versioned::winner`] with the owner already read.
    fn winner_given(
        &self,
        kind: Kind,
        field: &str,
        policies: &Policies,
        owner: Option<&str>,
    ) -> Option<&FieldWrite> {
        let heads = self.fields.get(field)?;
        let policy = if field == OWNER { Policy::Lww } else { policies.of(kind, field) };
        heads.iter().max_by(|a, b| order_key(policy, owner, a).cmp(&order_key(policy, owner, b)))
    }

    /// The value shown for every field (as [`flatten`] makes them), whether
    /// or not the record is deleted.
    pub fn shown(&self, kind: Kind, policies: &Policies) -> BTreeMap<String, String> {
        let owner = self.owner_value();
        self.fields
            .keys()
            .filter_map(|f| {
                Some((f.clone(), self.winner_given(kind, f, policies, owner.as_deref())?.value.clone()))
            })
            .collect()
    }

    /// The record as it stands, or `None` if deleted (or never complete).
    pub fn materialize(&self, key: &RecordKey, policies: &Policies) -> Option<Record> {
        if !self.exists(key.kind(), policies) {
            return None;
        }
        self.view(key, policies)
    }

    /// True if the record exists: its `_exists` write shown is true.
    pub fn exists(&self, kind: Kind, policies: &Policies) -> bool {
        self.winner(kind, EXISTS, policies).is_some_and(|w| w.value == "true")
    }

    /// The record as it stands just after a put of `written`, whose
    /// [`flatten`]ed values are `all`: `written` itself when the merge shows
    /// exactly its values (the usual case, and no rebuilding), else as
    /// [`Versioned::materialize`] makes it.
    pub fn materialize_put(
        &self,
        key: &RecordKey,
        policies: &Policies,
        written: &Record,
        all: &BTreeMap<String, String>,
    ) -> Option<Record> {
        if &self.shown(key.kind(), policies) == all {
            Some(written.clone())
        } else {
            self.materialize(key, policies)
        }
    }

    /// The record the shown values make, whether or not it is deleted.
    pub fn view(&self, key: &RecordKey, policies: &Policies) -> Option<Record> {
        unflatten(key.kind(), &self.shown(key.kind(), policies))
    }

    /// Fields whose unsuperseded writes disagree, contenders shown-first.
    pub fn conflicts(&self, kind: Kind, policies: &Policies) -> Vec<FieldConflict> {
        let mut out = Vec::new();
        let mut owner = None;
        for (field, heads) in &self.fields {
            if heads.len() < 2 || heads.iter().all(|h| h.value == heads[0].value) {
                continue;
            }
            let owner = owner.get_or_insert_with(|| self.owner_value()).as_deref();
            let winner = self.winner_given(kind, field, policies, owner).expect("heads exist").clone();
            let mut contenders = vec![winner.clone()];
            contenders.extend(heads.iter().filter(|h| h.stamp != winner.stamp).cloned());
            let policy = if field == OWNER { Policy::Lww } else { policies.of(kind, field) };
            out.push(FieldConflict { field: field.clone(), policy, contenders });
        }
        out
    }

    /// True if a field under the manual policy has unresolved contenders.
    pub fn disputed(&self, kind: Kind, policies: &Policies) -> bool {
        self.conflicts(kind, policies).iter().any(|c| c.policy == Policy::Manual)
    }
}

#[cfg(test)]
mod tests;
