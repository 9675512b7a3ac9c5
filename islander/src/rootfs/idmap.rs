//! Idmapped mounts for `--userns` isles.
//!
//! The image belongs to host root, which a user namespace cannot see: the
//! isle would find every file owned by `nobody`, and overlayfs could not copy
//! one up. islander (in the host's user namespace) clones the image's mount
//! tree, maps it through the isle's user namespace (host 0 becomes host
//! 100000, which is root in the isle), and hands the detached mount to init,
//! which attaches it in its own mount namespace as the overlay's lower layer.
//! The image on disk is never chowned, so one image serves every isle.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

use super::{Result, RootfsError};

const OPEN_TREE_CLONE: libc::c_uint = 1;
const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("paths have no NUL")
}

/// A detached copy of the mount tree at `dir`, whose ids are mapped through
/// the user namespace `userns` (an open `/proc/PID/ns/user`).
pub fn mapped_tree(dir: &Path, userns: RawFd) -> Result<OwnedFd> {
    let c = cpath(dir);
    // SAFETY: open_tree with a valid path; returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | libc::AT_RECURSIVE as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(RootfsError::Sys { op: "open_tree of the image", source: Errno::last() });
    }
    // SAFETY: the kernel just returned this descriptor.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let attr = MountAttr { attr_set: MOUNT_ATTR_IDMAP, attr_clr: 0, propagation: 0, userns_fd: userns as u64 };
    let empty = CString::new("").unwrap();
    // SAFETY: mount_setattr on our detached tree with a correctly sized struct.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(RootfsError::Sys { op: "idmapping the image (mount_setattr)", source: Errno::last() });
    }
    Ok(tree)
}

/// Attaches a detached mount (from [`mapped_tree`]) at `target`.
pub fn attach(tree: &OwnedFd, target: &Path) -> Result<()> {
    let c = cpath(target);
    let empty = CString::new("").unwrap();
    // SAFETY: move_mount from a detached tree descriptor to a path.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(RootfsError::Mount { what: "the idmapped image".into(), target: target.into(), source: Errno::last() });
    }
    Ok(())
}
