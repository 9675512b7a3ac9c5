//! The Grafana files, checked without Grafana: the dashboards parse, use
//! the provisioned datasource, refer only to islander's documented
//! families, and draw what issue 2 asks for. (metrics_prometheus.rs runs
//! every expression against a real Prometheus.)

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use islander_tests::metrics::{
    dashboard_files, dashboard_queries, families_in, load_dashboard, substitute, FAMILIES,
};

const DATASOURCE_UID: &str = "islander-prometheus";

fn grafana_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../grafana")
}

fn dashboard(uid: &str) -> serde_json::Value {
    dashboard_files()
        .iter()
        .map(|p| load_dashboard(p))
        .find(|d| d["uid"] == uid)
        .unwrap_or_else(|| panic!("no dashboard with uid {uid} in grafana/dashboards"))
}

/// Every panel, rows' children included.
fn panels(dashboard: &serde_json::Value) -> Vec<serde_json::Value> {
    fn walk(list: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p.clone());
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn all_exprs(dashboard: &serde_json::Value) -> Vec<String> {
    dashboard_queries(dashboard)
        .into_iter()
        .map(|q| q.expr)
        .collect()
}

#[test]
fn both_dashboards_exist_and_parse() {
    let uids: BTreeSet<String> = dashboard_files()
        .iter()
        .map(|p| {
            load_dashboard(p)["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    for want in ["islander-overview", "islander-isle"] {
        assert!(uids.contains(want), "dashboards found: {uids:?}");
    }
}

#[test]
fn every_panel_uses_the_provisioned_datasource() {
    for file in dashboard_files() {
        let dash = load_dashboard(&file);
        let mut ids = BTreeSet::new();
        for panel in panels(&dash) {
            let title = panel["title"].as_str().unwrap_or("?").to_string();
            assert!(
                ids.insert(panel["id"].as_u64().expect("panel id")),
                "{}: panel id of '{title}' is used twice",
                file.display()
            );
            if panel["type"] == "row" {
                continue;
            }
            assert_eq!(
                panel["datasource"]["uid"],
                DATASOURCE_UID,
                "{}: '{title}'",
                file.display()
            );
            let targets = panel["targets"].as_array().expect("targets");
            assert!(
                !targets.is_empty(),
                "{}: '{title}' has no query",
                file.display()
            );
            for t in targets {
                assert_eq!(
                    t["datasource"]["uid"],
                    DATASOURCE_UID,
                    "{}: '{title}'",
                    file.display()
                );
                assert!(
                    t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                    "{}: '{title}' has a target without expr",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn queries_use_only_islander_families_and_known_variables() {
    for file in dashboard_files() {
        for q in dashboard_queries(&load_dashboard(&file)) {
            let families = families_in(&q.expr);
            assert!(
                !families.is_empty(),
                "{} {}: no islander family in {}",
                file.display(),
                q.origin,
                q.expr
            );
            for f in families {
                assert!(
                    FAMILIES.contains(&f.as_str()),
                    "{} {}: '{f}' is not one of issue 2's families: {}",
                    file.display(),
                    q.origin,
                    q.expr
                );
            }
            let concrete = substitute(&q.expr, "0123456789ab");
            assert!(
                !concrete.contains('$'),
                "{} {}: a variable the tests do not know is left in {concrete}",
                file.display(),
                q.origin
            );
        }
    }
}

#[test]
fn the_overview_covers_every_area() {
    let exprs = all_exprs(&dashboard("islander-overview")).join("\n");
    for family in [
        "islander_isle_cpu_usage_seconds_total",
        "islander_isle_memory_usage_bytes",
        "islander_isle_block_write_bytes_total",
        "islander_isle_block_read_bytes_total",
        "islander_isle_network_receive_bytes_total",
        "islander_isle_network_transmit_bytes_total",
        "islander_isle_syscalls_total",
        "islander_isles",
        "islander_ebpf_program_run_seconds_total",
        "islander_ebpf_program_runs_total",
    ] {
        assert!(exprs.contains(family), "the overview never shows {family}");
    }
}

#[test]
fn the_isle_dashboard_draws_each_limit_against_its_use() {
    let dash = dashboard("islander-isle");
    let vars = dash["templating"]["list"]
        .as_array()
        .expect("templating list");
    let isle = vars
        .iter()
        .find(|v| v["name"] == "isle")
        .expect("a variable named isle");
    assert_eq!(isle["type"], "query");
    let query = isle["query"]["query"]
        .as_str()
        .or(isle["query"].as_str())
        .unwrap_or_default();
    assert!(
        query.starts_with("label_values(") && query.trim_end_matches(')').ends_with(", isle"),
        "the isle variable ranges over label isle: {query}"
    );

    // Each panel that draws a limit draws the use next to it.
    let pairs = [
        (
            "islander_isle_cpu_quota_seconds",
            "islander_isle_cpu_usage_seconds_total",
        ),
        (
            "islander_isle_device_write_limit_bytes_per_second",
            "islander_isle_block_write_bytes_total",
        ),
        (
            "islander_isle_device_read_limit_bytes_per_second",
            "islander_isle_block_read_bytes_total",
        ),
        (
            "islander_isle_memory_limit_bytes",
            "islander_isle_memory_usage_bytes",
        ),
    ];
    let graphs: Vec<serde_json::Value> = panels(&dash)
        .into_iter()
        .filter(|p| p["type"] == "timeseries")
        .collect();
    for (limit, used) in pairs {
        let found = graphs.iter().any(|p| {
            let exprs: Vec<&str> = p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["expr"].as_str())
                .collect();
            exprs.iter().any(|e| e.contains(limit)) && exprs.iter().any(|e| e.contains(used))
        });
        assert!(found, "no graph draws {limit} against {used}");
    }

    let exprs = all_exprs(&dash);
    let joined = exprs.join("\n");
    assert!(
        exprs
            .iter()
            .any(|e| e.contains("topk(") && e.contains("islander_isle_syscalls_total")),
        "no top-syscalls query"
    );
    for family in [
        "islander_isle_oom_kills_total",
        "islander_isle_network_transmit_bytes_total",
        "islander_isle_block_writes_total",
    ] {
        assert!(
            joined.contains(family),
            "the isle dashboard never shows {family}"
        );
    }
    // Every per-isle query is narrowed to the chosen isle.
    for q in dashboard_queries(&dash)
        .into_iter()
        .filter(|q| q.origin.starts_with("panel"))
    {
        assert!(
            q.expr.contains("isle=\"$isle\""),
            "{} is not narrowed to $isle: {}",
            q.origin,
            q.expr
        );
    }
}

#[test]
fn provisioning_points_at_the_dashboards_and_the_datasource_uid() {
    let dir = grafana_dir().join("provisioning");
    let ds = fs::read_to_string(dir.join("datasources/prometheus.yaml")).expect("datasource yaml");
    assert!(ds.contains(&format!("uid: {DATASOURCE_UID}")), "{ds}");
    assert!(ds.contains("type: prometheus"), "{ds}");
    let boards = fs::read_to_string(dir.join("dashboards/islander.yaml")).expect("dashboards yaml");
    assert!(boards.contains("type: file"), "{boards}");
    assert!(boards.contains("/dashboards"), "{boards}");
}
