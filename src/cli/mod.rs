//! The command line: argument definitions and one module per subcommand.

mod args;
mod args_data;
mod audit_verify;
mod backup;
mod bench;
mod certs;
mod civil;
pub mod client;
mod conflicts;
mod connect;
mod demo;
mod export;
pub mod failure;
pub mod formats;
mod generate;
mod import;
pub mod office;
mod query;
pub mod relay;
mod status;
pub mod verify;
pub mod wait;
mod when;

use std::process::ExitCode;

pub use args::{Cli, Command, LogFormat};

use crate::config::{self, CityConfig, WardConfig};

/// Sets up logging to stderr. `RUST_LOG` filters; without it nodes log at
/// `info` and the other commands (whose output is on stdout) at `warn`.
pub fn init_tracing(cli: &Cli) {
    let default = match cli.command {
        Command::City(_) | Command::Ward(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only for a person at a terminal: a log redirected to a file or
    // a journal carries no escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Exit status of a process stopped by a panic (`EX_SOFTWARE`).
pub const PANIC_EXIT: i32 = 70;

/// Makes a panic in any thread or task stop the whole process with
/// [`PANIC_EXIT`], after the usual message and an error log. Tokio would
/// otherwise end only the panicking task: a node whose replication or
/// commit task died would go on answering, or exit 0, with nothing
/// replicated. Stopping is safe: nothing unflushed was ever acknowledged,
/// and a supervisor (systemd's `Restart=on-failure`) starts it again.
///
/// A command whose reader closed the pipe (`wardsync list ... | head`)
/// ends quietly instead, with success: `println!` panics on a closed
/// stdout, and the reader has all it wanted.
pub fn stop_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        report(info);
        tracing::error!(panic = %info, exit = PANIC_EXIT, "a task panicked: stopping the process");
        std::process::exit(PANIC_EXIT);
    }));
}

/// True if `e` comes from writing to a pipe its reader closed (`| head`):
/// the command ends quietly, with success.
pub fn closed_pipe(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == BrokenPipe)
            || c.downcast_ref::<serde_json::Error>().is_some_and(|j| j.io_error_kind() == Some(BrokenPipe))
            || c.downcast_ref::<csv::Error>()
                .is_some_and(|c| matches!(c.kind(), csv::ErrorKind::Io(io) if io.kind() == BrokenPipe))
    })
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("cannot install the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Runs one subcommand.
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::City(a) => {
            let load = move || -> anyhow::Result<CityConfig> {
                let mut cfg = a.store.load()?;
                a.apply(&mut cfg);
                Ok(cfg)
            };
            let cfg = load()?;
            let (access_tx, access_rx) = tokio::sync::watch::channel(std::sync::Arc::new(cfg.access()));
            // SIGHUP re-reads the roles and the deny list without a restart.
            tokio::spawn(async move {
                let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                else {
                    return;
                };
                while hup.recv().await.is_some() {
                    match load().and_then(|c| c.check().map(|_| c)) {
                        Ok(c) => {
                            access_tx.send_replace(std::sync::Arc::new(c.access()));
                            tracing::info!(
                                revoked = c.revoked.len(),
                                roles = c.roles.len(),
                                "access rules reloaded"
                            );
                        }
                        Err(e) => tracing::error!("reload failed, keeping the rules in force: {e:#}"),
                    }
                }
            });
            crate::city::run(cfg, access_rx, shutdown_signal()).await?;
        }
        Command::Ward(a) => {
            let mut cfg: WardConfig = match &a.config {
                Some(path) => config::load(path)?,
                None => a.bare_config()?,
            };
            a.apply(&mut cfg);
            crate::ward::run(cfg, shutdown_signal()).await?;
        }
        Command::Certs(a) => certs::run(a)?,
        Command::Put(a) => return client::put(a).await,
        Command::Delete(a) => client::delete(a).await?,
        Command::Get(a) => client::get(a).await?,
        Command::History(a) => conflicts::history(a).await?,
        Command::List(a) => client::list(a).await?,
        Command::Status(a) => return status::run(a).await,
        Command::Verify(a) => return verify::run(a).await,
        Command::Backup(a) => backup::run(a).await?,
        Command::Lookup(a) => client::lookup(a).await?,
        Command::Register(a) => civil::run(a).await?,
        Command::ConfirmMaritalStatus(a) => civil::confirm(a).await?,
        Command::CivilReport(a) => civil::report(a).await?,
        Command::Gen(a) => generate::run(a)?,
        Command::Import(a) => return import::run(a).await,
        Command::Export(a) => export::run(a).await?,
        Command::Query(a) => query::run(a).await?,
        Command::Quarantine(a) => query::quarantine(a).await?,
        Command::Conflicts(a) => conflicts::run(a).await?,
        Command::Edit(a) => conflicts::edit(a).await?,
        Command::Audit(args_data::AuditArgs { verify: Some(args_data::AuditCommand::Verify(v)), .. }) => {
            return audit_verify::run(v).await;
        }
        Command::Audit(a) => conflicts::audit(a).await?,
        Command::Demo(a) => return demo::run(a).await,
        Command::Bench(a) => bench::run(a).await?,
    }
    Ok(ExitCode::SUCCESS)
}
