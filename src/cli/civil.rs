//! The civil-status commands: `wardsync register marriage|divorce|death|correction`
//! (a registration through this ward's agent, see `WardApi.Register`),
//! `wardsync confirm-marital-status ID` (through a ward's agent or at the
//! city), and `wardsync civil-report` (the data office's list of
//! inconsistencies, by ward).

use clap::{Args, Subcommand};

use super::args::{CityTarget, TargetArgs};
use super::client::{city_for, city_of, pages, ward_client};
use super::failure::answered;
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
        /// The spouses' personal ids: `ID1,ID2` (or `ID1 ID2`).
        #[arg(long, value_delimiter = ',', num_args = 1..=2, required = true, value_name = "ID1,ID2")]
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
        /// The spouses' personal ids: `ID1,ID2` (or `ID1 ID2`).
        #[arg(long, value_delimiter = ',', num_args = 1..=2, required = true, value_name = "ID1,ID2")]
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
    /// A correction of a citizen's name, date of birth or sex (of this
    /// ward's citizens): the only way to change who a person with
    /// registered events is.
    Correction {
        /// The person's personal id.
        #[arg(long)]
        person: String,
        /// The field corrected.
        #[arg(long, value_parser = ["full_name", "date_of_birth", "sex"])]
        field: String,
        /// Its value from then on: a name, a date YYYY-MM-DD, or male/female.
        #[arg(long)]
        value: String,
        /// The decision the correction is registered on (number, date).
        #[arg(long)]
        reference: String,
        /// Date of registration, YYYY-MM-DD [default: today].
        #[arg(long)]
        date: Option<String>,
    },
}

/// The spouses typed: exactly two ids, however they were separated.
fn two_spouses(spouses: Vec<String>) -> anyhow::Result<Vec<String>> {
    let ids: Vec<String> = spouses.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    if ids.len() != 2 {
        anyhow::bail!(
            "--spouses takes the two spouses' personal ids, as --spouses ID1,ID2; got {}",
            if ids.is_empty() { "none".to_string() } else { ids.join(", ") }
        );
    }
    Ok(ids)
}

/// The request `what` makes.
fn request(what: Registration) -> anyhow::Result<pb::RegisterRequest> {
    Ok(match what {
        Registration::Marriage { spouses, date, certificate } => pb::RegisterRequest {
            kind: "marriage".into(),
            persons: two_spouses(spouses)?,
            date,
            reference: certificate,
            ..Default::default()
        },
        Registration::Divorce { spouses, date, decision } => pb::RegisterRequest {
            kind: "divorce".into(),
            persons: two_spouses(spouses)?,
            date,
            reference: decision,
            ..Default::default()
        },
        Registration::Death { person, date, place } => pb::RegisterRequest {
            kind: "death".into(),
            persons: vec![person],
            date,
            reference: place,
            ..Default::default()
        },
        Registration::Correction { person, field, value, reference, date } => pb::RegisterRequest {
            kind: "correction".into(),
            persons: vec![person],
            date: date.unwrap_or_else(|| crate::clock::today().to_string()),
            reference,
            field,
            value,
        },
    })
}

/// Runs `wardsync register`.
pub async fn run(a: RegisterArgs) -> anyhow::Result<()> {
    let req = request(a.what)?;
    let kind = req.kind.clone();
    let reply = ward_client(&a.ward_api).await?.register(req).await.map_err(answered)?.into_inner();
    for r in reply.records {
        let record =
            record_from_pb(Some(r)).map_err(|e| anyhow::anyhow!("the agent sent a bad record: {e}"))?;
        println!("{}", serde_json::to_string(&record)?);
    }
    eprintln!(
        "{kind} registered (changes {:?}); it reaches the city and the owning wards as the link allows",
        reply.seqs
    );
    for note in &reply.notes {
        eprintln!("note: {note}");
    }
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
    .map_err(answered)?
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
    /// Print one JSON object per problem instead of the report.
    #[arg(long)]
    pub json: bool,
    /// The city to ask (--city and --tls-dir).
    #[command(flatten)]
    pub target: CityTarget,
}

/// Runs `wardsync civil-report`: every inconsistency, by ward, then counts.
pub async fn report(a: CivilReportArgs) -> anyhow::Result<()> {
    let city = city_of(&a.target).await?;
    let ward = a.ward.unwrap_or_default();
    let (problems, _) = pages(usize::MAX, |after| {
        let (mut city, ward) = (city.clone(), ward.clone());
        async move {
            let r = city.civil_report(pb::CivilReportRequest { ward, after, limit: MAX_PAGE as u32 }).await?;
            let r = r.into_inner();
            Ok((r.problems, r.next_after))
        }
    })
    .await
    .map_err(answered)?;
    if a.json {
        for p in &problems {
            let v = serde_json::json!({"ward": p.ward, "personal_id": p.personal_id, "problem": p.problem,
                "detail": p.detail});
            println!("{v}");
        }
        return Ok(());
    }
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::args::{Cli, Command};

    fn persons(args: &[&str]) -> anyhow::Result<Vec<String>> {
        let cli = Cli::try_parse_from(["wardsync", "register"].iter().chain(args))?;
        let Command::Register(a) = cli.command else { panic!("not register") };
        Ok(request(a.what)?.persons)
    }

    #[test]
    fn spouses_are_typed_as_the_readme_shows() {
        let tail = ["--date", "2026-11-30", "--certificate", "123/2026"];
        let with = |spouses: &[&str]| {
            let mut args = vec!["marriage"];
            args.extend(spouses);
            args.extend(tail);
            persons(&args)
        };
        let both = vec!["001090000123".to_string(), "001192000456".to_string()];
        assert_eq!(with(&["--spouses", "001090000123,001192000456"]).unwrap(), both);
        assert_eq!(with(&["--spouses", "001090000123", "001192000456"]).unwrap(), both);
        assert_eq!(
            with(&["--spouses", "001090000123, 001192000456"]).unwrap(),
            both,
            "a space after the comma"
        );
        let one = with(&["--spouses", "001090000123"]).unwrap_err().to_string();
        assert!(one.contains("--spouses ID1,ID2"), "{one}");
        let help =
            Cli::try_parse_from(["wardsync", "register", "marriage", "--help"]).unwrap_err().to_string();
        assert!(help.contains("ID1,ID2"), "{help}");
    }
}
