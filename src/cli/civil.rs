//! The civil-status commands: `wardsync register marriage|divorce|death`
//! (a registration through this ward's agent, see `WardApi.Register`),
//! `wardsync confirm-marital-status ID` (through a ward's agent or at the
//! city), and `wardsync civil-report` (the data office's list of
//! inconsistencies, by ward).

use clap::{Args, Subcommand};

use super::args::TargetArgs;
use super::client::{city_for, city_required, pages, status_error, ward_client};
use crate::proto::{MAX_PAGE, pb, record_from_pb};

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

/// Flags of `wardsync confirm-marital-status`.
#[derive(Debug, Args)]
pub struct ConfirmArgs {
    /// The person's personal id.
    pub personal_id: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Ask through a ward's agent (--ward-api), or the city (--city, --tls-dir).
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Runs `wardsync confirm-marital-status`.
pub async fn confirm(a: ConfirmArgs) -> anyhow::Result<()> {
    let req = pb::CivilStatusRequest { personal_id: a.personal_id.clone() };
    let s = match city_for(&a.target).await? {
        Some(mut city) => city.civil_status(req).await,
        None => ward_client(&a.target.ward_api).await?.confirm_marital_status(req).await,
    }
    .map_err(status_error)?
    .into_inner();
    if a.json {
        let events: Vec<serde_json::Value> = s
            .events
            .iter()
            .map(|e| {
                serde_json::json!({"kind": e.kind, "date": e.date, "registered_by": e.registered_by,
                    "spouse_id": e.spouse_id, "reference": e.reference})
            })
            .collect();
        let v = serde_json::json!({
            "personal_id": s.personal_id, "full_name": s.full_name, "ward": s.ward,
            "marital_status": s.marital_status, "spouse_id": s.spouse_id, "deceased": s.deceased,
            "disputed": s.disputed, "events": events,
        });
        println!("{v}");
        return Ok(());
    }
    println!("{} {} (ward {}): {}", s.personal_id, s.full_name, s.ward, s.marital_status);
    if !s.spouse_id.is_empty() {
        println!("  spouse: {}", s.spouse_id);
    }
    if s.deceased {
        println!("  deceased");
    }
    for e in &s.events {
        let with = if e.spouse_id.is_empty() { String::new() } else { format!(" with {}", e.spouse_id) };
        let reference = if e.reference.is_empty() { String::new() } else { format!(" ({})", e.reference) };
        println!("  {} {}{with}, registered by ward {}{reference}", e.date, e.kind, e.registered_by);
    }
    if s.disputed {
        println!("  DISPUTED: the record has open conflicts for the data office (wardsync conflicts show)");
    }
    Ok(())
}

/// Flags of `wardsync civil-report`.
#[derive(Debug, Args)]
pub struct CivilReportArgs {
    /// Only this ward's citizens.
    #[arg(long)]
    pub ward: Option<String>,
    /// The city to ask (--city and --tls-dir).
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Runs `wardsync civil-report`: every inconsistency, by ward, then counts.
pub async fn report(a: CivilReportArgs) -> anyhow::Result<()> {
    let city = city_required(&a.target).await?;
    let ward = a.ward.unwrap_or_default();
    let problems = pages(usize::MAX, |after| {
        let (mut city, ward) = (city.clone(), ward.clone());
        async move {
            let r = city.civil_report(pb::CivilReportRequest { ward, after, limit: MAX_PAGE as u32 }).await?;
            let r = r.into_inner();
            Ok((r.problems, r.next_after))
        }
    })
    .await
    .map_err(status_error)?;
    let mut by_ward: std::collections::BTreeMap<&str, Vec<&pb::CivilProblem>> = Default::default();
    for p in &problems {
        by_ward.entry(p.ward.as_str()).or_default().push(p);
    }
    for (ward, list) in &by_ward {
        println!("ward {ward}: {} problems", list.len());
        for p in list {
            println!("  {} {}: {}", p.personal_id, p.problem, p.detail);
        }
    }
    println!("{} civil-status problems in {} wards", problems.len(), by_ward.len());
    Ok(())
}
