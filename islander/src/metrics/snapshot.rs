//! The figures of every running isle of a state root, read once per call.
//!
//! A scrape has to stay cheap with many isles, so each source is read once:
//! mountinfo once for all isles (not once per [`Cgroups::open`]), each cgroup
//! file once, from each `config.json` only `linux.resources`, and each block
//! device's name once per call. A reader that calls again and again (the
//! metrics server, `islander stats`) keeps a [`LimitsCache`], so that each
//! isle's spec is parsed only once in its life: it never changes while the
//! isle runs.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci_spec::runtime::{LinuxResources, LinuxThrottleDevice};
use serde::{Deserialize, Serialize};

use crate::cgroups::{CgroupFs, Cgroups, HostFs};
use crate::ebpf::{self, IsleCounters, Observer};
use crate::isle::record::{Record, Status};
use crate::isle::short_id;
use crate::paths::StateRoot;

/// The configured limits of an isle, from `linux.resources` of its spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// `memory.limit`; `None` when unlimited.
    pub memory_bytes: Option<u64>,
    pub cpu_shares: Option<u64>,
    /// CFS quota per period in microseconds; -1 for no quota.
    pub cpu_quota_us: i64,
    pub cpu_period_us: Option<u64>,
    /// Per device (its name, as [`ebpf::device_name`] gives it): bytes/s.
    pub read_bps: Vec<(String, u64)>,
    pub write_bps: Vec<(String, u64)>,
}

impl Limits {
    /// No limit at all.
    pub fn none() -> Limits {
        Limits {
            cpu_quota_us: -1,
            ..Limits::default()
        }
    }
}

/// One running isle as seen at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct IsleSnapshot {
    pub id: String,
    pub short_id: String,
    pub name: Option<String>,
    pub image: Option<String>,
    /// The isle's PID 1 on the host.
    pub pid: Option<i32>,
    pub created_unix: u64,
    pub limits: Limits,
    /// `cpuacct.usage`.
    pub cpu_usage_ns: u64,
    /// `cpu.stat`: `nr_periods`, `nr_throttled`, `throttled_time`.
    pub cfs_periods: u64,
    pub cfs_throttled_periods: u64,
    pub cfs_throttled_ns: u64,
    /// `memory.usage_in_bytes`, `memory.max_usage_in_bytes`.
    pub memory_usage_bytes: u64,
    pub memory_max_usage_bytes: u64,
    /// The larger of `memory.oom_control`'s `oom_kill` and the eBPF count:
    /// either may miss kills the other saw (the eBPF one counts from load).
    pub oom_kills: u64,
    /// The eBPF counters, when an observer was given and knows the isle.
    pub ebpf: Option<IsleCounters>,
}

/// Every running isle of `root`, sorted by id: records whose status is
/// running and whose supervising islander is alive, with cgroups that still
/// exist. Unreadable figures read as 0; nothing here fails the whole call.
pub fn collect(root: &StateRoot, observer: Option<&Observer>) -> Vec<IsleSnapshot> {
    collect_with(root, observer, ScrapeFs::host(), None)
}

/// [`collect`] for repeated calls: limits come from `cache` once read.
pub fn collect_cached(
    root: &StateRoot,
    observer: Option<&Observer>,
    cache: &LimitsCache,
) -> Vec<IsleSnapshot> {
    collect_with(root, observer, ScrapeFs::host(), Some(cache))
}

/// The limits of the isles seen by the last call, by isle id.
#[derive(Debug, Default)]
pub struct LimitsCache(Mutex<HashMap<String, Limits>>);

/// [`collect`] on a given view of the cgroup tree (tests pass a fake one).
pub(crate) fn collect_with(
    root: &StateRoot,
    observer: Option<&Observer>,
    fs: Arc<ScrapeFs>,
    cache: Option<&LimitsCache>,
) -> Vec<IsleSnapshot> {
    let Ok(entries) = fs::read_dir(root.isles_run_dir()) else {
        return Vec::new();
    };
    let mut devices = DeviceNames::default();
    let mut cached = cache.map(|c| c.0.lock().unwrap_or_else(|p| p.into_inner()));
    let mut out: Vec<IsleSnapshot> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| Record::load(&e.path()).map(|r| (e.path(), r)))
        .filter(|(_, r)| r.status == Status::Running && r.supervisor.is_alive())
        .filter_map(|(dir, record)| {
            let limits = match cached.as_mut().and_then(|c| c.get(&record.id)) {
                Some(known) => known.clone(),
                None => {
                    let read = read_limits(&dir.join("config.json"), &mut devices);
                    if let (Some(c), Some(l)) = (cached.as_mut(), &read) {
                        c.insert(record.id.clone(), l.clone());
                    }
                    read.unwrap_or_else(Limits::none)
                }
            };
            snapshot(record, limits, observer, &fs)
        })
        .collect();
    // Forget the isles that ended.
    if let Some(c) = cached.as_mut() {
        c.retain(|id, _| out.iter().any(|s| &s.id == id));
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

fn snapshot(
    record: Record,
    limits: Limits,
    observer: Option<&Observer>,
    fs: &Arc<ScrapeFs>,
) -> Option<IsleSnapshot> {
    let cgroups = Cgroups::open_with(fs.clone(), &record.id);
    // The cgroup goes when the isle ends, a moment before its record does:
    // an isle without one is no longer running.
    let cpu_usage_ns = match cgroups.read("cpuacct", "cpuacct.usage") {
        Ok(text) => text.trim().parse().unwrap_or(0),
        Err(_) => return None,
    };
    let cpu_stat = read_keyed(&cgroups, "cpu", "cpu.stat");
    let memory_usage_bytes = read_number(&cgroups, "memory", "memory.usage_in_bytes");
    let memory_max_usage_bytes = read_number(&cgroups, "memory", "memory.max_usage_in_bytes");
    let cgroup_oom_kills = read_keyed(&cgroups, "memory", "memory.oom_control")
        .get("oom_kill")
        .copied()
        .unwrap_or(0);
    let ebpf = observer.and_then(|o| {
        let id = cgroups.unified_id().ok()?;
        o.isle(id)
            .map_err(|e| tracing::debug!(isle = %record.id, "reading eBPF counters: {e}"))
            .ok()
    });
    let oom_kills = cgroup_oom_kills.max(ebpf.as_ref().map_or(0, |c| c.oom_kills));
    Some(IsleSnapshot {
        short_id: short_id(&record.id).to_string(),
        id: record.id,
        name: record.name,
        image: record.image,
        pid: record.pid.map(|p| p.pid),
        created_unix: record.created_unix,
        limits,
        cpu_usage_ns,
        cfs_periods: cpu_stat.get("nr_periods").copied().unwrap_or(0),
        cfs_throttled_periods: cpu_stat.get("nr_throttled").copied().unwrap_or(0),
        cfs_throttled_ns: cpu_stat.get("throttled_time").copied().unwrap_or(0),
        memory_usage_bytes,
        memory_max_usage_bytes,
        oom_kills,
        ebpf,
    })
}

fn read_number(cgroups: &Cgroups, controller: &str, file: &str) -> u64 {
    cgroups
        .read(controller, file)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// A flat-keyed cgroup file (`key value` per line) as a map.
fn read_keyed(cgroups: &Cgroups, controller: &str, file: &str) -> HashMap<String, u64> {
    let Ok(text) = cgroups.read(controller, file) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|l| {
            let (key, value) = l.split_once(' ')?;
            Some((key.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Only the part of `config.json` the limits live in: serde skips the rest
/// without building it.
#[derive(Deserialize)]
struct ConfigResources {
    linux: Option<LinuxPart>,
}

#[derive(Deserialize)]
struct LinuxPart {
    resources: Option<LinuxResources>,
}

/// `None` when the spec cannot be read; a spec without resources sets no
/// limits.
fn read_limits(config: &Path, devices: &mut DeviceNames) -> Option<Limits> {
    let bytes = fs::read(config).ok()?;
    let spec = serde_json::from_slice::<ConfigResources>(&bytes).ok()?;
    Some(match spec.linux.and_then(|l| l.resources) {
        Some(r) => limits_of(&r, devices),
        None => Limits::none(),
    })
}

pub(crate) fn limits_of(r: &LinuxResources, devices: &mut DeviceNames) -> Limits {
    let memory = r.memory().as_ref();
    let cpu = r.cpu().as_ref();
    let positive = |v: Option<i64>| v.filter(|&v| v > 0).map(|v| v as u64);
    let mut rates = |list: &Option<Vec<LinuxThrottleDevice>>| -> Vec<(String, u64)> {
        list.iter()
            .flatten()
            .map(|d| (devices.name(d.major() as u32, d.minor() as u32), d.rate()))
            .collect()
    };
    let bio = r.block_io().as_ref();
    Limits {
        memory_bytes: positive(memory.and_then(|m| m.limit())),
        cpu_shares: cpu.and_then(|c| c.shares()).filter(|&s| s > 0),
        cpu_quota_us: cpu.and_then(|c| c.quota()).filter(|&q| q > 0).unwrap_or(-1),
        cpu_period_us: cpu.and_then(|c| c.period()).filter(|&p| p > 0),
        read_bps: bio
            .map(|b| rates(b.throttle_read_bps_device()))
            .unwrap_or_default(),
        write_bps: bio
            .map(|b| rates(b.throttle_write_bps_device()))
            .unwrap_or_default(),
    }
}

/// Block device names, each looked up once per scrape.
#[derive(Default)]
pub(crate) struct DeviceNames(HashMap<(u32, u32), String>);

impl DeviceNames {
    pub(crate) fn name(&mut self, major: u32, minor: u32) -> String {
        self.0
            .entry((major, minor))
            .or_insert_with(|| ebpf::device_name(major, minor))
            .clone()
    }
}

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The host's cgroup files as a scrape sees them: mountinfo is read once and
/// served from memory to every [`Cgroups::open_with`], and nothing can be
/// changed through it, since a scrape must never touch an isle.
pub(crate) struct ScrapeFs {
    mountinfo: String,
}

impl ScrapeFs {
    pub(crate) fn host() -> Arc<ScrapeFs> {
        Self::with_mountinfo(fs::read_to_string(MOUNTINFO).unwrap_or_default())
    }

    /// A view whose cgroup hierarchies are the mounts `mountinfo` lists
    /// (tests point them into a temporary directory).
    pub(crate) fn with_mountinfo(mountinfo: String) -> Arc<ScrapeFs> {
        Arc::new(ScrapeFs { mountinfo })
    }
}

fn read_only() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, "metrics only read cgroups")
}

impl CgroupFs for ScrapeFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        if path == Path::new(MOUNTINFO) {
            return Ok(self.mountinfo.clone());
        }
        HostFs.read(path)
    }

    fn write(&self, _: &Path, _: &str) -> io::Result<()> {
        Err(read_only())
    }

    fn mkdir(&self, _: &Path) -> io::Result<()> {
        Err(read_only())
    }

    fn rmdir(&self, _: &Path) -> io::Result<()> {
        Err(read_only())
    }

    fn exists(&self, path: &Path) -> bool {
        HostFs.exists(path)
    }

    fn subdirs(&self, path: &Path) -> io::Result<Vec<std::path::PathBuf>> {
        HostFs.subdirs(path)
    }

    fn inode(&self, path: &Path) -> io::Result<u64> {
        HostFs.inode(path)
    }

    fn mount_v1(&self, _: &str, _: &Path) -> io::Result<()> {
        Err(read_only())
    }

    fn kill(&self, _: i32) -> io::Result<()> {
        Err(read_only())
    }

    fn sleep(&self, time: Duration) {
        std::thread::sleep(time)
    }
}
