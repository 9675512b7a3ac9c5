//! One attach, from redirect to restore.
//!
//! Redirect, with the process stopped: take copies of its descriptors 0, 1
//! and 2 (pidfd_getfd), decide what to re-point (a terminal goes to a new
//! pty of the same devpts; otherwise pipes, stdin only if it is not
//! /dev/null), then inject: `mmap` a scratch page, `socket` + `connect` to
//! the attacher's abstract socket, `recvmsg` the new descriptors, save each
//! original with `fcntl(F_DUPFD_CLOEXEC, 100)`, `dup2` the new ones onto
//! 0/1/2, `close` the extras, `munmap`. A failure undoes what was done, in
//! reverse. The saved copies keep the logger's pipes open meanwhile, so it
//! never sees end of file.
//!
//! Restore, with the process stopped again: for each re-pointed descriptor
//! that still holds what attach put there, `dup2` the saved original back
//! (checked with kcmp to be the very same open file; should the process
//! have lost it, for instance by exec, islander's own copy is sent in over
//! the socket instead), close the saved copies, and drain what the channel
//! still holds into the log before the process runs again, so that the
//! log has every byte once and in order.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::termios::{self, OutputFlags, SetArg};

use super::channel;
use super::guard::Guard;
use super::inject::{self, Stopped};
use super::relay::{self, End};
use super::target::Target;
use super::{sys, AttachError, AttachRequest, Outcome, Result, UserIo};
use crate::isle::record::{Record, Status};
use crate::paths::StateRoot;

/// Saved originals go at or above this number, out of the way of the
/// low numbers a program opens next.
const SAVED_BASE: u64 = 100;
const KCMP_FILE: libc::c_long = 0;
/// Layout of the scratch page mapped in the process.
const PAGE: u64 = 4096;
const PAIR_OFF: u64 = 0;
const MSG_OFF: u64 = 128;
const IOV_OFF: u64 = 192;
const DATA_OFF: u64 = 208;
const CMSG_OFF: u64 = 256;
const CMSG_HDR: u64 = 16;

/// One of the process's descriptors 0, 1, 2.
#[derive(Debug, Default)]
pub struct Slot {
    /// Re-pointed at the attacher while attached.
    pub redirected: bool,
    /// islander's copy of the process's original descriptor.
    pub original: Option<OwnedFd>,
    /// The original's copy inside the process.
    saved: Option<i32>,
    /// The original had FD_CLOEXEC, which dup2 does not carry.
    cloexec: bool,
    /// What attach put there, to tell it from what the process may have
    /// put there itself meanwhile.
    channel: Option<(u64, u64)>,
    /// The original is the user's own output: writing to it too would show
    /// everything twice.
    pub same_as_user: bool,
}

/// islander's ends of what the process now has.
pub enum Ends {
    Pipes {
        /// Writes reach the process's stdin.
        stdin: Option<OwnedFd>,
        stdout: Option<OwnedFd>,
        stderr: Option<OwnedFd>,
    },
    Tty {
        master: OwnedFd,
        /// Kept to read the slave's input queue and termios.
        slave: OwnedFd,
        /// The slot whose original is the process's own terminal.
        tty: usize,
    },
}

pub struct Attached {
    pub target: Target,
    pub pidfd: OwnedFd,
    pub slots: [Slot; 3],
    pub ends: Ends,
}

pub fn run(root: &StateRoot, target: &Target, req: &AttachRequest, io: UserIo) -> Result<Outcome> {
    let began = Instant::now();
    // Before any thread exists, so that every thread has them blocked.
    let signals = relay::block_signals()?;
    let pidfd = pidfd_open(target.tgid)?;
    let winsize = relay::user_window(io);
    let user_out = [io.stdout, io.stdout, io.stderr].map(channel::identity);
    let mut att = inject::with_stopped(target.pid, target.tgid, |t| redirect(t, target, pidfd, req.no_stdin, winsize, user_out))?;
    tracing::debug!(target = %att.target.label(), "attached after {:?}", began.elapsed());
    let mut guard = Guard::start(&mut att)?;
    let end = relay::run(&mut att, io, &req.detach_keys, &signals, &mut guard, !req.no_stdin);
    let tty_mode = matches!(att.ends, Ends::Tty { .. });
    let mut to_user = |slot: usize, data: &[u8]| relay::to_user_mode(io, tty_mode, slot, data);
    if let Ok(End::Exited) = end {
        guard.done();
        return Ok(Outcome::Exited(exit_status(root, att)));
    }
    match restore(&mut att, &mut to_user) {
        Ok(()) => {
            guard.done();
            end.map(|_| Outcome::Detached)
        }
        Err(AttachError::Exited(_)) => {
            guard.done();
            Ok(Outcome::Exited(exit_status(root, att)))
        }
        // The guard sees the lifeline close without `d` and keeps trying.
        Err(e) => Err(AttachError::RestoreLater { pid: att.target.pid, guard: guard.pid(), reason: e.to_string() }),
    }
}

fn pidfd_open(pid: i32) -> Result<OwnedFd> {
    // SAFETY: pidfd_open with plain integers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(match Errno::last() {
            Errno::ESRCH => AttachError::Exited(pid),
            e => AttachError::Sys("pidfd_open", e),
        });
    }
    // SAFETY: pidfd_open returned a new descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// islander's own copy of descriptor `fd` of the process, if it is open.
fn pidfd_getfd(pidfd: BorrowedFd, fd: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_getfd with plain integers.
    let got = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    // SAFETY: a non-negative result is a new descriptor that we own.
    (got >= 0).then(|| unsafe { OwnedFd::from_raw_fd(got as RawFd) })
}

/// Whether descriptor `fd` of `pid` has FD_CLOEXEC (the `flags` line of
/// fdinfo shows O_CLOEXEC for it).
fn has_cloexec(pid: i32, fd: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("flags:").map(|v| u64::from_str_radix(v.trim(), 8).ok())))
        .flatten()
        .is_some_and(|flags| flags & libc::O_CLOEXEC as u64 != 0)
}

fn is_terminal(fd: &OwnedFd) -> bool {
    nix::unistd::isatty(fd.as_raw_fd()).unwrap_or(false)
}

fn rdev(fd: &OwnedFd) -> Option<u64> {
    nix::sys::stat::fstat(fd.as_raw_fd()).ok().map(|s| s.st_rdev)
}

fn is_dev_null(fd: &OwnedFd) -> bool {
    nix::sys::stat::fstat(fd.as_raw_fd())
        .is_ok_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFCHR && s.st_rdev == nix::sys::stat::makedev(1, 3))
}

/// Whether two descriptors are the same open file (kcmp KCMP_FILE).
fn same_file(pid1: i32, fd1: RawFd, pid2: i32, fd2: i32) -> bool {
    // SAFETY: kcmp with plain integers.
    unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, KCMP_FILE, fd1, fd2) == 0 }
}

/// What was done in the process, undone in reverse should a later step fail.
enum Undo {
    Munmap(u64),
    Close(i32),
    Restore { fd: i32, saved: i32 },
}

/// `fd` was closed: its number may be reused, so undo must not close it.
fn closed(steps: &mut Vec<Undo>, fd: i32) {
    if let Some(i) = steps.iter().rposition(|s| matches!(s, Undo::Close(f) if *f == fd)) {
        steps.remove(i);
    }
}

fn undo(t: &mut Stopped, steps: Vec<Undo>) {
    for step in steps.into_iter().rev() {
        let r = match step {
            Undo::Munmap(addr) => t.call("munmap", libc::SYS_munmap, &[addr, PAGE]),
            Undo::Close(fd) => t.call("close", libc::SYS_close, &[fd as u64]),
            Undo::Restore { fd, saved } => t.call("dup2", libc::SYS_dup2, &[saved as u64, fd as u64]),
        };
        if let Err(e) = r {
            tracing::warn!(pid = t.pid(), "undoing: {e}");
        }
    }
}

fn redirect(
    t: &mut Stopped,
    target: &Target,
    pidfd: OwnedFd,
    no_stdin: bool,
    winsize: Option<libc::winsize>,
    user_out: [Option<(u64, u64)>; 3],
) -> Result<Attached> {
    let pid = t.pid();
    let mut slots: [Slot; 3] = Default::default();
    for (i, slot) in slots.iter_mut().enumerate() {
        slot.original = pidfd_getfd(pidfd.as_fd(), i as i32);
        slot.cloexec = has_cloexec(pid, i as i32);
        slot.same_as_user =
            i > 0 && slot.original.as_ref().and_then(|o| channel::identity(o.as_raw_fd())).is_some_and(|id| Some(id) == user_out[i]);
    }
    // (slot, islander's descriptor of what the slot gets); `keep` holds the
    // process's ends of new pipes until they are sent.
    let mut sends: Vec<(usize, RawFd)> = Vec::new();
    let mut keep: Vec<OwnedFd> = Vec::new();
    // A terminal on stdout (or else stdin, or stderr) makes this a tty
    // attach; the slots on that same terminal move to the new one.
    let tty = [1usize, 0, 2].into_iter().find(|&i| slots[i].original.as_ref().is_some_and(is_terminal));
    let ends = match tty {
        Some(k) => {
            let orig = slots[k].original.as_ref().expect("found above");
            let tty_rdev = rdev(orig);
            let (master, slave) = channel::new_pty(pid, orig.as_fd())?;
            // The process keeps its terminal's settings and size.
            let settings = termios::tcgetattr(orig.as_fd()).map_err(sys("reading the terminal's settings"))?;
            termios::tcsetattr(slave.as_fd(), SetArg::TCSANOW, &settings).map_err(sys("setting the new pty's settings"))?;
            if let Some(ws) = winsize.or_else(|| relay::window_of(orig.as_fd())) {
                relay::set_window(master.as_fd(), &ws);
            }
            own_like(&slave, pid);
            for (i, slot) in slots.iter_mut().enumerate() {
                let on_tty = slot.original.as_ref().is_some_and(|o| is_terminal(o) && rdev(o) == tty_rdev);
                if on_tty && !(i == 0 && no_stdin) {
                    slot.redirected = true;
                    slot.channel = channel::identity(slave.as_raw_fd());
                    sends.push((i, slave.as_raw_fd()));
                }
            }
            channel::set_nonblocking(master.as_fd())?;
            Ends::Tty { master, slave, tty: k }
        }
        None => {
            let mut ours: [Option<OwnedFd>; 3] = [None, None, None];
            for (i, slot) in slots.iter_mut().enumerate() {
                let Some(orig) = slot.original.as_ref() else { continue };
                if i == 0 && (no_stdin || is_dev_null(orig)) {
                    continue;
                }
                let (r, w) = channel::pipe()?;
                let (mine, theirs) = if i == 0 { (w, r) } else { (r, w) };
                channel::set_nonblocking(mine.as_fd())?;
                slot.redirected = true;
                slot.channel = channel::identity(theirs.as_raw_fd());
                sends.push((i, theirs.as_raw_fd()));
                ours[i] = Some(mine);
                keep.push(theirs);
            }
            let [stdin, stdout, stderr] = ours;
            Ends::Pipes { stdin, stdout, stderr }
        }
    };
    inject_redirect(t, pidfd.as_fd(), &mut slots, &sends)?;
    drop(keep);
    if let Ends::Tty { tty, .. } = &ends {
        // What the process writes reaches its terminal (and so the log)
        // from islander, already processed by the new pty; the original
        // must pass it on unchanged. Restore copies the settings back.
        if let Some(orig) = slots[*tty].original.as_ref() {
            if let Ok(mut s) = termios::tcgetattr(orig.as_fd()) {
                s.output_flags.remove(OutputFlags::OPOST);
                let _ = termios::tcsetattr(orig.as_fd(), SetArg::TCSANOW, &s);
            }
        }
    }
    Ok(Attached { target: target.clone(), pidfd, slots, ends })
}

/// The new pty belongs to the process's user, as a login terminal would.
fn own_like(slave: &OwnedFd, pid: i32) {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else { return };
    let id = |key: &str| -> Option<u32> {
        status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    if let (Some(uid), Some(gid)) = (id("Uid:"), id("Gid:")) {
        let _ = nix::unistd::fchown(slave.as_raw_fd(), Some(uid.into()), Some(gid.into()));
    }
}

/// The injected part of redirect: `sends` are (slot, islander's descriptor
/// of what the slot gets). On failure everything is undone.
fn inject_redirect(t: &mut Stopped, pidfd: BorrowedFd, slots: &mut [Slot; 3], sends: &[(usize, RawFd)]) -> Result<()> {
    if sends.is_empty() {
        return Err(AttachError::NothingToAttach(t.pid()));
    }
    let mut steps = Vec::new();
    match inject_steps(t, pidfd, slots, sends, &mut steps) {
        Ok(()) => Ok(()),
        Err(e) => {
            if !matches!(e, AttachError::Exited(_)) {
                undo(t, steps);
            }
            for s in slots.iter_mut() {
                s.redirected = false;
                s.saved = None;
            }
            Err(e)
        }
    }
}

fn inject_steps(t: &mut Stopped, pidfd: BorrowedFd, slots: &mut [Slot; 3], sends: &[(usize, RawFd)], steps: &mut Vec<Undo>) -> Result<()> {
    let scratch = map_scratch(t)?;
    steps.push(Undo::Munmap(scratch));
    // The same descriptor for several slots (a terminal) is sent once.
    let mut unique: Vec<RawFd> = Vec::new();
    for &(_, fd) in sends {
        if !unique.contains(&fd) {
            unique.push(fd);
        }
    }
    let received = deliver(t, pidfd, scratch, &unique, steps)?;
    for &(slot, _) in sends {
        let saved = t.call_ok("fcntl(F_DUPFD_CLOEXEC)", libc::SYS_fcntl, &[slot as u64, libc::F_DUPFD_CLOEXEC as u64, SAVED_BASE])? as i32;
        steps.push(Undo::Close(saved));
        slots[slot].saved = Some(saved);
    }
    for &(slot, fd) in sends {
        let theirs = received[unique.iter().position(|&u| u == fd).expect("sent")];
        t.call_ok("dup2", libc::SYS_dup2, &[theirs as u64, slot as u64])?;
        steps.push(Undo::Restore { fd: slot as i32, saved: slots[slot].saved.expect("saved above") });
        if slots[slot].cloexec {
            t.call_ok("fcntl(F_SETFD)", libc::SYS_fcntl, &[slot as u64, libc::F_SETFD as u64, libc::FD_CLOEXEC as u64])?;
        }
    }
    // Done: the extras go; their failure would leave only a stray copy.
    for fd in received {
        let _ = t.call("close", libc::SYS_close, &[fd as u64]);
    }
    let _ = t.call("munmap", libc::SYS_munmap, &[scratch, PAGE]);
    steps.clear();
    Ok(())
}

fn map_scratch(t: &mut Stopped) -> Result<u64> {
    let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    t.call_ok("mmap", libc::SYS_mmap, &[0, PAGE, prot, flags, u64::MAX, 0])
}

/// Puts `fds` (islander's) into the process: it makes a socket pair,
/// islander takes one end (pidfd_getfd) and sends them, the process
/// receives them on the other. Returns their numbers in the process, all 3
/// or above and close-on-exec.
fn deliver(t: &mut Stopped, pidfd: BorrowedFd, scratch: u64, fds: &[RawFd], steps: &mut Vec<Undo>) -> Result<Vec<i32>> {
    let sock_type = (libc::SOCK_STREAM | libc::SOCK_CLOEXEC) as u64;
    t.call_ok("socketpair", libc::SYS_socketpair, &[libc::AF_UNIX as u64, sock_type, 0, scratch + PAIR_OFF])?;
    let mut pair = [0u8; 8];
    t.read(scratch + PAIR_OFF, &mut pair).map_err(|e| AttachError::Lost { pid: t.pid(), what: format!("reading its memory: {e}") })?;
    let sock = i32::from_ne_bytes(pair[0..4].try_into().expect("4 bytes"));
    let peer = i32::from_ne_bytes(pair[4..8].try_into().expect("4 bytes"));
    steps.push(Undo::Close(sock));
    steps.push(Undo::Close(peer));
    let ours = pidfd_getfd(pidfd, peer)
        .ok_or_else(|| AttachError::Channel { pid: t.pid(), reason: format!("pidfd_getfd of its socket: {}", Errno::last()) })?;
    channel::send_fds(&ours, fds)?;
    drop(ours);

    let space = CMSG_HDR + (4 * fds.len() as u64).div_ceil(8) * 8;
    let mut iov = Vec::new();
    iov.extend_from_slice(&(scratch + DATA_OFF).to_ne_bytes());
    iov.extend_from_slice(&1u64.to_ne_bytes());
    t.write(scratch + IOV_OFF, &iov)?;
    let mut msg = vec![0u8; 56];
    msg[16..24].copy_from_slice(&(scratch + IOV_OFF).to_ne_bytes());
    msg[24..32].copy_from_slice(&1u64.to_ne_bytes());
    msg[32..40].copy_from_slice(&(scratch + CMSG_OFF).to_ne_bytes());
    msg[40..48].copy_from_slice(&space.to_ne_bytes());
    t.write(scratch + MSG_OFF, &msg)?;
    t.write(scratch + CMSG_OFF, &vec![0u8; space as usize])?;
    t.call_ok("recvmsg", libc::SYS_recvmsg, &[sock as u64, scratch + MSG_OFF, libc::MSG_CMSG_CLOEXEC as u64])?;

    let mut cmsg = vec![0u8; space as usize];
    t.read(scratch + CMSG_OFF, &mut cmsg).map_err(|e| AttachError::Lost { pid: t.pid(), what: format!("reading its memory: {e}") })?;
    let len = u64::from_ne_bytes(cmsg[0..8].try_into().expect("8 bytes"));
    let level = i32::from_ne_bytes(cmsg[8..12].try_into().expect("4 bytes"));
    let kind = i32::from_ne_bytes(cmsg[12..16].try_into().expect("4 bytes"));
    let count = (len.saturating_sub(CMSG_HDR) / 4) as usize;
    let mut got: Vec<i32> =
        (0..count.min(fds.len())).map(|i| i32::from_ne_bytes(cmsg[16 + 4 * i..20 + 4 * i].try_into().expect("4 bytes"))).collect();
    for &fd in &got {
        steps.push(Undo::Close(fd));
    }
    if level != libc::SOL_SOCKET || kind != libc::SCM_RIGHTS || got.len() != fds.len() {
        return Err(AttachError::Channel { pid: t.pid(), reason: format!("it received {} of {} descriptors", got.len(), fds.len()) });
    }
    // A received descriptor may take the number of a closed 0, 1 or 2,
    // which a later dup2 onto that number would then close.
    for fd in got.iter_mut() {
        if *fd < 3 {
            let moved = t.call_ok("fcntl(F_DUPFD_CLOEXEC)", libc::SYS_fcntl, &[*fd as u64, libc::F_DUPFD_CLOEXEC as u64, 3])? as i32;
            steps.push(Undo::Close(moved));
            t.call_ok("close", libc::SYS_close, &[*fd as u64])?;
            closed(steps, *fd);
            *fd = moved;
        }
    }
    for fd in [sock, peer] {
        let _ = t.call("close", libc::SYS_close, &[fd as u64]);
        closed(steps, fd);
    }
    Ok(got)
}

/// Where drained output goes: (slot, data).
pub type Sink<'a> = &'a mut (dyn FnMut(usize, &[u8]) + Send);

/// Gives the process its descriptors back and drains the channel into
/// `out` (slot, data) and the originals. Idempotent: only what still holds
/// attach's channel is put back, so a second run (the guard's) is safe.
pub fn restore(att: &mut Attached, out: Sink) -> Result<()> {
    // The traced thread may have ended while its process lives on.
    let pid = if fs::metadata(format!("/proc/{}", att.target.pid)).is_ok() { att.target.pid } else { att.target.tgid };
    let tgid = att.target.tgid;
    inject::with_stopped(pid, tgid, |t| {
        let result = put_back(t, att);
        // Whatever the process wrote before it stopped reaches the log now,
        // before anything it writes after.
        relay::drain(att, out);
        result
    })
}

fn put_back(t: &mut Stopped, att: &mut Attached) -> Result<()> {
    let me = std::process::id() as i32;
    let (pid, tgid) = (t.pid(), t.tgid());
    let mut missing = Vec::new();
    let mut first_err = None;
    for i in 0..3 {
        let slot = &att.slots[i];
        if !slot.redirected {
            continue;
        }
        let still_ours = slot.channel.is_some() && channel::identity_in(pid, i as i32) == slot.channel;
        let saved_ok = slot.saved.is_some_and(|s| slot.original.as_ref().is_some_and(|o| same_file(me, o.as_raw_fd(), tgid, s)));
        if !still_ours {
            // The process put something else there itself: that stays.
            tracing::info!(pid, fd = i, "the process replaced the descriptor while attached; leaving it");
        } else if saved_ok {
            let saved = slot.saved.expect("checked");
            if let Err(e) = t.call_ok("dup2", libc::SYS_dup2, &[saved as u64, i as u64]) {
                first_err.get_or_insert(e);
            } else if slot.cloexec {
                let _ = t.call("fcntl(F_SETFD)", libc::SYS_fcntl, &[i as u64, libc::F_SETFD as u64, libc::FD_CLOEXEC as u64]);
            }
        } else if slot.original.is_some() {
            missing.push(i);
        }
    }
    if !missing.is_empty() {
        // Lost (by exec, say): islander's copy goes in over a socket.
        if let Err(e) = send_back(t, att, &missing) {
            first_err.get_or_insert(e);
        }
    }
    for i in 0..3 {
        let slot = &mut att.slots[i];
        if let Some(saved) = slot.saved.take() {
            if slot.original.as_ref().is_some_and(|o| same_file(me, o.as_raw_fd(), tgid, saved)) {
                let _ = t.call("close", libc::SYS_close, &[saved as u64]);
            }
        }
    }
    if first_err.is_none() {
        for slot in att.slots.iter_mut() {
            slot.redirected = false;
        }
    }
    if let Ends::Tty { slave, tty, .. } = &att.ends {
        // The process's terminal settings, as it changed them while
        // attached (a shell's raw mode, say), and OPOST back.
        if let (Some(orig), Ok(settings)) = (att.slots[*tty].original.as_ref(), termios::tcgetattr(slave.as_fd())) {
            let _ = termios::tcsetattr(orig.as_fd(), SetArg::TCSANOW, &settings);
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Sends islander's copies of the originals of `slots` in and dup2s them.
fn send_back(t: &mut Stopped, att: &Attached, slots: &[usize]) -> Result<()> {
    let scratch = map_scratch(t)?;
    let mut steps = vec![Undo::Munmap(scratch)];
    let fds: Vec<RawFd> = slots.iter().map(|&i| att.slots[i].original.as_ref().expect("checked").as_raw_fd()).collect();
    let result = deliver(t, att.pidfd.as_fd(), scratch, &fds, &mut steps).and_then(|got| {
        for (k, &i) in slots.iter().enumerate() {
            t.call_ok("dup2", libc::SYS_dup2, &[got[k] as u64, i as u64])?;
            if att.slots[i].cloexec {
                let _ = t.call("fcntl(F_SETFD)", libc::SYS_fcntl, &[i as u64, libc::F_SETFD as u64, libc::FD_CLOEXEC as u64]);
            }
        }
        Ok(())
    });
    // Success or not, the received copies and the page go.
    undo(t, steps);
    result
}

/// The isle's exit status, once its supervisor has recorded it.
fn exit_status(root: &StateRoot, att: Attached) -> Option<i32> {
    let target = att.target.clone();
    // The copies of the logger's pipes go first: the supervisor records
    // the exit once it has read them to their end.
    drop(att);
    let rec = target.isle.as_ref().filter(|_| target.is_isle_init())?;
    let dir = root.isle_run(&rec.id);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Some(r) = Record::load(&dir) {
            if r.status == Status::Exited {
                return r.exit.and_then(|e| e.exit).map(|e| e.status());
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}
