//! The pseudo-filesystems eBPF work needs, and cgroup2 ids.

use std::{
    io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::Mutex,
};

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

/// Where the cgroup2 hierarchy is mounted: /sys/fs/cgroup/unified in hybrid
/// mode, /sys/fs/cgroup on a unified host.
pub(super) fn cgroup2_root() -> io::Result<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    mountinfo
        .lines()
        .find_map(|line| {
            // "id parent major:minor root mountpoint options... - fstype ..."
            let (before, after) = line.split_once(" - ")?;
            (after.split_whitespace().next()? == "cgroup2")
                .then(|| before.split_whitespace().nth(4).map(PathBuf::from))?
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no cgroup2 filesystem is mounted"))
}

/// The cgroup2 directory whose id is `id`, searched breadth first below the
/// cgroup2 root. The tree is small (islander's parent, its isles and a few
/// system directories), so a walk costs less than keeping an index.
pub(super) fn find_cgroup2_dir(root: &Path, id: u64) -> Option<PathBuf> {
    const MAX_DEPTH: usize = 8;
    let mut level = vec![root.to_path_buf()];
    for _ in 0..MAX_DEPTH {
        let mut next = Vec::new();
        for dir in level {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_dir() {
                    continue;
                }
                if meta.ino() == id {
                    return Some(entry.path());
                }
                next.push(entry.path());
            }
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    None
}
