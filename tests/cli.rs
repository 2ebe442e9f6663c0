//! The command line as a clerk and a script meet it: every failure has
//! the exit status README's table gives it, and a message that says what
//! to check, for each way of getting a connection wrong; a city that
//! refuses a ward says why, and the ward's `status` shows it.

mod common;

use common::*;
use wardsync::cli::wait;

/// Runs `wardsync ARGS`; its exit status and standard error.
fn run<S: AsRef<str>>(args: &[S]) -> (Option<i32>, String) {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let out = wardsync(&args);
    (out.status.code(), stderr(&out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_has_its_exit_status_and_says_what_to_check() {
    let env = Env::new();
    let city = City::start(&env);
    let ward = Ward::start(&env, "00082", city.addr);
    let _ = ward.client().await;
    let _ = city.client().await;
    let certs = env.certs().display().to_string();
    let api = format!("http://{}", ward.api);
    let city_port = city.addr.to_string();
    let at = |extra: &[&str]| {
        let mut args: Vec<String> =
            ["get", "--kind", "citizen", "--key", "001234567890"].map(String::from).to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };

    // Usage: a typo in a flag or a value; help itself succeeds.
    let (code, err) = run(&["list", "--kind", "citizn"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("expected citizen, business or land"), "{err}");
    assert_eq!(run(&["list", "--help"]).0, Some(0));
    // Help lists only the flags a command uses.
    for (command, absent) in [
        (&["export"][..], "--ward-api"),
        (&["audit"], "--ward-api"),
        (&["conflicts", "list"], "--ward-api"),
        (&["history"], "--ward-api"),
        (&["delete"], "--city"),
        (&["put"], "--city"),
    ] {
        let help = stdout(&wardsync(&[command, &["--help"]].concat()));
        assert!(!help.contains(absent), "{command:?} lists {absent}: {help}");
    }
    // Not found.
    let (code, err) = run(&at(&["--ward-api", &api]));
    assert_eq!((code, err.contains("not found")), (Some(4), true), "{err}");
    // A record that is not one: the input is wrong.
    let bad = r#"{"ward":"00082","body":{"citizen":{"personal_id":"1"}}}"#;
    let (code, err) = run(&["put", "--record", bad, "--ward-api", &api]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("missing field `full_name`"), "{err}");
    // Refused: another ward's record, which this agent will not take.
    let theirs = stdout(&wardsync(&["gen", "--ward", "00145", "--citizens", "1"]));
    let (code, err) = run(&["put", "--record", theirs.lines().next().unwrap(), "--ward-api", &api]);
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains("00145"), "{err}");

    // Unreachable, each way, with what to check.
    let (code, err) = run(&at(&["--ward-api", "http://127.0.0.1:9"]));
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("nothing is listening at http://127.0.0.1:9"), "{err}");
    let (code, err) = run(&at(&["--ward-api", &format!("http://{city_port}")]));
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("is this the city's port?"), "{err}");
    let (code, err) = run(&at(&["--ward-api", &ward.api.to_string()]));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("give a URL with its scheme, e.g. http://{}", ward.api)), "{err}");
    let (code, err) = run(&at(&["--city", &format!("http://{city_port}"), "--tls-dir", &certs]));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("the city speaks TLS: give https://{city_port}")), "{err}");
    let (code, err) = run(&at(&["--city", &format!("https://{}", ward.api), "--tls-dir", &certs]));
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("does not speak TLS, so it is not the city"), "{err}");
    let foreign = env.path().join("foreign").display().to_string();
    let (code, err) = run(&at(&["--city", &city.url(), "--tls-dir", &foreign, "--tls-name", "ward-00082"]));
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("not issued by the CA this client trusts"), "{err}");
    let (code, err) = run(&at(&["--city", &city.url(), "--tls-dir", &certs, "--city-name", "town"]));
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("give the name in it with --city-name"), "{err}");
    // Allowed to connect, not to ask: refused, naming the role.
    let (code, err) = run(&at(&["--city", &city.url(), "--tls-dir", &certs, "--tls-name", "ward-00145"]));
    assert_eq!(code, Some(4), "a ward may read a record at the city: {err}");
    let (code, err) = run(&["audit", "--city", &city.url(), "--tls-dir", &certs, "--tls-name", "ward-00145"]);
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains("needs the role"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_city_serving_another_province_says_so_and_the_wards_status_shows_it() {
    let env = Env::new();
    let city = City::start_configured(&env, "province = \"79\"");
    let ward = Ward::start(&env, "00082", city.addr);
    let mut agent = ward.client().await;
    let api = format!("http://{}", ward.api);
    wait::until(DEADLINE, "the ward to be told why it is refused", || {
        let mut agent = agent.clone();
        async move { Ok(status(&mut agent).await?.link_down_because.contains("serves province 79")) }
    })
    .await
    .unwrap();
    let shown = wardsync(&["status", "--ward-api", &api]);
    assert_eq!(shown.status.code(), Some(3));
    let text = stdout(&shown);
    assert!(
        text.contains("refused by the city: ") && text.contains("ward 00082 is a commune of province 01"),
        "{text}"
    );
    assert!(!status(&mut agent).await.unwrap().connected);
    // Logs written to a file carry no terminal colour codes.
    assert!(!city.node.log().contains('\x1b') && !ward.node.log().contains('\x1b'));
}

/// Sends SIGINT to `child`, as Ctrl-C at a terminal does.
fn ctrl_c(child: &std::process::Child) {
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// A command started in the background, its output captured.
fn spawn(args: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_wardsync"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_as_people_make_them_are_read_or_refused_once_with_the_fix() {
    let env = Env::new();
    let city = City::start(&env);
    let ward = Ward::start(&env, "00082", city.addr);
    let _ = ward.client().await;
    let api = format!("http://{}", ward.api);
    let dir = env.path();
    let import = |file: &std::path::Path, kind: &str| {
        wardsync(&["import", "--kind", kind, file.to_str().unwrap(), "--ward-api", &api])
    };

    // A semicolon-separated CSV, as Excel saves it in a Vietnamese locale.
    let csv = stdout(&wardsync(&["gen", "--ward", "00082", "--businesses", "20", "--format", "csv"]));
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let mut semi = csv::WriterBuilder::new().delimiter(b';').from_writer(Vec::new());
    semi.write_record(reader.headers().unwrap()).unwrap();
    for row in reader.records() {
        semi.write_record(&row.unwrap()).unwrap();
    }
    let semicolons = dir.join("businesses.csv");
    std::fs::write(&semicolons, semi.into_inner().unwrap()).unwrap();
    let out = import(&semicolons, "business");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("20 new, 0 updated, 0 unchanged, 0 rejected"), "{}", stdout(&out));

    // A header typo: one error naming the columns, nothing imported or rejected row by row.
    let typo = dir.join("typo.csv");
    std::fs::write(&typo, csv.replacen(",name,", ",naem,", 1)).unwrap();
    let out = import(&typo, "business");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(r#"unknown column(s) "naem"; missing column(s) "name""#), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!dir.join("typo.csv.rejects").exists());

    // A rejected row with a formula a legacy system left in a cell comes
    // back as a spreadsheet opens it safely, its note one cell.
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let header = rows.headers().unwrap().clone();
    let mut row: Vec<String> = rows.records().next().unwrap().unwrap().iter().map(String::from).collect();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    row[column("name")] = "=HYPERLINK(\"http://x\",\"y\")".into();
    row[column("enterprise_code")] = "123".into();
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&header).unwrap();
    w.write_record(&row).unwrap();
    let formula = dir.join("formula.csv");
    std::fs::write(&formula, w.into_inner().unwrap()).unwrap();
    assert_eq!(import(&formula, "business").status.code(), Some(2));
    let rejected = std::fs::read_to_string(dir.join("formula.csv.rejects")).unwrap();
    let lines: Vec<&str> = rejected.lines().collect();
    assert!(lines[1].starts_with("# line 2: ") && !lines[1].contains(','), "{rejected}");
    assert!(lines[2].contains("'=HYPERLINK"), "{rejected}");

    // JSON Lines in a file named .csv: read as what it holds.
    let people = stdout(&wardsync(&["gen", "--ward", "00082", "--citizens", "30"]));
    let misnamed = dir.join("citizens.csv");
    std::fs::write(&misnamed, &people).unwrap();
    let out = import(&misnamed, "citizen");
    assert!(out.status.success(), "{}", stderr(&out));
    let n = people.lines().count();
    assert!(stdout(&out).contains(&format!("{n} new")), "{}", stdout(&out));
    // The wrong --kind: every row rejected, and the exit status says so.
    let out = import(&misnamed, "land");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("0 new, 0 updated, 0 unchanged, {n} rejected")),
        "{}",
        stdout(&out)
    );
    // One JSON array: named, with the fix.
    let records: Vec<serde_json::Value> = people.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let array = dir.join("array.json");
    std::fs::write(&array, serde_json::to_string_pretty(&records).unwrap()).unwrap();
    let out = import(&array, "citizen");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("jq -c '.[]'"), "{}", stderr(&out));

    // Pretty-printed records, one of them another ward's: each tried, and summed up.
    let theirs: serde_json::Value = serde_json::from_str(
        stdout(&wardsync(&["gen", "--ward", "00145", "--citizens", "1"])).lines().next().unwrap(),
    )
    .unwrap();
    let pretty = dir.join("pretty.json");
    let text: Vec<String> = [&records[0], &theirs, &records[1]]
        .iter()
        .map(|r| serde_json::to_string_pretty(r).unwrap())
        .collect();
    std::fs::write(&pretty, text.join("\n")).unwrap();
    let out = wardsync(&["put", "--record", pretty.to_str().unwrap(), "--ward-api", &api]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("0 stored, 2 unchanged, 1 rejected"), "{}", stderr(&out));
    let second = text[0].lines().count() + 1;
    assert!(stderr(&out).contains(&format!("line {second}: citizen/")), "{}", stderr(&out));

    // Export writes what its name says, and refuses a name that says otherwise.
    let certs = env.certs().display().to_string();
    let to_city = ["--city", &city.url(), "--tls-dir", &certs];
    let land = dir.join("out.csv");
    wait::until(DEADLINE, "the businesses at the city", || async {
        let out = wardsync(&[&["list", "--kind", "business", "--limit", "0"][..], &to_city].concat());
        Ok(stdout(&out).lines().count() == 20)
    })
    .await
    .unwrap();
    let out = wardsync(
        &[&["export", "--kind", "business", "--out", land.to_str().unwrap()][..], &to_city].concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read_to_string(&land).unwrap().starts_with("ward,enterprise_code,"));
    let out = wardsync(
        &[
            &["export", "--kind", "business", "--format", "jsonl", "--out", land.to_str().unwrap()][..],
            &to_city,
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("names a csv file, and --format says jsonl"), "{}", stderr(&out));

    // Lists say when there is more, and how to see it; reports speak JSON.
    let out = wardsync(&[&["list", "--kind", "business", "--limit", "5"][..], &to_city].concat());
    assert_eq!(stdout(&out).lines().count(), 5);
    assert!(stderr(&out).contains("more records: give --after "), "{}", stderr(&out));
    let out = wardsync(&[&["list", "--kind", "business", "--limit", "20"][..], &to_city].concat());
    assert!(!stderr(&out).contains("more"), "{}", stderr(&out));
    let out = wardsync(&[&["audit", "--limit", "3", "--json"][..], &to_city].concat());
    assert_eq!(
        stdout(&out).lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).count(),
        3
    );
    assert!(stderr(&out).contains("more entries"), "{}", stderr(&out));
    let families: Vec<String> = records
        .iter()
        .map(|r| r["body"]["citizen"]["full_name"].as_str().unwrap().split(' ').next().unwrap().to_string())
        .collect();
    let family = families.iter().max_by_key(|f| families.iter().filter(|x| x == f).count()).unwrap();
    assert!(families.iter().filter(|x| *x == family).count() > 1, "{families:?}");
    let query = [&["query", "--name", family, "--kind", "citizen", "--limit", "1"][..], &to_city].concat();
    wait::until(DEADLINE, "the citizens at the city", || async {
        Ok(stderr(&wardsync(&query)).contains("more results"))
    })
    .await
    .unwrap();
    let out = wardsync(&query);
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("more results: raise --limit (now 1)"), "{}", stderr(&out));
    // --since a time: every business changed since yesterday, as a CSV export with its gone column.
    let since = dir.join("since.csv");
    let out = wardsync(
        &[
            &["export", "--kind", "business", "--since", "yesterday", "--out", since.to_str().unwrap()][..],
            &to_city,
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&since).unwrap();
    assert!(text.lines().next().unwrap().ends_with(",gone") && text.lines().count() == 21, "{text}");
    let out = wardsync(&[&["audit", "--since", "42"][..], &to_city].concat());
    assert!(stderr(&out).contains("audit --since takes a time"), "{}", stderr(&out));
    // An office edit from a copy says what it was based on, or forces.
    let one = people.lines().next().unwrap();
    let out = wardsync(&[&["edit", "--record", one][..], &to_city].concat());
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--based-on"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_an_import_resumably_and_an_export_without_a_trace() {
    use wardsync::cli::relay::{LinkMode, Relay};
    let env = Env::new();
    let city = City::start(&env);
    let ward = Ward::start(&env, "00082", city.addr);
    let mut agent = ward.client().await;
    let _ = city.client().await;
    // Every chunk to and from the agent held 300 ms: the import is slow enough to stop midway.
    let relay = Relay::start(ward.api).await.unwrap();
    relay.set(LinkMode::Delay(300));
    let file = env.path().join("people.jsonl");
    let people = stdout(&wardsync(&["gen", "--ward", "00082", "--citizens", "40"]));
    std::fs::write(&file, &people).unwrap();
    let slow = format!("http://{}", relay.addr());
    let args =
        ["import", "--kind", "citizen", file.to_str().unwrap(), "--concurrency", "1", "--ward-api", &slow];
    let child = spawn(&args);
    wait::until(DEADLINE, "a few rows imported", || {
        let mut agent = agent.clone();
        async move { Ok(status(&mut agent).await?.records >= 3) }
    })
    .await
    .unwrap();
    ctrl_c(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("import stopped: interrupted (Ctrl-C)"), "{err}");
    assert!(err.contains("run the same command again to resume after it"), "{err}");
    relay.set(LinkMode::Up);
    let out = wardsync(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("resuming"), "{}", stderr(&out));
    assert_eq!(status(&mut agent).await.unwrap().records, people.lines().count() as u64);

    // An export stopped midway leaves no file, hidden or not.
    drained(&mut agent).await;
    let relay = Relay::start(city.addr).await.unwrap();
    relay.set(LinkMode::Delay(1000));
    let out_dir = env.path().join("exports");
    std::fs::create_dir(&out_dir).unwrap();
    let certs = env.certs().display().to_string();
    let url = format!("https://{}", relay.addr());
    let out = out_dir.join("people.csv");
    let child = spawn(&[
        "export",
        "--kind",
        "citizen",
        "--out",
        out.to_str().unwrap(),
        "--city",
        &url,
        "--tls-dir",
        &certs,
    ]);
    let files = || std::fs::read_dir(&out_dir).unwrap().count();
    wait::until(DEADLINE, "the export to start writing", || async { Ok(files() > 0) }).await.unwrap();
    ctrl_c(&child);
    let done = child.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(130), "{}", stderr(&done));
    assert!(stderr(&done).contains("nothing was written"), "{}", stderr(&done));
    assert_eq!(files(), 0, "nothing left in {}", out_dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_of_a_citizen_the_city_holds_for_another_ward_is_refused_with_the_transfer_named() {
    let env = Env::new();
    let city = City::start(&env);
    let (a, b) = (Ward::start(&env, "00082", city.addr), Ward::start(&env, "00145", city.addr));
    let mut agent_b = b.client().await;
    let mut agent_a = a.client().await;
    let theirs = stdout(&wardsync(&["gen", "--ward", "00145", "--citizens", "1"]));
    let theirs = theirs.lines().next().unwrap();
    let out = wardsync(&["put", "--record", theirs, "--ward-api", &format!("http://{}", b.api)]);
    assert!(out.status.success(), "{}", stderr(&out));
    drained(&mut agent_b).await;
    wait::until(DEADLINE, "ward 00082 connected", || {
        let mut agent = agent_a.clone();
        async move { Ok(status(&mut agent).await?.connected) }
    })
    .await
    .unwrap();
    // The same person, written at 00082 as if they lived there.
    let mine = theirs.replace("00145", "00082");
    let (code, err) = run(&["put", "--record", &mine, "--ward-api", &format!("http://{}", a.api)]);
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains("is a record of ward 00145 at the city") && err.contains("put --transfer"), "{err}");
    assert_eq!(status(&mut agent_a).await.unwrap().last_seq, 0, "nothing was written");
    let certs = env.certs().display().to_string();
    let conflicts = wardsync(&["conflicts", "list", "--json", "--city", &city.url(), "--tls-dir", &certs]);
    assert_eq!(stdout(&conflicts), "", "no conflict was opened");
}
