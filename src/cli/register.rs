//! `wardsync register marriage|divorce|death`: a civil-status registration
//! through this ward's agent (see `WardApi.Register`); prints the records
//! as registered.

use clap::{Args, Subcommand};

use super::client::{status_error, ward_client};
use crate::proto::{pb, record_from_pb};

/// Flags of `wardsync register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// What is registered.
    #[command(subcommand)]
    pub what: Registration,
    /// The ward agent's local API: http://HOST:PORT, or unix:/path/to/socket.
    #[arg(long, env = "WARDSYNC_WARD_API", default_value = "http://127.0.0.1:7070", global = true)]
    pub ward_api: String,
}

/// A registration, as typed.
#[derive(Debug, Subcommand)]
pub enum Registration {
    /// A marriage of two persons (any wards of the city).
    Marriage {
        /// The spouses' personal ids, comma-separated.
        #[arg(long, value_delimiter = ',', num_args = 2, required = true)]
        spouses: Vec<String>,
        /// Date of registration, YYYY-MM-DD.
        #[arg(long)]
        date: String,
        /// Marriage certificate number.
        #[arg(long)]
        certificate: String,
    },
    /// A divorce, as decided by a court.
    Divorce {
        /// The spouses' personal ids, comma-separated.
        #[arg(long, value_delimiter = ',', num_args = 2, required = true)]
        spouses: Vec<String>,
        /// Date the decision took effect, YYYY-MM-DD.
        #[arg(long)]
        date: String,
        /// The court decision (court, number).
        #[arg(long)]
        decision: String,
    },
    /// A death.
    Death {
        /// The deceased's personal id.
        #[arg(long)]
        person: String,
        /// Date of death, YYYY-MM-DD.
        #[arg(long)]
        date: String,
        /// Place of death.
        #[arg(long)]
        place: String,
    },
}

/// Runs `wardsync register`.
pub async fn run(a: RegisterArgs) -> anyhow::Result<()> {
    let req = match a.what {
        Registration::Marriage { spouses, date, certificate } => {
            pb::RegisterRequest { kind: "marriage".into(), persons: spouses, date, reference: certificate }
        }
        Registration::Divorce { spouses, date, decision } => {
            pb::RegisterRequest { kind: "divorce".into(), persons: spouses, date, reference: decision }
        }
        Registration::Death { person, date, place } => {
            pb::RegisterRequest { kind: "death".into(), persons: vec![person], date, reference: place }
        }
    };
    let kind = req.kind.clone();
    let reply = ward_client(&a.ward_api).await?.register(req).await.map_err(status_error)?.into_inner();
    for r in reply.records {
        let record =
            record_from_pb(Some(r)).map_err(|e| anyhow::anyhow!("the agent sent a bad record: {e}"))?;
        println!("{}", serde_json::to_string(&record)?);
    }
    eprintln!(
        "{kind} registered (changes {:?}); it reaches the city and the owning wards as the link allows",
        reply.seqs
    );
    Ok(())
}
