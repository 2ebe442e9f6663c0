//! `export --since`: everything that happened to a ward's records after a
//! cursor, whoever made it (the ward, the data office, another ward taking
//! a resident), deletions included, in both formats; replaying a full
//! export and then the incremental one gives the records as they stand.

mod common;

use common::*;
use wardsync::cli::formats::{Entry, Format, read_records};
use wardsync::model::{Body, Kind, Record, WardCode};
use wardsync::proto::pb;

/// Runs `export --kind citizen --ward 00082 [--since C]` to `out`; the cursor it gives for next time.
fn export(city: &City, env: &Env, since: Option<u64>, format: &str, out: &std::path::Path) -> u64 {
    let certs = env.certs();
    let since = since.map(|c| c.to_string());
    let url = city.url();
    let mut args = vec!["export", "--kind", "citizen", "--ward", "00082", "--format", format];
    args.extend(["--out", out.to_str().unwrap(), "--city", &url]);
    args.extend(["--tls-dir", certs.to_str().unwrap()]);
    if let Some(s) = &since {
        args.extend(["--since", s]);
    }
    let o = wardsync(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    stderr(&o).trim().rsplit(' ').next().unwrap().parse().unwrap()
}

fn entries(path: &std::path::Path, format: Format) -> Vec<Entry> {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    read_records(file, format, Kind::Citizen)
        .map(|row| row.entry.unwrap_or_else(|e| panic!("line {}: {e}", row.line)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_export_has_every_change_to_the_wards_records_and_deletions() {
    let env = Env::new();
    let city = City::start(&env);
    let (a, b) = (WardCode::parse("00082").unwrap(), WardCode::parse("00145").unwrap());
    let ward_a = Ward::start(&env, "00082", city.addr);
    let ward_b = Ward::start(&env, "00145", city.addr);
    let (mut ca, mut cb) = (ward_a.client().await, ward_b.client().await);
    let citizens = |w: &WardCode, n: usize| -> Vec<Record> {
        (0..).map(|i| rec(w, i)).filter(|r| matches!(r.body, Body::Citizen(_))).take(n).collect()
    };
    let ours = citizens(&a, 4);
    let theirs = citizens(&b, 1).remove(0);
    for r in &ours {
        ca.put(pb::PutRequest { record: Some(r.into()) }).await.unwrap();
    }
    cb.put(pb::PutRequest { record: Some((&theirs).into()) }).await.unwrap();
    drained(&mut ca).await;
    drained(&mut cb).await;
    let full = env.path().join("full.jsonl");
    let cursor = export(&city, &env, None, "jsonl", &full);
    assert_eq!(entries(&full, Format::Jsonl).len(), 4);

    // After the cursor: the ward deletes one, the office corrects one
    // (written by the city, not the ward), ward 00145 takes a resident of
    // 00082 (written by 00145), 00145 edits its own, and one is untouched.
    let (deleted, corrected, moved, untouched) = (&ours[0], &ours[1], &ours[2], &ours[3]);
    ca.delete(pb::DeleteRequest { key: Some((&deleted.key().unwrap()).into()) }).await.unwrap();
    let mut office = city.client().await;
    let fixed = wardsync::generate::amend(corrected, 1);
    office.edit(env.office().edit(fixed.clone(), &Default::default())).await.unwrap();
    let mut taken = moved.clone();
    taken.ward = b.clone();
    if let Body::Citizen(c) = &mut taken.body {
        c.permanent_residence.commune_code = b.to_string();
    }
    cb.transfer(pb::PutRequest { record: Some((&taken).into()) }).await.unwrap();
    cb.put(pb::PutRequest { record: Some((&wardsync::generate::amend(&theirs, 1)).into()) }).await.unwrap();
    drained(&mut ca).await;
    drained(&mut cb).await;

    for format in [Format::Jsonl, Format::Csv] {
        let path = env.path().join(format!("since.{}", format.extension()));
        let next = export(&city, &env, Some(cursor), format.extension(), &path);
        assert!(next > cursor);
        let mut got = entries(&path, format);
        got.sort_by_key(|e| e.key_id());
        let mut want = vec![
            Entry::Record(fixed.clone()),
            Entry::Gone { key: deleted.key().unwrap(), ward: Some(a.clone()), moved_to: None },
            Entry::Gone { key: moved.key().unwrap(), ward: Some(a.clone()), moved_to: Some(b.clone()) },
        ];
        want.sort_by_key(|e| e.key_id());
        assert_eq!(
            got, want,
            "{format:?}: the office's correction, the deletion and the move; nothing of 00145's"
        );
        assert!(!got.iter().any(|e| e.key_id() == untouched.key_id()));
        // Nothing happened since: the next incremental export is empty.
        let again = env.path().join(format!("again.{}", format.extension()));
        assert_eq!(export(&city, &env, Some(next), format.extension(), &again), next);
        assert!(entries(&again, format).is_empty());
    }

    // Replaying: the full export brings the deleted record back at the
    // ward (a new write); the incremental one deletes it again and leaves
    // the moved record to its new ward.
    let api = format!("http://{}", ward_a.api);
    let replay = |file: &std::path::Path, code: i32| {
        let o = wardsync(&["import", "--kind", "citizen", file.to_str().unwrap(), "--ward-api", &api]);
        assert_eq!(o.status.code(), Some(code), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let deleted_key = Some((&deleted.key().unwrap()).into());
    // (The moved record, now another ward's, is rejected: exit 2.)
    let out = replay(&full, 2);
    assert!(out.contains(" 1 rejected"), "{out}");
    ca.get(pb::GetRequest { key: deleted_key.clone() }).await.expect("the full export recreates it");
    let out = replay(&env.path().join("since.csv"), 0);
    assert!(out.contains(" 0 rejected"), "{out}");
    let gone = ca.get(pb::GetRequest { key: deleted_key }).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound, "{gone:?}");
    let still = ca.lookup(pb::GetRequest { key: Some((&moved.key().unwrap()).into()) }).await.unwrap();
    let still = wardsync::proto::record_from_pb(still.into_inner().record).unwrap();
    assert_eq!(still.ward, b, "a move is not a deletion");
}
