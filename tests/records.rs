//! Records as wards keep them: generated files imported (with rejects,
//! re-runs and interruptions), exported and re-imported, searched by name
//! with or without diacritics, and looked up across wards through the city.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;
use tonic::Code;
use wardsync::cli::wait;
use wardsync::model::{Body, Kind, RecordKey, WardCode};
use wardsync::proto::pb;

/// Runs `wardsync gen ARGS > file`; returns how many records were made invalid.
fn gen_file(file: &Path, args: &[&str]) -> u64 {
    let out = wardsync(&[&["gen"], args].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(file, &out.stdout).unwrap();
    let err = stderr(&out);
    let n = err.split('(').nth(1).and_then(|s| s.split(' ').next()).unwrap();
    n.parse().unwrap_or_else(|_| panic!("{err}"))
}

fn lines(path: &Path) -> u64 {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count() as u64)
}

/// The rows a reject file holds: each after its `# line N: reason` note.
fn rejected_rows(path: &Path) -> u64 {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().filter(|l| l.starts_with("# line ")).count() as u64)
}

fn import(file: &Path, kind: &str, api: &str) -> Output {
    wardsync(&["import", "--kind", kind, file.to_str().unwrap(), "--ward-api", api])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_writes_good_rows_rejects_bad_ones_and_a_rerun_changes_nothing() {
    let env = Env::new();
    let city = City::start(&env);
    let ward = Ward::start(&env, "00082", city.addr);
    let mut c = ward.client().await;
    let api = format!("http://{}", ward.api);

    let file = env.path().join("citizens.jsonl");
    let invalid =
        gen_file(&file, &["--ward", "00082", "--citizens", "400", "--seed", "3", "--invalid", "0.1"]);
    assert!(invalid > 10, "some rows are invalid: {invalid}");
    // Plus a line that is not JSON, a business in a citizen file, and another ward's citizen.
    let other_ward = wardsync(&["gen", "--ward", "00145", "--citizens", "1"]);
    let business = wardsync(&["gen", "--ward", "00082", "--businesses", "1"]);
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("this is not a record\n");
    text.push_str(stdout(&business).lines().next().unwrap());
    text.push('\n');
    text.push_str(stdout(&other_ward).lines().next().unwrap());
    text.push('\n');
    std::fs::write(&file, &text).unwrap();
    let total = text.lines().count() as u64;
    let rejected = invalid + 3;
    let written = total - rejected;

    let out = import(&file, "citizen", &api);
    // Rows rejected: exit 2 (partly done), and said on stderr for scripts.
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{rejected} of the file's rows were rejected")),
        "{}",
        stderr(&out)
    );
    let want = format!("{written} new, 0 updated, 0 unchanged, {rejected} rejected");
    assert!(stdout(&out).contains(&want), "{}", stdout(&out));
    let rejects = env.path().join("citizens.jsonl.rejects");
    assert_eq!(rejected_rows(&rejects), rejected);
    let report = std::fs::read_to_string(&rejects).unwrap();
    assert!(report.contains(&format!("line {}: not a record in JSON", total - 2)), "{report}");
    assert!(
        report.contains(&format!("line {}: a business record in a citizen import", total - 1)),
        "{report}"
    );
    assert!(report.contains(&format!("line {}: ", total)) && report.contains("00145"), "{report}");
    // The rejected rows themselves, each after its note.
    let rows: Vec<&str> = text.lines().collect();
    let notes: Vec<&str> = report.lines().collect();
    for (i, note) in notes.iter().enumerate().filter(|(_, l)| l.starts_with("# line ")) {
        let n: usize = note["# line ".len()..].split(':').next().unwrap().parse().unwrap();
        assert_eq!(notes.get(i + 1), Some(&rows[n - 1]), "the row of {note}");
    }
    let s = status(&mut c).await.unwrap();
    assert_eq!((s.records, s.last_seq), (written, written));

    // The reject file, its business row and foreign citizen dropped and
    // the non-record fixed, imports as any file: the note lines are passed over.
    let fixed = env.path().join("fixed.jsonl");
    let good = stdout(&wardsync(&["gen", "--ward", "00082", "--citizens", "1", "--seed", "99"]));
    let fixed_text: String = report
        .lines()
        .filter(|l| !l.contains("\"business\"") && !l.contains("\"ward\":\"00145\""))
        .map(|l| if l == "this is not a record" { good.lines().next().unwrap() } else { l })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&fixed, fixed_text).unwrap();
    let out = import(&fixed, "citizen", &api);
    assert!(
        stdout(&out).contains(&format!("1 new, 0 updated, 0 unchanged, {invalid} rejected")),
        "{}",
        stdout(&out)
    );

    // The same file again: nothing new is written, nothing is duplicated.
    let out = import(&file, "citizen", &api);
    assert!(
        stdout(&out).contains(&format!("0 new, 0 updated, {written} unchanged, {rejected} rejected")),
        "{}",
        stdout(&out)
    );
    assert_eq!(rejected_rows(&rejects), rejected);
    assert_eq!(status(&mut c).await.unwrap().last_seq, written + 1);
    // The first run's rejects are kept beside it, not overwritten.
    let kept: Vec<_> = std::fs::read_dir(env.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("citizens.jsonl.rejects."))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read_to_string(env.path().join(&kept[0])).unwrap(), report);

    // CSV works the same way.
    let csv = env.path().join("land.csv");
    let invalid = gen_file(
        &csv,
        &["--ward", "00082", "--parcels", "120", "--format", "csv", "--invalid", "0.1", "--seed", "4"],
    );
    let out = import(&csv, "land", &api);
    assert!(
        stdout(&out).contains(&format!("{} new, 0 updated, 0 unchanged, {invalid} rejected", 120 - invalid)),
        "{}",
        stdout(&out)
    );
    assert_eq!(rejected_rows(&env.path().join("land.csv.rejects")), invalid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_import_resumes_without_duplicates() {
    let env = Env::new();
    let city = City::start(&env);
    let ward = Ward::start(&env, "00082", city.addr);
    let mut c = ward.client().await;
    let api = format!("http://{}", ward.api);
    let file = env.path().join("big.jsonl");
    let invalid =
        gen_file(&file, &["--ward", "00082", "--citizens", "6000", "--seed", "5", "--invalid", "0.02"]);
    let total = lines(&file);

    let mut child = Command::new(env!("CARGO_BIN_EXE_wardsync"))
        .args([
            "import",
            "--kind",
            "citizen",
            file.to_str().unwrap(),
            "--ward-api",
            &api,
            "--concurrency",
            "4",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state = env.path().join("big.jsonl.import-state");
    wait::until(DEADLINE, "the import to save some progress", || {
        let state = state.clone();
        async move {
            let text = std::fs::read_to_string(&state).unwrap_or_default();
            let line = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v["line"].as_u64());
            Ok(line.is_some_and(|l| l >= 500))
        }
    })
    .await
    .unwrap();
    assert!(child.try_wait().unwrap().is_none(), "the import is still running when killed");
    child.kill().unwrap();
    child.wait().unwrap();
    let before = status(&mut c).await.unwrap().last_seq;
    assert!(before > 0 && before < total - invalid, "interrupted midway: {before}");

    let out = import(&file, "citizen", &api);
    assert_eq!(out.status.code(), Some(2), "the invalid rows: {}", stderr(&out));
    assert!(stderr(&out).contains("resuming"), "{}", stderr(&out));
    let s = status(&mut c).await.unwrap();
    assert_eq!(s.last_seq, total - invalid, "one change per valid row, none twice");
    assert_eq!(s.records, total - invalid);
    assert_eq!(rejected_rows(&env.path().join("big.jsonl.rejects")), invalid, "each bad row reported once");
    assert!(!state.exists(), "a finished import leaves no progress file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_imported_into_a_fresh_ward_gives_the_same_records() {
    let env = Env::new();
    let city = City::start(&env);
    let ward = Ward::start(&env, "00082", city.addr);
    let mut c = ward.client().await;
    let api = format!("http://{}", ward.api);
    let certs = env.certs();
    for (kind, format, flag) in [
        ("citizen", "jsonl", "--citizens"),
        ("business", "csv", "--businesses"),
        ("land", "jsonl", "--parcels"),
    ] {
        let file = env.path().join(format!("{kind}.{format}"));
        gen_file(&file, &["--ward", "00082", flag, "150", "--format", format, "--seed", "8"]);
        assert!(import(&file, kind, &api).status.success());
    }
    drained(&mut c).await;

    // A second city and a fresh ward 00082 receive what the first city exports.
    let env2 = Env::new();
    let city2 = City::start(&env2);
    let fresh = Ward::start(&env2, "00082", city2.addr);
    let mut c2 = fresh.client().await;
    let api2 = format!("http://{}", fresh.api);
    for (kind, format) in [("citizen", "csv"), ("business", "jsonl"), ("land", "csv")] {
        let out_file = env.path().join(format!("export-{kind}.{format}"));
        let out = wardsync(&[
            "export",
            "--kind",
            kind,
            "--format",
            format,
            "--ward",
            "00082",
            "--out",
            out_file.to_str().unwrap(),
            "--city",
            &city.url(),
            "--tls-dir",
            certs.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains("next time use --since"), "{}", stderr(&out));
        let out = import(&out_file, kind, &api2);
        assert!(out.status.success() && stdout(&out).contains(" 0 rejected"), "{}", stdout(&out));
    }
    for kind in Kind::ALL {
        let a = wardsync::cli::client::all_ward_records(&mut c, kind).await.unwrap();
        let b = wardsync::cli::client::all_ward_records(&mut c2, kind).await.unwrap();
        assert!(!a.is_empty());
        assert_eq!(a, b, "{kind}");
    }

    // --since exports only what changed after the cursor.
    let out =
        wardsync(&["export", "--kind", "land", "--city", &city.url(), "--tls-dir", certs.to_str().unwrap()]);
    let cursor: u64 = stderr(&out).trim().rsplit(' ').next().unwrap().parse().unwrap();
    let one = wardsync::cli::client::all_ward_records(&mut c, Kind::Land).await.unwrap().remove(0);
    let changed = wardsync::generate::amend(&one, 1);
    c.put(pb::PutRequest { record: Some((&changed).into()) }).await.unwrap();
    drained(&mut c).await;
    let since = cursor.to_string();
    let out = wardsync(&[
        "export",
        "--kind",
        "land",
        "--since",
        &since,
        "--city",
        &city.url(),
        "--tls-dir",
        certs.to_str().unwrap(),
    ]);
    let exported: Vec<wardsync::model::Record> =
        stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(exported, [changed]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_city_finds_names_with_or_without_diacritics_households_and_owners() {
    let env = Env::new();
    let city = City::start(&env);
    let ward = Ward::start(&env, "00082", city.addr);
    let mut c = ward.client().await;
    let mut q = city.client().await;
    let code = WardCode::parse("00082").unwrap();
    let mut citizen = (0..).map(|i| rec(&code, i)).find(|r| r.kind() == Kind::Citizen).unwrap();
    let Body::Citizen(person) = &mut citizen.body else { unreachable!() };
    person.full_name = "Nguyễn Văn An".into();
    let (household, id) = (person.household_id.clone(), person.personal_id.clone());
    let parcel = (0..).map(|i| rec(&code, i)).find(|r| r.kind() == Kind::Land).unwrap();
    let Body::Land(land) = &parcel.body else { unreachable!() };
    let owner = land.owners[0].clone();
    for r in [&citizen, &parcel] {
        c.put(pb::PutRequest { record: Some(r.into()) }).await.unwrap();
    }
    drained(&mut c).await;

    for query in ["nguyen van an", "Nguyễn Văn An", "NGUYEN VAN", "nguyễn văn a"] {
        let found = q
            .search(pb::SearchRequest { query: query.into(), kind: 0, limit: 10, ..Default::default() })
            .await
            .unwrap();
        let ids: Vec<String> = found
            .into_inner()
            .records
            .into_iter()
            .map(|r| match r.body {
                Some(pb::record::Body::Citizen(c)) => c.personal_id,
                _ => String::new(),
            })
            .collect();
        assert_eq!(ids, std::slice::from_ref(&id), "{query}");
    }
    let none = q
        .search(pb::SearchRequest { query: "tran".into(), kind: 0, limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert!(none.into_inner().records.is_empty());
    let e = q
        .search(pb::SearchRequest { query: " ".into(), kind: 0, limit: 10, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    let members = q
        .household(pb::HouseholdRequest { household_id: household, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(members, [pb::Record::from(&citizen)]);
    let owned = q
        .owned_by(pb::OwnedByRequest { owner_id: owner, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(owned, [pb::Record::from(&parcel)]);

    // The same through the command line, without diacritics.
    let out = wardsync(&[
        "query",
        "--name",
        "nguyen van an",
        "--city",
        &city.url(),
        "--tls-dir",
        env.certs().to_str().unwrap(),
    ]);
    assert!(stdout(&out).contains("Nguyễn Văn An"), "{}{}", stdout(&out), stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ward_looks_up_another_wards_citizen_through_the_city_and_says_when_it_cannot() {
    let env = Env::new();
    let mut city = City::start(&env);
    let a = Ward::start(&env, "00082", city.addr);
    let b = Ward::start(&env, "00145", city.addr);
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    let theirs = rec(&WardCode::parse("00145").unwrap(), 0);
    let ours = rec(&WardCode::parse("00082").unwrap(), 0);
    cb.put(pb::PutRequest { record: Some((&theirs).into()) }).await.unwrap();
    ca.put(pb::PutRequest { record: Some((&ours).into()) }).await.unwrap();
    drained(&mut cb).await;
    let key = |r: &wardsync::model::Record| pb::RecordKey::from(&r.key().unwrap());

    let found = ca.lookup(pb::GetRequest { key: Some(key(&theirs)) }).await.unwrap().into_inner().record;
    assert_eq!(found, Some((&theirs).into()), "found at the city");
    let missing = RecordKey::new(Kind::Citizen, "001099000001").unwrap();
    let e = ca.lookup(pb::GetRequest { key: Some((&missing).into()) }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("anywhere in the city"), "{}", e.message());

    assert!(city.node.stop());
    let e = ca.lookup(pb::GetRequest { key: Some(key(&theirs)) }).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e}");
    assert!(e.message().contains("cannot be reached"), "{}", e.message());
    // The ward's own records need no city.
    let own = ca.lookup(pb::GetRequest { key: Some(key(&ours)) }).await.unwrap().into_inner().record;
    assert_eq!(own, Some((&ours).into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_applies_the_rows_of_a_key_in_file_order() {
    let env = Env::new();
    let city = City::start(&env);
    let ward = Ward::start(&env, "00082", city.addr);
    let mut c = ward.client().await;
    let api = format!("http://{}", ward.api);
    // Every record, then at once its correction: both in flight together.
    let code = WardCode::parse("00082").unwrap();
    let first: Vec<wardsync::model::Record> = (0..200).map(|i| rec(&code, i)).collect();
    let corrected: Vec<wardsync::model::Record> =
        first.iter().map(|r| wardsync::generate::amend(r, 1)).collect();
    let mut text = String::new();
    for (a, b) in first.iter().zip(&corrected) {
        text += &format!("{}\n{}\n", serde_json::to_string(a).unwrap(), serde_json::to_string(b).unwrap());
    }
    for kind in Kind::ALL {
        let file = env.path().join(format!("{kind}.jsonl"));
        let rows: String =
            text.lines().filter(|l| l.contains(&format!("\"{kind}\":"))).map(|l| format!("{l}\n")).collect();
        std::fs::write(&file, rows).unwrap();
        let out = import(&file, kind.as_str(), &api);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    for kind in Kind::ALL {
        let want: Vec<&wardsync::model::Record> = corrected.iter().filter(|r| r.kind() == kind).collect();
        let mut have = wardsync::cli::client::all_ward_records(&mut c, kind).await.unwrap();
        have.sort_by_key(|r| r.key_id());
        let mut want: Vec<wardsync::model::Record> = want.into_iter().cloned().collect();
        want.sort_by_key(|r| r.key_id());
        assert_eq!(have, want, "{kind}: every key shows its later row");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_import_resumes_only_over_the_same_file_content() {
    let env = Env::new();
    // No city, and room for ten changes: the import stops at the eleventh.
    let nowhere: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let ward = Ward::start_with(&env, "00082", nowhere, "", "max_outbox = 10");
    ward.client().await;
    let api = format!("http://{}", ward.api);
    let file = env.path().join("citizens.jsonl");
    gen_file(&file, &["--ward", "00082", "--citizens", "30", "--seed", "4"]);
    let one_at_a_time = |f: &Path| {
        wardsync(&[
            "import",
            "--kind",
            "citizen",
            f.to_str().unwrap(),
            "--ward-api",
            &api,
            "--concurrency",
            "1",
        ])
    };
    let out = one_at_a_time(&file);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("stopped at line 11"), "{}", stderr(&out));
    // Line 5 corrected, same length: the saved progress is not for this content.
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut r: wardsync::model::Record = serde_json::from_str(&lines[4]).unwrap();
    if let Body::Citizen(c) = &mut r.body {
        let last = c.phone.pop().unwrap();
        c.phone.push(if last == '9' { '8' } else { '9' });
    }
    let edited = serde_json::to_string(&r).unwrap();
    assert_eq!(edited.len(), lines[4].len());
    lines[4] = edited;
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = one_at_a_time(&file);
    assert!(!stderr(&out).contains("resuming"), "{}", stderr(&out));
    assert!(stderr(&out).contains("stopped at line 5"), "the edited line is written again: {}", stderr(&out));
    // A second import of the same file while one runs is refused.
    let lock = env.path().join("citizens.jsonl.import-lock");
    std::fs::write(&lock, "4242\n").unwrap();
    let held = std::fs::File::open(&lock).unwrap();
    held.try_lock().unwrap();
    let out = one_at_a_time(&file);
    assert!(
        stderr(&out).contains("another import of this file is running (process 4242)"),
        "{}",
        stderr(&out)
    );
    assert!(lock.exists(), "the other import's lock is left alone");
    // Once that one ends (or is killed: the system lets go of its lock), imports run again.
    drop(held);
    let out = one_at_a_time(&file);
    assert!(stderr(&out).contains("stopped at line"), "{}", stderr(&out));
}

/// Runs `wardsync ARGS` and reads only the start of what it prints, then
/// closes the pipe, as `| head` does: the command must end quietly, with
/// success and nothing on stderr.
fn ends_quietly_when_the_reader_stops(args: &[&str]) {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_wardsync"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut start = [0; 100];
    let read = child.stdout.take().unwrap().read_exact(&mut start);
    let out = child.wait_with_output().unwrap();
    assert!(read.is_ok(), "{args:?} printed less than wanted: {}", stderr(&out));
    assert!(out.status.success(), "{args:?}: {:?} {}", out.status, stderr(&out));
    assert!(stderr(&out).is_empty(), "{args:?}: {}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_ends_quietly_when_its_reader_closes_the_pipe() {
    // Without a server: records generated to standard output.
    for format in ["jsonl", "csv"] {
        ends_quietly_when_the_reader_stops(&[
            "gen",
            "--ward",
            "00082",
            "--citizens",
            "3000",
            "--format",
            format,
        ]);
    }
    // From a ward holding more than a pipe buffers.
    let env = Env::new();
    let city = City::start(&env);
    let ward = Ward::start(&env, "00082", city.addr);
    let api = format!("http://{}", ward.api);
    let file = env.path().join("citizens.jsonl");
    gen_file(&file, &["--ward", "00082", "--citizens", "2000", "--seed", "3"]);
    assert!(import(&file, "citizen", &api).status.success());
    drained(&mut ward.client().await).await;
    ends_quietly_when_the_reader_stops(&["list", "--kind", "citizen", "--limit", "0", "--ward-api", &api]);
    // And from the city, once it holds them.
    let (url, certs) = (city.url(), env.certs());
    let q = city.client().await;
    wait::until(DEADLINE, "the city to hold the ward's citizens", || {
        let mut q = q.clone();
        async move { Ok(city_wards(&mut q).await?.iter().any(|w| w.ward == "00082" && w.records >= 2000)) }
    })
    .await
    .unwrap();
    let city_args = ["--city", url.as_str(), "--tls-dir", certs.to_str().unwrap()];
    ends_quietly_when_the_reader_stops(&[&["export", "--kind", "citizen"][..], &city_args].concat());
}
