//! `wardsync audit verify`: checks the city's log against what proves it,
//! trusting nothing the database says of itself. Every key that signed a
//! batch must be certified by the CA the operator gives (never one from
//! the database) for the ward it signed for; every signed batch's links
//! and signature must hold, and the batches of a ward follow on from each
//! other; every ward's change in the log (or in the quarantine) must be
//! the content its ward signed under that sequence, and every signed
//! change must be in one of them; every write in every record's state
//! must be one the log holds, and every record must show what its state
//! makes; on PostgreSQL, every row's columns must be what its encoded
//! entry says, and the typed tables what the records show.
//!
//! What it cannot see: writes no ward signed (the data office's edits and
//! settlements, repairs from a ward's whole state) are counted, not
//! proven; a ward's latest changes deleted with their evidence leave no
//! trace here (the ward finds them missing when it next connects).
//!
//! A checkpoint kept outside the database (`--checkpoint FILE`) holds the
//! log's running hash at the cursor last verified and how far each ward's
//! signatures were checked: the next run proves the log up to it is the
//! one verified then, and checks only newer signatures again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::auth::Identity;
use crate::model::signed::{self, GENESIS, Hash, KeyId};
use crate::model::{Change, RecordKey, Stamp, VersionVector, WardCode, flatten};
use crate::store::{CityDb, EvidencePart, EvidenceRow, LoggedChange, SignedBatch, StoreError, WardKey};

/// Rows read per page.
const PAGE: usize = 1000;

/// One row that is not what the city wrote, or a gap in what it should hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The row, named by table (or part) and key.
    pub row: String,
    /// What is wrong with it.
    pub why: String,
}

/// Where a verified log stood: kept outside the database between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last cursor verified.
    pub cursor: u64,
    /// The log's running hash there, hex.
    pub running: String,
    /// Per ward, the last sequence whose signature was checked.
    pub signed_to: BTreeMap<String, u64>,
}

/// What a verification found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Signed batches whose signature was checked now.
    pub signatures_checked: u64,
    /// Log entries proven by a ward's signature.
    pub signed_entries: u64,
    /// Log entries no ward signed: the office's writes, repairs, and
    /// changes applied before signed chains.
    pub unsigned_entries: u64,
    /// Records whose state and shown record were checked.
    pub records: u64,
    /// Every row that is not what the city wrote.
    pub findings: Vec<Finding>,
    /// Where the log stands now (written to the checkpoint if clean).
    pub checkpoint: Checkpoint,
}

/// A ward's change as its ward signed it.
struct SignedChange {
    hash: Hash,
    key: KeyId,
    link: Hash,
}

/// What a change's evidence shows.
enum Proof {
    /// Its ward signed it.
    Signed,
    /// No ward signed it (the office's, a repair's, or from before chains).
    Unsigned,
    /// It is not what its ward signed, or its evidence is missing.
    Refuted,
}

/// What the audit has learned so far.
struct Audit {
    policies: crate::model::Policies,
    report: Report,
    keys: HashMap<KeyId, WardKey>,
    /// Each ward's signed changes by sequence.
    signed: HashMap<WardCode, BTreeMap<u64, SignedChange>>,
    /// Each ward's signed changes found in the log or held.
    found: HashSet<(WardCode, u64)>,
    /// A digest of every (record, field, stamp, value) the log holds.
    writes: HashSet<u128>,
    /// Records the log wrote, until their state is read.
    logged_keys: HashSet<RecordKey>,
    /// Where each signed batch starts: ward, first sequence, link before.
    starts: Vec<(WardCode, u64, Hash)>,
    running: Hash,
    last_cursor: u64,
    /// Where the city says its log ends, and its running hash there.
    head: Option<(u64, Hash)>,
}

fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_digest(key: &RecordKey, field: &str, stamp: &Stamp, value: &str) -> u128 {
    let text =
        format!("{key}\0{field}\0{}.{}\0{}\0{value}", stamp.hlc.wall_ms, stamp.hlc.logical, stamp.writer);
    let h = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    u128::from_be_bytes(h.as_ref()[..16].try_into().expect("16 bytes"))
}

/// Verifies the log of `db` against the CA certificates `roots`, resuming
/// from `since` (a clean run's checkpoint).
pub async fn verify(
    db: &dyn CityDb,
    roots: &Arc<rustls::RootCertStore>,
    since: Option<&Checkpoint>,
) -> Result<Report, StoreError> {
    let mut audit = Audit {
        policies: db.policies().clone(),
        report: Report::default(),
        keys: HashMap::new(),
        signed: HashMap::new(),
        found: HashSet::new(),
        writes: HashSet::new(),
        logged_keys: HashSet::new(),
        starts: Vec::new(),
        running: GENESIS,
        last_cursor: 0,
        head: None,
    };
    let since = since.cloned().unwrap_or_default();
    for part in EvidencePart::ALL {
        let mut after = Vec::new();
        loop {
            let page = db.evidence(part, &after, PAGE).await?;
            for row in page.items {
                audit.row(row, roots, &since);
            }
            match page.next {
                Some(next) => after = next,
                None => break,
            }
        }
        if part == EvidencePart::Batches {
            audit.check_continuity();
        }
        if part == EvidencePart::Held {
            audit.check_all_found();
        }
    }
    for key in std::mem::take(&mut audit.logged_keys) {
        audit.finding(
            format!("record {key}"),
            "the log wrote it, but no state of it is stored (a row deleted)",
        );
    }
    match audit.head {
        Some((cursor, _)) if cursor != audit.last_cursor => audit.finding(
            format!("log end at cursor {}", audit.last_cursor),
            format!(
                "the city wrote its log up to cursor {cursor} (rows deleted at its end, or the cursor edited)"
            ),
        ),
        Some((_, running)) if running != audit.running => audit.finding(
            format!("log up to cursor {}", audit.last_cursor),
            "its running hash is not the one the city kept as it wrote (rows edited, inserted or deleted)",
        ),
        _ => {}
    }
    if since.cursor > audit.last_cursor {
        audit.finding(
            format!("change_log after cursor {}", audit.last_cursor),
            format!("the log verified up to cursor {} ends earlier now (rows deleted)", since.cursor),
        );
    }
    audit.report.checkpoint.cursor = audit.last_cursor;
    audit.report.checkpoint.running = hex(&audit.running);
    Ok(audit.report)
}

impl Audit {
    fn finding(&mut self, row: String, why: impl Into<String>) {
        self.report.findings.push(Finding { row, why: why.into() });
    }

    fn row(&mut self, row: EvidenceRow, roots: &Arc<rustls::RootCertStore>, since: &Checkpoint) {
        match row {
            EvidenceRow::Key(k) => self.key(k, roots),
            EvidenceRow::Batch(b) => self.batch(b, since),
            EvidenceRow::Logged(logged, sent) => self.logged(&logged, sent.as_ref(), since),
            EvidenceRow::Held(ward, seq, change) => {
                let name = format!("quarantine ward {ward} seq {seq}");
                if let Some(change) = change {
                    self.check_signed(&name, &ward, &change);
                }
                // (Kept raw: its ward's hash stands for it.)
                self.found.insert((ward, seq));
            }
            EvidenceRow::Record(key, state, shown) => self.record(key, state.as_deref(), shown.as_deref()),
            EvidenceRow::Head { cursor, running } => self.head = Some((cursor, running)),
            EvidenceRow::Tampered { row, why } => self.finding(row, why),
        }
    }

    fn key(&mut self, k: WardKey, roots: &Arc<rustls::RootCertStore>) {
        let name = format!("ward key {}", hex(&k.key.0));
        let checked = crate::auth::key_id(&k.cert)
            .and_then(
                |id| if id == k.key { Ok(()) } else { Err("its certificate certifies another key".into()) },
            )
            .and_then(|_| crate::auth::issued_by(roots, &k.cert))
            .and_then(|_| match Identity::from_der(&k.cert)? {
                Identity::Ward(w) if w == k.ward => Ok(()),
                other => Err(format!("its certificate is {other}'s, not ward {}'s", k.ward)),
            });
        match checked {
            Ok(()) => {
                self.keys.insert(k.key, k);
            }
            Err(why) => self.finding(name, why),
        }
    }

    fn batch(&mut self, b: SignedBatch, since: &Checkpoint) {
        let name = format!("signed batch of ward {} ending at {}", b.ward, b.last());
        let links = b.links();
        let verified_before = since.signed_to.get(b.ward.as_str()).is_some_and(|s| b.last() <= *s);
        if !verified_before {
            let last = links.last().copied().unwrap_or(b.previous);
            let checked = match self.keys.get(&b.key) {
                _ if b.key == KeyId::default() && b.signature.is_empty() => Ok(()), // insecure_dev
                None => Err("signed by a key no certificate of the CA's certifies".to_string()),
                Some(k) if k.ward != b.ward => Err(format!("signed by ward {}'s key", k.ward)),
                Some(k) => crate::auth::verify(&k.cert, &signed::batch_message(&last), &b.signature)
                    .map_err(|e| format!("its signature does not hold ({e}): a row edited")),
            };
            if let Err(why) = checked {
                return self.finding(name, why);
            }
            self.report.signatures_checked += 1;
        }
        let report_to = self.report.checkpoint.signed_to.entry(b.ward.to_string()).or_default();
        *report_to = (*report_to).max(b.last());
        let chain = self.signed.entry(b.ward.clone()).or_default();
        for (i, (hash, link)) in b.hashes.iter().zip(&links).enumerate() {
            let seq = b.first + i as u64;
            match chain.get(&seq) {
                Some(held) if held.hash != *hash => {
                    let why = format!("sequence {seq} is signed with other content in another batch");
                    return self.finding(name, why);
                }
                Some(_) => {}
                None => {
                    chain.insert(seq, SignedChange { hash: *hash, key: b.key, link: *link });
                }
            }
        }
        // (Continuity: the link before this batch, checked once all are read.)
        self.starts.push((b.ward, b.first, b.previous));
    }

    /// Each ward's batches follow on: a batch's link before is the link of
    /// the change before it, or the start of the chain. A ward's earliest
    /// evidence may start later (changes applied before signed chains).
    fn check_continuity(&mut self) {
        for (ward, first, previous) in std::mem::take(&mut self.starts) {
            let chain = &self.signed[&ward];
            let before = if first == 1 { Some(GENESIS) } else { chain.get(&(first - 1)).map(|c| c.link) };
            let why = match before {
                Some(link) if link == previous => continue,
                Some(_) => format!("does not link onto the change before it, {}", first - 1),
                None if chain.range(..first).next().is_none() => continue,
                None => {
                    let from = chain.range(..first).next_back().map_or(1, |(s, _)| s + 1);
                    format!(
                        "no signed batch holds sequences {from} to {} before it \
                         (rows deleted, or lost with a database restored from an older backup)",
                        first - 1
                    )
                }
            };
            self.finding(format!("signed batch of ward {ward} starting at {first}"), why);
        }
    }

    /// Checks `change`, logged or held as `name`, against what its ward
    /// signed under its sequence.
    fn check_signed(&mut self, name: &str, ward: &WardCode, change: &Change) -> Proof {
        let seq = change.seq;
        let Some(signed) = self.signed.get(ward).and_then(|c| c.get(&seq)) else {
            if self.signed.get(ward).is_none_or(|c| c.range(seq..).next().is_none()) {
                return Proof::Unsigned; // applied before signed chains
            }
            // Signed changes follow: this one's evidence is missing.
            let why = format!(
                "ward {ward}'s change {seq} is in no signed batch (a row inserted, or its batch deleted)"
            );
            self.finding(name.to_string(), why);
            return Proof::Refuted;
        };
        if signed::content_hash(change, &signed.key) != signed.hash {
            self.finding(
                name.to_string(),
                format!("not what ward {ward} signed as its change {seq} (a row edited)"),
            );
            return Proof::Refuted;
        }
        Proof::Signed
    }

    /// Every signed change is in the log or held apart.
    fn check_all_found(&mut self) {
        let mut missing = Vec::new();
        for (ward, chain) in &self.signed {
            for seq in chain.keys().filter(|s| !self.found.contains(&(ward.clone(), **s))) {
                missing.push((ward.clone(), *seq));
            }
        }
        missing.sort();
        for (ward, seq) in missing {
            self.finding(
                format!("ward {ward}'s change {seq}"),
                "signed and applied, but in neither the log nor the quarantine (a row deleted)",
            );
        }
    }

    fn logged(&mut self, logged: &LoggedChange, sent: Option<&VersionVector>, since: &Checkpoint) {
        let name = format!("log entry {}", logged.cursor);
        if logged.cursor != self.last_cursor + 1 {
            let why = format!(
                "cursors {} to {} are missing (rows deleted)",
                self.last_cursor + 1,
                logged.cursor - 1
            );
            self.finding(format!("log before entry {}", logged.cursor), why);
        }
        self.last_cursor = logged.cursor;
        let change = &logged.change;
        self.running = logged.running_after(&self.running);
        if logged.cursor == since.cursor && hex(&self.running) != since.running {
            self.finding(
                format!("log up to entry {}", logged.cursor),
                "is not the log verified before (a row before it was edited, inserted or deleted)",
            );
        }
        let ward = WardCode::parse(&logged.writer).ok().filter(|_| change.seq > 0);
        let proof = match &ward {
            Some(ward) => {
                let as_sent = sent.map(|context| Change { context: context.clone(), ..change.clone() });
                self.found.insert((ward.clone(), change.seq));
                self.check_signed(&name, ward, as_sent.as_ref().unwrap_or(change))
            }
            None => Proof::Unsigned,
        };
        match proof {
            Proof::Signed => self.report.signed_entries += 1,
            Proof::Unsigned => self.report.unsigned_entries += 1,
            Proof::Refuted => return, // its writes back nothing
        }
        for (field, value) in change.values() {
            self.writes.insert(write_digest(&change.key, &field, &change.stamp, &value));
        }
        self.logged_keys.insert(change.key.clone());
    }

    fn record(
        &mut self,
        key: RecordKey,
        state: Option<&crate::model::Versioned>,
        shown: Option<&crate::model::Record>,
    ) {
        self.logged_keys.remove(&key);
        self.report.records += 1;
        let name = format!("record state {key}");
        let Some(state) = state else { return };
        for (field, heads) in &state.fields {
            for h in heads {
                if !self.writes.contains(&write_digest(&key, field, &h.stamp, &h.value)) {
                    let why = format!(
                        "field {field}'s value by {} at {} is in no log entry (a row edited)",
                        h.stamp.writer, h.stamp.hlc.wall_ms
                    );
                    self.finding(name.clone(), why);
                }
            }
        }
        let makes = state.materialize(&key, &self.policies);
        if makes.as_ref().map(flatten) != shown.map(flatten) {
            self.finding(format!("record {key}"), "is not what its state makes (a row edited)");
        }
    }
}
