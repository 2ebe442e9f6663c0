//! Figures: latency percentiles, and the rows a benchmark prints.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies recorded in microseconds, from 1 µs to 10 minutes.
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Latencies(Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"))
    }
}

impl Latencies {
    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        self.0.saturating_record(d.as_micros().max(1) as u64);
    }

    /// Adds every latency of `other`.
    pub fn add(&mut self, other: &Latencies) {
        self.0.add(&other.0).expect("same bounds");
    }

    /// The `q` quantile (0..1), in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q) as f64 / 1000.0
    }

    /// How many were recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// The phase it belongs to.
    pub phase: String,
    /// What was measured.
    pub metric: String,
    /// The value.
    pub value: f64,
    /// Its unit.
    pub unit: String,
}

/// The figures of a run, in the order measured.
#[derive(Default)]
pub struct Report(pub Vec<Figure>);

impl Report {
    /// Adds a figure and prints it at once.
    pub fn add(&mut self, phase: &str, metric: &str, value: f64, unit: &str) {
        println!("  {phase:<10} {metric:<34} {:>14} {unit}", format_value(value));
        self.0.push(Figure { phase: phase.into(), metric: metric.into(), value, unit: unit.into() });
    }

    /// Adds how long `count` records took in `phase` (`what`), and their rate
    /// durable at the city.
    pub fn drained(&mut self, phase: &str, what: &str, count: usize, t: Duration) {
        self.add(phase, &format!("{count} {what}"), t.as_secs_f64(), "s");
        self.add(phase, "records/s, durable at the city", count as f64 / t.as_secs_f64(), "rec/s");
    }

    /// Adds the p50, p95 and p99 of `l`, in ms.
    pub fn percentiles(&mut self, phase: &str, what: &str, l: &Latencies) {
        for (name, q) in [("p50", 0.50), ("p95", 0.95), ("p99", 0.99)] {
            self.add(phase, &format!("{what} {name}"), l.ms(q), "ms");
        }
    }
}

fn format_value(v: f64) -> String {
    if v >= 100.0 { format!("{:.0}", v) } else { format!("{:.2}", v) }
}

/// MB (10^6 bytes) per second.
pub fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64()
}
