//! eBPF observability: what each isle does, seen from the kernel.
//!
//! The programs (islander-ebpf) are built by islander/build.rs and embedded
//! in the binary, so a running engine never needs the eBPF toolchain. They
//! count per isle, keyed by the cgroup2 id of the isle's directory (see
//! [`cgroup2_id`]): syscalls by number, block IO by device, network bytes and
//! packets, OOM kills and execs. [`Observer`] loads them once per host and
//! reads them; how it shares them between islander processes is described
//! in observer.rs.

mod btf;
mod fs;
mod logs;
mod observer;
mod pins;
mod syscall_names;

use std::path::PathBuf;

use serde::Serialize;
use thiserror::Error;

pub use fs::cgroup2_id;
pub use observer::Observer;

/// The object file islander-ebpf compiles to, aligned as aya needs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/islander-ebpf"));

/// What the programs counted for one isle since it was registered.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IsleCounters {
    /// (syscall number, count), ascending by number, only those made.
    pub syscalls: Vec<(u32, u64)>,
    /// One entry per device the isle read or wrote, ascending by device.
    pub block: Vec<BlockCounters>,
    pub net: NetCounters,
    pub oom_kills: u64,
    pub execs: u64,
}

/// Block IO an isle caused on one device. Writes are buffered writes (the
/// page cache folios the isle dirtied, counted as it dirties them, one
/// operation per folio) plus direct IO; reads are what reached the device
/// (page cache misses, readahead, direct IO). One operation per bio.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BlockCounters {
    pub major: u32,
    pub minor: u32,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

/// Bytes as the IP layer sees them (headers included) and packets as on the
/// wire (a GSO packet counts for each segment), on the isle's sockets.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NetCounters {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// The kernel's run statistics of one of islander's programs, host-wide.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProgramStats {
    pub name: String,
    pub run_count: u64,
    pub run_time_ns: u64,
}

/// The name of x86_64 syscall `nr`, if it has one.
pub fn syscall_name(nr: u32) -> Option<&'static str> {
    syscall_names::NAMES
        .get(nr as usize)
        .copied()
        .filter(|name| !name.is_empty())
}

/// The kernel's name for block device `major:minor` ("vda", "nvme0n1p2"),
/// or "major:minor" when it has none (no such device, or no sysfs).
pub fn device_name(major: u32, minor: u32) -> String {
    std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent"))
        .ok()
        .and_then(|uevent| {
            uevent
                .lines()
                .find_map(|line| line.strip_prefix("DEVNAME="))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("{major}:{minor}"))
}

/// What went wrong while loading, attaching or reading the programs.
///
/// Each message names the step and the program, map or path involved and
/// ends with the underlying error's text, so one line tells the whole story.
#[derive(Debug, Error)]
pub enum EbpfError {
    #[error("eBPF is unavailable: {reason} (needs root and a kernel with BTF)")]
    Unavailable { reason: String },
    #[error("checking which filesystem is mounted at {}: {errno}", path.display())]
    Statfs { path: PathBuf, errno: nix::Error },
    #[error("mounting {fstype} at {}: {errno}", target.display())]
    Mount {
        fstype: &'static str,
        target: PathBuf,
        errno: nix::Error,
    },
    #[error("reading the kernel's BTF from /sys/kernel/btf/vmlinux: {}", chain(.0))]
    Btf(aya::BtfError),
    #[error("the kernel's BTF at /sys/kernel/btf/vmlinux is malformed: {0}")]
    BadBtf(String),
    #[error("islander's eBPF programs cannot read {member} on this kernel: {problem}")]
    KernelLayout { member: String, problem: String },
    #[error("loading the embedded eBPF object: {}", chain(.0))]
    Object(aya::EbpfError),
    #[error("the embedded eBPF object has no program {0}")]
    NoProgram(&'static str),
    #[error("{action} eBPF program {program}: {}", chain(error))]
    Program {
        action: &'static str,
        program: &'static str,
        error: aya::programs::ProgramError,
    },
    #[error("{action} eBPF map {map}: {}", chain(error))]
    Map {
        action: &'static str,
        map: &'static str,
        error: aya::maps::MapError,
    },
    #[error("{action} {}: {}", path.display(), chain(error))]
    Pin {
        action: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("opening the eBPF log ring buffer: {}", chain(.0))]
    Logger(aya_log::Error),
    #[error("starting the eBPF log reader thread: {0}")]
    LogThread(std::io::Error),
    #[error(
        "invalid cgroup2 id {0}: an isle's cgroup2 directory has an id above 1 (1 is the root)"
    )]
    InvalidCgroup(u64),
    #[error("no cgroup2 directory has id {id} (searched {})", root.display())]
    NoCgroup { id: u64, root: PathBuf },
    #[error("cgroup2 id {0} is not registered with the eBPF observer")]
    NotRegistered(u64),
}

pub type Result<T, E = EbpfError> = std::result::Result<T, E>;

impl EbpfError {
    /// Whether the kernel refused for want of privilege (EPERM or EACCES
    /// anywhere in the chain).
    fn denied(&self) -> bool {
        match self {
            EbpfError::Statfs { errno, .. } | EbpfError::Mount { errno, .. } => {
                matches!(errno, nix::Error::EPERM | nix::Error::EACCES)
            }
            EbpfError::Object(error) => chain_denied(error),
            EbpfError::Program { error, .. } => chain_denied(error),
            EbpfError::Map { error, .. } => chain_denied(error),
            EbpfError::Pin { error, .. } => chain_denied(error),
            EbpfError::Logger(error) => chain_denied(error),
            _ => false,
        }
    }
}

fn chain_denied(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
                return true;
            }
        }
        source = error.source();
    }
    false
}

/// An error and its sources on one line: aya's errors keep the errno (and
/// the verifier's verdict) in their sources, not in their own message.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their source's text in their own.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_syscalls() {
        assert_eq!(syscall_name(0), Some("read"));
        assert_eq!(syscall_name(39), Some("getpid"));
        assert_eq!(syscall_name(59), Some("execve"));
        assert_eq!(syscall_name(334), Some("rseq"));
        assert_eq!(syscall_name(424), Some("pidfd_send_signal"));
        assert_eq!(syscall_name(469), Some("file_setattr"));
        // Never assigned on x86_64, and past the table.
        assert_eq!(syscall_name(335), None);
        assert_eq!(syscall_name(470), None);
        assert_eq!(syscall_name(u32::MAX), None);
    }

    #[test]
    fn observer_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Observer>();
    }

    #[test]
    fn names_devices_or_falls_back_to_numbers() {
        // 0:0 is never a block device.
        assert_eq!(device_name(0, 0), "0:0");
    }

    #[test]
    fn unavailable_says_what_is_needed() {
        let err = EbpfError::Unavailable {
            reason: "islander runs as uid 1000".into(),
        };
        assert_eq!(
            err.to_string(),
            "eBPF is unavailable: islander runs as uid 1000 (needs root and a kernel with BTF)"
        );
    }
}
