use std::time::Duration;

use super::*;
use crate::ebpf::{BlockCounters, NetCounters};
use crate::metrics::snapshot::Limits;

fn isle(id_char: char, name: Option<&str>) -> IsleSnapshot {
    let id: String = std::iter::repeat_n(id_char, 64).collect();
    IsleSnapshot {
        short_id: id[..12].to_string(),
        id,
        name: name.map(str::to_string),
        image: None,
        pid: Some(42),
        created_unix: 0,
        limits: Limits {
            memory_bytes: Some(64 << 20),
            cpu_shares: Some(100),
            cpu_quota_us: 50_000,
            cpu_period_us: Some(100_000),
            read_bps: Vec::new(),
            write_bps: Vec::new(),
        },
        cpu_usage_ns: 0,
        cfs_periods: 0,
        cfs_throttled_periods: 0,
        cfs_throttled_ns: 0,
        memory_usage_bytes: 16 << 20,
        memory_max_usage_bytes: 16 << 20,
        oom_kills: 0,
        ebpf: None,
    }
}

fn counters(syscalls: &[(u32, u64)], write_bytes: u64, tx: u64) -> IsleCounters {
    IsleCounters {
        syscalls: syscalls.to_vec(),
        block: vec![BlockCounters { major: 254, minor: 0, write_bytes, ..Default::default() }],
        net: NetCounters { tx_bytes: tx, ..Default::default() },
        ..Default::default()
    }
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A record as state.json holds it; built from JSON so that fields added
/// to `Record` later (with serde defaults) do not break these tests.
fn record(snap: &IsleSnapshot) -> Record {
    serde_json::from_value(serde_json::json!({
        "id": snap.id,
        "status": "running",
        "created_unix": 0,
        "supervisor": {"pid": 1, "start_time": 0},
        "pid": null,
        "image": null,
        "name": snap.name,
        "rootfs": "/",
        "layers": "/",
    }))
    .expect("a minimal record deserializes")
}

#[test]
fn selects_by_name_full_id_and_unique_prefix() {
    let running = [isle('a', Some("web")), isle('b', None)];
    let records: Vec<Record> = running.iter().map(record).collect();
    let a = running[0].id.clone();
    let b = running[1].id.clone();
    let select = |w: &[String]| select_from(&records, &running, w).map_err(|e| e.to_string());
    assert_eq!(select(&[]).unwrap(), vec![a.clone(), b.clone()]);
    assert_eq!(select(&ids(&["web"])).unwrap(), vec![a.clone()]);
    assert_eq!(select(&ids(&["bbb"])).unwrap(), vec![b.clone()]);
    assert_eq!(select(&[b.clone(), "web".into(), "web".into()]).unwrap(), vec![b, a]);
}

#[test]
fn unknown_ambiguous_and_stopped_isles_are_refused() {
    let mut twin = isle('a', None);
    twin.id.replace_range(63.., "b");
    let stopped = isle('c', Some("old"));
    let running = [isle('a', Some("web")), twin];
    let mut records: Vec<Record> = running.iter().map(record).collect();
    records.push(record(&stopped));
    let select = |w: &[&str]| select_from(&records, &running, &ids(w)).map_err(|e| e.to_string());
    assert_eq!(select(&["nope"]), Err("no such isle 'nope'".to_string()));
    assert!(select(&[""]).is_err());
    let err = select(&["aaaa"]).unwrap_err();
    assert!(err.starts_with("isle prefix 'aaaa' is ambiguous"), "{err}");
    assert_eq!(select(&["old"]), Err(format!("isle {} is not running", &stopped.id[..12])));
    // The first bad query is the error, whatever follows.
    assert_eq!(select(&["nope", "web"]), Err("no such isle 'nope'".to_string()));
}

#[test]
fn first_sight_has_no_rates() {
    let cur = isle('a', None);
    let s = compute(None, &cur, 2.0, Some(3));
    assert_eq!(s.cpu_cpus, None);
    assert_eq!(s.cpu_percent, None);
    assert_eq!(s.cpu_limit_cpus, Some(0.5));
    assert_eq!(s.memory_percent, Some(25.0));
    assert_eq!(s.pids, Some(3));
    assert!(!s.ebpf);
    assert_eq!(s.top_syscalls, None);
}

#[test]
fn rates_come_from_the_difference_over_the_interval() {
    let mut before = isle('a', None);
    before.cpu_usage_ns = 1_000_000_000;
    before.ebpf = Some(counters(&[(39, 100), (0, 50), (1, 10)], 1 << 20, 0));
    let mut after = before.clone();
    after.cpu_usage_ns = 2_000_000_000; // one CPU-second in two seconds
    after.ebpf = Some(counters(&[(39, 2100), (0, 250), (1, 10), (3, 7)], 5 << 20, 4096));
    let s = compute(Some((Duration::from_secs(2), &before)), &after, 2.0, None);
    assert_eq!(s.cpu_cpus, Some(0.5));
    assert_eq!(s.cpu_percent, Some(100.0), "0.5 CPU of a 0.5 CPU quota");
    assert_eq!(s.block_write_bytes_per_second, Some((2 << 20) as f64));
    assert_eq!(s.block_read_bytes_per_second, Some(0.0));
    assert_eq!(s.network_transmit_bytes_per_second, Some(2048.0));
    assert_eq!(s.syscalls_per_second, Some((2000 + 200 + 7) as f64 / 2.0));
    let top = s.top_syscalls.unwrap();
    let names: Vec<&str> = top.iter().map(|t| t.syscall.as_str()).collect();
    assert_eq!(names.len(), 3);
    assert_eq!(top[0].per_second, 1000.0);
    assert_eq!(top[1].per_second, 100.0);
    assert_eq!(top[2].per_second, 3.5, "write made no calls, so close (3) is third");
    assert!(s.ebpf);
}

#[test]
fn without_a_quota_cpu_is_against_the_host() {
    let mut before = isle('a', None);
    before.limits.cpu_quota_us = -1;
    before.limits.memory_bytes = None;
    let mut after = before.clone();
    after.cpu_usage_ns = 1_000_000_000;
    let s = compute(Some((Duration::from_secs(1), &before)), &after, 4.0, None);
    assert_eq!(s.cpu_limit_cpus, None);
    assert_eq!(s.cpu_percent, Some(25.0));
    assert_eq!(s.memory_limit_bytes, None);
    assert_eq!(s.memory_percent, None);
}

#[test]
fn a_counter_that_went_back_gives_no_rate() {
    let mut before = isle('a', None);
    before.ebpf = Some(counters(&[(39, 100)], 10, 10));
    let mut after = before.clone();
    after.ebpf = Some(counters(&[(39, 5)], 1, 1));
    let s = compute(Some((Duration::from_secs(1), &before)), &after, 1.0, None);
    assert_eq!(s.block_write_bytes_per_second, None);
    assert_eq!(s.network_transmit_bytes_per_second, None);
    assert_eq!(s.top_syscalls, Some(Vec::new()));
}

#[test]
fn json_field_names_are_the_documented_ones() {
    let s = compute(None, &isle('a', Some("web")), 1.0, Some(1));
    let value = serde_json::to_value(&s).unwrap();
    let mut keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let doc = include_str!("../../../docs/stats.md");
    for key in &keys {
        assert!(doc.contains(&format!("`{key}`")), "docs/stats.md does not describe the field {key}");
    }
}
