//! README's walk-through, run as written: every `$W` command of its `sh`
//! blocks, in order, in a fresh directory, by bash, with only the ports
//! moved to free ones. Each must end with the exit status a trailing
//! `# exit N` gives (else 0). A node started with `&` is waited for until
//! it listens; a command that reads what replication brings (the city's
//! copy, a ward's status) is asked again until it answers so, as a reader
//! of README would: writes run once.

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;

/// The commands that only read, and may be asked again.
const READS: [&str; 10] = [
    "get",
    "list",
    "status",
    "query",
    "export",
    "lookup",
    "confirm-marital-status",
    "civil-report",
    "history",
    "quarantine list",
];

/// One command of README: the text bash runs, and its exit status.
#[derive(Debug)]
struct Step {
    text: String,
    status: i32,
}

/// The `$W` commands of README's `sh` blocks, in order; a command goes on
/// over a line that ends with `\` or leaves a quote open.
fn steps(readme: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut in_sh = false;
    let mut current: Option<String> = None;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = !in_sh && line.trim() == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let text = match current.take() {
            Some(mut t) => {
                t.push('\n');
                t.push_str(line);
                t
            }
            None if line.starts_with("$W ") => line.to_string(),
            None => continue,
        };
        let open_quote = text.matches('\'').count() % 2 == 1;
        if open_quote || text.ends_with('\\') {
            current = Some(text);
            continue;
        }
        let status = text
            .rsplit_once("# exit ")
            .and_then(|(_, n)| n.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .unwrap_or(0);
        steps.push(Step { text, status });
    }
    steps
}

/// The address a node started by `text` listens on (`--listen ADDR`).
fn listen(text: &str) -> Option<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    words.windows(2).find(|w| w[0] == "--listen").map(|w| w[1].to_string())
}

#[test]
fn every_command_of_readme_runs_in_order_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let steps = steps(&readme);
    assert!(steps.len() > 30, "README's commands are found: {steps:?}");
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<(String, String)> = ["127.0.0.1:7443", "127.0.0.1:7070", "127.0.0.1:7071"]
        .iter()
        .map(|p| (p.to_string(), format!("127.0.0.1:{}", free_port())))
        .collect();
    let moved = |text: &str| ports.iter().fold(text.to_string(), |t, (from, to)| t.replace(from, to));
    let bash = |text: &str| {
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg(text)
            .current_dir(dir.path())
            .env("W", env!("CARGO_BIN_EXE_wardsync"))
            .env("WARDSYNC_WARD_API", format!("http://{}", ports[1].1));
        c
    };
    let mut nodes: Vec<Child> = Vec::new();
    for step in &steps {
        let text = moved(&step.text);
        let command = text.split_whitespace().nth(1).unwrap_or_default();
        if let Some(node) = text.trim_end().strip_suffix('&') {
            let log = std::fs::File::create(dir.path().join(format!("node-{}.log", nodes.len()))).unwrap();
            let child =
                bash(&format!("exec {node}")).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap();
            nodes.push(child);
            let addr = listen(node).unwrap_or_else(|| panic!("a node listens: {node}"));
            let deadline = Instant::now() + DEADLINE;
            while std::net::TcpStream::connect(&addr).is_err() {
                assert!(Instant::now() < deadline, "{node} never listened");
                std::thread::sleep(Duration::from_millis(50));
            }
            continue;
        }
        let reads = READS
            .iter()
            .any(|r| text.split_whitespace().skip(1).collect::<Vec<_>>().join(" ").starts_with(r));
        let deadline = Instant::now() + DEADLINE;
        loop {
            let out = bash(&text).output().unwrap();
            let got = out.status.code();
            if got == Some(step.status) {
                break;
            }
            if !reads || Instant::now() > deadline {
                for n in &mut nodes {
                    let _ = n.kill();
                }
                panic!(
                    "README's `{}` ({command}) ended with {got:?}, not {}:\n{}{}",
                    step.text,
                    step.status,
                    stdout(&out),
                    stderr(&out)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    for n in &mut nodes {
        let _ = n.kill();
        let _ = n.wait();
    }
}
