//! Counting `execve`s per cgroup2 directory.

use aya::{
    maps::{MapData, MapError, PerCpuHashMap},
    programs::BtfTracePoint,
    Btf, Ebpf, EbpfLoader,
};
use aya_log::EbpfLogger;
use islander_common::{EXEC_COUNTS_MAP, EXEC_COUNT_PROGRAM, EXEC_COUNT_TRACEPOINT};

use super::{
    fs,
    logs::{LogReader, ToTracing},
    EbpfError, Result, OBJECT,
};

/// The exec_count program, attached to the `sched_process_exec` BTF
/// tracepoint, and the map it counts into. Dropping it detaches the program.
pub struct ExecCounter {
    counts: PerCpuHashMap<MapData, u64, u64>,
    /// Owns the program and its link.
    _ebpf: Ebpf,
    /// Declared last so it outlives the program and drains its last records.
    _logs: LogReader,
}

impl ExecCounter {
    /// Loads the embedded object, attaches exec_count and starts forwarding
    /// the program's log records to `tracing`. Mounts tracefs and bpffs first
    /// when they are not mounted. Needs root (CAP_BPF and CAP_PERFMON at least).
    pub fn load() -> Result<Self> {
        fs::ensure_mounted()?;

        // One parse of the kernel's BTF serves both relocation and the
        // tracepoint's attach target.
        let btf = Btf::from_sys_fs().map_err(EbpfError::Btf)?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .load(OBJECT)
            .map_err(EbpfError::Object)?;

        // Taken before the program loads: the program's instructions refer to
        // the ring buffer by fd, and the logger is what keeps that fd open.
        let logger =
            EbpfLogger::init_with_logger(&mut ebpf, ToTracing).map_err(EbpfError::Logger)?;
        let logs = LogReader::start(logger)?;

        let program_error = |action| {
            move |error| EbpfError::Program {
                action,
                program: EXEC_COUNT_PROGRAM,
                error,
            }
        };
        let program: &mut BtfTracePoint = ebpf
            .program_mut(EXEC_COUNT_PROGRAM)
            .ok_or(EbpfError::NoProgram(EXEC_COUNT_PROGRAM))?
            .try_into()
            .map_err(program_error("loading"))?;
        program
            .load(EXEC_COUNT_TRACEPOINT, &btf)
            .map_err(program_error("loading"))?;
        // The link stays owned by the program, hence by `ebpf`.
        program.attach().map_err(program_error("attaching"))?;

        let counts = ebpf
            .take_map(EXEC_COUNTS_MAP)
            .ok_or(EbpfError::NoMap(EXEC_COUNTS_MAP))?;
        let counts = PerCpuHashMap::try_from(counts).map_err(|error| EbpfError::Map {
            action: "opening",
            map: EXEC_COUNTS_MAP,
            error,
        })?;

        Ok(Self {
            counts,
            _ebpf: ebpf,
            _logs: logs,
        })
    }

    /// How many execs have happened in the cgroup2 directory with this id
    /// since [`ExecCounter::load`] (or the last [`ExecCounter::forget`]).
    pub fn execs(&self, cgroup_id: u64) -> Result<u64> {
        match self.counts.get(&cgroup_id, 0) {
            Ok(per_cpu) => Ok(per_cpu.iter().sum()),
            // The program adds an entry on a cgroup's first exec.
            Err(MapError::KeyNotFound) => Ok(0),
            Err(error) => Err(EbpfError::Map {
                action: "reading",
                map: EXEC_COUNTS_MAP,
                error,
            }),
        }
    }

    /// Drops the count for a cgroup that is gone, so its slot in the map
    /// (which holds [`islander_common::MAX_TRACKED_CGROUPS`]) is free again.
    /// Forgetting a cgroup that never exec'd is not an error.
    pub fn forget(&mut self, cgroup_id: u64) -> Result<()> {
        match self.counts.remove(&cgroup_id) {
            Ok(()) => Ok(()),
            Err(MapError::SyscallError(err))
                if err.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(())
            }
            Err(error) => Err(EbpfError::Map {
                action: "removing an entry from",
                map: EXEC_COUNTS_MAP,
                error,
            }),
        }
    }
}
