//! The status page (`/status` on the city's HTTP listener): every ward,
//! worst first, refreshing itself every few seconds. One self-contained
//! page, readable on a phone, with no external assets.

use std::fmt::Write;

use super::{Live, ward_states, worst_first};
use crate::model::WardCode;
use crate::proto::pb;
use crate::store::CityStore;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn age(ms: i64, now: i64) -> String {
    if ms <= 0 {
        return "never".into();
    }
    let s = (now - ms).max(0) / 1000;
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

/// The page for `wards` (already sorted worst first) at city time `now`.
pub fn render(wards: &[pb::WardState], now: i64) -> String {
    let behind = wards.iter().filter(|w| w.state != "connected" || w.backlog > 0).count();
    let mut rows = String::new();
    for w in wards {
        let class = if w.state != "connected" || w.lag_seconds > 300.0 {
            "bad"
        } else if w.lag_seconds > 60.0 || w.backlog > 0 {
            "warn"
        } else {
            "ok"
        };
        let _ = writeln!(
            rows,
            "<tr class=\"{class}\" data-ward=\"{ward}\"><td>{ward}</td><td>{state}</td><td>{lag:.1} s</td><td>{backlog}</td>\
             <td>{bytes}</td><td>{oldest}</td><td>{contact}</td><td>{conflicts}</td><td>{quarantined}</td><td>{records}</td></tr>",
            ward = escape(&w.ward),
            state = escape(&w.state),
            lag = w.lag_seconds,
            backlog = w.backlog,
            bytes = w.backlog_bytes,
            oldest = if w.oldest_queued_ms > 0 { age(w.oldest_queued_ms, now) } else { "-".into() },
            contact = age(w.last_contact_ms, now),
            conflicts = w.open_conflicts,
            quarantined = w.quarantined,
            records = w.records,
        );
    }
    let mut losses = String::new();
    for w in wards.iter().filter(|w| w.lost_changes > 0) {
        let _ = writeln!(
            losses,
            "<p class=\"bad loss\" data-ward=\"{ward}\">Ward {ward}: the city lost {n} changes it had acknowledged \
             (found {found}; restored from an older backup?). Replication resumed after them.</p>",
            ward = escape(&w.ward),
            n = w.lost_changes,
            found = age(w.lost_found_at_ms, now),
        );
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5">
<title>wardsync: replication status</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1rem; }}
table {{ border-collapse: collapse; width: 100%; font-size: 0.95rem; }}
th, td {{ padding: 0.35rem 0.5rem; border-bottom: 1px solid #ddd; text-align: right; }}
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) {{ text-align: left; }}
tr.bad, p.bad {{ background: #fdd; }} tr.warn {{ background: #ffd; }}
.wrap {{ overflow-x: auto; }}
</style></head>
<body>
<h1>Replication status</h1>
<p id="summary">{n} wards, {behind} cut off or behind.</p>
{losses}<div class="wrap"><table>
<thead><tr><th>ward</th><th>state</th><th>lag</th><th>backlog</th><th>bytes</th><th>oldest queued</th><th>last contact</th><th>conflicts</th><th>quarantined</th><th>records</th></tr></thead>
<tbody>
{rows}</tbody></table></div>
</body></html>
"#,
        n = wards.len()
    )
}

/// The `/status` route.
pub fn route(store: CityStore, live: Live, expected: Vec<WardCode>) -> axum::Router {
    axum::Router::new().route(
        "/status",
        axum::routing::get(move || {
            let (store, live, expected) = (store.clone(), live.clone(), expected.clone());
            async move {
                let now = crate::clock::now_ms();
                let mut wards = ward_states(&store, &live, &expected, now).unwrap_or_default();
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
            page.contains("Ward 00082: the city lost 20 changes it had acknowledged (found 60 s ago"),
            "{page}"
        );
        assert!(!page.contains("Ward 00145: the city lost"), "{page}");
    }
}
