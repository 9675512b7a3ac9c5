//! The isle's `/dev`: a small tmpfs (mounted from the spec) holding only the
//! character devices a program expects, the usual symlinks, and the devpts
//! `ptmx`. In a user namespace `mknod` is refused, so the host's nodes are
//! bind-mounted instead.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use super::mounts::bind;
use super::{fs_err, Result, RootfsError};

/// name, major, minor (all world read-write, as on any host).
const NODES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

const LINKS: [(&str, &str); 6] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
    ("core", "/proc/kcore"),
];

/// Fills `dev` (the isle's `/dev`, already a fresh tmpfs) with nodes and links.
pub fn populate(dev: &Path, userns: bool) -> Result<()> {
    for (name, major, minor) in NODES {
        let path = dev.join(name);
        if userns {
            fs::File::create(&path).map_err(fs_err("creating", &path))?;
            bind(&Path::new("/dev").join(name), &path, false)?;
        } else {
            mknod(&path, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), makedev(major, minor))
                .map_err(|source| RootfsError::Sys { op: "mknod", source })?;
            // mknod honours the umask; the nodes must be 0666 regardless.
            nix::sys::stat::fchmodat(
                None,
                &path,
                Mode::from_bits_truncate(0o666),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
            .map_err(|source| RootfsError::Sys { op: "chmod", source })?;
        }
    }
    for (name, target) in LINKS {
        let path = dev.join(name);
        if fs::symlink_metadata(&path).is_err() {
            symlink(target, &path).map_err(fs_err("creating symlink", &path))?;
        }
    }
    Ok(())
}
