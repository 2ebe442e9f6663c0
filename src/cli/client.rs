//! Client subcommands: put, delete, get, list, status. They talk to a ward
//! agent's local API, or to the city over mutual TLS with `--city`.

use std::io::BufRead;

use anyhow::Context;
use tonic::transport::{Channel, Endpoint};

use super::args::{GetArgs, KeyArgs, ListArgs, LookupArgs, PutArgs, TargetArgs};
use crate::auth::{TlsFiles, client_tls};
use crate::model::{Kind, Record, RecordKey};
use crate::proto::pb::{self, city_query_client::CityQueryClient, ward_api_client::WardApiClient};
use crate::proto::{MAX_PAGE, record_from_pb};

/// Connects to a ward agent's local API: `http://HOST:PORT`, or
/// `unix:/path/to/socket` for an agent listening on a Unix socket.
pub async fn ward_client(url: &str) -> anyhow::Result<WardApiClient<Channel>> {
    let unreachable = || format!("cannot reach the ward agent at {url} (is `wardsync ward` running?)");
    let channel = match url.strip_prefix("unix:") {
        Some(path) => {
            let path = std::path::PathBuf::from(path);
            Endpoint::from_static("http://local.ward")
                .timeout(crate::net::RPC_DEADLINE)
                .connect_with_connector(tower::service_fn(move |_| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                            tokio::net::UnixStream::connect(path).await?,
                        ))
                    }
                }))
                .await
                .with_context(unreachable)?
        }
        None => Endpoint::from_shared(url.to_string())
            .with_context(|| format!("bad ward API URL {url:?}"))?
            .timeout(crate::net::RPC_DEADLINE)
            .connect()
            .await
            .with_context(unreachable)?,
    };
    Ok(WardApiClient::new(channel))
}

/// Connects to the city with the client certificate `name` from `tls_dir`.
pub async fn city_client(
    url: &str,
    tls_dir: Option<&std::path::Path>,
    name: &str,
    city_name: &str,
) -> anyhow::Result<CityQueryClient<Channel>> {
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .with_context(|| format!("bad city URL {url:?}"))?
        .timeout(crate::net::RPC_DEADLINE);
    if let Some(dir) = tls_dir {
        endpoint = endpoint.tls_config(client_tls(&TlsFiles::in_dir(dir, name), city_name)?)?;
    } else if url.starts_with("https://") {
        anyhow::bail!("--tls-dir is required to reach the city over TLS");
    }
    let channel = endpoint.connect().await.with_context(|| format!("cannot reach the city at {url}"))?;
    Ok(CityQueryClient::new(channel))
}

/// The city a command must talk to (`--city` is required).
pub(super) async fn city_required(t: &TargetArgs) -> anyhow::Result<CityQueryClient<Channel>> {
    city_for(t).await?.ok_or_else(|| anyhow::anyhow!("give --city URL (and --tls-dir)"))
}

/// A gRPC error as a command-line error: its message, which names the problem.
pub(super) fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", s.message())
}

pub(super) async fn city_for(t: &TargetArgs) -> anyhow::Result<Option<CityQueryClient<Channel>>> {
    match &t.city {
        None => Ok(None),
        Some(url) => Ok(Some(city_client(url, t.tls_dir.as_deref(), &t.tls_name, &t.city_name).await?)),
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

/// Every item of a paged call, in order, up to `max`: `fetch(after)` asks
/// for the page after the cursor `after` and returns its items and its
/// `next_after` (empty at the end).
pub async fn pages<T, F, Fut>(max: usize, mut fetch: F) -> Result<Vec<T>, tonic::Status>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    let (mut all, mut after) = (Vec::new(), String::new());
    loop {
        let (items, next) = fetch(after).await?;
        all.extend(items);
        if next.is_empty() || all.len() >= max {
            all.truncate(max);
            return Ok(all);
        }
        after = next;
    }
}

/// `wardsync put`.
pub async fn put(a: PutArgs) -> anyhow::Result<()> {
    let lines: Vec<(usize, String)> = match (&a.json, &a.file) {
        (Some(j), _) => vec![(1, j.clone())],
        (None, Some(path)) => {
            let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(std::io::BufReader::new(
                    std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
                ))
            };
            reader.lines().enumerate().map(|(i, l)| l.map(|l| (i + 1, l))).collect::<Result<_, _>>()?
        }
        (None, None) => anyhow::bail!("give --json RECORD or --file FILE"),
    };
    let mut client = ward_client(&a.ward_api).await?;
    for (line, text) in lines.iter().filter(|(_, t)| !t.trim().is_empty()) {
        let record: Record =
            serde_json::from_str(text).with_context(|| format!("line {line}: not a record in JSON"))?;
        let request = pb::PutRequest { record: Some((&record).into()) };
        let reply = if a.transfer { client.transfer(request).await } else { client.put(request).await };
        let reply = reply.map_err(|s| anyhow::anyhow!("line {line}: {}", s.message()))?;
        let reply = reply.into_inner();
        if reply.unchanged {
            println!("{}/{} unchanged: already stored exactly so", record.kind(), record.key_id());
        } else {
            println!("stored {}/{} as change {}", record.kind(), record.key_id(), reply.seq);
        }
    }
    Ok(())
}

/// `wardsync delete`.
pub async fn delete(a: KeyArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.target.city.is_none(), "deletes go through the owning ward's agent, not the city");
    let key = wire_key(&a)?;
    let reply = ward_client(&a.target.ward_api)
        .await?
        .delete(pb::DeleteRequest { key: Some(key) })
        .await
        .map_err(status_error)?;
    println!("deleted {}/{} as change {}", a.kind, a.key, reply.into_inner().seq);
    Ok(())
}

/// `wardsync get`.
pub async fn get(g: GetArgs) -> anyhow::Result<()> {
    let a = g.key;
    let key = wire_key(&a)?;
    let record = match city_for(&a.target).await? {
        Some(mut city) if g.as_of.is_some() => {
            let at = super::conflicts::time_ms("--as-of", g.as_of.as_deref().unwrap_or_default())?;
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
    .map_err(status_error)?;
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
    source
        .for_each(a.kind, a.after.clone(), a.limit, |r| {
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        })
        .await
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
    /// order, at most `limit` of them (0: all), a page at a time.
    pub async fn for_each(
        &mut self,
        kind: Kind,
        mut after: String,
        limit: usize,
        mut each: impl FnMut(Record) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut seen = 0;
        loop {
            let want = if limit == 0 { MAX_PAGE } else { (limit - seen).min(MAX_PAGE) };
            let (records, next) = self.page(kind, after, want as u32).await.map_err(status_error)?;
            seen += records.len();
            for r in records {
                let record = record_from_pb(Some(r))
                    .map_err(|e| anyhow::anyhow!("the server sent a bad record: {e}"))?;
                each(record)?;
            }
            if next.is_empty() || (limit != 0 && seen >= limit) {
                return Ok(());
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
pub async fn lookup(a: LookupArgs) -> anyhow::Result<()> {
    let key = RecordKey::new(a.kind, &a.key).map_err(|e| anyhow::anyhow!("--key: {e}"))?;
    let reply = ward_client(&a.ward_api)
        .await?
        .lookup(pb::GetRequest { key: Some((&key).into()) })
        .await
        .map_err(status_error)?;
    print_record(reply.into_inner().record)
}
