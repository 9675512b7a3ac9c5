//! The few operations cgroup management needs from the host, behind a trait
//! so the limit-writing and teardown logic runs in unit tests without root
//! (see `testfs.rs` for the recording double).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use nix::mount::{mount, MsFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::mountinfo::{self, MOUNTINFO};

pub trait CgroupFs: Send + Sync {
    fn read(&self, path: &Path) -> io::Result<String>;
    /// One write of the whole value: cgroup files act on each write(2).
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
    /// Creates one directory; an existing one is `AlreadyExists`.
    fn mkdir(&self, path: &Path) -> io::Result<()>;
    fn rmdir(&self, path: &Path) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    /// The directories directly inside `path`.
    fn subdirs(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    fn inode(&self, path: &Path) -> io::Result<u64>;
    /// Mounts the v1 hierarchy of `controller` at `target` unless some
    /// mount of it appears meanwhile; creates `target` if needed.
    fn mount_v1(&self, controller: &str, target: &Path) -> io::Result<()>;
    fn kill(&self, pid: i32) -> io::Result<()>;
    fn sleep(&self, time: Duration);
}

/// The real host.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostFs;

impl CgroupFs for HostFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        // No create, no truncate: cgroup files exist and ignore O_TRUNC,
        // and creating one by mistake in a non-cgroup dir would hide an error.
        let mut file = OpenOptions::new().write(true).open(path)?;
        file.write_all(value.as_bytes())
    }

    fn mkdir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    fn rmdir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn subdirs(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let mut dirs = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                dirs.push(entry.path());
            }
        }
        Ok(dirs)
    }

    fn inode(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.ino())
    }

    fn mount_v1(&self, controller: &str, target: &Path) -> io::Result<()> {
        let made_target = !target.exists();
        std::fs::create_dir_all(target)?;
        let outcome = mount_once(controller, target);
        if outcome.is_err() && made_target {
            // Leave no empty mount point behind a failed mount.
            let _ = std::fs::remove_dir(target);
        }
        outcome
    }

    fn kill(&self, pid: i32) -> io::Result<()> {
        kill(Pid::from_raw(pid), Signal::SIGKILL).map_err(io::Error::from)
    }

    fn sleep(&self, time: Duration) {
        std::thread::sleep(time)
    }
}

fn mount_once(controller: &str, target: &Path) -> io::Result<()> {
    // Two islanders starting isles at once would otherwise both mount,
    // stacking a second mount of the hierarchy on the first.
    let dir = File::open(target)?;
    let _lock =
        Flock::lock(dir, FlockArg::LockExclusive).map_err(|(_, errno)| io::Error::from(errno))?;
    let current = mountinfo::parse(&std::fs::read_to_string(MOUNTINFO)?);
    if current.v1_with(controller).is_some() {
        return Ok(());
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some(controller),
        target,
        Some("cgroup"),
        flags,
        Some(controller),
    )
    .map_err(io::Error::from)
}
