//! islander's metric families, built at scrape time.
//!
//! A custom [`Collector`] rather than registered counters and gauges: every
//! figure already lives in the kernel (cgroup files, eBPF maps), so copying
//! it into metric objects between scrapes would only cost work and memory.
//! Each scrape takes one [`snapshot::collect`] and writes the families out
//! directly; an isle that ended is simply absent from the next scrape.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};

use super::snapshot::{self, IsleSnapshot, LimitsCache, ScrapeFs};
use super::Result;
use crate::ebpf::{self, BlockCounters, Observer, ProgramStats};
use crate::paths::StateRoot;

/// Labels every per-isle family carries: the short id and the name (empty
/// for an unnamed isle).
const ISLE_LABELS: [&str; 2] = ["isle", "name"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// Where a family's figures come from: records, specs and cgroup files are
/// always there; the eBPF families exist only with an observer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Host,
    Ebpf,
}

/// One family: its name, meaning, type, labels beyond `isle`/`name` (or
/// instead of them, for host-wide families) and source.
struct Spec {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    per_isle: bool,
    extra: Option<&'static str>,
    source: Source,
}

macro_rules! families {
    ($($id:ident: $name:literal, $kind:ident, $per_isle:literal, $extra:expr, $source:ident, $help:literal;)*) => {
        /// Every family, in the order they are written out.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[allow(non_camel_case_types)]
        enum F { $($id),* }

        const SPECS: &[Spec] = &[$(Spec {
            name: $name,
            help: $help,
            kind: Kind::$kind,
            per_isle: $per_isle,
            extra: $extra,
            source: Source::$source,
        }),*];
    };
}

families! {
    Isles: "islander_isles", Gauge, false, None, Host,
        "Isles of this state root that are running.";
    BuildInfo: "islander_build_info", Gauge, false, Some("version"), Host,
        "Always 1; the version label is islander's version.";
    IsleInfo: "islander_isle_info", Gauge, true, Some("image"), Host,
        "Always 1; the image label is the isle's image (empty for a --rootfs isle).";
    StartTime: "islander_isle_start_time_seconds", Gauge, true, None, Host,
        "When the isle was created, in seconds since the Unix epoch.";
    CpuUsage: "islander_isle_cpu_usage_seconds_total", Counter, true, None, Host,
        "CPU time consumed by the isle's tasks (cpuacct.usage).";
    CfsPeriods: "islander_isle_cpu_cfs_periods_total", Counter, true, None, Host,
        "CFS enforcement periods that elapsed while the isle had runnable tasks (cpu.stat nr_periods).";
    CfsThrottledPeriods: "islander_isle_cpu_cfs_throttled_periods_total", Counter, true, None, Host,
        "CFS periods in which the isle used up its quota and was throttled (cpu.stat nr_throttled).";
    CfsThrottled: "islander_isle_cpu_cfs_throttled_seconds_total", Counter, true, None, Host,
        "Time the isle's tasks spent throttled by the CFS quota (cpu.stat throttled_time).";
    MemoryUsage: "islander_isle_memory_usage_bytes", Gauge, true, None, Host,
        "Memory charged to the isle, page cache included (memory.usage_in_bytes).";
    MemoryMaxUsage: "islander_isle_memory_max_usage_bytes", Gauge, true, None, Host,
        "Highest memory charge the isle reached (memory.max_usage_in_bytes).";
    OomKills: "islander_isle_oom_kills_total", Counter, true, None, Host,
        "Tasks of the isle killed by the kernel's OOM killer (memory.oom_control oom_kill, or the eBPF mark_victim count if higher).";
    MemoryLimit: "islander_isle_memory_limit_bytes", Gauge, true, None, Host,
        "The isle's memory limit (--memory-in-bytes); absent when unlimited.";
    CpuShares: "islander_isle_cpu_shares", Gauge, true, None, Host,
        "The isle's CPU shares, its relative weight against other cgroups (--cpu-shares).";
    CpuQuota: "islander_isle_cpu_quota_seconds", Gauge, true, None, Host,
        "CPU time the isle may use per CFS period (--cpu-quota); absent without a quota.";
    CpuPeriod: "islander_isle_cpu_period_seconds", Gauge, true, None, Host,
        "Length of the isle's CFS period (--cpu-period).";
    ReadLimit: "islander_isle_device_read_limit_bytes_per_second", Gauge, true, Some("device"), Host,
        "The isle's read throttle on a block device (--device-read-bps).";
    WriteLimit: "islander_isle_device_write_limit_bytes_per_second", Gauge, true, Some("device"), Host,
        "The isle's write throttle on a block device (--device-write-bps).";
    Syscalls: "islander_isle_syscalls_total", Counter, true, Some("syscall"), Ebpf,
        "System calls the isle's tasks entered, by syscall name (eBPF, sys_enter).";
    BlockReadBytes: "islander_isle_block_read_bytes_total", Counter, true, Some("device"), Ebpf,
        "Bytes the isle's reads fetched from a block device: page cache misses, readahead, direct IO (eBPF, block_bio_queue).";
    BlockWriteBytes: "islander_isle_block_write_bytes_total", Counter, true, Some("device"), Ebpf,
        "Bytes the isle wrote to a block device: page cache it dirtied plus direct IO, counted in its own context (eBPF, writeback_dirty_folio and block_bio_queue).";
    BlockReads: "islander_isle_block_reads_total", Counter, true, Some("device"), Ebpf,
        "Read requests (bios) the isle sent to a block device (eBPF, block_bio_queue).";
    BlockWrites: "islander_isle_block_writes_total", Counter, true, Some("device"), Ebpf,
        "Write operations of the isle on a block device: one per dirtied page cache folio or direct IO bio (eBPF).";
    NetRxBytes: "islander_isle_network_receive_bytes_total", Counter, true, None, Ebpf,
        "Bytes the isle received, IP headers included (eBPF, cgroup_skb ingress).";
    NetTxBytes: "islander_isle_network_transmit_bytes_total", Counter, true, None, Ebpf,
        "Bytes the isle sent, IP headers included (eBPF, cgroup_skb egress).";
    NetRxPackets: "islander_isle_network_receive_packets_total", Counter, true, None, Ebpf,
        "Packets the isle received (eBPF, cgroup_skb ingress).";
    NetTxPackets: "islander_isle_network_transmit_packets_total", Counter, true, None, Ebpf,
        "Packets the isle sent, each GSO segment counted (eBPF, cgroup_skb egress).";
    Execs: "islander_isle_execs_total", Counter, true, None, Ebpf,
        "Programs the isle's tasks executed (eBPF, sched_process_exec).";
    ProgramRuns: "islander_ebpf_program_runs_total", Counter, false, Some("program"), Ebpf,
        "Times each of islander's eBPF programs ran, host-wide (kernel BPF statistics, run_cnt).";
    ProgramRunTime: "islander_ebpf_program_run_seconds_total", Counter, false, Some("program"), Ebpf,
        "Time spent running each of islander's eBPF programs, host-wide: the observer's own cost (kernel BPF statistics, run_time_ns).";
}

impl F {
    fn spec(self) -> &'static Spec {
        &SPECS[self as usize]
    }
}

/// Reads every running isle of a state root at each scrape.
pub struct IsleCollector {
    root: StateRoot,
    observer: Option<Arc<Observer>>,
    /// `None`: the host's cgroup tree; tests give a fake one.
    fs: Option<Arc<ScrapeFs>>,
    limits: LimitsCache,
    descs: Vec<Desc>,
}

impl IsleCollector {
    /// The collector for `root`. Without an observer only the cgroup and
    /// spec families are emitted.
    pub fn new(root: StateRoot, observer: Option<Arc<Observer>>) -> Result<IsleCollector> {
        Self::build(root, observer, None)
    }

    pub(crate) fn build(
        root: StateRoot,
        observer: Option<Arc<Observer>>,
        fs: Option<Arc<ScrapeFs>>,
    ) -> Result<IsleCollector> {
        let ebpf = observer.is_some();
        let descs = SPECS
            .iter()
            .filter(|s| ebpf || s.source == Source::Host)
            .map(|s| Desc::new(s.name.into(), s.help.into(), labels_of(s), HashMap::new()))
            .collect::<prometheus::Result<Vec<Desc>>>()?;
        Ok(IsleCollector {
            root,
            observer,
            fs,
            limits: LimitsCache::default(),
            descs,
        })
    }

    /// Registers a new collector for `root` on `registry`.
    pub fn register(
        registry: &Registry,
        root: StateRoot,
        observer: Option<Arc<Observer>>,
    ) -> Result<()> {
        registry.register(Box::new(Self::new(root, observer)?))?;
        Ok(())
    }
}

fn labels_of(spec: &Spec) -> Vec<String> {
    let isle = if spec.per_isle { &ISLE_LABELS[..] } else { &[] };
    isle.iter()
        .copied()
        .chain(spec.extra)
        .map(str::to_string)
        .collect()
}

impl Collector for IsleCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let observer = self.observer.as_deref();
        let fs = self.fs.clone().unwrap_or_else(ScrapeFs::host);
        let isles = snapshot::collect_with(&self.root, observer, fs, Some(&self.limits));
        let programs = observer.map(Observer::programs);
        families(&isles, programs.as_deref())
    }
}

/// The families for `isles`; `programs` is `Some` exactly when an observer
/// runs, and only then are the eBPF families written.
pub(crate) fn families(
    isles: &[IsleSnapshot],
    programs: Option<&[ProgramStats]>,
) -> Vec<MetricFamily> {
    let mut out = Families::default();
    out.host(F::Isles, &[], isles.len() as f64);
    out.host(F::BuildInfo, &[env!("CARGO_PKG_VERSION")], 1.0);
    // Series go out in the order the registry sorts them in (by label
    // values), so that its sort finds them sorted and does next to no work.
    let mut programs_by_name: Vec<&ProgramStats> = programs.into_iter().flatten().collect();
    programs_by_name.sort_by(|a, b| a.name.cmp(&b.name));
    for p in programs_by_name {
        out.host(F::ProgramRuns, &[&p.name], p.run_count as f64);
        out.host(F::ProgramRunTime, &[&p.name], p.run_time_ns as f64 / 1e9);
    }

    for s in isles {
        let mut isle = out.isle(s);
        isle.put(F::IsleInfo, Some(s.image.as_deref().unwrap_or("")), 1.0);
        isle.put(F::StartTime, None, s.created_unix as f64);
        isle.put(F::CpuUsage, None, s.cpu_usage_ns as f64 / 1e9);
        isle.put(F::CfsPeriods, None, s.cfs_periods as f64);
        isle.put(F::CfsThrottledPeriods, None, s.cfs_throttled_periods as f64);
        isle.put(F::CfsThrottled, None, s.cfs_throttled_ns as f64 / 1e9);
        isle.put(F::MemoryUsage, None, s.memory_usage_bytes as f64);
        isle.put(F::MemoryMaxUsage, None, s.memory_max_usage_bytes as f64);
        isle.put(F::OomKills, None, s.oom_kills as f64);

        let l = &s.limits;
        if let Some(bytes) = l.memory_bytes {
            isle.put(F::MemoryLimit, None, bytes as f64);
        }
        if let Some(shares) = l.cpu_shares {
            isle.put(F::CpuShares, None, shares as f64);
        }
        if l.cpu_quota_us > 0 {
            isle.put(F::CpuQuota, None, l.cpu_quota_us as f64 / 1e6);
        }
        if let Some(period) = l.cpu_period_us {
            isle.put(F::CpuPeriod, None, period as f64 / 1e6);
        }
        for (device, bps) in &l.read_bps {
            isle.put(F::ReadLimit, Some(device), *bps as f64);
        }
        for (device, bps) in &l.write_bps {
            isle.put(F::WriteLimit, Some(device), *bps as f64);
        }

        // An isle the observer does not count (not registered with it) has
        // no eBPF series rather than zeros that would claim it did nothing.
        let Some(counters) = s.ebpf.as_ref().filter(|_| programs.is_some()) else {
            continue;
        };
        let mut syscalls: Vec<(String, u64)> = counters
            .syscalls
            .iter()
            .map(|&(nr, count)| {
                let name =
                    ebpf::syscall_name(nr).map_or_else(|| format!("unknown_{nr}"), str::to_string);
                (name, count)
            })
            .collect();
        syscalls.sort_unstable();
        for (name, count) in &syscalls {
            isle.put(F::Syscalls, Some(name), *count as f64);
        }
        let mut block: Vec<(String, &BlockCounters)> = counters
            .block
            .iter()
            .map(|b| (isle.device(b.major, b.minor), b))
            .collect();
        block.sort_by(|a, b| a.0.cmp(&b.0));
        for (device, b) in &block {
            isle.put(
                F::BlockReadBytes,
                Some(device.as_str()),
                b.read_bytes as f64,
            );
            isle.put(
                F::BlockWriteBytes,
                Some(device.as_str()),
                b.write_bytes as f64,
            );
            isle.put(F::BlockReads, Some(device.as_str()), b.reads as f64);
            isle.put(F::BlockWrites, Some(device.as_str()), b.writes as f64);
        }
        let n = &counters.net;
        isle.put(F::NetRxBytes, None, n.rx_bytes as f64);
        isle.put(F::NetTxBytes, None, n.tx_bytes as f64);
        isle.put(F::NetRxPackets, None, n.rx_packets as f64);
        isle.put(F::NetTxPackets, None, n.tx_packets as f64);
        isle.put(F::Execs, None, counters.execs as f64);
    }
    out.finish()
}

/// The metrics of each family as they are written, in family order.
#[derive(Default)]
struct Families {
    metrics: Vec<Vec<Metric>>,
    devices: snapshot::DeviceNames,
}

impl Families {
    fn push(&mut self, family: F, labels: Vec<LabelPair>, value: f64) {
        if self.metrics.is_empty() {
            self.metrics.resize_with(SPECS.len(), Vec::new);
        }
        let spec = family.spec();
        let mut metric = Metric::from_label(labels);
        match spec.kind {
            Kind::Counter => {
                let mut c = Counter::default();
                c.set_value(value);
                metric.set_counter(c);
            }
            Kind::Gauge => {
                let mut g = Gauge::default();
                g.set_value(value);
                metric.set_gauge(g);
            }
        }
        self.metrics[family as usize].push(metric);
    }

    fn host(&mut self, family: F, values: &[&str], value: f64) {
        let labels = labels_of(family.spec())
            .into_iter()
            .zip(values)
            .map(|(name, value)| label(&name, value))
            .collect();
        self.push(family, labels, value);
    }

    fn isle<'a>(&'a mut self, s: &'a IsleSnapshot) -> IsleFamilies<'a> {
        IsleFamilies {
            out: self,
            short_id: &s.short_id,
            name: s.name.as_deref().unwrap_or(""),
        }
    }

    fn finish(self) -> Vec<MetricFamily> {
        SPECS
            .iter()
            .zip(self.metrics)
            .filter(|(_, metrics)| !metrics.is_empty())
            .map(|(spec, metrics)| {
                let mut mf = MetricFamily::default();
                mf.set_name(spec.name.into());
                mf.set_help(spec.help.into());
                mf.set_field_type(match spec.kind {
                    Kind::Counter => MetricType::COUNTER,
                    Kind::Gauge => MetricType::GAUGE,
                });
                mf.set_metric(metrics);
                mf
            })
            .collect()
    }
}

/// Writes the series of one isle.
struct IsleFamilies<'a> {
    out: &'a mut Families,
    short_id: &'a str,
    name: &'a str,
}

impl IsleFamilies<'_> {
    /// One series: the isle's labels, then the family's extra label (if it
    /// has one) with `extra` as its value.
    fn put(&mut self, family: F, extra: Option<&str>, value: f64) {
        let mut labels = vec![label("isle", self.short_id), label("name", self.name)];
        if let (Some(key), Some(v)) = (family.spec().extra, extra) {
            labels.push(label(key, v));
        }
        self.out.push(family, labels, value);
    }

    fn device(&mut self, major: u32, minor: u32) -> String {
        self.out.devices.name(major, minor)
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.into());
    l.set_value(value.into());
    l
}

/// `registry` in the Prometheus text format (version 0.0.4).
pub fn render(registry: &Registry) -> Result<Vec<u8>, prometheus::Error> {
    let mut buf = Vec::with_capacity(16 * 1024);
    TextEncoder::new().encode(&registry.gather(), &mut buf)?;
    Ok(buf)
}

/// Every family islander can emit, for docs and tests.
pub fn family_names() -> impl Iterator<Item = &'static str> {
    SPECS.iter().map(|s| s.name)
}
