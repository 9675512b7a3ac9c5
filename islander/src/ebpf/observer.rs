//! [`Observer`]: islander's eBPF programs, loaded once per host.
//!
//! The first islander to call [`Observer::attach`] loads the programs, pins
//! them, their maps and their links on bpffs (see pins.rs) and attaches the
//! tracepoint programs; later ones, in the same process or another, open the
//! pins. There is one set of hooks and one set of counters however many
//! islanders run, so nothing is counted twice, and the programs keep
//! counting when the islander that loaded them exits. An isle is counted
//! from [`Observer::register`] on, which adds its entry to the counters and
//! attaches the network programs to its cgroup2 directory.

use std::{
    fs::{self, File},
    io,
    os::fd::OwnedFd,
    path::PathBuf,
    sync::{Mutex, MutexGuard},
};

use aya::{
    maps::{Map, MapData, MapError, PerCpuHashMap, PerCpuValues},
    programs::{links::FdLink, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, ProgramInfo},
    sys::{enable_stats, Stats},
};
use aya_log::EbpfLogger;
use islander_common::{
    BlockKey, BlockStats, IsleStats, BLOCK_MAP, ISLES_MAP, NET_EGRESS_PROGRAM, NET_INGRESS_PROGRAM,
    PROGRAMS,
};

use super::{
    btf, fs as ebpf_fs,
    logs::{LogReader, ToTracing},
    pins::{HostLock, PinDir},
    BlockCounters, EbpfError, IsleCounters, ProgramStats, Result,
};

/// The cgroup_skb programs and the directions they are attached in.
const NET_PROGRAMS: [(&str, CgroupSkbAttachType); 2] = [
    (NET_INGRESS_PROGRAM, CgroupSkbAttachType::Ingress),
    (NET_EGRESS_PROGRAM, CgroupSkbAttachType::Egress),
];

/// BPF_NOEXIST from the kernel's uapi: create only, fail with EEXIST.
const BPF_NOEXIST: u64 = 1;

/// A handle on the host's islander programs and their counters.
pub struct Observer {
    pins: PinDir,
    maps: Mutex<Maps>,
    /// The kernel keeps run statistics while some process holds this fd; it
    /// is taken on the first [`Observer::programs`], as they cost every
    /// program run two clock reads.
    stats: Mutex<Option<OwnedFd>>,
    /// Declared last: forwards the programs' log records until the end.
    _logs: LogReader,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("pins", &self.pins.path())
            .finish_non_exhaustive()
    }
}

struct Maps {
    isles: PerCpuHashMap<MapData, u64, IsleStats>,
    block: PerCpuHashMap<MapData, BlockKey, BlockStats>,
}

impl Observer {
    /// Opens the host's programs, loading and attaching them first if no
    /// islander has. Mounts tracefs and bpffs when they are not mounted.
    /// Needs root and a kernel with BTF; without them the error says so.
    pub fn attach() -> Result<Self> {
        // SAFETY: geteuid cannot fail and touches no memory.
        let uid = unsafe { libc::geteuid() };
        if uid != 0 {
            return Err(EbpfError::Unavailable {
                reason: format!("islander runs as uid {uid}, not root"),
            });
        }
        if !btf::available() {
            return Err(EbpfError::Unavailable {
                reason: "the kernel has no BTF at /sys/kernel/btf/vmlinux".into(),
            });
        }
        Self::install_or_open().map_err(|err| {
            // Root without the capabilities (in a container, say) gets EPERM
            // from mount(2) or bpf(2); say so the same way.
            if err.denied() {
                EbpfError::Unavailable {
                    reason: err.to_string(),
                }
            } else {
                err
            }
        })
    }

    fn install_or_open() -> Result<Self> {
        ebpf_fs::ensure_mounted()?;
        let pins = PinDir::for_object();
        {
            let lock = HostLock::acquire()?;
            if !pins.is_ready() {
                pins.install(&lock)?;
            }
        }
        Self::open(pins)
    }

    fn open(pins: PinDir) -> Result<Self> {
        let failed = |map: &'static str| {
            move |error| EbpfError::Map {
                action: "opening the pinned",
                map,
                error,
            }
        };
        let isles = MapData::from_pin(pins.map(ISLES_MAP))
            .and_then(|data| PerCpuHashMap::try_from(Map::PerCpuHashMap(data)))
            .map_err(failed(ISLES_MAP))?;
        let block = MapData::from_pin(pins.map(BLOCK_MAP))
            .and_then(|data| PerCpuHashMap::try_from(Map::PerCpuHashMap(data)))
            .map_err(failed(BLOCK_MAP))?;

        // The ring buffer is pinned too, but aya-log opens it only through a
        // program that writes to it; not every program logs.
        let mut logger = Err(EbpfError::Logger(aya_log::Error::MapNotFound));
        for spec in &PROGRAMS {
            let program = ProgramInfo::from_pin(pins.program(spec.name)).map_err(|error| {
                EbpfError::Program {
                    action: "opening the pinned",
                    program: spec.name,
                    error,
                }
            })?;
            logger = EbpfLogger::init_from_id_with_logger(program.id(), ToTracing)
                .map_err(EbpfError::Logger);
            if logger.is_ok() {
                break;
            }
        }
        let logger = logger?;
        let logs = LogReader::start(logger)?;

        Ok(Self {
            pins,
            maps: Mutex::new(Maps { isles, block }),
            stats: Mutex::new(None),
            _logs: logs,
        })
    }

    fn maps(&self) -> MutexGuard<'_, Maps> {
        // The maps hold no invariant a panicking reader could break.
        self.maps
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts counting for the isle whose cgroup2 directory has id
    /// `cgroup_id`: call it before the isle's first exec. Registering an
    /// isle again keeps its counts.
    pub fn register(&self, cgroup_id: u64) -> Result<()> {
        if cgroup_id <= 1 {
            return Err(EbpfError::InvalidCgroup(cgroup_id));
        }
        let root = ebpf_fs::cgroup2_root().map_err(|error| EbpfError::Pin {
            action: "finding the cgroup2 mount in",
            path: "/proc/self/mountinfo".into(),
            error,
        })?;
        let dir = ebpf_fs::find_cgroup2_dir(&root, cgroup_id).ok_or(EbpfError::NoCgroup {
            id: cgroup_id,
            root,
        })?;

        let _lock = HostLock::acquire()?;
        self.add_entry(cgroup_id)?;
        for (program, direction) in NET_PROGRAMS {
            let pin = self.pins.net_link(cgroup_id, program);
            if pin.exists() {
                continue;
            }
            attach_net(&self.pins, program, direction, &dir, &pin).inspect_err(|_| {
                // Leave no half-registered isle: nothing else would undo it.
                self.remove_all(cgroup_id);
            })?;
        }
        Ok(())
    }

    fn add_entry(&self, cgroup_id: u64) -> Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(_, error)| EbpfError::Pin {
            action: "reading",
            path: "/sys/devices/system/cpu/possible".into(),
            error,
        })?;
        let failed = |error| EbpfError::Map {
            action: "adding an isle to",
            map: ISLES_MAP,
            error,
        };
        let zero = PerCpuValues::try_from(vec![IsleStats::ZERO; cpus]).map_err(|error| {
            failed(MapError::SyscallError(aya::sys::SyscallError {
                call: "PerCpuValues",
                io_error: error,
            }))
        })?;
        match self.maps().isles.insert(cgroup_id, zero, BPF_NOEXIST) {
            Ok(()) => Ok(()),
            Err(MapError::SyscallError(err))
                if err.io_error.raw_os_error() == Some(libc::EEXIST) =>
            {
                Ok(())
            }
            Err(error) => Err(failed(error)),
        }
    }

    /// Stops counting for an isle that is gone and drops its counts, which
    /// frees its room in the maps. Failures are logged: there is nothing a
    /// caller tearing an isle down could do about them.
    pub fn forget(&self, cgroup_id: u64) {
        match HostLock::acquire() {
            Ok(_lock) => self.remove_all(cgroup_id),
            Err(err) => tracing::warn!("forgetting cgroup {cgroup_id}: {err}"),
        }
    }

    fn remove_all(&self, cgroup_id: u64) {
        let warn = |what: &str, err: &dyn std::fmt::Display| {
            tracing::warn!("forgetting cgroup {cgroup_id}: {what}: {err}");
        };
        // Links first, then the ISLES entry (which stops the tracepoint
        // programs from adding block entries), then the block entries.
        for (program, _) in NET_PROGRAMS {
            let pin = self.pins.net_link(cgroup_id, program);
            match fs::remove_file(&pin) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => warn(&format!("unpinning {}", pin.display()), &err),
            }
        }
        let mut maps = self.maps();
        if let Err(err) = maps.isles.remove(&cgroup_id) {
            if !is_missing(&err) {
                warn("removing its ISLES entry", &err);
            }
        }
        let keys: Vec<BlockKey> = maps
            .block
            .keys()
            .filter_map(|key| key.ok())
            .filter(|key| key.cgroup == cgroup_id)
            .collect();
        for key in keys {
            if let Err(err) = maps.block.remove(&key) {
                if !is_missing(&err) {
                    warn("removing a BLOCK entry", &err);
                }
            }
        }
    }

    /// What has been counted for a registered isle.
    pub fn isle(&self, cgroup_id: u64) -> Result<IsleCounters> {
        let maps = self.maps();
        let per_cpu = match maps.isles.get(&cgroup_id, 0) {
            Ok(values) => values,
            Err(MapError::KeyNotFound) => return Err(EbpfError::NotRegistered(cgroup_id)),
            Err(error) => {
                return Err(EbpfError::Map {
                    action: "reading",
                    map: ISLES_MAP,
                    error,
                })
            }
        };
        let mut syscalls = vec![0u64; islander_common::SYSCALL_SLOTS];
        let mut counters = IsleCounters::default();
        for cpu in per_cpu.iter() {
            for (total, count) in syscalls.iter_mut().zip(cpu.syscalls.iter()) {
                *total += count;
            }
            counters.net.rx_bytes += cpu.rx_bytes;
            counters.net.tx_bytes += cpu.tx_bytes;
            counters.net.rx_packets += cpu.rx_packets;
            counters.net.tx_packets += cpu.tx_packets;
            counters.oom_kills += cpu.oom_kills;
            counters.execs += cpu.execs;
        }
        counters.syscalls = (0u32..)
            .zip(syscalls)
            .filter(|&(_, count)| count > 0)
            .collect();

        let read_failed = |error| EbpfError::Map {
            action: "reading",
            map: BLOCK_MAP,
            error,
        };
        // Keys first, values only for this isle's: a scrape of many isles
        // then costs a key walk per isle, not a value copy per entry.
        let mut keys = Vec::new();
        for key in maps.block.keys() {
            let key = key.map_err(read_failed)?;
            if key.cgroup == cgroup_id {
                keys.push(key);
            }
        }
        keys.sort_unstable_by_key(|key| key.dev);
        for key in keys {
            let per_cpu = match maps.block.get(&key, 0) {
                Ok(values) => values,
                // Forgotten meanwhile.
                Err(MapError::KeyNotFound) => continue,
                Err(error) => return Err(read_failed(error)),
            };
            let mut device = BlockCounters {
                major: key.major(),
                minor: key.minor(),
                ..BlockCounters::default()
            };
            for cpu in per_cpu.iter() {
                device.read_bytes += cpu.read_bytes;
                device.write_bytes += cpu.write_bytes;
                device.reads += cpu.reads;
                device.writes += cpu.writes;
            }
            counters.block.push(device);
        }
        Ok(counters)
    }

    /// Run counts and run time of each program, from the kernel. The first
    /// call turns the kernel's BPF statistics on (for as long as this
    /// Observer lives), so counting starts then.
    pub fn programs(&self) -> Vec<ProgramStats> {
        {
            let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
            if stats.is_none() {
                match enable_stats(Stats::RunTime) {
                    Ok(fd) => *stats = Some(fd),
                    Err(err) => tracing::warn!(
                        "turning on the kernel's BPF statistics: {err}; program run figures stay 0"
                    ),
                }
            }
        }
        PROGRAMS
            .iter()
            .filter_map(|spec| {
                let path = self.pins.program(spec.name);
                match ProgramInfo::from_pin(&path) {
                    Ok(info) => Some(ProgramStats {
                        name: spec.name.to_owned(),
                        run_count: info.run_count(),
                        run_time_ns: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
                    }),
                    Err(err) => {
                        tracing::warn!("reading eBPF program {}: {err}", spec.name);
                        None
                    }
                }
            })
            .collect()
    }
}

/// Attaches a cgroup_skb program to one isle's directory and pins the link.
fn attach_net(
    pins: &PinDir,
    program: &'static str,
    direction: CgroupSkbAttachType,
    dir: &PathBuf,
    pin: &PathBuf,
) -> Result<()> {
    let failed = |action| {
        move |error| EbpfError::Program {
            action,
            program,
            error,
        }
    };
    let mut skb = CgroupSkb::from_pin(pins.program(program), direction)
        .map_err(failed("opening the pinned"))?;
    let cgroup = File::open(dir).map_err(|error| EbpfError::Pin {
        action: "opening",
        path: dir.clone(),
        error,
    })?;
    // A cgroup bpf_link takes no flags (the kernel refuses any) and always
    // coexists with other programs, so other tools can still attach there.
    let link = skb
        .attach(cgroup, direction, CgroupAttachMode::Single)
        .map_err(failed("attaching"))?;
    let link = skb.take_link(link).map_err(failed("attaching"))?;
    let link = FdLink::try_from(link).map_err(|error| EbpfError::Pin {
        action: "pinning",
        path: pin.clone(),
        error: io::Error::other(error),
    })?;
    link.pin(pin).map_err(|error| EbpfError::Pin {
        action: "pinning",
        path: pin.clone(),
        error: io::Error::other(error),
    })?;
    Ok(())
}

fn is_missing(err: &MapError) -> bool {
    match err {
        MapError::KeyNotFound => true,
        MapError::SyscallError(err) => err.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}
