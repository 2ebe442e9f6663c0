//! Connecting to a ward agent or to the city, and saying what to check when
//! that fails: a URL without a scheme, the wrong scheme for the node,
//! nothing listening, another node's port, a certificate from another CA or
//! for another name. Each connection is tried with one cheap call, so a
//! wrong address is named before the command starts its work, not as a
//! bare "transport error" in the middle of it.

use std::path::Path;

use tonic::transport::{Channel, Endpoint};

use super::failure::{Unreachable, causes};
use crate::auth::{TlsFiles, client_tls};
use crate::proto::pb::{self, city_query_client::CityQueryClient, ward_api_client::WardApiClient};

/// How a ward agent's local API is reached, for messages.
const WARD_HINT: &str = "the agent's API is its --listen address (http://127.0.0.1:7070 by default) or \
                         unix:/path of its --socket";

/// How the city is reached, for messages.
const CITY_HINT: &str = "the city's address is its --listen, as https://HOST:PORT, with --tls-dir holding \
                         the city's ca.pem and this client's certificate";

/// Connects to a ward agent's local API: `http://HOST:PORT`, or
/// `unix:/path/to/socket` for an agent listening on a Unix socket.
pub async fn ward_client(url: &str) -> anyhow::Result<WardApiClient<Channel>> {
    let channel = match url.strip_prefix("unix:") {
        Some(path) => {
            let path = std::path::PathBuf::from(path);
            let shown = path.display().to_string();
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
                .map_err(|e| diagnose("the ward agent", &format!("unix:{shown}"), &e, WARD_HINT))?
        }
        None => {
            let endpoint = endpoint("--ward-api", url, &["http"], WARD_HINT)?;
            endpoint.connect().await.map_err(|e| diagnose("the ward agent", url, &e, WARD_HINT))?
        }
    };
    let mut client = WardApiClient::new(channel);
    // Something answering HTTP/2 is not yet a ward agent (the city's port
    // speaks TLS, and closes a plain connection).
    if let Err(s) = client.status(pb::StatusRequest {}).await {
        return Err(Unreachable(format!(
            "{url} does not answer as a ward agent's local API ({}): is this the city's port? {WARD_HINT}",
            causes(&s)
        ))
        .into());
    }
    Ok(client)
}

/// Connects to the city with the client certificate `name` from `tls_dir`.
pub async fn city_client(
    url: &str,
    tls_dir: Option<&Path>,
    name: &str,
    city_name: &str,
) -> anyhow::Result<CityQueryClient<Channel>> {
    let mut endpoint = endpoint("--city", url, &["https", "http"], CITY_HINT)?;
    match tls_dir {
        Some(_) if url.starts_with("http://") => anyhow::bail!(
            "--city {url}: the city speaks TLS: give https://{} (plain http:// only reaches a city started \
             with --insecure-dev, without --tls-dir)",
            url.trim_start_matches("http://")
        ),
        Some(dir) => endpoint = endpoint.tls_config(client_tls(&TlsFiles::in_dir(dir, name), city_name)?)?,
        None if url.starts_with("https://") => {
            anyhow::bail!("--tls-dir is required to reach the city over TLS ({CITY_HINT})")
        }
        None => {}
    }
    let channel = endpoint.connect().await.map_err(|e| {
        let hint = match tls_dir {
            Some(dir) => format!(
                "{CITY_HINT}; the certificates in use are {}/ca.pem and {}/{name}.pem, for a city named \
                 {city_name:?} (--city-name)",
                dir.display(),
                dir.display()
            ),
            None => CITY_HINT.to_string(),
        };
        diagnose("the city", url, &e, &hint)
    })?;
    let mut client = CityQueryClient::new(channel);
    // A cheap call any identity may make, answered or refused by the city
    // itself: the city checks this client's certificate only now (TLS 1.3).
    let probe = pb::CityGetRequest {
        key: Some(pb::RecordKey { kind: pb::Kind::Citizen as i32, id: "000000000000".into() }),
        ..Default::default()
    };
    if let Err(s) = client.get(probe).await
        && is_transport(&s)
    {
        let cert = tls_dir.map_or(String::new(), |d| format!(" {}/{name}.pem", d.display()));
        return Err(Unreachable(format!(
            "the city at {url} closed the connection ({}): was this client's certificate{cert} issued by the \
             city's CA (wardsync certs --out DIR --clients {name}), and not revoked?",
            causes(&s)
        ))
        .into());
    }
    Ok(client)
}

/// The endpoint for `url`, given with `flag`, whose scheme must be one of `schemes`.
fn endpoint(flag: &str, url: &str, schemes: &[&str], hint: &str) -> anyhow::Result<Endpoint> {
    let Some((scheme, _)) = url.split_once("://") else {
        anyhow::bail!("{flag} {url}: give a URL with its scheme, e.g. {}://{url} ({hint})", schemes[0]);
    };
    if !schemes.contains(&scheme) {
        anyhow::bail!("{flag} {url}: the scheme must be {} ({hint})", schemes.join(" or "));
    }
    Ok(Endpoint::from_shared(url.to_string())
        .map_err(|e| anyhow::anyhow!("{flag} {url}: not a URL ({e}); {hint}"))?
        .timeout(crate::net::RPC_DEADLINE)
        .connect_timeout(crate::net::RPC_DEADLINE))
}

/// True if `s` reports a connection that broke, not an answer.
fn is_transport(s: &tonic::Status) -> bool {
    matches!(s.code(), tonic::Code::Unknown | tonic::Code::Unavailable | tonic::Code::Cancelled)
        && std::error::Error::source(s).is_some()
        || s.message().contains("transport error")
        || s.message().contains("operation was canceled")
}

/// What to tell the user when connecting to `node` at `url` failed with `e`.
fn diagnose(node: &str, url: &str, e: &tonic::transport::Error, hint: &str) -> anyhow::Error {
    let said = causes(e);
    let refused = std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |c| c.source())
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind)
        .next();
    let text = match refused {
        Some(std::io::ErrorKind::ConnectionRefused) | Some(std::io::ErrorKind::NotFound) => {
            format!("nothing is listening at {url}: is {node} running, and is this its address? ({hint})")
        }
        Some(std::io::ErrorKind::TimedOut) => {
            format!("{url} did not answer in time: check the address and any firewall between ({hint})")
        }
        _ if said.contains("InvalidContentType") || said.contains("corrupt message") => {
            format!("{url} does not speak TLS, so it is not the city (a ward agent's local API?): {hint}")
        }
        _ if said.contains("BadSignature") || said.contains("UnknownIssuer") => {
            format!("{url} presented a certificate not issued by the CA this client trusts ({said}): {hint}")
        }
        _ if said.contains("not valid for name") => format!("{said}: give the name in it with --city-name"),
        _ if said.contains("Expired") => format!("{url} presented an expired certificate ({said}): renew it"),
        _ => format!("cannot reach {node} at {url} ({said}): {hint}"),
    };
    Unreachable(text).into()
}
