//! The attacher's side of the way into the process, and the descriptors
//! that travel it: pipes, or a new pty.
//!
//! The way in is a unix socket pair the process itself makes (an injected
//! `socketpair`); islander takes one end out with pidfd_getfd, sends the
//! new descriptors over it (SCM_RIGHTS), and the process takes them with an
//! injected `recvmsg`. Nothing is reached by name, so the process's mount
//! and network namespaces, a read-only root or a user namespace change
//! nothing, no other process can connect in between, and a crash leaves no
//! file or socket behind.

use std::fs;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::socket::{self, ControlMessage, MsgFlags};

use super::{sys, AttachError, Result};
use crate::cgroups::mountinfo::unescape;

/// Sends `fds` with one byte of data, in one message.
pub fn send_fds(sock: &OwnedFd, fds: &[RawFd]) -> Result<()> {
    let iov = [IoSlice::new(b"x")];
    let cmsg = [ControlMessage::ScmRights(fds)];
    socket::sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None).map_err(sys("sendmsg"))?;
    Ok(())
}

/// A pipe whose ends are both close-on-exec; islander's end is made
/// non-blocking by the caller, the process's end stays as a pipe is.
pub fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    // Room for a burst while the attacher writes to a slow terminal.
    // SAFETY: F_SETPIPE_SZ on a pipe we own; failure keeps 64 KiB.
    unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
    Ok((r, w))
}

pub fn set_nonblocking(fd: BorrowedFd) -> Result<()> {
    let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).map_err(sys("F_GETFL"))?;
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK)).map_err(sys("F_SETFL"))?;
    Ok(())
}

/// `(st_dev, st_ino)`: what a descriptor refers to, comparable with what
/// `/proc/PID/fd/N` of another process refers to.
pub fn identity(fd: RawFd) -> Option<(u64, u64)> {
    nix::sys::stat::fstat(fd).ok().map(|s| (s.st_dev, s.st_ino))
}

pub fn identity_in(pid: i32, fd: i32) -> Option<(u64, u64)> {
    fs::metadata(format!("/proc/{pid}/fd/{fd}")).ok().map(|m| (m.dev(), m.ino()))
}

/// A new pty in the same devpts instance as the terminal `tty` (the
/// process's own, so `/proc/self/fd/0` and `ttyname` are right inside the
/// isle): its master, and its slave opened from the master (TIOCGPTPEER),
/// so that no path in the isle has to be opened and no permission of the
/// slave node matters.
pub fn new_pty(pid: i32, tty: BorrowedFd) -> Result<(OwnedFd, OwnedFd)> {
    let dev = nix::sys::stat::fstat(tty.as_raw_fd()).map_err(sys("fstat of the terminal"))?.st_dev;
    let ptmx = devpts_of(pid, dev).unwrap_or_else(|| PathBuf::from(format!("/proc/{pid}/root/dev/ptmx")));
    let master = nix::fcntl::open(&ptmx, OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
        .map_err(|e| AttachError::Io { op: "opening", path: ptmx.clone(), source: e.into() })?;
    // SAFETY: open returned a new descriptor that we own.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to an int; TIOCGPTPEER the flags.
    let slave = unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) != 0 {
            return Err(AttachError::Sys("unlocking the new pty", Errno::last()));
        }
        libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC)
    };
    if slave < 0 {
        return Err(AttachError::Sys("opening the new pty's slave (TIOCGPTPEER)", Errno::last()));
    }
    // SAFETY: TIOCGPTPEER returned a new descriptor that we own.
    Ok((master, unsafe { OwnedFd::from_raw_fd(slave) }))
}

/// `/proc/PID/root/<mount point>/ptmx` of the devpts mount with device
/// `dev` in the process's mount namespace.
fn devpts_of(pid: i32, dev: u64) -> Option<PathBuf> {
    let info = fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    let want = format!("{}:{}", nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    info.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-")?;
        let mount_point = fields.get(4)?;
        (fields.get(2) == Some(&want.as_str()) && fields.get(sep + 1) == Some(&"devpts"))
            .then(|| PathBuf::from(format!("/proc/{pid}/root{}/ptmx", unescape(mount_point))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/dev/pts"), "/dev/pts");
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/trailing\\"), "/trailing\\");
    }
}
