//! The deployment files: Prometheus alert rules and configuration pass
//! promtool, and the Grafana dashboard queries only metrics wardsync exports.

use std::path::Path;
use std::process::Command;

fn deploy(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(path)
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool is installed (Debian package prometheus; scripts/test.sh installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}: {text}");
    text
}

/// Metric names the code registers (with the `wardsync_` prefix and the
/// suffixes Prometheus adds to counters and histograms).
fn exported() -> Vec<String> {
    let mut names = Vec::new();
    for file in ["src/city/metrics.rs", "src/ward/mod.rs", "src/metrics.rs", "src/auth/certificate.rs"] {
        let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
        for part in src.split(".register(").skip(1) {
            let Some(name) = part.trim_start().strip_prefix('"').and_then(|p| p.split('"').next()) else {
                continue;
            };
            for suffix in ["", "_total", "_bucket", "_count", "_sum"] {
                names.push(format!("wardsync_{name}{suffix}"));
            }
        }
    }
    names
}

#[test]
fn alert_rules_and_prometheus_config_pass_promtool() {
    let rules = deploy("prometheus/alerts.yml");
    let out = promtool(&["check", "rules", rules.to_str().unwrap()]);
    assert!(out.contains("SUCCESS: 9 rules found"), "{out}");
    promtool(&["check", "config", deploy("prometheus/prometheus.yml").to_str().unwrap()]);
    // Every metric an alert uses is one wardsync exports.
    let text = std::fs::read_to_string(rules).unwrap();
    let names = exported();
    for word in
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("wardsync_"))
    {
        assert!(names.iter().any(|n| n == word), "alerts use {word}, which is not exported");
    }
}

#[test]
fn the_dashboard_queries_exported_metrics() {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/wardsync-dashboard.json")).unwrap())
            .unwrap();
    let names = exported();
    let panels = json["panels"].as_array().unwrap();
    assert!(panels.len() >= 4);
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            let used: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("wardsync_"))
                .collect();
            assert!(!used.is_empty(), "{expr}");
            for w in used {
                assert!(names.iter().any(|n| n == w), "panel {} uses {w}, which is not exported", p["title"]);
            }
        }
    }
}

#[test]
fn the_compose_file_keeps_every_data_directory_and_no_key_leaks_into_the_image() {
    let compose = std::fs::read_to_string(deploy("compose.yml")).unwrap();
    // Every node's data directory is a named volume, declared.
    for (service, volume) in [
        ("city", "city-data"),
        ("ward-00082", "ward-00082-data"),
        ("ward-00145", "ward-00145-data"),
        ("ward-09784", "ward-09784-data"),
    ] {
        assert!(
            compose.contains(&format!("\"{volume}:/var/lib/wardsync\"")),
            "{service} keeps its data in {volume}"
        );
        assert!(compose.contains(&format!("\n  {volume}: {{}}")), "{volume} is declared");
    }
    for volume in ["prometheus-data", "alertmanager-data", "grafana-data", "certs"] {
        assert!(compose.contains(&format!("\n  {volume}: {{}}")), "{volume} is declared");
    }
    // The city runs from its configuration file (wards, roles), which exists.
    assert!(compose.contains("\"city\", \"--config\", \"/etc/wardsync-config/city.toml\""));
    let city: toml::Value = toml::from_str(&std::fs::read_to_string(deploy("city.toml")).unwrap()).unwrap();
    assert!(city["wards"].as_array().is_some_and(|w| w.len() == 3) && city.get("roles").is_some());
    // The wards' local API stays on loopback inside their containers.
    assert!(!compose.contains("--api-beyond-loopback") && !compose.contains("0.0.0.0:7070"));
    // Keys are made in the volume by the containers' user, never copied in.
    assert!(compose.contains("\"certs\", \"--out\", \"/etc/wardsync\""));
    let ignored =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".dockerignore")).unwrap();
    for path in ["target/", "deploy/certs/", ".git/"] {
        assert!(ignored.lines().any(|l| l == path), ".dockerignore leaves out {path}");
    }
    // Grafana is provisioned with the data source and the dashboard it mounts.
    let dashboards = std::fs::read_to_string(deploy("grafana/provisioning/dashboards/wardsync.yml")).unwrap();
    assert!(dashboards.contains("path: /var/lib/grafana/dashboards"));
    assert!(compose.contains("./grafana/wardsync-dashboard.json:/var/lib/grafana/dashboards/"));
    let sources = std::fs::read_to_string(deploy("grafana/provisioning/datasources/prometheus.yml")).unwrap();
    assert!(sources.contains("url: http://prometheus:9090"));
    // Prometheus sends its alerts to the Alertmanager the file starts.
    let prometheus = std::fs::read_to_string(deploy("prometheus/prometheus.yml")).unwrap();
    assert!(prometheus.contains("alertmanager:9093") && compose.contains("\n  alertmanager:\n"));
    // The systemd units run as a user the sysusers.d file creates.
    let sysusers = std::fs::read_to_string(deploy("systemd/wardsync.sysusers")).unwrap();
    assert!(sysusers.lines().any(|l| l.starts_with("u wardsync ")));
    for unit in ["wardsync-city.service", "wardsync-ward.service"] {
        let text = std::fs::read_to_string(deploy(&format!("systemd/{unit}"))).unwrap();
        assert!(text.contains("User=wardsync") && text.contains("ExecReload="), "{unit}");
    }
}
