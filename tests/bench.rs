//! `wardsync bench` at a tiny size: every phase runs against real processes
//! and reports its figures (no figure is judged: benchmarks print, tests
//! check that they work), and the rows for the PostgreSQL peer are written.

use std::process::Command;

#[path = "../src/store/pg/test_cluster.rs"]
mod pg;

/// Runs `wardsync bench` with `args`; returns what it printed and the
/// figures it wrote as JSON.
fn bench(args: &[&str]) -> (String, Vec<serde_json::Value>) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("figures.json");
    let out = Command::new(env!("CARGO_BIN_EXE_wardsync"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    (stdout, serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap())
}

#[test]
fn every_phase_runs_and_reports_its_figures() {
    let (stdout, figures) = bench(&[
        "--records",
        "500",
        "--single",
        "50",
        "--clients",
        "4",
        "--wards",
        "3",
        "--seconds",
        "1",
        "--engine-records",
        "2000",
        "--get-records",
        "400",
        "--get-wards",
        "2",
        "--gets",
        "50",
    ]);
    let mut measured_cpu = 0.0;
    let phases = [
        "engine", "write", "load", "stream", "outage", "update", "recovery", "steady", "get", "memory",
        "disk",
    ];
    for phase in phases {
        let of_phase: Vec<&serde_json::Value> = figures.iter().filter(|f| f["phase"] == phase).collect();
        assert!(!of_phase.is_empty(), "no figure for {phase}: {stdout}");
        let (cpu, other): (Vec<_>, Vec<_>) =
            of_phase.into_iter().partition(|f| f["metric"].as_str().unwrap().contains("CPU"));
        for f in other {
            assert!(f["value"].as_f64().unwrap() > 0.0, "{f}");
        }
        // CPU time is counted in 10 ms ticks: one process may take none in a
        // tiny phase, but not all of them.
        let cpu: Vec<f64> = cpu.iter().map(|f| f["value"].as_f64().unwrap()).collect();
        assert!(cpu.iter().all(|v| *v >= 0.0), "{phase}: {cpu:?}");
        if ["write", "load"].contains(&phase) {
            measured_cpu += cpu.iter().sum::<f64>();
        }
    }
    // A tiny phase may fall between two ticks in every process; the two together do not.
    assert!(measured_cpu > 0.0, "the write and load phases measured no CPU time: {stdout}");
    let measured =
        figures.iter().find(|f| f["metric"].as_str().unwrap().ends_with("changes measured")).unwrap();
    assert!(measured["value"].as_f64().unwrap() >= 3.0, "every synthetic ward's changes were acknowledged");
}

#[test]
fn the_rows_for_postgresql_are_the_records_the_phases_write() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wardsync"))
        .args(["bench", "--records", "200", "--single", "20", "--export-rows"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = |name: &str| -> Vec<csv::StringRecord> {
        let mut r = csv::ReaderBuilder::new().has_headers(false).from_path(dir.path().join(name)).unwrap();
        r.records().map(Result::unwrap).collect()
    };
    let (load, stream, update1, update2) =
        (rows("load.csv"), rows("stream.csv"), rows("update1.csv"), rows("update2.csv"));
    assert_eq!((load.len(), stream.len(), update1.len(), update2.len()), (220, 200, 200, 200));
    for row in load.iter().chain(&stream) {
        assert_eq!(&row[1], "00082");
        let record: wardsync::model::Record = serde_json::from_str(&row[2]).unwrap();
        assert_eq!(row[0], format!("{}/{}", record.kind(), record.key_id()));
    }
    // Updates are of the first records, changed.
    assert_eq!(update1[0][0], load[0][0]);
    assert_ne!(update1[0][2], load[0][2]);
    assert_ne!(update2[0][2], update1[0][2]);
}

#[test]
fn the_recovery_phase_puts_a_city_on_postgresql_back_and_times_its_refill() {
    // (The bench fails if the city it put back found no loss.)
    let pg = pg::Postgres::start();
    let url = pg.url();
    let phases = ["--records", "300", "--single", "30", "--phases", "write,load,recovery"];
    let (stdout, figures) = bench(&[&phases[..], &["--database-url", &url]].concat());
    let refilled = figures
        .iter()
        .find(|f| f["phase"] == "recovery" && f["metric"].as_str().unwrap().starts_with("city refilled"))
        .unwrap_or_else(|| panic!("no refill timed: {stdout}"));
    assert!(refilled["value"].as_f64().unwrap() > 0.0, "{refilled}");
}
