//! `wardsync certs`: a development CA and node certificates.

use crate::auth::DevCa;
use crate::model::WardCode;

use super::args::CertsArgs;

/// Writes the CA (unless one exists), the city's certificate, one per ward
/// and one per named client into `args.out`.
pub fn run(args: CertsArgs) -> anyhow::Result<()> {
    let wards = args
        .wards
        .iter()
        .map(|w| WardCode::parse(w).map_err(|e| anyhow::anyhow!("--wards: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for c in &args.clients {
        anyhow::ensure!(
            !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-'),
            "--clients: {c:?} must be letters, digits and '-'"
        );
        anyhow::ensure!(!c.starts_with("ward-"), "--clients: {c:?}: ward certificates come from --wards");
    }
    let ca = DevCa::open_or_create(&args.out)?;
    ca.issue_city()?;
    for w in &wards {
        ca.issue_ward(w)?;
    }
    for c in &args.clients {
        ca.issue(c, &[c])?;
    }
    println!(
        "wrote CA, city, {} ward and {} client certificate(s) to {}",
        wards.len(),
        args.clients.len(),
        args.out.display()
    );
    Ok(())
}
