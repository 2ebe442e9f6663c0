//! The status page (`/status` on the city's HTTP listener): every ward,
//! worst first, refreshing itself every few seconds. One self-contained
//! page, readable on a phone, with no external assets.

use std::fmt::Write;

use super::report::{self, Severity};
use super::{Live, ward_states, worst_first};
use crate::model::WardCode;
use crate::proto::pb;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The page for `wards` (already sorted worst first) at city time `now`.
/// On a narrow screen (a phone) only the columns that answer "which ward is
/// behind, and by how much" stay: ward, state, lag, last contact.
pub fn render(wards: &[pb::WardState], now: i64) -> String {
    let behind = wards.iter().filter(|w| report::severity(w) != Severity::Ok).count();
    let mut rows = String::new();
    for w in wards {
        let class = match report::severity(w) {
            Severity::Bad => "bad",
            Severity::Warn => "warn",
            Severity::Ok => "ok",
        };
        let _ = writeln!(
            rows,
            "<tr class=\"{class}\" data-ward=\"{ward}\"><td data-col=\"ward\">{ward}<br><small>{name}</small></td>\
             <td data-col=\"state\">{state}</td><td data-col=\"lag\">{lag}</td><td data-col=\"contact\">{contact}</td>\
             <td class=\"more\">{backlog}</td><td class=\"more\">{oldest}</td><td class=\"more\">{outage}</td>\
             <td class=\"more\">{conflicts}</td><td class=\"more\">{quarantined}</td><td class=\"more\">{records}</td></tr>",
            ward = escape(&w.ward),
            name = escape(&w.name),
            state = escape(&w.state),
            lag = escape(&report::lag(w)),
            contact = report::ago(w.last_contact_ms, now),
            backlog = escape(&report::backlog(w, now)),
            oldest = if w.oldest_queued_ms > 0 { report::ago(w.oldest_queued_ms, now) } else { "-".into() },
            outage = escape(&report::last_outage(w, now).unwrap_or_else(|| "none".into())),
            conflicts = w.open_conflicts,
            quarantined = w.quarantined,
            records = w.records,
        );
    }
    let mut notes = String::new();
    for w in wards.iter().filter(|w| w.lost_changes > 0) {
        let _ = writeln!(
            notes,
            "<p class=\"bad loss\" data-ward=\"{ward}\">Ward {ward}: the city lost {n} changes it had acknowledged \
             (found {found}; restored from an older backup?). Replication resumed after them.</p>",
            ward = escape(&w.ward),
            n = w.lost_changes,
            found = report::ago(w.lost_found_at_ms, now),
        );
    }
    for w in wards.iter().filter(|w| w.forks > 0) {
        let _ = writeln!(
            notes,
            "<p class=\"bad fork\" data-ward=\"{ward}\">Ward {ward}: {n} batch(es) refused that did not link onto its \
             chain (the last at sequence {seq}): the same numbers with other changes (a store put back to an older \
             copy?).</p>",
            ward = escape(&w.ward),
            n = w.forks,
            seq = w.fork_seq,
        );
    }
    let mut outages = String::new();
    for w in wards {
        for o in &w.outages {
            let text = report::outage(o, now);
            let _ = writeln!(
                outages,
                "<li data-ward=\"{ward}\">{ward} {name}: {text}</li>",
                ward = escape(&w.ward),
                name = escape(&w.name),
                text = escape(&text)
            );
        }
    }
    if outages.is_empty() {
        outages = "<li>none since the city started</li>".into();
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5">
<title>wardsync: replication status</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0.5rem; }}
table {{ border-collapse: collapse; width: 100%; font-size: 0.95rem; }}
th, td {{ padding: 0.3rem 0.4rem; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }}
small {{ color: #555; }}
tr.bad, p.bad {{ background: #fdd; }} tr.warn {{ background: #ffd; }}
@media (max-width: 700px) {{ .more {{ display: none; }} }}
</style></head>
<body>
<h1>Replication status</h1>
<p id="summary">As of <span id="asof">{asof}</span> UTC (refreshed every 5 s): {n} wards, {behind} cut off or behind.
A ward cut off shows its lag as at least the time since it was last heard from.</p>
{notes}<table>
<thead><tr><th>ward</th><th>state</th><th>lag</th><th>last contact</th><th class="more">backlog</th><th class="more">oldest queued</th><th class="more">last outage</th><th class="more">conflicts</th><th class="more">quarantined</th><th class="more">records</th></tr></thead>
<tbody>
{rows}</tbody></table>
<h2>Outages</h2>
<ul id="outages">
{outages}</ul>
</body></html>
"#,
        asof = report::clock(now),
        n = wards.len()
    )
}

/// The `/status` route.
pub fn route(store: super::ingest::Db, live: Live, expected: Vec<WardCode>) -> axum::Router {
    axum::Router::new().route(
        "/status",
        axum::routing::get(move || {
            let (store, live, expected) = (store.clone(), live.clone(), expected.clone());
            async move {
                let now = crate::clock::now_ms();
                let mut wards = ward_states(&*store, &live, &expected, now).await.unwrap_or_default();
                worst_first(&mut wards);
                axum::response::Html(render(&wards, now))
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_city_that_lost_acknowledged_changes_says_so_on_the_page() {
        let ward = |code: &str, lost: u64| pb::WardState {
            ward: code.into(),
            state: "connected".into(),
            lost_changes: lost,
            lost_found_at_ms: if lost > 0 { 40_000 } else { 0 },
            ..Default::default()
        };
        let page = render(&[ward("00082", 20), ward("00145", 0)], 100_000);
        assert!(
            page.contains("Ward 00082: the city lost 20 changes it had acknowledged (found 1 min 0 s ago"),
            "{page}"
        );
        assert!(!page.contains("Ward 00145: the city lost"), "{page}");
    }
}
