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
}
