//! `wardsync audit verify`: checks the city's log against what proves it,
//! trusting nothing the database says of itself. Every key that signed a
//! batch must be certified by the CA the operator gives (never one from
//! the database) for the ward it signed for, and every batch signed; every
//! signed batch's links and signature must hold, and the batches of a
//! ward follow on from each other and reach as far as its replication
//! state says; every ward's change in the log (or in the quarantine) must
//! be the content its ward signed under that sequence, and every signed
//! change must be in one of them; every record's state must be what its
//! log entries make, replayed, and every record must show what its state
//! makes; on PostgreSQL, every row's columns must be what its encoded
//! entry says, and the typed tables what the records show.
//!
//! Every change the city wrote itself must come from an office request
//! the office signed with a key the CA certifies, kept beside it, and be
//! what the city derives from that request (`office`).
//!
//! What it cannot see from the database alone: writes no one signed
//! (repairs from a ward's whole state, changes applied before signed
//! chains and signed requests) are counted, not proven, and so are what
//! the city itself adds to a change (who submitted it, when);
//! and changes deleted together with their evidence and every trace of
//! them. Those are proven against what is kept outside the database: a
//! checkpoint of an earlier clean run (`--checkpoint FILE`: the log's
//! running hash at its last cursor and the span of each ward's signed
//! batches, which must still be there) and the city's signed receipts the
//! wards hold (`--witness`), each naming the log's running hash at a
//! cursor.

mod office;
mod relayed;

pub use office::OfficeRules;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::receipts::{Receipt, Said};
use crate::auth::Identity;
use crate::model::signed::{self, GENESIS, Hash, KeyId, hex};
use crate::model::{CITY_WRITER, Change, Record, RecordKey, VersionVector, Versioned, WardCode, flatten};
use crate::store::{
    Evidence, EvidencePart, EvidenceRow, LoggedChange, SignedBatch, StoreError, WardKey, WardState,
};

/// Rows read per page.
const PAGE: usize = 1000;

/// What the signatures are checked against.
#[derive(Clone)]
pub enum Trust {
    /// The CA that issues the wards' certificates: every batch must be
    /// signed by a key it certifies.
    Ca(Arc<rustls::RootCertStore>),
    /// A city without TLS (`insecure_dev`): its batches carry no signature;
    /// their chain is checked, and its changes counted as unsigned.
    Unsigned,
}

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
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The last cursor verified.
    pub cursor: u64,
    /// The log's running hash there, hex.
    pub running: String,
    /// Per ward, the first and last sequence of its signed batches.
    pub signed: BTreeMap<String, (u64, u64)>,
    /// The log cursor from which every change the city wrote itself came
    /// with a signed office request (absent: none seen yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub office_from: Option<u64>,
}

/// What a verification found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Log entries read.
    pub entries: u64,
    /// Signed batches whose signature was checked.
    pub signatures_checked: u64,
    /// Wards' signatures of single changes (registrations) checked.
    pub authored_checked: u64,
    /// Log entries proven by a ward's signature.
    pub signed_entries: u64,
    /// Log entries the city wrote for an office request the office signed.
    pub office_entries: u64,
    /// Office requests whose signature was checked.
    pub office_requests: u64,
    /// Log entries no one signed: repairs, changes applied before signed
    /// chains and signed requests (or by a city without TLS).
    pub unsigned_entries: u64,
    /// Changes held as received, too malformed to compare with what their
    /// ward signed.
    pub held_raw: u64,
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
    /// False for a batch of a city without TLS.
    signed: bool,
}

/// What a change's evidence shows.
enum Proof {
    /// Its ward signed it.
    Signed,
    /// No ward signed it (the office's, a repair's, or from before chains).
    Unsigned,
    /// It is not what its ward signed, or its evidence is missing.
    Refuted,
    /// A change the city wrote: judged on the office requests.
    Later,
}

/// What the audit has learned so far.
struct Audit {
    trust: Trust,
    policies: crate::model::Policies,
    report: Report,
    keys: HashMap<KeyId, WardKey>,
    /// Each ward's signed changes by sequence.
    signed: HashMap<WardCode, BTreeMap<u64, SignedChange>>,
    /// Where each signed batch starts: ward, first sequence, link before.
    starts: Vec<(WardCode, u64, Hash)>,
    wards: HashMap<WardCode, WardState>,
    /// Each ward's signed changes found in the log or held.
    found: HashSet<(WardCode, u64)>,
    /// Records the log wrote, until their state is read.
    logged_keys: HashSet<RecordKey>,
    running: Hash,
    last_cursor: u64,
    /// Where the city says its log ends, its running hash there, and the
    /// database's id.
    head: Option<(u64, Hash, [u8; 16])>,
    /// The city's receipts the wards hold, by the log cursor they name.
    witnesses: BTreeMap<u64, Vec<Receipt>>,
    /// What the office's requests are judged by.
    office: office::OfficeRules,
    /// The changes the city wrote itself, with who submitted each, by
    /// cursor, until the office requests are read (as many as the
    /// office's writes).
    office_changes: BTreeMap<u64, (String, Change)>,
    /// Each ward's change discarded from the quarantine, decoded.
    discarded: HashMap<(WardCode, u64), Change>,
    /// The cursor of the first signed office request's first change.
    first_request: Option<u64>,
    /// Requests kept unsigned where a CA is given: the cursor of the last
    /// change of each, and how many it derived.
    unsigned_requests: Vec<(u64, u64)>,
    /// The ids of the signed requests read.
    request_ids: HashSet<[u8; 16]>,
    /// The log entries requests derived, until their record is replayed.
    pending: HashMap<u64, office::Pending>,
    /// Another ward's writes a ward gave back, by cursor (as sent), until
    /// the evidence they were taken on is read.
    relayed_changes: BTreeMap<u64, Change>,
    /// The city's statements kept with relayed office writes, by cursor.
    stated: HashMap<u64, relayed::Stated>,
}

/// True if the city moved `ward`'s numbering past `seq` without holding
/// its changes: on the ward's word, or after losing them with a database
/// put back to an older copy (its last recorded loss). Its signed batches
/// need not reach there. (This rests on the ward state the database holds,
/// which a DBA can edit too: what it excuses is proven only by the
/// checkpoint of an earlier run and the receipts the wards hold.)
fn moved_past(state: &WardState, seq: u64) -> bool {
    let (lo, hi) = state.lost.last_range;
    seq <= state.unproven_to || (lo > 0 && lo <= seq && seq <= hi)
}

/// Verifies the log in `evidence` against `trust`, resuming from `since`
/// (a clean run's checkpoint).
pub async fn verify(
    evidence: &mut dyn Evidence,
    trust: &Trust,
    since: Option<&Checkpoint>,
    witnesses: &[Receipt],
    office: &OfficeRules,
) -> Result<Report, StoreError> {
    let mut audit = Audit {
        trust: trust.clone(),
        policies: evidence.policies().clone(),
        report: Report::default(),
        keys: HashMap::new(),
        signed: HashMap::new(),
        starts: Vec::new(),
        wards: HashMap::new(),
        found: HashSet::new(),
        logged_keys: HashSet::new(),
        running: GENESIS,
        last_cursor: 0,
        head: None,
        witnesses: BTreeMap::new(),
        office: office.clone(),
        office_changes: BTreeMap::new(),
        discarded: HashMap::new(),
        first_request: None,
        unsigned_requests: Vec::new(),
        request_ids: HashSet::new(),
        pending: HashMap::new(),
        relayed_changes: BTreeMap::new(),
        stated: HashMap::new(),
    };
    for w in witnesses {
        audit.witnesses.entry(w.head.0).or_default().push(w.clone());
        if let Said::Downstream { cursor, .. } = w.said {
            audit.witnesses.entry(cursor).or_default().push(w.clone());
        }
    }
    let since = since.cloned().unwrap_or_default();
    for part in EvidencePart::ALL {
        let mut after = Vec::new();
        loop {
            let page = evidence.page(part, &after, PAGE).await?;
            for row in page.items {
                audit.row(row, &since);
            }
            match page.next {
                Some(next) => after = next,
                None => break,
            }
        }
        match part {
            EvidencePart::Batches => audit.check_acks(witnesses),
            EvidencePart::Wards => {
                audit.check_continuity(&since);
                audit.check_wards();
            }
            EvidencePart::Held => audit.check_all_found(),
            EvidencePart::Requests => audit.check_unrequested(&since),
            EvidencePart::Relayed => audit.check_relays_kept(),
            EvidencePart::Records => {
                audit.check_unreplayed();
                audit.check_stated_used();
            }
            _ => {}
        }
    }
    audit.finish(&since);
    Ok(audit.report)
}

impl Audit {
    fn finding(&mut self, row: String, why: impl Into<String>) {
        self.report.findings.push(Finding { row, why: why.into() });
    }

    /// One finding `why` for each of `cursors`, in order, its row named
    /// `row` and the cursor.
    fn at_cursors(&mut self, cursors: impl IntoIterator<Item = u64>, row: &str, why: &str) {
        let mut cursors: Vec<u64> = cursors.into_iter().collect();
        cursors.sort();
        for cursor in cursors {
            self.finding(format!("{row} {cursor}"), why);
        }
    }

    fn row(&mut self, row: EvidenceRow, since: &Checkpoint) {
        match row {
            EvidenceRow::Key(k) => self.key(k),
            EvidenceRow::Batch(b) => self.batch(b),
            EvidenceRow::Authored(ward, seq, signature) => self.authored(ward, seq, &signature),
            EvidenceRow::Ward(ward, state) => {
                self.wards.insert(ward, *state);
            }
            EvidenceRow::Logged(logged, sent) => self.logged(&logged, sent.as_ref(), since),
            EvidenceRow::Held(ward, seq, change, discarded) => self.held(ward, seq, change, discarded),
            EvidenceRow::Request(r) => self.request(*r),
            EvidenceRow::Relayed(cursor, evidence) => self.relayed(cursor, *evidence),
            EvidenceRow::Record { key, state, shown, version, history } => {
                self.record(key, &state, shown.as_deref(), version, &history)
            }
            EvidenceRow::Head { cursor, running, city } => self.head = Some((cursor, running, city)),
            EvidenceRow::Tampered { row, why } => self.finding(row, why),
        }
    }

    fn key(&mut self, k: WardKey) {
        let Trust::Ca(roots) = &self.trust else { return };
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

    fn batch(&mut self, b: SignedBatch) {
        let name = format!("signed batch of ward {} ending at {}", b.ward, b.last());
        let links = b.links();
        let last = links.last().copied().unwrap_or(b.previous);
        let unsigned = b.key == KeyId::default() && b.signature.is_empty();
        let checked = match (&self.trust, self.keys.get(&b.key)) {
            (Trust::Unsigned, _) if unsigned => Ok(()),
            (Trust::Unsigned, _) => Err("signed, where a city without TLS signs nothing".to_string()),
            (Trust::Ca(_), _) if unsigned => {
                Err("not signed: only a city without TLS (insecure_dev) keeps unsigned batches".to_string())
            }
            (Trust::Ca(_), None) => Err("signed by a key no certificate of the CA's certifies".to_string()),
            (Trust::Ca(_), Some(k)) if k.ward != b.ward => Err(format!("signed by ward {}'s key", k.ward)),
            (Trust::Ca(_), Some(k)) => {
                crate::auth::verify(&k.cert, &signed::batch_message(&last), &b.signature)
                    .map_err(|e| format!("its signature does not hold ({e}): a row edited"))
            }
        };
        if let Err(why) = checked {
            return self.finding(name, why);
        }
        if !unsigned {
            self.report.signatures_checked += 1;
        }
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
                    chain.insert(
                        seq,
                        SignedChange { hash: *hash, key: b.key, link: *link, signed: !unsigned },
                    );
                }
            }
        }
        // (Continuity: the link before this batch, checked once all are read.)
        self.starts.push((b.ward, b.first, b.previous));
    }

    /// A ward's signature of one of its changes, apart from its batch: of
    /// the content its signed batch holds under that sequence, by the key
    /// that signed the batch.
    fn authored(&mut self, ward: WardCode, seq: u64, signature: &[u8]) {
        let name = format!("ward {ward}'s signature of its change {seq}");
        let held = self.signed.get(&ward).and_then(|c| c.get(&seq)).map(|c| (c.hash, c.key));
        let checked = match (&self.trust, held) {
            (Trust::Unsigned, _) => Err("signed, where a city without TLS signs nothing".to_string()),
            (_, None) => {
                Err("of a change in no signed batch (a row inserted, or its batch deleted)".to_string())
            }
            (Trust::Ca(_), Some((hash, key))) => match self.keys.get(&key) {
                None => Err("by a key no certificate of the CA's certifies".to_string()),
                Some(k) => crate::auth::verify(&k.cert, &signed::authored_message(&hash), signature)
                    .map_err(|e| format!("does not hold ({e}): a row edited")),
            },
        };
        match checked {
            Ok(()) => self.report.authored_checked += 1,
            Err(why) => self.finding(name, why),
        }
    }

    /// Each ward's batches follow on: a batch's link before is the link of
    /// the change before it, or the start of the chain. A ward's earliest
    /// evidence may start later (changes applied before signed chains),
    /// but never after what an earlier clean run found.
    fn check_continuity(&mut self, since: &Checkpoint) {
        for (ward, first, previous) in std::mem::take(&mut self.starts) {
            let chain = &self.signed[&ward];
            let before = if first == 1 { Some(GENESIS) } else { chain.get(&(first - 1)).map(|c| c.link) };
            let why = match before {
                Some(link) if link == previous => continue,
                Some(_) => format!("does not link onto the change before it, {}", first - 1),
                None if chain.range(..first).next().is_none() => continue,
                None => {
                    let from = chain.range(..first).next_back().map_or(1, |(s, _)| s + 1);
                    // Numbers the city moved past on the ward's word, or
                    // lost with a database put back to an older copy.
                    let state = self.wards.get(&ward).cloned().unwrap_or_default();
                    if moved_past(&state, first - 1)
                        && state.lost.last_range.0.min(state.unproven_to + 1) <= from
                    {
                        continue;
                    }
                    format!(
                        "no signed batch holds sequences {from} to {} before it \
                         (rows deleted, or lost with a database restored from an older backup)",
                        first - 1
                    )
                }
            };
            self.finding(format!("signed batch of ward {ward} starting at {first}"), why);
        }
        for (ward, (first, last)) in &since.signed {
            let held = WardCode::parse(ward).ok().and_then(|w| self.signed.get(&w));
            let spans = held.is_some_and(|c| c.contains_key(first) && c.contains_key(last));
            if !spans {
                let why = format!(
                    "its signed batches held sequences {first} to {last} at the last clean run, and no longer do (rows deleted)"
                );
                self.finding(format!("signed batches of ward {ward}"), why);
            }
        }
    }

    /// Each ward's replication state agrees with its signed batches: its
    /// chain's link at the last applied sequence, which they reach (unless
    /// the city moved past numbers it never had, or lost them).
    fn check_wards(&mut self) {
        let mut found = Vec::new();
        for (ward, state) in &self.wards {
            let applied = state.last_applied_seq;
            let name = format!("ward_state of ward {ward}");
            let Some(chain) = self.signed.get(ward) else {
                // The city links a ward's batches from its first signed one on.
                if state.chain.link.is_some() && !moved_past(state, applied) {
                    found.push((
                        name,
                        format!(
                            "its chain is known up to {applied}, and it has no signed batches (rows deleted)"
                        ),
                    ));
                }
                continue;
            };
            match (chain.get(&applied), state.chain.link) {
                (Some(c), Some(link)) if c.link != link => {
                    found.push((name, format!("its chain's link at {applied} is not its signed batches'")));
                }
                (None, _) if chain.keys().next_back().is_some_and(|last| *last < applied) => {
                    let last = chain.keys().next_back().copied().unwrap_or(0);
                    if !moved_past(state, applied) {
                        found.push((
                            name,
                            format!(
                                "applied up to {applied}, and its signed batches end at {last} (rows deleted)"
                            ),
                        ));
                    }
                }
                _ => {}
            }
        }
        found.sort();
        for (row, why) in found {
            self.finding(row, why);
        }
    }

    /// The log entry at a cursor a witness names is the one it names, and
    /// the log's running hash there the one the city signed.
    fn check_witnesses(&mut self, logged: &LoggedChange) {
        let Some(receipts) = self.witnesses.get(&logged.cursor) else { return };
        let mut found = Vec::new();
        for r in receipts {
            let name = format!("log up to entry {}", logged.cursor);
            if r.head.0 == logged.cursor && r.head.1 != self.running {
                let why = format!(
                    "is not the log the city signed to ward {} it held (rows edited, inserted or deleted)",
                    r.ward
                );
                found.push((name.clone(), why));
            }
            if let Said::Downstream { cursor, check } = r.said
                && cursor == logged.cursor
                && logged.check() != check
            {
                found.push((
                    format!("log entry {cursor}"),
                    format!("is not the change the city sent ward {} there", r.ward),
                ));
            }
        }
        for (row, why) in found {
            self.finding(row, why);
        }
    }

    /// Each ward's signed batches hold, at the sequence a receipt of the
    /// city's acknowledged, the link it acknowledged.
    fn check_acks(&mut self, witnesses: &[Receipt]) {
        for r in witnesses {
            let Said::Ack { seq, link } = r.said else { continue };
            if link == [0; 32] || seq == 0 {
                continue;
            }
            let held = self.signed.get(&r.ward).and_then(|c| c.get(&seq)).map(|c| c.link);
            if held != Some(link) {
                let why = format!(
                    "the city acknowledged ward {}'s changes up to {seq} with another link, or none is held there (rows edited or deleted)",
                    r.ward
                );
                self.finding(format!("signed batches of ward {}", r.ward), why);
            }
        }
    }

    /// Checks `change`, logged or held as `name`, against what its ward
    /// signed under its sequence.
    fn check_signed(&mut self, name: &str, ward: &WardCode, change: &Change) -> Proof {
        let seq = change.seq;
        let chain = self.signed.get(ward);
        if chain.is_none_or(|c| c.keys().next().is_some_and(|first| seq < *first)) {
            return Proof::Unsigned; // applied before signed chains
        }
        let Some(signed) = chain.and_then(|c| c.get(&seq)) else {
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
        if signed.signed { Proof::Signed } else { Proof::Unsigned }
    }

    fn held(&mut self, ward: WardCode, seq: u64, change: Result<Box<Change>, Vec<u8>>, discarded: bool) {
        let name = format!("quarantine ward {ward} seq {seq}");
        // A change kept as received is compared if it can be read at all.
        let decoded = change.map(|c| *c).or_else(|raw| {
            let pb: crate::proto::pb::Change = prost::Message::decode(raw.as_slice()).map_err(|_| ())?;
            crate::proto::change_from_pb(pb).map_err(|_| ())
        });
        match decoded {
            Ok(change) if change.seq == seq => {
                self.check_signed(&name, &ward, &change);
                if discarded {
                    self.discarded.insert((ward.clone(), seq), change.clone());
                }
            }
            Ok(change) => self.finding(name, format!("its change is sequence {}", change.seq)),
            Err(()) => self.report.held_raw += 1,
        }
        self.found.insert((ward, seq));
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
        self.report.entries += 1;
        let name = format!("log entry {}", logged.cursor);
        if logged.writer != logged.change.stamp.writer {
            let why = format!(
                "its writer is {:?}, and its change is stamped by {:?} (a row edited)",
                logged.writer, logged.change.stamp.writer
            );
            self.finding(name.clone(), why);
        }
        let expected = self.last_cursor + 1;
        if logged.cursor < expected {
            let why = format!("its cursor is not after the entry before it, {}", self.last_cursor);
            self.finding(name.clone(), why);
        } else if logged.cursor > expected {
            let why = format!("cursors {expected} to {} are missing (rows deleted)", logged.cursor - 1);
            self.finding(format!("log before entry {}", logged.cursor), why);
        }
        self.last_cursor = self.last_cursor.max(logged.cursor);
        self.running = logged.running_after(&self.running);
        self.check_witnesses(logged);
        if logged.cursor == since.cursor && hex(&self.running) != since.running {
            self.finding(
                format!("log up to entry {}", logged.cursor),
                "is not the log verified before (a row before it was edited, inserted or deleted)",
            );
        }
        let change = &logged.change;
        let ward = WardCode::parse(&logged.writer).ok().filter(|_| change.seq > 0);
        let as_sent =
            || sent.map_or_else(|| change.clone(), |c| Change { context: c.clone(), ..change.clone() });
        let proof = match &ward {
            // Another ward's write a ward gave back: proven by the evidence kept with it.
            None if relayed::names_relay(&logged.by) => {
                self.relayed_changes.insert(logged.cursor, as_sent());
                Proof::Later
            }
            Some(ward) => {
                let as_sent = sent.map(|context| Change { context: context.clone(), ..change.clone() });
                self.found.insert((ward.clone(), change.seq));
                self.check_signed(&name, ward, as_sent.as_ref().unwrap_or(change))
            }
            // Proven (or not) by the office requests, read later.
            None if change.stamp.writer == CITY_WRITER => {
                self.office_changes.insert(logged.cursor, (logged.by.clone(), as_sent()));
                Proof::Later
            }
            None => Proof::Unsigned,
        };
        match proof {
            Proof::Signed => self.report.signed_entries += 1,
            Proof::Unsigned => self.report.unsigned_entries += 1,
            Proof::Refuted | Proof::Later => {}
        }
        self.logged_keys.insert(change.key.clone());
    }

    /// A record's state is what its log entries make, replayed in order;
    /// it shows what its state makes; its version is its last entry's.
    fn record(
        &mut self,
        key: RecordKey,
        state: &Versioned,
        shown: Option<&Record>,
        version: u64,
        history: &[LoggedChange],
    ) {
        self.logged_keys.remove(&key);
        self.report.records += 1;
        self.replay_requests(&key, history);
        let replayed = crate::store::replay_state(history);
        if &replayed != state {
            let mut fields: Vec<&str> = state
                .fields
                .iter()
                .filter(|(f, heads)| replayed.fields.get(*f) != Some(*heads))
                .map(|(f, _)| f.as_str())
                .chain(replayed.fields.keys().filter(|f| !state.fields.contains_key(*f)).map(String::as_str))
                .collect();
            if fields.is_empty() && replayed.seen != state.seen {
                fields.push("(what it has seen)");
            }
            let why = format!(
                "its state is not what its log entries make, in {} (a row edited)",
                fields.join(", ")
            );
            self.finding(format!("record state {key}"), why);
        }
        if state.materialize(&key, &self.policies).as_ref().map(flatten) != shown.map(flatten) {
            self.finding(format!("record {key}"), "is not what its state makes (a row edited)");
        }
        let last = history.last().map_or(0, |l| l.cursor);
        if version != last {
            let why = format!("its last change is stored as cursor {version}, and its log's last is {last}");
            self.finding(format!("record {key}"), why);
        }
    }

    fn finish(&mut self, since: &Checkpoint) {
        let mut unstated: Vec<String> = self.logged_keys.drain().map(|k| k.to_string()).collect();
        unstated.sort();
        for key in unstated {
            self.finding(
                format!("record {key}"),
                "the log wrote it, but no state of it is stored (a row deleted)",
            );
        }
        match self.head {
            Some((cursor, ..)) if cursor != self.last_cursor => self.finding(
                format!("log end at cursor {}", self.last_cursor),
                format!("the city wrote its log up to cursor {cursor} (rows deleted at its end, or the cursor edited)"),
            ),
            Some((_, running, _)) if running != self.running => self.finding(
                format!("log up to cursor {}", self.last_cursor),
                "its running hash is not the one the city kept as it wrote (rows edited, inserted or deleted)",
            ),
            _ => {}
        }
        for (cursor, receipts) in self.witnesses.range(self.last_cursor + 1..) {
            let ward = &receipts[0].ward;
            let why = format!(
                "the city signed to ward {ward} that its log reached cursor {cursor} (rows deleted at its end)"
            );
            self.report
                .findings
                .push(Finding { row: format!("log end at cursor {}", self.last_cursor), why });
        }
        if let Some((.., city)) = self.head {
            let mut others: Vec<&WardCode> =
                self.witnesses.values().flatten().filter(|w| w.city != city).map(|w| &w.ward).collect();
            others.dedup();
            for ward in others {
                let why = "a receipt ward {ward} holds names another city database (restored from another deployment?)";
                self.report.findings.push(Finding {
                    row: "city database id".into(),
                    why: why.replace("{ward}", ward.as_str()),
                });
            }
        }
        if since.cursor > self.last_cursor {
            self.finding(
                format!("change_log after cursor {}", self.last_cursor),
                format!("the log verified up to cursor {} ends earlier now (rows deleted)", since.cursor),
            );
        }
        let c = &mut self.report.checkpoint;
        c.office_from = since.office_from.or(self.first_request);
        c.cursor = self.last_cursor;
        c.running = hex(&self.running);
        for (ward, chain) in &self.signed {
            if let (Some(first), Some(last)) = (chain.keys().next(), chain.keys().next_back()) {
                c.signed.insert(ward.to_string(), (*first, *last));
            }
        }
    }
}
