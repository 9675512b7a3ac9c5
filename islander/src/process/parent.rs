//! islander's side of starting an isle: clone init into fresh namespaces,
//! write its id maps, join it to its cgroups, let it go, and wait until it
//! has exec'd the command or failed.

use std::os::fd::OwnedFd;

use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType};

use super::init::{self, InitContext};
use super::message::{channel, Message};
use super::{ProcessError, Result};

/// A started isle: its PID 1 as the host sees it, and its terminal.
#[derive(Debug)]
pub struct Started {
    pub pid: Pid,
    pub pty_master: Option<OwnedFd>,
}

const STACK_SIZE: usize = 1024 * 1024;

fn clone_flags(ctx: &InitContext) -> CloneFlags {
    let mut flags = CloneFlags::empty();
    let namespaces = ctx.spec.linux().as_ref().and_then(|l| l.namespaces().clone()).unwrap_or_default();
    for ns in namespaces {
        flags |= match ns.typ() {
            LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
            LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
            LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
            LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
            LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            LinuxNamespaceType::Time => CloneFlags::empty(),
        };
    }
    flags
}

/// Starts the isle. `join` runs between clone and go-ahead with the new pid
/// (islander puts it into the isle's cgroups and records it), so that the
/// isle's set-up and command are accounted to the isle from the first
/// instruction. On any failure the half-started isle is killed and reaped.
pub fn start(ctx: &InitContext, join: impl FnOnce(Pid) -> crate::Result<()>) -> crate::Result<Started> {
    let (parent_end, child_end) = channel()?;
    let flags = clone_flags(ctx);
    let mut stack = vec![0u8; STACK_SIZE];
    let parent_fd = parent_end.raw_fd();
    let cb = Box::new(|| {
        // This copy of the parent's end would keep the channel open after
        // exec; only islander may hold it.
        let _ = nix::unistd::close(parent_fd);
        init::run(ctx, &child_end)
    });
    // SAFETY: islander is single-threaded here and the child runs in a copy
    // of its memory (no CLONE_VM), as after fork.
    let pid = unsafe { nix::sched::clone(cb, &mut stack, flags, Some(libc::SIGCHLD)) }
        .map_err(|e| ProcessError::Sys("clone", e))?;
    drop(child_end);

    let abort = |err: crate::Error| -> crate::Error {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        err
    };

    let linux = ctx.spec.linux().as_ref();
    if let Some(maps) = linux.and_then(|l| l.uid_mappings().as_ref()) {
        write_map(pid, "uid_map", maps).map_err(|e| abort(e.into()))?;
    }
    if let Some(maps) = linux.and_then(|l| l.gid_mappings().as_ref()) {
        write_map(pid, "gid_map", maps).map_err(|e| abort(e.into()))?;
    }
    if linux.and_then(|l| l.uid_mappings().as_ref()).is_some() {
        send_idmapped_lower(pid, &ctx.layers.lower, &parent_end).map_err(abort)?;
    }
    parent_end.send(&Message::Go).map_err(|e| abort(e.into()))?;
    // Joining cgroups costs an RCU grace period in cgroup v1 (several ms);
    // init builds the root file system meanwhile and waits for `Joined`
    // only before exec, so the command runs wholly inside its limits.
    join(pid).map_err(abort)?;
    let released = parent_end.send(&Message::Joined).is_ok();

    let mut pty_master = None;
    loop {
        match parent_end.recv().map_err(|e| abort(e.into()))? {
            None if released => return Ok(Started { pid, pty_master }),
            None => return Err(abort(ProcessError::Setup("the isle's init died during set-up".into()).into())),
            Some((Message::PtyMaster, fd)) => pty_master = fd,
            Some((Message::SetupFailed { reason }, _)) => {
                return Err(abort(ProcessError::Setup(reason).into()))
            }
            Some((Message::ExecFailed { command, errno, path }, _)) => {
                let err = if errno == libc::ENOENT {
                    ProcessError::CommandNotFound { command, path }
                } else {
                    ProcessError::NotExecutable { command, reason: path }
                };
                return Err(abort(err.into()));
            }
            Some((other, _)) => {
                return Err(abort(ProcessError::Protocol(format!("unexpected message {other:?}")).into()))
            }
        }
    }
}

fn write_map(pid: Pid, file: &str, maps: &[LinuxIdMapping]) -> Result<()> {
    let path = format!("/proc/{pid}/{file}");
    let body: String = maps
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect();
    std::fs::write(&path, body).map_err(|source| ProcessError::Io { path, source })
}

/// Maps the image through the isle's user namespace and passes the detached
/// mount to init (see `rootfs::idmap`).
fn send_idmapped_lower(pid: Pid, lower: &std::path::Path, chan: &super::message::Channel) -> crate::Result<()> {
    use std::os::fd::AsRawFd;
    let ns_path = format!("/proc/{pid}/ns/user");
    let userns = std::fs::File::open(&ns_path).map_err(|source| ProcessError::Io { path: ns_path, source })?;
    let tree = crate::rootfs::idmap::mapped_tree(lower, userns.as_raw_fd())?;
    chan.send_with_fd(&Message::IdmappedLower, Some(tree.as_raw_fd()))?;
    Ok(())
}
