//! The reference model the fault tests check a run against: every write a
//! client attempted and which of them it was told were accepted, plus what
//! was observed along the way; and, once the faults have healed, the
//! invariants: no acknowledged write lost, no (ward, sequence) applied
//! twice, every ward's records equal to the city's, backlogs drained,
//! sequences and cursors never moving backwards. A node put back to an
//! older copy of its store is the exception it is told of: what was
//! acknowledged after the copy by that node alone may be lost, its
//! counters may move back, and the city's repairs stand in for what it lost.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use tonic::transport::Channel;
use wardsync::cli::client::{all_city_records, all_ward_records};
use wardsync::cli::wait;
use wardsync::model::{Kind, Record, RecordKey};
use wardsync::proto::pb::{self, city_query_client::CityQueryClient, ward_api_client::WardApiClient};

/// One attempted write: the record written (`None` for a delete) and
/// whether the client was told it was accepted.
#[derive(Clone, Debug)]
struct Write {
    value: Option<Record>,
    acked: bool,
    /// Who wrote it (a ward code, or "office").
    writer: String,
    /// Its place in the order of acknowledgements (0: none).
    acked_at: u64,
}

#[derive(Default)]
struct Inner {
    /// Acknowledged changes: (ward, sequence) → key, and the place of the
    /// acknowledgement in their order.
    acked: BTreeMap<(String, u64), (RecordKey, u64)>,
    /// Acknowledgements so far.
    acks: u64,
    /// Times each ward, and the city, were put back to an older copy: an
    /// observation that spans one is not compared with those before it.
    ward_epochs: BTreeMap<String, u64>,
    city_epoch: u64,
    /// The city was put back to an older copy during the run.
    city_restored: bool,
    /// Who attempted writes to each key (a ward code, or "office").
    writers: BTreeMap<RecordKey, BTreeSet<String>>,
    /// Each key's attempted writes, in the order they were made.
    history: BTreeMap<RecordKey, Vec<Write>>,
    /// Per ward, the last applied sequence the city reported, and its log cursor.
    city_applied: BTreeMap<String, u64>,
    log_cursor: u64,
    /// Invariants seen broken while the run went on.
    problems: Vec<String>,
    /// Hostile wards, whose changes the city is expected to refuse.
    hostile: BTreeSet<String>,
    /// Wards put back to a copy not marked as one (a VM snapshot): the
    /// numbers they give their clients before they reach the city again
    /// are renumbered after the city's (the change is logged under a
    /// higher one).
    renumbering: BTreeSet<String>,
    /// Changes of hostile wards the city acknowledged: (ward, sequence) →
    /// the change's stamp (wall ms, logical), which the quarantine must hold
    /// under that number.
    hostile_acked: BTreeMap<(String, u64), (u64, u32)>,
}

/// What clients were told and what was observed; shared by the workload's
/// tasks (a plain mutex: it is never held across an await).
#[derive(Default)]
pub struct Ledger(Mutex<Inner>);

/// A write in flight: [`Attempt::acked`] once the client is told it was accepted.
pub struct Attempt {
    key: RecordKey,
    index: usize,
    /// The writer's epoch when it was made: an answer that comes after the
    /// writer was put back to an older copy speaks of a store that is gone.
    epoch: u64,
}

impl Ledger {
    /// Notes that `writer` is about to write `value` (`None`: delete) under `key`.
    pub fn attempt(&self, writer: &str, key: &RecordKey, value: Option<&Record>) -> Attempt {
        let mut l = self.0.lock().unwrap();
        l.writers.entry(key.clone()).or_default().insert(writer.to_string());
        let epoch = l.epoch_of(writer);
        let h = l.history.entry(key.clone()).or_default();
        h.push(Write { value: value.cloned(), acked: false, writer: writer.to_string(), acked_at: 0 });
        Attempt { key: key.clone(), index: h.len() - 1, epoch }
    }

    /// Notes that an attempt was accepted by `ward` as change `seq` (0 when
    /// the record was already stored exactly so, or for office edits).
    pub fn acked(&self, attempt: Attempt, ward: &str, seq: u64) {
        let mut l = self.0.lock().unwrap();
        let writer = l.history[&attempt.key][attempt.index].writer.clone();
        if l.epoch_of(&writer) != attempt.epoch {
            return;
        }
        l.acks += 1;
        let at = l.acks;
        let w = &mut l.history.get_mut(&attempt.key).unwrap()[attempt.index];
        (w.acked, w.acked_at) = (true, at);
        if seq > 0 {
            l.acked.insert((ward.to_string(), seq), (attempt.key, at));
        }
    }

    /// The point a copy of a store taken now stands at, for
    /// [`Ledger::restored`].
    pub fn mark(&self) -> u64 {
        self.0.lock().unwrap().acks
    }

    /// `node` (a ward code, or "city") was put back to a copy taken at
    /// `mark` (`marked` as one, or not): what it alone acknowledged since
    /// may be lost (a ward's writes; the office's, for the city), and its
    /// counters move back.
    pub fn restored(&self, node: &str, mark: u64, marked: bool) {
        let mut l = self.0.lock().unwrap();
        if !marked {
            l.renumbering.insert(node.to_string());
        }
        let writer = if node == "city" { "office" } else { node };
        for w in l.history.values_mut().flatten().filter(|w| w.writer == writer && w.acked_at > mark) {
            w.acked = false;
        }
        if node == "city" {
            l.city_epoch += 1;
            l.city_restored = true;
            l.city_applied.clear();
            l.log_cursor = 0;
        } else {
            l.acked.retain(|(ward, _), (_, at)| ward != node || *at <= mark);
            *l.ward_epochs.entry(node.to_string()).or_default() += 1;
        }
    }

    fn epochs(&self, ward: &str) -> (u64, u64) {
        let l = self.0.lock().unwrap();
        (l.ward_epochs.get(ward).copied().unwrap_or(0), l.city_epoch)
    }

    /// Puts `r` through `ward`'s agent (a residence transfer if `transfer`)
    /// and notes the outcome; the sequence if accepted.
    pub async fn put(
        &self,
        ward: &mut WardApiClient<Channel>,
        code: &str,
        r: &Record,
        transfer: bool,
    ) -> Option<u64> {
        let attempt = self.attempt(code, &r.key().unwrap(), Some(r));
        let req = pb::PutRequest { record: Some(r.into()) };
        let reply = if transfer { ward.transfer(req).await } else { ward.put(req).await };
        let seq = reply.ok()?.into_inner().seq;
        self.acked(attempt, code, seq);
        Some(seq)
    }

    /// Deletes `key` through `ward`'s agent and notes the outcome; the
    /// sequence if accepted.
    pub async fn delete(
        &self,
        ward: &mut WardApiClient<Channel>,
        code: &str,
        key: &RecordKey,
    ) -> Option<u64> {
        let attempt = self.attempt(code, key, None);
        let seq = ward.delete(pb::DeleteRequest { key: Some(key.into()) }).await.ok()?.into_inner().seq;
        self.acked(attempt, code, seq);
        Some(seq)
    }

    /// Notes that the city acknowledged hostile `ward`'s change `seq`,
    /// stamped `hlc`: the quarantine must hold that change under it (an
    /// acknowledged change it holds another of under that number was
    /// skipped as a duplicate by its number alone: lost).
    pub fn hostile_acked(&self, ward: &str, seq: u64, hlc: (u64, u32)) {
        self.0.lock().unwrap().hostile_acked.insert((ward.to_string(), seq), hlc);
    }

    /// Notes that `ward` is hostile: its changes belong in the quarantine.
    pub fn expect_refused(&self, ward: &str) {
        self.0.lock().unwrap().hostile.insert(ward.to_string());
    }

    /// Asks every ward and the city for their counters and checks that
    /// none moved backwards (unreachable nodes are skipped).
    pub async fn observe(
        &self,
        wards: &mut [(String, WardApiClient<Channel>)],
        city: &mut CityQueryClient<Channel>,
    ) {
        for (code, w) in wards.iter_mut() {
            let (epoch, _) = self.epochs(code);
            let before = self.max_acked(code);
            if let Ok(s) = w.status(pb::StatusRequest {}).await
                && self.epochs(code).0 == epoch
            {
                self.observe_ward(code, before, s.get_ref());
            }
        }
        let (_, epoch) = self.epochs("");
        if let Ok(w) = city.wards(pb::WardsRequest {}).await
            && self.epochs("").1 == epoch
        {
            self.observe_city(w.get_ref());
        }
    }

    /// The highest sequence `ward` has acknowledged so far.
    pub fn max_acked(&self, ward: &str) -> u64 {
        let l = self.0.lock().unwrap();
        l.acked
            .range((ward.to_string(), 0)..=(ward.to_string(), u64::MAX))
            .next_back()
            .map_or(0, |(k, _)| k.1)
    }

    /// Records a violation seen during the run.
    pub fn problem(&self, p: String) {
        self.0.lock().unwrap().problems.push(p);
    }

    /// Checks a ward's status, asked for after `max_acked` was read: its
    /// last sequence never falls below what it acknowledged.
    fn observe_ward(&self, ward: &str, max_acked_before: u64, status: &pb::WardStatus) {
        if status.last_seq < max_acked_before {
            self.problem(format!(
                "ward {ward} reports last sequence {} after acknowledging {max_acked_before}",
                status.last_seq
            ));
        }
    }

    /// Checks the city's ward table: applied sequences and the log cursor
    /// never move backwards.
    fn observe_city(&self, reply: &pb::WardsReply) {
        let mut l = self.0.lock().unwrap();
        let mut problems = Vec::new();
        if reply.log_cursor < l.log_cursor {
            problems.push(format!("city log cursor went back from {} to {}", l.log_cursor, reply.log_cursor));
        }
        l.log_cursor = l.log_cursor.max(reply.log_cursor);
        for w in &reply.wards {
            let seen = l.city_applied.entry(w.ward.clone()).or_default();
            if w.last_applied_seq < *seen {
                problems.push(format!(
                    "city's last applied sequence of ward {} went back from {seen} to {}",
                    w.ward, w.last_applied_seq
                ));
            }
            *seen = (*seen).max(w.last_applied_seq);
        }
        l.problems.extend(problems);
    }

    /// Waits (up to `timeout`) until every ward's backlog is empty and its
    /// records equal the city's copy of them.
    pub async fn settle(
        &self,
        wards: &[(String, WardApiClient<Channel>)],
        city: &CityQueryClient<Channel>,
        timeout: Duration,
    ) -> Result<(), String> {
        wait::until(timeout, "every ward to drain and equal the city", || async {
            for (code, w) in wards {
                let mut w = w.clone();
                let status = w.status(pb::StatusRequest {}).await?.into_inner();
                if status.backlog > 0 {
                    anyhow::bail!("ward {code} still holds {} changes", status.backlog);
                }
                if status.refill_due {
                    anyhow::bail!("ward {code} has not yet refilled what was lost");
                }
                for kind in Kind::ALL {
                    let at_ward = all_ward_records(&mut w, kind).await?;
                    let at_city = all_city_records(&mut city.clone(), kind, code).await?;
                    if at_ward != at_city {
                        anyhow::bail!(
                            "ward {code}'s {kind:?} records differ from the city's: {}",
                            diff(&at_ward, &at_city)
                        );
                    }
                }
            }
            Ok(true)
        })
        .await
        .map_err(|e| e.to_string())
    }

    /// Checks the healed system against the model; returns every violation.
    pub async fn check(&self, city: &mut CityQueryClient<Channel>) -> Vec<String> {
        let mut problems = std::mem::take(&mut self.0.lock().unwrap().problems);
        let log = match read_log(city).await {
            Ok(log) => log,
            Err(e) => return vec![format!("cannot read the city's log: {e}")],
        };
        // No (ward, sequence) applied twice; none applied out of order.
        // (Sequence 0: a write the city took again from a ward's copy.)
        let mut last: BTreeMap<&str, u64> = BTreeMap::new();
        let mut logged: BTreeMap<(String, u64), RecordKey> = BTreeMap::new();
        let mut touched: BTreeSet<RecordKey> = BTreeSet::new();
        let hostile = self.0.lock().unwrap().hostile.clone();
        for l in log.iter() {
            let change = l.change.as_ref().unwrap();
            touched.insert(wardsync::proto::key_from_pb(change.key.clone()).unwrap());
            if change.seq == 0 || l.ward == wardsync::model::CITY_WRITER {
                continue;
            }
            if hostile.contains(&l.ward) {
                problems.push(format!("hostile ward {}'s change {} was applied", l.ward, change.seq));
            }
            // A change retried from quarantine comes when what it built on
            // does, after the ward's later changes.
            if !l.by.contains(wardsync::store::RETRIED) {
                let prev = last.insert(&l.ward, change.seq).unwrap_or(0);
                if change.seq <= prev {
                    problems.push(format!("ward {} change {} logged after {prev}", l.ward, change.seq));
                }
            }
            let key = wardsync::proto::key_from_pb(change.key.clone()).unwrap();
            if logged.insert((l.ward.clone(), change.seq), key).is_some() {
                problems.push(format!("ward {} change {} logged twice", l.ward, change.seq));
            }
        }
        // Each quarantined change counted once in the ward table (a sequence
        // taken twice would count twice). Counts read first: a forgery
        // still arriving adds an entry after them, never a count.
        let counted = city.wards(pb::WardsRequest {}).await;
        let quarantined = wardsync::cli::client::pages(usize::MAX, |after| {
            let mut city = city.clone();
            async move {
                let q = city.list_quarantine(pb::QuarantineRequest { after, ..Default::default() }).await?;
                let q = q.into_inner();
                Ok((q.entries, q.next_after))
            }
        })
        .await;
        match (quarantined, counted) {
            (Ok((q, _)), Ok(w)) => {
                problems.extend(
                    q.iter()
                        .filter(|e| !hostile.contains(&e.ward))
                        .map(|e| format!("ward {} change {} quarantined: {}", e.ward, e.seq, e.reason)),
                );
                let acked = self.0.lock().unwrap().hostile_acked.clone();
                for ((ward, seq), hlc) in acked {
                    let held = q.iter().find(|e| e.ward == ward && e.seq == seq).map(|e| {
                        let change = e.change.clone().or_else(|| prost::Message::decode(&e.raw[..]).ok());
                        change.and_then(|c| c.hlc).map(|h| (h.wall_ms, h.logical))
                    });
                    if let Some(held) = held
                        && held != Some(hlc)
                    {
                        problems.push(format!(
                            "hostile ward {ward}'s change {seq} was acknowledged, but the city holds another under that number: skipped as a duplicate by its number alone"
                        ));
                    }
                }
                for w in w.into_inner().wards {
                    let held: Vec<u64> = q.iter().filter(|e| e.ward == w.ward).map(|e| e.seq).collect();
                    if w.quarantined > held.len() as u64 {
                        problems.push(format!(
                            "ward {} counts {} quarantined changes, the quarantine holds {held:?}",
                            w.ward, w.quarantined
                        ));
                    }
                }
            }
            (Err(e), _) => problems.push(format!("cannot read the quarantine: {e}")),
            (_, Err(e)) => problems.push(format!("cannot read the wards: {e}")),
        }
        let l = self.0.lock().unwrap().clone_model();
        // No acknowledged change lost. After the city was put back to an
        // older copy, a change it lost is in the log again only if the copy
        // a ward refilled it with still held the write (else a later write
        // superseded it everywhere): the record's final state, checked below
        // and against the wards', says whether anything was lost.
        for ((ward, seq), (key, _)) in &l.acked {
            let renumbered = || {
                l.renumbering.contains(ward)
                    && logged
                        .range((ward.clone(), seq + 1)..)
                        .take_while(|((w, _), _)| w == ward)
                        .any(|(_, k)| k == key)
            };
            match logged.get(&(ward.clone(), *seq)) {
                Some(k) if k == key => {}
                _ if renumbered() => {}
                Some(k) => {
                    problems.push(format!("ward {ward} change {seq} was {key} but the city logged {k}"))
                }
                None if l.city_restored && touched.contains(key) => {}
                None => {
                    problems.push(format!("ward {ward} acknowledged change {seq} ({key}) is not at the city"))
                }
            }
        }
        // A record only one ward ever wrote shows its last acknowledged
        // write, or a later one whose outcome the client never learned.
        let mut at_city: BTreeMap<RecordKey, Record> = BTreeMap::new();
        for kind in Kind::ALL {
            match all_city_records(city, kind, "").await {
                Ok(records) => at_city.extend(records.into_iter().map(|r| (r.key().unwrap(), r))),
                Err(e) => problems.push(format!("cannot list the city's {kind:?} records: {e:#}")),
            }
        }
        for (key, writers) in &l.writers {
            if writers.len() > 1 || writers.contains("office") {
                continue;
            }
            let history = &l.history[key];
            let from = history.iter().rposition(|w| w.acked);
            let mut possible: Vec<Option<&Record>> =
                history[from.unwrap_or(0)..].iter().map(|w| w.value.as_ref()).collect();
            if from.is_none() {
                possible.push(None);
            }
            let found = at_city.get(key);
            if !possible.contains(&found) {
                problems.push(format!("{key} at the city is {found:?}, not its last acknowledged write"));
            }
        }
        problems
    }

    /// The number of acknowledged changes so far.
    pub fn acked_count(&self) -> usize {
        self.0.lock().unwrap().acked.len()
    }
}

impl Inner {
    /// How many times `writer` (a ward, or "office": the city) was put
    /// back to an older copy.
    fn epoch_of(&self, writer: &str) -> u64 {
        match writer {
            "office" => self.city_epoch,
            w => self.ward_epochs.get(w).copied().unwrap_or(0),
        }
    }

    fn clone_model(&self) -> Inner {
        Inner {
            acked: self.acked.clone(),
            writers: self.writers.clone(),
            history: self.history.clone(),
            city_restored: self.city_restored,
            renumbering: self.renumbering.clone(),
            ..Default::default()
        }
    }
}

/// Every change the city logged, in cursor order.
pub async fn read_log(city: &mut CityQueryClient<Channel>) -> Result<Vec<pb::LoggedChange>, tonic::Status> {
    let mut stream = city
        .changes_since(pb::ChangesSinceRequest { after: 0, limit: 0, ..Default::default() })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(l) = stream.message().await? {
        out.push(l);
    }
    Ok(out)
}

/// The keys present on one side only, or held differently.
fn diff(ward: &[Record], city: &[Record]) -> String {
    let w: BTreeMap<String, &Record> = ward.iter().map(|r| (r.key_id(), r)).collect();
    let c: BTreeMap<String, &Record> = city.iter().map(|r| (r.key_id(), r)).collect();
    let only_ward: Vec<&String> = w.keys().filter(|k| !c.contains_key(*k)).collect();
    let only_city: Vec<&String> = c.keys().filter(|k| !w.contains_key(*k)).collect();
    let differ: Vec<&String> =
        w.iter().filter(|(k, r)| c.get(*k).is_some_and(|x| x != *r)).map(|(k, _)| k).collect();
    let first = differ.first().map(|k| format!("; {k} at the ward: {:?}; at the city: {:?}", w[*k], c[*k]));
    format!(
        "only at the ward {only_ward:?}, only at the city {only_city:?}, different {differ:?}{}",
        first.unwrap_or_default()
    )
}
