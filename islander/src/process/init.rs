//! The isle's init: the process cloned into the isle's namespaces. It waits
//! for islander's go-ahead, builds the root file system, hardens itself and
//! execs the command, which so becomes PID 1 of the isle.
//!
//! It runs in a copy of islander's memory (clone without CLONE_VM) of a
//! single-threaded process, so it may allocate; it reports any failure to the
//! parent as a [`Message`] and exits, never returns.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{dup2, execve, sethostname, setresgid, setresuid, setsid, Gid, Uid};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::message::{Channel, Message};
use super::signals::unblock_all;
use super::{ProcessError, Result};
use crate::rootfs::{devices, hardening, idmap, mounts, overlay::Layers};

/// Everything init needs, prepared by the parent before the clone.
pub struct InitContext {
    pub spec: Spec,
    pub layers: Layers,
    /// With `-i` the isle reads islander's stdin; otherwise `/dev/null`.
    pub interactive: bool,
    /// Descriptors (inherited through clone) to become the isle's 0, 1, 2;
    /// `None` keeps islander's own (or `/dev/null` for a stdin not asked for).
    pub stdio: [Option<RawFd>; 3],
}

/// The clone callback: never returns normally; the value is the exit status
/// should set-up fail.
pub fn run(ctx: &InitContext, chan: &Channel) -> isize {
    match init(ctx, chan) {
        Ok(never) => match never {},
        Err(err) => {
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
            err.exit_code() as isize
        }
    }
}

fn sys(op: &'static str) -> impl FnOnce(nix::Error) -> ProcessError {
    move |e| ProcessError::Sys(op, e)
}

fn setup<E: std::fmt::Display>(e: E) -> ProcessError {
    ProcessError::Setup(e.to_string())
}

fn init(ctx: &InitContext, chan: &Channel) -> Result<Infallible> {
    // A foreground isle must not outlive islander: if islander is killed,
    // the kernel kills this process, and with PID 1 the whole isle.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(sys("PR_SET_PDEATHSIG"))?;
    // Should islander have died before that took effect, its end of the
    // channel is closed and the wait for the go-ahead below reads EOF.
    // (getppid() cannot tell: in a new PID namespace it reads 0.)

    let mut idmapped_lower = None;
    loop {
        match chan.recv()? {
            Some((Message::Go, _)) => break,
            Some((Message::IdmappedLower, Some(fd))) => idmapped_lower = Some(fd),
            other => return Err(ProcessError::Protocol(format!("expected go-ahead, got {other:?}"))),
        }
    }

    let spec = &ctx.spec;
    let linux = spec.linux().as_ref().ok_or_else(|| setup("spec has no linux section"))?;
    let namespaces = linux.namespaces().as_deref().unwrap_or(&[]);
    let userns = namespaces.iter().any(|n| n.typ() == LinuxNamespaceType::User);
    if userns {
        // The id maps are written now; become the isle's root (host 100000).
        setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)).map_err(sys("setresgid"))?;
        setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).map_err(sys("setresuid"))?;
    }
    // Its own session: terminal signals reach islander, which forwards them,
    // rather than reaching the isle twice.
    setsid().map_err(sys("setsid"))?;

    build_root(spec, &ctx.layers, userns, idmapped_lower.as_ref()).map_err(setup)?;
    if let Some(masked) = linux.masked_paths() {
        hardening::mask(masked).map_err(setup)?;
    }
    if let Some(ro) = linux.readonly_paths() {
        hardening::readonly(ro).map_err(setup)?;
    }
    if let Some(h) = spec.hostname() {
        sethostname(h).map_err(sys("sethostname"))?;
    }
    loopback_up()?;

    let process = spec.process().as_ref().ok_or_else(|| setup("spec has no process"))?;
    setup_stdio(process.terminal().unwrap_or(false), ctx.interactive, &ctx.stdio, chan)?;
    match chan.recv()? {
        Some((Message::Joined, _)) => {}
        other => return Err(ProcessError::Protocol(format!("expected cgroups joined, got {other:?}"))),
    }
    let args = process.args().as_deref().unwrap_or(&[]);
    let env = process.env().as_deref().unwrap_or(&[]);
    exec_command(process, args, env, process.cwd())
}

/// `islander exec`'s last step, in a process that has joined the isle's
/// namespaces and cgroups: a session and stdio of its own, then the same
/// hardening and exec as the isle's init. Returns only on failure.
pub fn exec_in_isle(
    spec: &Spec,
    args: &[String],
    extra_env: &[String],
    workdir: Option<&Path>,
    tty: bool,
    interactive: bool,
    chan: &Channel,
) -> ProcessError {
    let run = || -> Result<Infallible> {
        let process = spec.process().as_ref().ok_or_else(|| setup("spec has no process"))?;
        setsid().map_err(sys("setsid"))?;
        setup_stdio(tty, interactive, &[None, None, None], chan)?;
        let mut env: Vec<String> = process.env().clone().unwrap_or_default();
        for e in extra_env {
            let key = e.split('=').next().unwrap_or("");
            env.retain(|old| old.split('=').next() != Some(key));
            env.push(e.clone());
        }
        if tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        exec_command(process, args, &env, workdir.unwrap_or(process.cwd()))
    };
    match run() {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// Working directory, command lookup, capabilities, `no_new_privs`, a clean
/// signal state, and exec.
fn exec_command(process: &oci_spec::runtime::Process, args: &[String], env: &[String], cwd: &Path) -> Result<Infallible> {
    nix::unistd::chdir(cwd).map_err(|e| setup(format!("working directory '{}': {e}", cwd.display())))?;
    let command = args.first().ok_or_else(|| setup("no command given"))?;
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(crate::spec::DEFAULT_PATH)
        .to_string();
    let program = resolve(command, &path_var)?;

    if let Some(caps) = process.capabilities() {
        drop_capabilities(caps)?;
    }
    if process.no_new_privileges().unwrap_or(true) {
        nix::sys::prctl::set_no_new_privs().map_err(sys("PR_SET_NO_NEW_PRIVS"))?;
    }

    let c_prog = CString::new(program.as_os_str().as_bytes()).map_err(setup)?;
    let c_args: Vec<CString> = args.iter().map(|a| CString::new(a.as_bytes())).collect::<Result<_, _>>().map_err(setup)?;
    let c_env: Vec<CString> = env.iter().map(|a| CString::new(a.as_bytes())).collect::<Result<_, _>>().map_err(setup)?;
    reset_signals();
    unblock_all()?;
    // Whatever islander's caller left open (a shell's stray descriptors)
    // must not reach the isle: everything above stderr closes at exec. The
    // channel to islander is among them, which is how islander learns that
    // exec succeeded.
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as u32) };
    let err = execve(&c_prog, &c_args, &c_env).unwrap_err();
    Err(match err {
        nix::errno::Errno::ENOENT => ProcessError::CommandNotFound { command: command.clone(), path: path_var },
        e => ProcessError::NotExecutable { command: command.clone(), reason: e.desc().to_string() },
    })
}

/// Overlay, kernel file systems, `/dev`, then `pivot_root` into it.
fn build_root(spec: &Spec, layers: &Layers, userns: bool, idmapped_lower: Option<&OwnedFd>) -> crate::rootfs::Result<()> {
    mounts::make_private()?;
    match idmapped_lower {
        Some(tree) => {
            let mapped = layers.mapped_lower();
            idmap::attach(tree, &mapped.lower)?;
            mounts::mount_overlay(&mapped)?;
        }
        None => mounts::mount_overlay(layers)?,
    }
    // pivot_root needs the new root to be a mount point of its own; the
    // overlay is one.
    let root = &layers.merged;
    mounts::mount_all(root, spec.mounts().as_deref().unwrap_or(&[]))?;
    devices::populate(&root.join("dev"), userns)?;
    mounts::pivot(root)
}

/// Brings up `lo`, the only interface of the isle's network namespace.
fn loopback_up() -> Result<()> {
    // SAFETY: plain socket/ioctl calls on a zeroed ifreq naming "lo".
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(ProcessError::Sys("socket for lo", nix::errno::Errno::last()));
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        let err = nix::errno::Errno::last();
        libc::close(fd);
        if rc != 0 {
            return Err(ProcessError::Sys("bringing lo up", err));
        }
    }
    Ok(())
}

/// With a terminal, allocates the pty inside the isle's own devpts (so that
/// `tty` and `ttyname` work there), makes it the controlling terminal and
/// hands the master to islander.
fn setup_stdio(terminal: bool, interactive: bool, stdio: &[Option<RawFd>; 3], chan: &Channel) -> Result<()> {
    if terminal {
        let master = open("/dev/ptmx", OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(sys("opening /dev/ptmx"))?;
        // SAFETY: `open` returned a fresh descriptor that nothing else owns.
        let master: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(master) };
        // SAFETY: unlockpt/ptsname_r on a valid pty master.
        let slave_name = unsafe {
            if libc::unlockpt(master.as_raw_fd()) != 0 {
                return Err(ProcessError::Sys("unlockpt", nix::errno::Errno::last()));
            }
            let mut buf = [0 as libc::c_char; 128];
            if libc::ptsname_r(master.as_raw_fd(), buf.as_mut_ptr(), buf.len()) != 0 {
                return Err(ProcessError::Sys("ptsname", nix::errno::Errno::last()));
            }
            std::ffi::CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
        };
        let slave = open(slave_name.as_str(), OFlag::O_RDWR, Mode::empty()).map_err(sys("opening the pty"))?;
        // SAFETY: TIOCSCTTY on our own session's new terminal.
        if unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) } != 0 {
            return Err(ProcessError::Sys("TIOCSCTTY", nix::errno::Errno::last()));
        }
        for fd in 0..3 {
            dup2(slave, fd).map_err(sys("dup2 of the pty"))?;
        }
        if slave > 2 {
            let _ = nix::unistd::close(slave);
        }
        chan.send_with_fd(&Message::PtyMaster, Some(master.as_raw_fd()))?;
        return Ok(());
    }
    for (target, fd) in stdio.iter().enumerate() {
        if let Some(fd) = *fd {
            if fd != target as RawFd {
                dup2(fd, target as RawFd).map_err(sys("dup2 of the isle's stdio"))?;
            } else {
                // Already in place, but close-on-exec like every pipe end.
                nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))
                    .map_err(sys("clearing close-on-exec"))?;
            }
        }
    }
    if stdio[0].is_none() && !interactive {
        let null = open("/dev/null", OFlag::O_RDONLY, Mode::empty()).map_err(sys("opening /dev/null"))?;
        dup2(null, 0).map_err(sys("dup2 of /dev/null"))?;
        if null != 0 {
            let _ = nix::unistd::close(null);
        }
    }
    Ok(())
}

/// Finds the command as execvp would, but inside the isle's root, so that a
/// missing command is told apart from a failing one.
fn resolve(command: &str, path_var: &str) -> Result<PathBuf> {
    if command.contains('/') {
        let p = PathBuf::from(command);
        return match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => Err(ProcessError::NotExecutable { command: command.into(), reason: "is a directory".into() }),
            Ok(_) => Ok(p),
            Err(_) => Err(ProcessError::CommandNotFound { command: command.into(), path: path_var.into() }),
        };
    }
    let mut found_unexecutable = None;
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(command);
        if let Ok(m) = std::fs::metadata(&p) {
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Ok(p);
            }
            found_unexecutable.get_or_insert(p);
        }
    }
    match found_unexecutable {
        Some(p) => Err(ProcessError::NotExecutable { command: command.into(), reason: format!("{} is not executable", p.display()) }),
        None => Err(ProcessError::CommandNotFound { command: command.into(), path: path_var.into() }),
    }
}

/// Cuts the bounding set to the spec's and clears what exec would otherwise
/// pass on. Root's permitted set after exec is its bounding set.
fn drop_capabilities(caps: &oci_spec::runtime::LinuxCapabilities) -> Result<()> {
    use caps::CapSet;
    let keep = caps.bounding().as_ref().map(crate::spec::to_caps).unwrap_or_default();
    let cap_err = |e: caps::errors::CapsError| ProcessError::Setup(format!("capabilities: {e}"));
    for cap in caps::all() {
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap).map_err(cap_err)?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(cap_err)?;
    caps::clear(None, CapSet::Inheritable).map_err(cap_err)?;
    Ok(())
}

/// Exec keeps ignored dispositions; the command must start with defaults.
fn reset_signals() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    for s in Signal::iterator() {
        if matches!(s, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: resetting to the default disposition installs no handler.
        let _ = unsafe { signal(s, SigHandler::SigDfl) };
    }
}
