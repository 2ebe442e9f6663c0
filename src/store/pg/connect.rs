//! How a city process reaches PostgreSQL: the URL, and TLS when the city
//! is given the CA that signed the database server's certificate.
//!
//! With a CA the city always speaks TLS (`sslmode=require`, whatever the
//! URL says: a configured CA never falls back to plain text), trusts only
//! that CA, and checks that the server's certificate names the URL's host
//! (rustls, through tokio-postgres-rustls). Without one it speaks plain
//! text, for a database on the same machine or a private network; a URL
//! that asks for `sslmode=require` without a CA is refused, since there
//! would be nothing to verify the server against.

use std::path::Path;

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// Every commit of the city's connections returns once its WAL is on disk,
/// even where the server, the database or the role says
/// `synchronous_commit = off` (advice to make PostgreSQL faster; with it, a
/// power cut loses commits already confirmed: changes the wards were told
/// were applied and have deleted, or the schema itself). The session keeps
/// any other setting the server has (`on`, `local`, `remote_write`,
/// `remote_apply`: all wait for the local WAL flush), pinned for the
/// connection's life.
const SYNCHRONOUS: &str = "SELECT set_config('synchronous_commit',
     CASE current_setting('synchronous_commit') WHEN 'off' THEN 'on' ELSE current_setting('synchronous_commit') END,
     false)";

/// The database's address and how to secure the connection to it.
#[derive(Clone)]
pub(crate) struct Connect {
    config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
}

impl Connect {
    /// Reads `url` (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`) and the CA
    /// certificate file `ca`, if any. Messages never repeat the URL (it may
    /// hold a password).
    pub fn new(url: &str, ca: Option<&Path>) -> Result<Connect, StoreError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::Io(format!(
                "[database] url is not a PostgreSQL URL ({e}): write postgres://USER:PASSWORD@HOST:PORT/DATABASE"
            ))
        })?;
        let Some(ca) = ca else {
            if config.get_ssl_mode() == SslMode::Require {
                return Err(StoreError::Io(
                    "[database] url asks for sslmode=require but [database] ca is not set: set it to the CA certificate (PEM) that signed the database server's certificate".into(),
                ));
            }
            // No CA: plain text (`prefer` would try TLS it cannot verify).
            config.ssl_mode(SslMode::Disable);
            return Ok(Connect { config, tls: None });
        };
        let roots = crate::auth::roots(ca).map_err(|e| StoreError::Io(format!("[database] ca: {e:#}")))?;
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Io(format!("TLS to the city database: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.ssl_mode(SslMode::Require);
        Ok(Connect { config, tls: Some(MakeRustlsConnect::new(tls)) })
    }

    /// A pool of at most `size` connections to this database, each made to
    /// commit synchronously (see [`SYNCHRONOUS`]).
    pub fn pool(&self, size: usize) -> Result<Pool, StoreError> {
        let recycle = || ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = match &self.tls {
            Some(tls) => Manager::from_config(self.config.clone(), tls.clone(), recycle()),
            None => Manager::from_config(self.config.clone(), tokio_postgres::NoTls, recycle()),
        };
        Pool::builder(manager)
            .max_size(size)
            .post_create(Hook::async_fn(|client, _| {
                Box::pin(async move { client.batch_execute(SYNCHRONOUS).await.map_err(HookError::Backend) })
            }))
            .build()
            .map_err(|e| StoreError::Io(format!("cannot set up connections to the city database: {e}")))
    }

    /// One connection of its own (to LISTEN on), outside the pool.
    pub async fn connect(&self) -> Result<(tokio_postgres::Client, Connection), tokio_postgres::Error> {
        Ok(match &self.tls {
            Some(tls) => {
                let (client, conn) = self.config.connect(tls.clone()).await?;
                (client, Connection::Tls(Box::new(conn)))
            }
            None => {
                let (client, conn) = self.config.connect(tokio_postgres::NoTls).await?;
                (client, Connection::Plain(Box::new(conn)))
            }
        })
    }
}

type Socket = tokio_postgres::Socket;

/// A connection to drive, in plain text or TLS.
pub(crate) enum Connection {
    Plain(Box<tokio_postgres::Connection<Socket, tokio_postgres::tls::NoTlsStream>>),
    Tls(Box<tokio_postgres::Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>>),
}

impl Connection {
    /// The next message the server sent outside a query's answer
    /// (a notification), driving the connection meanwhile.
    pub fn poll_message(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<tokio_postgres::AsyncMessage, tokio_postgres::Error>>> {
        match self {
            Connection::Plain(c) => c.poll_message(cx),
            Connection::Tls(c) => c.poll_message(cx),
        }
    }
}
