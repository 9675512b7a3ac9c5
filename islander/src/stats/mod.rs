//! `islander stats`: what each running isle uses, as rates between two
//! [`snapshot::collect`] calls.
//!
//! The snapshots hold counters (CPU nanoseconds, bytes, syscalls since the
//! isle started); a [`Sampler`] keeps the previous one per isle and turns
//! the difference into per-second figures, against the isle's limits. The
//! command line only formats what comes out of here, so the table and the
//! JSON (whose field names docs/stats.md lists) cannot disagree.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cgroups::Cgroups;
use crate::ebpf::{self, IsleCounters, Observer};
use crate::isle::record::Record;
use crate::isle::{lookup, short_id, IsleError};
use crate::metrics::snapshot::{self, IsleSnapshot};
use crate::paths::StateRoot;

/// How many syscalls `top_syscalls` lists.
pub const TOP_SYSCALLS: usize = 3;

/// One syscall's rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyscallRate {
    pub syscall: String,
    pub per_second: f64,
}

/// One isle's figures over the last interval. Rates are `None` for an isle
/// seen for the first time (nothing to compare with yet), and the eBPF ones
/// also when no observer counts the isle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IsleStats {
    pub id: String,
    pub short_id: String,
    pub name: Option<String>,
    pub image: Option<String>,
    pub pid: Option<i32>,
    /// CPUs in use on average over the interval (1.0 = one CPU busy).
    pub cpu_cpus: Option<f64>,
    /// The CFS quota as CPUs (quota / period); `None` without a quota.
    pub cpu_limit_cpus: Option<f64>,
    /// `cpu_cpus` as a percentage of the quota, or of the host's CPUs when
    /// there is no quota: 100 means the isle uses all it may.
    pub cpu_percent: Option<f64>,
    pub memory_usage_bytes: u64,
    pub memory_limit_bytes: Option<u64>,
    pub memory_percent: Option<f64>,
    pub pids: Option<u64>,
    pub oom_kills: u64,
    /// Whether the eBPF figures below are known for this isle.
    pub ebpf: bool,
    pub block_read_bytes_per_second: Option<f64>,
    pub block_write_bytes_per_second: Option<f64>,
    pub network_receive_bytes_per_second: Option<f64>,
    pub network_transmit_bytes_per_second: Option<f64>,
    pub syscalls_per_second: Option<f64>,
    /// The busiest syscalls, at most [`TOP_SYSCALLS`], busiest first.
    pub top_syscalls: Option<Vec<SyscallRate>>,
}

/// The running isles `wanted` names, as ids, in the order given (each
/// once); an empty `wanted` selects every running isle. Queries resolve as
/// for every other command ([`lookup::resolve`]: a full id, a name, or an
/// id prefix only one isle has), over all isles of the root, so that an
/// isle that exists but does not run is told apart from a typo.
pub fn select(root: &StateRoot, running: &[IsleSnapshot], wanted: &[String]) -> Result<Vec<String>, IsleError> {
    select_from(&lookup::all(root), running, wanted)
}

fn select_from(records: &[Record], running: &[IsleSnapshot], wanted: &[String]) -> Result<Vec<String>, IsleError> {
    if wanted.is_empty() {
        return Ok(running.iter().map(|s| s.id.clone()).collect());
    }
    let mut out: Vec<String> = Vec::new();
    for query in wanted {
        let record = lookup::resolve(records, query)?;
        if !running.iter().any(|s| s.id == record.id) {
            return Err(IsleError::NotRunning(short_id(&record.id).to_string()));
        }
        if !out.contains(&record.id) {
            out.push(record.id.clone());
        }
    }
    Ok(out)
}

/// Takes snapshots of a state root and remembers the last one per isle.
pub struct Sampler {
    root: StateRoot,
    observer: Option<Observer>,
    host_cpus: f64,
    last: HashMap<String, (Instant, IsleSnapshot)>,
}

impl Sampler {
    /// Without an observer only the cgroup figures are known.
    pub fn new(root: StateRoot, observer: Option<Observer>) -> Sampler {
        let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        Sampler { root, observer, host_cpus, last: HashMap::new() }
    }

    /// The running isles now, without computing anything.
    pub fn snapshot(&self) -> Vec<IsleSnapshot> {
        snapshot::collect(&self.root, self.observer.as_ref())
    }

    /// Samples every running isle (or only those in `only`, when given) and
    /// returns their figures since the previous sample, sorted by name and
    /// then id. Isles that ended are forgotten.
    pub fn sample(&mut self, only: Option<&[String]>) -> Vec<IsleStats> {
        let now = Instant::now();
        let current: Vec<IsleSnapshot> =
            self.snapshot().into_iter().filter(|s| only.is_none_or(|ids| ids.contains(&s.id))).collect();
        let mut out: Vec<IsleStats> = current
            .iter()
            .map(|cur| {
                let prev = self.last.get(&cur.id).map(|(at, snap)| (now.duration_since(*at), snap));
                let pids = read_pids(&cur.id);
                compute(prev, cur, self.host_cpus, pids)
            })
            .collect();
        self.last = current.into_iter().map(|s| (s.id.clone(), (now, s))).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        out
    }
}

fn read_pids(id: &str) -> Option<u64> {
    Cgroups::open(id).read("pids", "pids.current").ok()?.trim().parse().ok()
}

/// The figures of `cur`, with rates against `prev` (taken `elapsed` before)
/// when there is one.
pub fn compute(
    prev: Option<(Duration, &IsleSnapshot)>,
    cur: &IsleSnapshot,
    host_cpus: f64,
    pids: Option<u64>,
) -> IsleStats {
    // A sample taken within a millisecond of the last cannot give a rate
    // worth showing; treat it as the first.
    let prev = prev.filter(|(elapsed, _)| *elapsed >= Duration::from_millis(1));
    let secs = prev.map(|(elapsed, _)| elapsed.as_secs_f64());
    // Counters only grow while an isle lives; a drop means the counts were
    // reset (an observer reloaded), and the honest rate then is unknown.
    let rate = |before: u64, after: u64| -> Option<f64> {
        let secs = secs?;
        (after >= before).then(|| (after - before) as f64 / secs)
    };

    let cpu_cpus = prev.and_then(|(_, p)| rate(p.cpu_usage_ns, cur.cpu_usage_ns)).map(|ns| ns / 1e9);
    let limits = &cur.limits;
    let cpu_limit_cpus = match (limits.cpu_quota_us, limits.cpu_period_us) {
        (quota, Some(period)) if quota > 0 && period > 0 => Some(quota as f64 / period as f64),
        _ => None,
    };
    let cpu_percent = cpu_cpus.map(|used| 100.0 * used / cpu_limit_cpus.unwrap_or(host_cpus));
    let memory_percent =
        limits.memory_bytes.filter(|&l| l > 0).map(|l| 100.0 * cur.memory_usage_bytes as f64 / l as f64);

    let ebpf = |f: &dyn Fn(&IsleCounters) -> u64| -> Option<f64> {
        let (_, p) = prev?;
        rate(f(p.ebpf.as_ref()?), f(cur.ebpf.as_ref()?))
    };
    let block_read = ebpf(&|c| c.block.iter().map(|b| b.read_bytes).sum());
    let block_write = ebpf(&|c| c.block.iter().map(|b| b.write_bytes).sum());
    let net_rx = ebpf(&|c| c.net.rx_bytes);
    let net_tx = ebpf(&|c| c.net.tx_bytes);
    let syscalls_total = ebpf(&|c| c.syscalls.iter().map(|(_, n)| n).sum());
    let top_syscalls = match (prev, cur.ebpf.as_ref()) {
        (Some((_, p)), Some(now)) => p.ebpf.as_ref().map(|before| top(before, now, secs.unwrap_or(1.0))),
        _ => None,
    };

    IsleStats {
        id: cur.id.clone(),
        short_id: cur.short_id.clone(),
        name: cur.name.clone(),
        image: cur.image.clone(),
        pid: cur.pid,
        cpu_cpus,
        cpu_limit_cpus,
        cpu_percent,
        memory_usage_bytes: cur.memory_usage_bytes,
        memory_limit_bytes: limits.memory_bytes,
        memory_percent,
        pids,
        oom_kills: cur.oom_kills,
        ebpf: cur.ebpf.is_some(),
        block_read_bytes_per_second: block_read,
        block_write_bytes_per_second: block_write,
        network_receive_bytes_per_second: net_rx,
        network_transmit_bytes_per_second: net_tx,
        syscalls_per_second: syscalls_total,
        top_syscalls,
    }
}

/// The busiest syscalls between two counts, busiest first; ties go to the
/// lower number so the order is stable from one refresh to the next.
fn top(before: &IsleCounters, now: &IsleCounters, secs: f64) -> Vec<SyscallRate> {
    let earlier: HashMap<u32, u64> = before.syscalls.iter().copied().collect();
    let mut rates: Vec<(u32, u64)> = now
        .syscalls
        .iter()
        .map(|&(nr, n)| (nr, n.saturating_sub(earlier.get(&nr).copied().unwrap_or(0))))
        .filter(|&(_, delta)| delta > 0)
        .collect();
    rates.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    rates
        .into_iter()
        .take(TOP_SYSCALLS)
        .map(|(nr, delta)| SyscallRate {
            syscall: ebpf::syscall_name(nr).map_or_else(|| format!("unknown_{nr}"), str::to_string),
            per_second: delta as f64 / secs,
        })
        .collect()
}

#[cfg(test)]
mod tests;
