//! `islander ps [-a]`: the isles of a state root, one row each, after
//! reconciling the records with what still runs (`gc::reap_orphans`): an
//! isle whose processes are gone is exited, with the status its supervisor
//! recorded, or `exited(?)` when the supervisor itself was killed.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oci_spec::runtime::{LinuxResources, LinuxThrottleDevice, Spec};
use serde::Serialize;

use super::record::{ProcessId, Record, Status};
use super::{gc, lookup};
use crate::paths::StateRoot;

/// One isle as `ps` shows it. The field names are the JSON format's and
/// stay stable.
#[derive(Debug, Clone, Serialize)]
pub struct PsRow {
    pub id: String,
    pub name: Option<String>,
    /// Host pid of the isle's PID 1, while it runs.
    pub pid: Option<i32>,
    pub image: Option<String>,
    pub rootfs: PathBuf,
    pub command: Vec<String>,
    /// `creating`, `running` or `exited`.
    pub state: Status,
    /// `running`, `exited(CODE)`, `oom-killed`, `exited(?)`, `creating`.
    pub status: String,
    /// The shell's convention: the code, or 128 + the signal.
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    pub oom_killed: bool,
    pub detached: bool,
    /// RFC 3339, UTC.
    pub created: String,
    pub created_unix: u64,
    /// Seconds since PID 1 started, while it runs.
    pub uptime_seconds: Option<u64>,
    pub finished_unix: Option<u64>,
    pub limits: Limits,
    /// The limits in a few words, as the table shows them.
    pub limits_summary: String,
}

/// An isle's limits as its spec (`config.json`) has them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Limits {
    pub memory_bytes: Option<i64>,
    pub memory_swap_bytes: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpu_quota_us: Option<i64>,
    pub cpu_period_us: Option<u64>,
    /// quota / period: how many CPUs' worth of time per period.
    pub cpus: Option<f64>,
    pub read_bps: Vec<DeviceRate>,
    pub write_bps: Vec<DeviceRate>,
    pub read_iops: Vec<DeviceRate>,
    pub write_iops: Vec<DeviceRate>,
    pub pids_max: Option<i64>,
    pub net_cls_classid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceRate {
    /// `MAJOR:MINOR`.
    pub device: String,
    pub rate: u64,
}

impl Limits {
    pub fn from_resources(r: &LinuxResources) -> Limits {
        let mut l = Limits::default();
        if let Some(m) = r.memory() {
            l.memory_bytes = m.limit().filter(|&v| v > 0);
            l.memory_swap_bytes = m.swap().filter(|&v| v > 0);
        }
        if let Some(c) = r.cpu() {
            l.cpu_shares = c.shares();
            l.cpu_quota_us = c.quota().filter(|&q| q > 0);
            l.cpu_period_us = c.period();
            if let (Some(q), Some(p)) = (l.cpu_quota_us, l.cpu_period_us.filter(|&p| p > 0)) {
                l.cpus = Some(q as f64 / p as f64);
            }
        }
        if let Some(b) = r.block_io() {
            let rates = |list: &Option<Vec<LinuxThrottleDevice>>| {
                list.iter()
                    .flatten()
                    .map(|d| DeviceRate {
                        device: format!("{}:{}", d.major(), d.minor()),
                        rate: d.rate(),
                    })
                    .collect()
            };
            l.read_bps = rates(b.throttle_read_bps_device());
            l.write_bps = rates(b.throttle_write_bps_device());
            l.read_iops = rates(b.throttle_read_iops_device());
            l.write_iops = rates(b.throttle_write_iops_device());
        }
        l.pids_max = r.pids().as_ref().map(|p| p.limit()).filter(|&n| n > 0);
        l.net_cls_classid = r
            .network()
            .as_ref()
            .and_then(|n| n.class_id())
            .filter(|&c| c != 0);
        l
    }

    /// The limits in `spec`; none when it has no resources.
    pub fn of_spec(spec: &Spec) -> Limits {
        spec.linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .map(Limits::from_resources)
            .unwrap_or_default()
    }

    /// `mem 500M, cpu 10.00, shares 100, w 100M/s, r 500M/s`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.memory_bytes {
            parts.push(format!("mem {}", human_bytes(m as u64)));
        }
        if let Some(c) = self.cpus {
            parts.push(format!("cpu {c:.2}"));
        }
        if let Some(s) = self.cpu_shares {
            parts.push(format!("shares {s}"));
        }
        let rates = |tag: &str, unit: &str, list: &[DeviceRate], parts: &mut Vec<String>| {
            let human = |r: u64| {
                if unit == "/s" {
                    format!("{}/s", human_bytes(r))
                } else {
                    format!("{r}{unit}")
                }
            };
            match list {
                [] => {}
                [one] => parts.push(format!("{tag} {}", human(one.rate))),
                many => parts.extend(
                    many.iter()
                        .map(|d| format!("{tag} {}={}", d.device, human(d.rate))),
                ),
            }
        };
        rates("w", "/s", &self.write_bps, &mut parts);
        rates("r", "/s", &self.read_bps, &mut parts);
        rates("w", " io/s", &self.write_iops, &mut parts);
        rates("r", " io/s", &self.read_iops, &mut parts);
        if let Some(p) = self.pids_max {
            parts.push(format!("pids {p}"));
        }
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join(", ")
        }
    }
}

/// `500M`, `1G`, `1.5G`, `4096`: binary units, one decimal when inexact.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "T"),
        (1 << 30, "G"),
        (1 << 20, "M"),
        (1 << 10, "K"),
    ];
    for (size, unit) in UNITS {
        if n >= size {
            return if n.is_multiple_of(size) {
                format!("{}{unit}", n / size)
            } else {
                format!("{:.1}{unit}", n as f64 / size as f64)
            };
        }
    }
    n.to_string()
}

/// The isle's spec as `run` wrote it.
pub fn load_spec(run_dir: &Path) -> std::result::Result<Spec, String> {
    let path = run_dir.join("config.json");
    let bytes = fs::read(&path).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// The rows for `ps`: running isles (and the others, with `all`), oldest
/// first.
pub fn list(root: &StateRoot, all: bool) -> Vec<PsRow> {
    gc::reap_orphans(root);
    lookup::all(root)
        .into_iter()
        .filter(|r| all || r.status == Status::Running)
        .map(|r| row(root, &r))
        .collect()
}

pub fn row(root: &StateRoot, rec: &Record) -> PsRow {
    let limits = load_spec(&root.isle_run(&rec.id))
        .map(|s| Limits::of_spec(&s))
        .unwrap_or_default();
    let running = rec.status == Status::Running;
    let pid = rec.pid.filter(|p| running && p.is_alive());
    let exit = rec.exit.as_ref().and_then(|e| e.exit);
    PsRow {
        id: rec.id.clone(),
        name: rec.name.clone(),
        pid: pid.map(|p| p.pid),
        image: rec.image.clone(),
        rootfs: rec.rootfs.clone(),
        command: rec.command.clone(),
        state: rec.status.clone(),
        status: rec.status_text(),
        exit_code: exit.map(|e| e.status()),
        exit_signal: exit.and_then(|e| match e {
            crate::process::supervisor::Exit::Signal(s) => Some(s),
            crate::process::supervisor::Exit::Code(_) => None,
        }),
        oom_killed: rec.exit.as_ref().is_some_and(|e| e.oom_killed),
        detached: rec.detached,
        created: rfc3339(rec.created_unix),
        created_unix: rec.created_unix,
        uptime_seconds: pid
            .and_then(started_unix)
            .map(|t| (now_unix_f64() - t).max(0.0) as u64),
        finished_unix: rec
            .exit
            .as_ref()
            .map(|e| e.finished_unix)
            .filter(|&t| t > 0),
        limits_summary: limits.summary(),
        limits,
    }
}

pub fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

fn now_unix_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// When a process started, in seconds since the epoch: its start time in
/// clock ticks after boot, plus the boot time.
pub fn started_unix(p: ProcessId) -> Option<f64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let btime: f64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        return None;
    }
    Some(btime + p.start_time as f64 / ticks as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder,
        LinuxThrottleDeviceBuilder,
    };

    #[test]
    fn byte_sizes_read_well() {
        assert_eq!(human_bytes(500 << 20), "500M");
        assert_eq!(human_bytes(1 << 30), "1G");
        assert_eq!(human_bytes(3 << 29), "1.5G");
        assert_eq!(human_bytes(4096), "4K");
        assert_eq!(human_bytes(100), "100");
    }

    #[test]
    fn limits_summarise_the_spec() {
        let dev = |rate: u64| {
            LinuxThrottleDeviceBuilder::default()
                .major(254i64)
                .minor(0i64)
                .rate(rate)
                .build()
                .unwrap()
        };
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(500i64 << 20)
                    .swap(500i64 << 20)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(100u64)
                    .quota(10_000i64)
                    .period(100_000u64)
                    .build()
                    .unwrap(),
            )
            .block_io(
                LinuxBlockIoBuilder::default()
                    .throttle_read_bps_device(vec![dev(500 << 20)])
                    .throttle_write_bps_device(vec![dev(100 << 20)])
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let l = Limits::from_resources(&r);
        assert_eq!(l.cpus, Some(0.1));
        assert_eq!(
            l.summary(),
            "mem 500M, cpu 0.10, shares 100, w 100M/s, r 500M/s"
        );
        assert_eq!(Limits::default().summary(), "-");
    }

    #[test]
    fn our_start_is_in_the_past() {
        let t = started_unix(ProcessId::current()).unwrap();
        let now = now_unix_f64();
        assert!(t <= now + 1.0 && t > now - 86400.0 * 365.0, "{t} vs {now}");
    }
}
