//! How a command fails: the exit status a script sees (README, "Exit
//! status") and the message a person reads, both decided here from the
//! error, once for every command.

use std::process::ExitCode;

/// Exit statuses of every command.
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// The command as typed is wrong: an unknown flag or a bad value, a
    /// file that cannot be read; anything not classified below.
    pub const USAGE: u8 = 1;
    /// Part of the work is done: rows rejected (`import`, `put --file`), a
    /// ward behind (`status`), copies that still differ (`verify`), rows
    /// that are not what the city wrote (`audit verify`).
    pub const PARTLY: u8 = 2;
    /// The ward agent or the city cannot be reached, or does not speak the
    /// API asked of it (wrong port, scheme or certificate); `status`: a
    /// ward is cut off or never seen.
    pub const UNREACHABLE: u8 = 3;
    /// What was asked for does not exist: a record, a conflict, a
    /// quarantined change.
    pub const NOT_FOUND: u8 = 4;
    /// The node refused the request: invalid, not allowed to this
    /// identity, at odds with what it holds, or no room.
    pub const REFUSED: u8 = 5;
    /// Stopped by Ctrl-C (128 + SIGINT).
    pub const INTERRUPTED: u8 = 130;
}

/// A request a node answered with an error: its code, and the message,
/// which names the problem (shown without gRPC's framing).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Answered {
    /// The gRPC status code.
    pub code: tonic::Code,
    /// What the node said.
    pub message: String,
}

/// A node's error answer as a command-line error, its code kept for the
/// exit status.
pub fn answered(s: tonic::Status) -> anyhow::Error {
    anyhow::Error::new(Answered { code: s.code(), message: s.message().to_string() })
}

/// A connection that could not be made, said with what to check.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

/// A command stopped by Ctrl-C, and what it left.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Interrupted(pub String);

/// Runs `work` until it ends or Ctrl-C; then `work` is dropped (what it
/// holds, a temporary file, goes with it) and `left` says what is left.
pub async fn unless_interrupted<T>(
    work: impl std::future::Future<Output = anyhow::Result<T>>,
    left: &str,
) -> anyhow::Result<T> {
    tokio::select! {
        done = work => done,
        _ = tokio::signal::ctrl_c() => Err(Interrupted(format!("interrupted (Ctrl-C): {left}")).into()),
    }
}

/// The exit status for `e`.
pub fn exit_status(e: &anyhow::Error) -> u8 {
    use tonic::Code;
    for cause in e.chain() {
        if cause.is::<Interrupted>() {
            return exit::INTERRUPTED;
        }
        if cause.is::<Unreachable>() || cause.is::<tonic::transport::Error>() {
            return exit::UNREACHABLE;
        }
        let code = match (cause.downcast_ref::<Answered>(), cause.downcast_ref::<tonic::Status>()) {
            (Some(a), _) => a.code,
            (_, Some(s)) => s.code(),
            _ => continue,
        };
        return match code {
            Code::NotFound => exit::NOT_FOUND,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => exit::UNREACHABLE,
            Code::InvalidArgument
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::FailedPrecondition
            | Code::AlreadyExists
            | Code::Aborted
            | Code::OutOfRange
            | Code::ResourceExhausted => exit::REFUSED,
            _ => exit::USAGE,
        };
    }
    exit::USAGE
}

/// What to print for `e`: its causes joined, a node's answer without
/// gRPC's framing, and nothing said twice ("tcp connect error: tcp connect
/// error").
pub fn describe(e: &anyhow::Error) -> String {
    causes(e.as_ref())
}

/// The causes of `e`, each said once, joined.
pub fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in std::iter::successors(Some(e), |c| c.source()) {
        let text = match cause.downcast_ref::<tonic::Status>() {
            Some(s) => s.message().to_string(),
            None => cause.to_string(),
        };
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// Ends the process for `e`: quietly with success on a closed pipe (the
/// reader has all it wanted), else the message and its exit status.
pub fn report(e: &anyhow::Error) -> ExitCode {
    if super::closed_pipe(e) {
        return ExitCode::SUCCESS;
    }
    eprintln!("error: {}", describe(e));
    ExitCode::from(exit_status(e))
}
