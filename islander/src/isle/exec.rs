//! `islander exec`: run another command inside a running isle. It joins the
//! isle's namespaces and cgroups, takes on the hardening of the isle's spec
//! (capabilities, `no_new_privs`), and is supervised like the isle itself:
//! its exit status becomes islander's, signals are forwarded, and `-t`
//! gives it a pty from the isle's own devpts.

use std::fs::File;
use std::os::fd::OwnedFd;

use nix::sched::{setns, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::record::{Record, Status};
use super::IsleError;
use crate::cgroups::Cgroups;
use crate::process::message::{channel, Channel, Message};
use crate::process::supervisor::{self, IsleOutput, Supervision};
use crate::process::{init, signals, ProcessError};
use crate::paths::StateRoot;
use crate::Result;

#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<std::path::PathBuf>,
    pub interactive: bool,
    pub tty: bool,
}

/// The namespaces an exec joins, in the order it must join them: the user
/// namespace first (it owns the others), the PID namespace before the fork
/// that makes its member, the mount namespace last (it hides /proc/PID).
const ORDER: [(LinuxNamespaceType, &str, CloneFlags); 6] = [
    (LinuxNamespaceType::User, "user", CloneFlags::CLONE_NEWUSER),
    (LinuxNamespaceType::Ipc, "ipc", CloneFlags::CLONE_NEWIPC),
    (LinuxNamespaceType::Uts, "uts", CloneFlags::CLONE_NEWUTS),
    (LinuxNamespaceType::Network, "net", CloneFlags::CLONE_NEWNET),
    (LinuxNamespaceType::Pid, "pid", CloneFlags::CLONE_NEWPID),
    (LinuxNamespaceType::Mount, "mnt", CloneFlags::CLONE_NEWNS),
];

pub fn exec(root: &StateRoot, rec: &Record, req: ExecRequest) -> Result<i32> {
    let pid = match (&rec.status, rec.pid) {
        (Status::Running, Some(p)) if p.is_alive() => p.pid,
        _ => return Err(IsleError::NotRunning(rec.id[..12].to_string()).into()),
    };
    let spec = Spec::load(root.isle_run(&rec.id).join("config.json"))
        .map_err(|e| IsleError::Corrupt { id: rec.id.clone(), reason: e.to_string() })?;
    let wanted: Vec<LinuxNamespaceType> = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .map(|n| n.typ())
        .collect();
    // Open every namespace first: once in the isle's mount namespace, the
    // host's /proc/PID is out of sight.
    let mut namespaces = Vec::new();
    for (typ, name, flag) in ORDER {
        if wanted.contains(&typ) {
            let path = format!("/proc/{pid}/ns/{name}");
            let f = File::open(&path).map_err(|source| IsleError::Io { op: "opening", path: path.into(), source })?;
            namespaces.push((f, flag));
        }
    }
    let cgroups = Cgroups::open(&rec.id);
    let signal_fd = signals::block()?;
    // The exec'd process is a grandchild; as a subreaper islander becomes
    // its parent when the intermediate leaves, and can wait for it. It must
    // be one before the intermediate can exit.
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| ProcessError::Sys("PR_SET_CHILD_SUBREAPER", e))?;
    let (ours, theirs) = channel()?;
    // SAFETY: islander is single-threaded; the child only joins, forks and
    // execs (or reports an error and exits).
    match unsafe { fork() }.map_err(|e| ProcessError::Sys("fork", e))? {
        ForkResult::Child => {
            drop(ours);
            let code = match enter(&cgroups, &namespaces, &spec, &req, &theirs) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = theirs.send(&Message::SetupFailed { reason: e.to_string() });
                    125
                }
            };
            // SAFETY: leaving the forked child without running the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(theirs);
            supervise_exec(child, ours, &signal_fd, &req)
        }
    }
}

/// The intermediate process: joins, forks the member of the isle's PID
/// namespace, tells islander its pid and leaves. islander, a child
/// subreaper, inherits it.
fn enter(
    cgroups: &Cgroups,
    namespaces: &[(File, CloneFlags)],
    spec: &Spec,
    req: &ExecRequest,
    chan: &Channel,
) -> Result<()> {
    cgroups.add_task(std::process::id() as i32)?;
    for (f, flag) in namespaces {
        setns(f, *flag).map_err(|e| ProcessError::Sys("setns", e))?;
    }
    // SAFETY: single-threaded child.
    match unsafe { fork() }.map_err(|e| ProcessError::Sys("fork", e))? {
        ForkResult::Child => {
            let err = init::exec_in_isle(spec, &req.args, &req.env, req.workdir.as_deref(), req.tty, req.interactive, chan);
            let msg = match &err {
                ProcessError::CommandNotFound { command, path } => {
                    Message::ExecFailed { command: command.clone(), errno: libc::ENOENT, path: path.clone() }
                }
                ProcessError::NotExecutable { command, reason } => {
                    Message::ExecFailed { command: command.clone(), errno: libc::EACCES, path: reason.clone() }
                }
                other => Message::SetupFailed { reason: other.to_string() },
            };
            let _ = chan.send(&msg);
            // SAFETY: as above.
            unsafe { libc::_exit(err.exit_code()) }
        }
        ForkResult::Parent { child } => {
            chan.send(&Message::ExecPid { pid: child.as_raw() })?;
            Ok(())
        }
    }
}

fn supervise_exec(intermediate: Pid, chan: Channel, signal_fd: &nix::sys::signalfd::SignalFd, req: &ExecRequest) -> Result<i32> {
    let mut target = None;
    let mut pty: Option<OwnedFd> = None;
    loop {
        match chan.recv()? {
            Some((Message::ExecPid { pid }, _)) => target = Some(Pid::from_raw(pid)),
            Some((Message::PtyMaster, fd)) => pty = fd,
            Some((Message::SetupFailed { reason }, _)) => {
                let _ = waitpid(intermediate, None);
                return Err(ProcessError::Setup(reason).into());
            }
            Some((Message::ExecFailed { command, errno, path }, _)) => {
                let _ = waitpid(intermediate, None);
                return Err(if errno == libc::ENOENT {
                    ProcessError::CommandNotFound { command, path }
                } else {
                    ProcessError::NotExecutable { command, reason: path }
                }
                .into());
            }
            Some(_) => {}
            // End of file: the command exec'd (every end is close-on-exec).
            None => break,
        }
    }
    match waitpid(intermediate, None) {
        Ok(WaitStatus::Exited(_, 0)) => {}
        _ => return Err(ProcessError::Setup("joining the isle failed".into()).into()),
    }
    let target = target.ok_or_else(|| ProcessError::Setup("the isle's new process vanished".into()))?;
    let output = IsleOutput { pty, stdout: None, stderr: None };
    let exit = supervisor::supervise(
        target,
        signal_fd,
        &output,
        Supervision { echo: true, relay_stdin: req.interactive, log: None },
    )?;
    Ok(exit.status())
}
