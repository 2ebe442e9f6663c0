//! Client subcommands: put, delete, get, list, lookup. They talk to a ward
//! agent's local API, or to the city over mutual TLS with `--city`
//! (connecting: `cli::connect`); records given with `--record` are read as
//! `import` reads JSON.

use std::io::BufRead;

use anyhow::Context;
use tonic::transport::Channel;

use super::args::{AgentKeyArgs, CityTarget, ClientTls, GetArgs, KeyArgs, ListArgs, PutArgs, TargetArgs};
pub use super::connect::{city_client, ward_client};
use super::failure::{answered, exit};
use super::formats::{Entry, Format, Reading, Row, open_records};
use crate::model::{Kind, Record, RecordKey};
use crate::proto::pb::{self, city_query_client::CityQueryClient, ward_api_client::WardApiClient};
use crate::proto::{MAX_PAGE, record_from_pb};
use std::process::ExitCode;

impl ClientTls {
    /// Connects to the city at `url` with this certificate.
    pub async fn city(&self, url: &str) -> anyhow::Result<CityQueryClient<Channel>> {
        city_client(url, self.tls_dir.as_deref(), &self.tls_name, &self.city_name).await
    }
}

impl ClientTls {
    /// Signs the office's requests with this certificate's key (none without --tls-dir).
    pub fn office_signer(&self) -> anyhow::Result<super::office::OfficeSigner> {
        let files = self.tls_dir.as_deref().map(|d| crate::auth::TlsFiles::in_dir(d, &self.tls_name));
        super::office::OfficeSigner::load(files.as_ref())
    }
}

/// The city of a command that only the city answers.
pub(super) async fn city_of(t: &CityTarget) -> anyhow::Result<CityQueryClient<Channel>> {
    t.tls.city(&t.city).await
}

pub(super) async fn city_for(t: &TargetArgs) -> anyhow::Result<Option<CityQueryClient<Channel>>> {
    match &t.city {
        None => Ok(None),
        Some(url) => Ok(Some(t.tls.city(url).await?)),
    }
}

fn print_record(r: Option<pb::Record>) -> anyhow::Result<()> {
    let record = record_from_pb(r).map_err(|e| anyhow::anyhow!("the server sent a bad record: {e}"))?;
    println!("{}", serde_json::to_string(&record)?);
    Ok(())
}

fn wire_key(a: &KeyArgs) -> anyhow::Result<pb::RecordKey> {
    let key = RecordKey::new(a.kind, &a.key).map_err(|e| anyhow::anyhow!("--key: {e}"))?;
    Ok((&key).into())
}

/// Every item of a paged call, in order, up to `max`, and whether more
/// remain past it: `fetch(after)` asks for the page after the cursor
/// `after` and returns its items and its `next_after` (empty at the end).
pub async fn pages<T, F, Fut>(max: usize, mut fetch: F) -> Result<(Vec<T>, bool), tonic::Status>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    let (mut all, mut after) = (Vec::new(), String::new());
    loop {
        let (items, next) = fetch(after).await?;
        all.extend(items);
        // (One item past `max` tells that there are more.)
        if next.is_empty() || all.len() > max {
            let more = all.len() > max;
            all.truncate(max);
            return Ok((all, more));
        }
        after = next;
    }
}

/// A record key as lists show it: `citizen/001085012345`.
pub(super) fn shown_key(k: &pb::RecordKey) -> String {
    crate::proto::key_from_pb(Some(k.clone())).map_or_else(|_| format!("?/{}", k.id), |k| k.to_string())
}

/// Says on standard error that a list stopped short, and how to see the rest.
pub(super) fn more(what: &str, how: &str) {
    eprintln!("more {what}: {how}");
}

/// The records `--record` gives: JSON text (it starts with `{`), `-` for
/// standard input, or a file; read as `import` reads JSON.
pub(super) fn records_given(record: &str) -> anyhow::Result<Box<dyn Iterator<Item = Row>>> {
    let input: Box<dyn BufRead> = if record.trim_start().starts_with(['{', '[']) {
        Box::new(std::io::Cursor::new(record.to_string().into_bytes()))
    } else if record == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(record).with_context(|| format!("--record: cannot open {record}"))?;
        Box::new(std::io::BufReader::new(file))
    };
    let how = Reading { format: Some(Format::Jsonl), ..Reading::default() };
    Ok(open_records(input, how).map_err(|why| anyhow::anyhow!("--record: {why}"))?.rows)
}

/// The ward another than `record`'s that holds it, as the agent's
/// look-up finds it (its own copy, or the city's); `None` when no other
/// does, or the city cannot say (offline, the city judges the write).
async fn held_elsewhere(
    client: &mut WardApiClient<Channel>,
    record: &Record,
) -> Option<crate::model::WardCode> {
    let key = record.key().ok()?;
    let found = client.lookup(pb::GetRequest { key: Some((&key).into()) }).await.ok()?.into_inner().record;
    let owner = record_from_pb(found).ok()?.ward;
    (owner != record.ward).then_some(owner)
}

/// `wardsync put`: every record given is tried; a refused one is said
/// with its line, and the others go on. One record refused is the
/// command's error; among several, exit status 2 and a summary.
pub async fn put(a: PutArgs) -> anyhow::Result<ExitCode> {
    let rows: Vec<Row> = records_given(&a.record)?.collect();
    anyhow::ensure!(!rows.is_empty(), "--record {}: no records in it", a.record);
    let mut client = ward_client(&a.ward_api).await?;
    // (Offline, the city is not asked: the write is judged there later.)
    let online = client.status(pb::StatusRequest {}).await.is_ok_and(|s| s.into_inner().connected);
    let (mut stored, mut unchanged, mut rejected) = (0, 0, 0);
    let only = rows.len() == 1;
    for row in rows {
        let line = row.line;
        let record = match row.entry {
            Ok(Entry::Record(r)) => r,
            Ok(Entry::Gone { .. }) => {
                Err(anyhow::anyhow!("line {line}: a gone line is read by wardsync import"))?
            }
            Err(why) if only => anyhow::bail!("{why}"),
            Err(why) => {
                eprintln!("line {line}: {why}");
                rejected += 1;
                continue;
            }
        };
        // A person the city holds for another ward is not this ward's to
        // write: said now, not left for the city to quarantine.
        if !a.transfer
            && online
            && let Some(owner) = held_elsewhere(&mut client, &record).await
        {
            let why = format!(
                "{}/{} is a record of ward {owner} at the city, not of ward {}: a person who moved here is \
                 taken over with a residence transfer (wardsync put --transfer)",
                record.kind(),
                record.key_id(),
                record.ward
            );
            if only {
                return Err(answered(tonic::Status::permission_denied(why)));
            }
            eprintln!("line {line}: {why}");
            rejected += 1;
            continue;
        }
        let request = pb::PutRequest { record: Some((&record).into()) };
        let reply = if a.transfer { client.transfer(request).await } else { client.put(request).await };
        let reply = match reply {
            Ok(r) => r.into_inner(),
            Err(s) if only || super::failure::exit_status(&answered(s.clone())) != exit::REFUSED => {
                return Err(answered(s).context(format!(
                    "line {line}: {}/{}",
                    record.kind(),
                    record.key_id()
                )));
            }
            Err(s) => {
                eprintln!("line {line}: {}/{}: {}", record.kind(), record.key_id(), s.message());
                rejected += 1;
                continue;
            }
        };
        if reply.unchanged {
            unchanged += 1;
            println!("{}/{} unchanged: already stored exactly so", record.kind(), record.key_id());
        } else {
            stored += 1;
            println!("stored {}/{} as change {}", record.kind(), record.key_id(), reply.seq);
        }
    }
    if only {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("{stored} stored, {unchanged} unchanged, {rejected} rejected");
    Ok(ExitCode::from(if rejected > 0 { exit::PARTLY } else { exit::OK }))
}

/// `wardsync delete`.
pub async fn delete(a: AgentKeyArgs) -> anyhow::Result<()> {
    let key = RecordKey::new(a.kind, &a.key).map_err(|e| anyhow::anyhow!("--key: {e}"))?;
    let reply = ward_client(&a.ward_api)
        .await?
        .delete(pb::DeleteRequest { key: Some((&key).into()) })
        .await
        .map_err(answered)?;
    println!("deleted {}/{} as change {}", a.kind, a.key, reply.into_inner().seq);
    Ok(())
}

/// `wardsync get`.
pub async fn get(g: GetArgs) -> anyhow::Result<()> {
    let a = g.key;
    let key = wire_key(&a)?;
    let record = match city_for(&a.target).await? {
        Some(mut city) if g.as_of.is_some() => {
            let at = super::when::time_ms("--as-of", g.as_of.as_deref().unwrap_or_default())?;
            city.get(pb::CityGetRequest { key: Some(key), as_of_ms: at }).await.map(|r| r.into_inner().record)
        }
        Some(mut city) => {
            let reply = city
                .get_state(pb::CityGetRequest { key: Some(key), ..Default::default() })
                .await
                .map(|r| r.into_inner());
            if let Ok(state) = &reply {
                // For `wardsync edit --based-on`; on stderr, so stdout stays one JSON record.
                let seen = crate::proto::seen_from_pb(state.state.clone().unwrap_or_default().seen);
                eprintln!("version: {}", seen.to_token());
            }
            match reply {
                Ok(r) if r.record.is_none() => anyhow::bail!("{}/{} is deleted at the city", a.kind, a.key),
                other => other.map(|r| r.record),
            }
        }
        None if g.as_of.is_some() => {
            anyhow::bail!("--as-of reads the city's history: give --city and --tls-dir")
        }
        None => ward_client(&a.target.ward_api)
            .await?
            .get(pb::GetRequest { key: Some(key) })
            .await
            .map(|r| r.into_inner().record),
    }
    .map_err(answered)?;
    print_record(record)
}

/// `wardsync list`: pages through the records, one JSON record per line.
pub async fn list(a: ListArgs) -> anyhow::Result<()> {
    let mut source = match city_for(&a.target).await? {
        Some(city) => Source::City(city, a.ward.clone().unwrap_or_default()),
        None => {
            anyhow::ensure!(a.ward.is_none(), "--ward filters the city's records: add --city");
            Source::Ward(ward_client(&a.target.ward_api).await?)
        }
    };
    let mut last = String::new();
    let rest = source
        .for_each(a.kind, a.after.clone(), a.limit, |r| {
            last = r.key_id();
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        })
        .await?;
    if rest {
        more("records", &format!("give --after {last} for the next page (or --limit 0 for all)"));
    }
    Ok(())
}

/// Where records are listed from.
pub enum Source {
    /// A ward agent's local API.
    Ward(WardApiClient<Channel>),
    /// The city, optionally only the records of one ward (empty: all wards).
    City(CityQueryClient<Channel>, String),
}

impl Source {
    async fn page(
        &mut self,
        kind: Kind,
        after: String,
        limit: u32,
    ) -> Result<(Vec<pb::Record>, String), tonic::Status> {
        let kind = pb::Kind::from(kind) as i32;
        Ok(match self {
            Source::Ward(c) => {
                let r = c.list(pb::ListRequest { kind, after, limit }).await?.into_inner();
                (r.records, r.next_after)
            }
            Source::City(c, ward) => {
                let ward = ward.clone();
                let r = c.list(pb::CityListRequest { kind, ward, after, limit }).await?.into_inner();
                (r.records, r.next_after)
            }
        })
    }

    /// Calls `each` on the records of `kind` after key `after`, in key
    /// order, at most `limit` of them (0: all), a page at a time; true if
    /// more records follow the last one.
    pub async fn for_each(
        &mut self,
        kind: Kind,
        mut after: String,
        limit: usize,
        mut each: impl FnMut(Record) -> anyhow::Result<()>,
    ) -> anyhow::Result<bool> {
        let mut seen = 0;
        loop {
            // (One record past `limit` tells that there are more.)
            let want = if limit == 0 { MAX_PAGE } else { (limit - seen + 1).min(MAX_PAGE) };
            let (records, next) = self.page(kind, after, want as u32).await.map_err(answered)?;
            for r in records {
                if limit != 0 && seen == limit {
                    return Ok(true);
                }
                seen += 1;
                let record = record_from_pb(Some(r))
                    .map_err(|e| anyhow::anyhow!("the server sent a bad record: {e}"))?;
                each(record)?;
            }
            if next.is_empty() {
                return Ok(false);
            }
            after = next;
        }
    }

    /// Every record of `kind`, in key order.
    pub async fn all(&mut self, kind: Kind) -> anyhow::Result<Vec<Record>> {
        let mut out = Vec::new();
        self.for_each(kind, String::new(), 0, |r| {
            out.push(r);
            Ok(())
        })
        .await?;
        Ok(out)
    }
}

/// Every record of `kind` a ward agent holds, in key order.
pub async fn all_ward_records(
    client: &mut WardApiClient<Channel>,
    kind: Kind,
) -> anyhow::Result<Vec<Record>> {
    Source::Ward(client.clone()).all(kind).await
}

/// Every record of `kind` the city holds for `ward` (all wards if empty), in key order.
pub async fn all_city_records(
    client: &mut CityQueryClient<Channel>,
    kind: Kind,
    ward: &str,
) -> anyhow::Result<Vec<Record>> {
    Source::City(client.clone(), ward.to_string()).all(kind).await
}

/// `wardsync lookup`: a record anywhere in the city, through a ward agent.
pub async fn lookup(a: AgentKeyArgs) -> anyhow::Result<()> {
    let key = RecordKey::new(a.kind, &a.key).map_err(|e| anyhow::anyhow!("--key: {e}"))?;
    let reply = ward_client(&a.ward_api)
        .await?
        .lookup(pb::GetRequest { key: Some((&key).into()) })
        .await
        .map_err(answered)?;
    print_record(reply.into_inner().record)
}
