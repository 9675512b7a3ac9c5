//! The pseudo-filesystems eBPF work needs, and cgroup2 ids.

use std::{io, os::unix::fs::MetadataExt as _, path::Path, sync::Mutex};

use nix::{
    mount::{mount, MsFlags},
    sys::statfs::{statfs, FsType, BPF_FS_MAGIC, CGROUP2_SUPER_MAGIC, TRACEFS_MAGIC},
};

use super::{EbpfError, Result};

/// tracefs, for tracepoint programs (and `trace_pipe` when debugging one).
/// Boot does not mount it on these machines.
const TRACEFS: &str = "/sys/kernel/tracing";
/// bpffs, where maps and links are pinned.
const BPFFS: &str = "/sys/fs/bpf";

/// Mounts tracefs and bpffs at their usual places unless they are there.
/// Both are shared system mounts that other tools expect, so they stay
/// mounted after islander exits.
pub(super) fn ensure_mounted() -> Result<()> {
    ensure_mount(TRACEFS, "tracefs", TRACEFS_MAGIC)?;
    ensure_mount(BPFFS, "bpf", BPF_FS_MAGIC)
}

fn ensure_mount(target: &str, fstype: &'static str, magic: FsType) -> Result<()> {
    // Two loads racing in one process would otherwise stack a second mount
    // on top of the first.
    static MOUNTING: Mutex<()> = Mutex::new(());
    let _guard = MOUNTING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());

    let mounted = statfs(target).map_err(|errno| EbpfError::Statfs {
        path: target.into(),
        errno,
    })?;
    if mounted.filesystem_type() == magic {
        return Ok(());
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some(fstype), target, Some(fstype), flags, None::<&str>).map_err(|errno| {
        EbpfError::Mount {
            fstype,
            target: target.into(),
            errno,
        }
    })
}

/// The id the kernel gives the cgroup2 directory at `path`, which is what
/// `bpf_get_current_cgroup_id()` returns for processes in it: kernfs uses the
/// same number as the directory's inode.
///
/// Fails with `InvalidInput` when `path` is not on a cgroup2 filesystem (a v1
/// controller directory has an inode too, but it is no cgroup2 id).
pub fn cgroup2_id(path: &Path) -> io::Result<u64> {
    let with_path =
        |err: io::Error| io::Error::new(err.kind(), format!("{}: {err}", path.display()));
    let fs = statfs(path).map_err(|errno| with_path(errno.into()))?;
    if fs.filesystem_type() != CGROUP2_SUPER_MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a directory on a cgroup2 filesystem",
                path.display()
            ),
        ));
    }
    Ok(std::fs::metadata(path).map_err(with_path)?.ino())
}
