//! Which limits a run can verify and the loads that push them, sized from
//! the limits themselves, so every load runs about [`LOAD_SECONDS`] and a
//! whole run stays well under half a minute.

use crate::limits::{self, LimitArgs, LimitError};

/// How long each timed load runs. Long against the block throttle's
/// 100 ms slice (whose first slice lets a burst through) and the CFS
/// period, short enough for five loads to take about 15 s.
pub const LOAD_SECONDS: u64 = 3;

/// Where the workload and its files live inside the isle: the extra lower
/// layer's one directory, so nothing of the image is shadowed.
pub const IN_ISLE_DIR: &str = "/.islander-verify";
pub const WORKLOAD_NAME: &str = "islander-workload";
pub const READ_FILE_NAME: &str = "read.dat";
/// The file the direct reader reads, made on the host before the isle
/// starts: made inside, it would be written through the very throttle the
/// run verifies, and take as long.
pub const READ_FILE_BYTES: u64 = 64 * MIB;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
const PAGE: u64 = 4096;
/// The memory load climbs in this many steps, one every MEMORY_STEP_MS.
const MEMORY_STEPS: u64 = 40;
const MEMORY_STEP_MS: u64 = 40;
/// The share of the host's available memory the memory load may take at
/// most, whatever the limit: verify must never push the host itself into
/// its OOM killer.
const HOST_MEMORY_SHARE: f64 = 0.8;

/// The loads, in the order they run. Memory comes before the IO loads,
/// whose page cache would otherwise count into its peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadKind {
    Cpu,
    Memory,
    WriteDirect,
    ReadDirect,
    WriteBuffered,
}

impl LoadKind {
    /// The name shown while it runs and in the plot.
    pub fn label(self) -> &'static str {
        match self {
            LoadKind::Cpu => "cpu",
            LoadKind::Memory => "memory",
            LoadKind::WriteDirect => "direct write",
            LoadKind::ReadDirect => "direct read",
            LoadKind::WriteBuffered => "buffered write",
        }
    }
}

/// One load: the workload's arguments and what it aims at.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    pub kind: LoadKind,
    pub args: Vec<String>,
    /// Seconds it should take, for the progress bar.
    pub expected_seconds: f64,
    /// The memory load's final size in bytes (0 for the others).
    pub target_bytes: u64,
}

/// A rate limit on a device no load touches (`DEVICE:RATE` for a disk
/// other than the isle's): reported, not measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Elsewhere {
    pub option: &'static str,
    pub device: (u64, u64),
    pub rate: u64,
}

/// The limits in force, as `islander run` sets them, and the loads.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The isle's disk (where its layer is): the IO loads' device.
    pub device: (u64, u64),
    /// CPUs the host has: the CPU load runs a thread on each.
    pub cores: usize,
    /// (quota, period) in microseconds, when there is a quota.
    pub cpu: Option<(i64, u64)>,
    pub memory: Option<u64>,
    pub write_bps: Option<u64>,
    pub read_bps: Option<u64>,
    pub elsewhere: Vec<Elsewhere>,
    pub loads: Vec<Load>,
    pub notes: Vec<String>,
}

impl Plan {
    /// Checks the limit options exactly as `run` does and plans the loads.
    /// `mem_available` is the host's MemAvailable in bytes, if known.
    pub fn new(
        args: &LimitArgs,
        device: (u64, u64),
        cores: usize,
        mem_available: Option<u64>,
    ) -> Result<Plan, LimitError> {
        let resources = limits::resources(args, device)?;
        let cores = cores.max(1);
        let mut plan = Plan {
            device,
            cores,
            cpu: None,
            memory: resources
                .memory()
                .as_ref()
                .and_then(|m| m.limit())
                .and_then(|l| u64::try_from(l).ok()),
            write_bps: None,
            read_bps: None,
            elsewhere: Vec::new(),
            loads: Vec::new(),
            notes: Vec::new(),
        };
        if let Some(cpu) = resources.cpu() {
            match (cpu.quota(), cpu.period()) {
                (Some(q), Some(p)) if q > 0 && p > 0 => plan.cpu = Some((q, p)),
                _ => plan
                    .notes
                    .push("no CPU quota (--cpu-quota -1): no CPU limit to verify".into()),
            }
        }
        if let Some(bio) = resources.block_io() {
            let lists = [
                ("device-read-bps", bio.throttle_read_bps_device(), &mut plan.read_bps),
                ("device-write-bps", bio.throttle_write_bps_device(), &mut plan.write_bps),
            ];
            for (option, list, on_disk) in lists {
                for d in list.iter().flatten() {
                    let dev = (d.major() as u64, d.minor() as u64);
                    if dev == device {
                        *on_disk = Some(d.rate());
                    } else {
                        plan.elsewhere.push(Elsewhere {
                            option,
                            device: dev,
                            rate: d.rate(),
                        });
                    }
                }
            }
        }
        plan.loads = plan.plan_loads(mem_available);
        Ok(plan)
    }

    fn plan_loads(&self, mem_available: Option<u64>) -> Vec<Load> {
        let workload = format!("{IN_ISLE_DIR}/{WORKLOAD_NAME}");
        let file = |name: &str| format!("{IN_ISLE_DIR}/{name}");
        let load = |kind, args: Vec<String>, expected_seconds, target_bytes| {
            let mut all = vec![workload.clone()];
            all.extend(args);
            Load {
                kind,
                args: all,
                expected_seconds,
                target_bytes,
            }
        };
        let secs = LOAD_SECONDS.to_string();
        let mut loads = Vec::new();
        if self.cpu.is_some() {
            loads.push(load(
                LoadKind::Cpu,
                vec!["cpu".into(), self.cores.to_string(), secs.clone()],
                LOAD_SECONDS as f64,
                0,
            ));
        }
        if let Some(limit) = self.memory {
            let target = memory_target(limit, mem_available);
            let step = round_up((target / MEMORY_STEPS).max(MIB), PAGE);
            let expected = (MEMORY_STEPS * MEMORY_STEP_MS) as f64 / 1000.0;
            let args = vec![
                "memory".into(),
                target.to_string(),
                step.to_string(),
                MEMORY_STEP_MS.to_string(),
            ];
            loads.push(load(LoadKind::Memory, args, expected, target));
        }
        if let Some(rate) = self.write_bps {
            let args = vec![
                "write-direct".into(),
                file("write.dat"),
                secs.clone(),
                io_cap(rate, GIB).to_string(),
                block_for(rate).to_string(),
            ];
            loads.push(load(LoadKind::WriteDirect, args, LOAD_SECONDS as f64, 0));
        }
        if let Some(rate) = self.read_bps {
            let args = vec![
                "read-direct".into(),
                file(READ_FILE_NAME),
                secs.clone(),
                io_cap(rate, 8 * GIB).to_string(),
                block_for(rate).to_string(),
            ];
            loads.push(load(LoadKind::ReadDirect, args, LOAD_SECONDS as f64, 0));
        }
        if let Some(rate) = self.write_bps {
            // fsync after every `sync_every` bytes: the page cache the load
            // holds stays small against the memory limit (memory reclaim
            // would hand dirty pages to the kernel's flusher, whose writes
            // are not the isle's), and the throttled writeback spreads over
            // the whole window instead of one fsync at the end.
            let room = self.memory.map_or(64 * MIB, |m| (m / 8).max(PAGE));
            let sync_every = round_down((rate / 4).clamp(256 * 1024, 64 * MIB).min(room), PAGE).max(PAGE);
            let block = sync_every.min(MIB);
            let sync_every = round_down(sync_every, block);
            let args = vec![
                "write-buffered".into(),
                file("buffered.dat"),
                secs,
                io_cap(rate, GIB).to_string(),
                block.to_string(),
                sync_every.to_string(),
            ];
            loads.push(load(LoadKind::WriteBuffered, args, LOAD_SECONDS as f64, 0));
        }
        loads
    }

    /// The CPU limit in CPUs.
    pub fn cpu_cpus(&self) -> Option<f64> {
        self.cpu.map(|(q, p)| q as f64 / p as f64)
    }
}

/// How far the memory load climbs: a quarter past the limit (at least
/// 16 MiB past), so an enforced limit is certainly hit; never more than
/// the host can spare.
pub fn memory_target(limit: u64, mem_available: Option<u64>) -> u64 {
    let past = limit.saturating_add((limit / 4).max(16 * MIB));
    let cap = mem_available.map_or(u64::MAX, |a| (a as f64 * HOST_MEMORY_SHARE) as u64);
    round_down(past.min(cap), PAGE).max(PAGE)
}

/// The most an IO load moves: four times what the limit allows in its
/// time, so that a limit not in force shows clearly, bounded by `max` (of
/// disk space, for writes) and at least 16 MiB.
fn io_cap(rate: u64, max: u64) -> u64 {
    rate.saturating_mul(LOAD_SECONDS * 4).clamp(16 * MIB, max)
}

/// One IO's size: a sixteenth of a second's worth of the limit (so the
/// window holds dozens of them), between a page and 1 MiB.
pub fn block_for(rate: u64) -> u64 {
    round_down((rate / 16).clamp(PAGE, MIB), PAGE)
}

fn round_down(v: u64, to: u64) -> u64 {
    v - v % to
}

fn round_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to) * to
}
