//! The city's Prometheus metrics: per ward (label `ward`) the last applied
//! sequence, lag (a lower bound while cut off), backlog and the age of its
//! report, last contact, connection, outages, records, conflicts,
//! quarantine and civil-status problems by kind; city-wide open conflicts, quarantined changes, refused calls
//! and the latency of applying ward batches.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::{Live, ward_states};
use crate::clock::now_ms;
use crate::metrics::Exporter;
use crate::model::WardCode;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WardLabel {
    ward: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProblemLabel {
    ward: String,
    problem: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

type PerWard = Family<WardLabel, Gauge>;
type PerWardF = Family<WardLabel, Gauge<f64, AtomicU64>>;

/// The gauges refreshed at each scrape, and what they are read from.
struct Gauges {
    store: super::ingest::Db,
    live: Live,
    expected: Vec<WardCode>,
    applied: PerWard,
    lag: PerWardF,
    backlog: PerWard,
    contact: PerWardF,
    connected: PerWard,
    records: PerWard,
    conflicts: PerWard,
    quarantined: PerWard,
    lost: PerWard,
    forks: PerWard,
    unproven: Family<WardLabel, prometheus_client::metrics::counter::Counter>,
    report_age: PerWardF,
    outages: Family<WardLabel, prometheus_client::metrics::counter::Counter>,
    outage_s: PerWardF,
    conflicts_open: Gauge<i64>,
    quarantined_all: Gauge<i64>,
    denied: prometheus_client::metrics::counter::Counter<u64>,
    by_kind: Family<KindLabel, Gauge>,
    civil: Family<ProblemLabel, Gauge>,
    civil_counts: super::civil::ProblemCounts,
}

/// The city's exporter over its store and live ward views.
pub fn exporter(
    store: super::ingest::Db,
    live: Live,
    expected: Vec<WardCode>,
    apply_latency: Histogram,
) -> Exporter {
    let mut r = Registry::with_prefix("wardsync");
    let applied = PerWard::default();
    let lag = PerWardF::default();
    let backlog = PerWard::default();
    let contact = PerWardF::default();
    let connected = PerWard::default();
    let records = PerWard::default();
    let conflicts = PerWard::default();
    let quarantined = PerWard::default();
    let lost = PerWard::default();
    let forks = PerWard::default();
    let report_age = PerWardF::default();
    let outages = Family::<WardLabel, prometheus_client::metrics::counter::Counter>::default();
    let unproven = Family::<WardLabel, prometheus_client::metrics::counter::Counter>::default();
    let outage_s = PerWardF::default();
    let conflicts_open = Gauge::<i64>::default();
    let quarantined_all = Gauge::<i64>::default();
    let denied = prometheus_client::metrics::counter::Counter::<u64>::default();
    let by_kind = Family::<KindLabel, Gauge>::default();
    let civil = Family::<ProblemLabel, Gauge>::default();
    let civil_counts = super::civil::ProblemCounts::default();
    r.register(
        "civil_status_problems",
        "Civil-status inconsistencies in the ward's citizens' records, by kind (recounted at most once a minute)",
        civil.clone(),
    );
    r.register("records", "Records the city holds, by kind", by_kind.clone());
    r.register("ward_last_applied_seq", "Last sequence number applied for the ward", applied.clone());
    r.register(
        "ward_lag_seconds",
        "Now minus the ward time of its oldest change not yet applied; 0 when caught up",
        lag.clone(),
    );
    r.register(
        "ward_backlog",
        "Changes the ward holds that the city has not applied, as last reported",
        backlog.clone(),
    );
    r.register(
        "ward_last_contact_age_seconds",
        "Seconds since the ward was last heard from",
        contact.clone(),
    );
    r.register("ward_connected", "1 while the ward has a replication stream open", connected.clone());
    r.register(
        "ward_backlog_report_age_seconds",
        "Seconds since the ward last reported its backlog (it may have grown since while cut off)",
        report_age.clone(),
    );
    r.register(
        "ward_outages",
        "Times the ward's link to the city went down since the city started",
        outages.clone(),
    );
    r.register(
        "ward_last_outage_seconds",
        "How long the ward's latest outage lasted (so far, if it is cut off now)",
        outage_s.clone(),
    );
    r.register("ward_records", "Records the ward owns at the city", records.clone());
    r.register("ward_conflicts_open", "Open conflicts on the ward's records", conflicts.clone());
    r.register("ward_quarantined", "The ward's changes in quarantine", quarantined.clone());
    r.register(
        "ward_lost_changes",
        "Changes the city acknowledged to the ward and later no longer held (restored from an older backup?)",
        lost.clone(),
    );
    r.register(
        "ward_unproven_claims",
        "Losses the ward claimed the city had made that no receipt of the city's proved (followed, recorded as nothing)",
        unproven.clone(),
    );
    r.register(
        "ward_forks",
        "Batches of the ward's refused for not linking onto its chain as the city applied it (a store put back to an older copy, or a forged chain)",
        forks.clone(),
    );
    r.register("conflicts_open", "Open conflicts", conflicts_open.clone());
    r.register("quarantined", "Changes in quarantine", quarantined_all.clone());
    r.register("denied_calls", "Calls refused since the city started", denied.clone());
    crate::metrics::register_build_info(&mut r, "city");
    r.register("apply_latency_seconds", "Time to apply and flush a group of ward batches", apply_latency);
    let g = std::sync::Arc::new(Gauges {
        store,
        live,
        expected,
        applied,
        lag,
        backlog,
        contact,
        connected,
        records,
        conflicts,
        quarantined,
        lost,
        forks,
        unproven,
        report_age,
        outages,
        outage_s,
        conflicts_open,
        quarantined_all,
        denied,
        by_kind,
        civil,
        civil_counts,
    });
    let refresh: crate::metrics::Refresh = Box::new(move || {
        let g = g.clone();
        Box::pin(async move { g.refresh().await })
    });
    Exporter::new(r, refresh)
}

impl Gauges {
    /// Sets every gauge from the store and the live views.
    async fn refresh(&self) {
        let now = now_ms();
        let Ok(states) = ward_states(&*self.store, &self.live, &self.expected, now).await else { return };
        let (mut open, mut quarantine) = (0, 0);
        let wards_seen: Vec<String> = states.iter().map(|w| w.ward.clone()).collect();
        for w in states {
            let label = WardLabel { ward: w.ward.clone() };
            self.applied.get_or_create(&label).set(w.last_applied_seq as i64);
            self.lag.get_or_create(&label).set(w.lag_seconds);
            self.backlog.get_or_create(&label).set(w.backlog as i64);
            let age = if w.last_contact_ms > 0 {
                (now - w.last_contact_ms).max(0) as f64 / 1000.0
            } else {
                f64::NAN
            };
            self.contact.get_or_create(&label).set(age);
            self.connected.get_or_create(&label).set(i64::from(w.state == "connected"));
            let since = |t: i64| if t > 0 { (now - t).max(0) as f64 / 1000.0 } else { f64::NAN };
            self.report_age.get_or_create(&label).set(since(w.backlog_as_of_ms));
            let counted = self.outages.get_or_create(&label);
            counted.inc_by(w.outage_count.saturating_sub(counted.get()));
            if let Some(o) = w.outages.first() {
                let end = if o.end_ms > 0 { o.end_ms } else { now };
                self.outage_s.get_or_create(&label).set((end - o.start_ms).max(0) as f64 / 1000.0);
            }
            self.records.get_or_create(&label).set(w.records as i64);
            self.conflicts.get_or_create(&label).set(w.open_conflicts as i64);
            self.quarantined.get_or_create(&label).set(w.quarantined as i64);
            self.lost.get_or_create(&label).set(w.lost_changes as i64);
            self.forks.get_or_create(&label).set(w.forks as i64);
            let claims = self.unproven.get_or_create(&label);
            claims.inc_by(w.unproven_claims.saturating_sub(claims.get()));
            open += w.open_conflicts as i64;
            quarantine += w.quarantined as i64;
        }
        self.conflicts_open.set(open);
        self.quarantined_all.set(quarantine);
        // The store counts since the start; the counter catches up to it.
        self.denied.inc_by(self.store.denied_calls().saturating_sub(self.denied.get()));
        // Every ward and kind, so a problem fixed shows as 0.
        let counts = self.civil_counts.current(&self.store);
        for ward in &wards_seen {
            for problem in crate::model::civil::Problem::CODES {
                let n = counts.get(&(ward.clone(), problem)).copied().unwrap_or(0);
                self.civil
                    .get_or_create(&ProblemLabel { ward: ward.clone(), problem: problem.into() })
                    .set(n as i64);
            }
        }
        for (kind, n) in self.store.records_by_kind() {
            self.by_kind.get_or_create(&KindLabel { kind: kind.to_string() }).set(n as i64);
        }
    }
}
