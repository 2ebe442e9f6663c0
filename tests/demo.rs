//! `wardsync demo` runs the whole scenario and reports convergence.

use std::process::Command;

#[test]
fn the_demo_converges_and_exits_zero() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_wardsync")).args(["demo", "--records", "300"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("backlog:    300 changes queued"), "the cut ward's backlog grows:\n{stdout}");
    assert!(stdout.lines().any(|l| l == "converged"), "{stdout}");
    // What ops see during the cut, and the outage on record after it.
    assert!(stdout.contains("the city sees ward 09784: disconnected, lag ≥ "), "{stdout}");
    assert!(
        stdout.contains("the city recorded the outage of ward 09784: ")
            && stdout.contains("caught up 345 changes"),
        "{stdout}"
    );
    // Summary rows: every ward ends with an empty backlog and the city holds as many records.
    for code in ["00082", "00145", "09784"] {
        let row = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(code))
            .unwrap_or_else(|| panic!("no summary row for {code}:\n{stdout}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        let n = cols.len();
        assert_eq!(cols[n - 1], "0", "backlog of {code}: {row}");
        assert_eq!(cols[n - 4], cols[n - 3], "ward and city record counts of {code}: {row}");
    }
}
