//! The attacher's poll loop: the process's output to the user and to its
//! original descriptors (so the log misses nothing), the user's input to
//! the process, until the detach keys, the end of the user's input or
//! terminal, a signal, or the process's end.
//!
//! When the process has a terminal, the user's terminal is put in raw mode
//! and the new pty's line discipline does the rest; its size follows the
//! user's (SIGWINCH). The new pty is not the process's controlling terminal
//! (a session keeps the one it has), so what its line discipline would do
//! through the controlling terminal is done here instead: ctrl-c, ctrl-\
//! and ctrl-z signal the foreground process group of the process's
//! terminal, and a resize is set on both ptys, the original's telling the
//! foreground group with SIGWINCH.
//!
//! When it has pipes and the user a terminal, the terminal is raw too, so
//! that the detach keys arrive as typed, and a pty of the attacher's own
//! serves as the line discipline the user expects: echo and line editing,
//! with the user's own settings, whole lines passed to the process. ctrl-c
//! and ctrl-\ send SIGINT and SIGQUIT to the process, as Docker's signal
//! proxy does.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, ControlFlags, LocalFlags, OutputFlags, SetArg, SpecialCharacterIndices, Termios};

use super::guard::Guard;
use super::keys::DetachKeys;
use super::session::{Attached, Ends};
use super::target;
use super::{sys, Result, UserIo};

/// Input waiting for the process beyond this stops reading the user's.
const MAX_PENDING: usize = 256 * 1024;
/// After the user's input ends (not a terminal), the process gets this
/// long to answer once it has read all of it, before the detach...
const ANSWER: Duration = Duration::from_millis(100);
/// ...and this long at most to read it.
const LINGER: Duration = Duration::from_secs(2);

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Detached,
    Exited,
}

/// Blocks the signals the loop handles, in this thread and every thread it
/// starts, and returns a signalfd for them. SIGCHLD is blocked too, for
/// the tracer thread's own signalfd (see `inject`).
pub fn block_signals() -> Result<SignalFd> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGWINCH] {
        set.add(s);
    }
    let mut blocked = set;
    blocked.add(Signal::SIGCHLD);
    blocked.thread_block().map_err(sys("blocking signals"))?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map_err(sys("signalfd"))
}

pub fn window_of(fd: BorrowedFd) -> Option<libc::winsize> {
    // SAFETY: TIOCGWINSZ fills a winsize.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        (libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_row > 0).then_some(ws)
    }
}

pub fn set_window(fd: BorrowedFd, ws: &libc::winsize) {
    // SAFETY: TIOCSWINSZ reads a winsize.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, ws) };
}

/// The size of the user's terminal, from stdout, else stdin.
pub fn user_window(io: UserIo) -> Option<libc::winsize> {
    // SAFETY: the caller's descriptors stay open while attached.
    let (out, inp) = unsafe { (BorrowedFd::borrow_raw(io.stdout), BorrowedFd::borrow_raw(io.stdin)) };
    window_of(out).or_else(|| window_of(inp))
}

fn isatty(fd: RawFd) -> bool {
    nix::unistd::isatty(fd).unwrap_or(false)
}

/// Writes all of `data`, waiting when `fd` is non-blocking and full.
fn write_all(fd: RawFd, mut data: &[u8]) -> std::result::Result<(), Errno> {
    while !data.is_empty() {
        // SAFETY: write from a valid buffer.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n >= 0 {
            data = &data[n as usize..];
            continue;
        }
        match Errno::last() {
            Errno::EINTR => {}
            Errno::EAGAIN => {
                let mut p = [libc::pollfd { fd, events: libc::POLLOUT, revents: 0 }];
                // SAFETY: poll on one valid pollfd.
                unsafe { libc::poll(p.as_mut_ptr(), 1, -1) };
            }
            e => return Err(e),
        }
    }
    Ok(())
}

/// Reads what is there; `Ok(0)` is end of file, EAGAIN nothing for now.
fn read_some(fd: RawFd, buf: &mut [u8]) -> std::result::Result<usize, Errno> {
    loop {
        // SAFETY: read into a valid buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        match Errno::last() {
            Errno::EINTR => continue,
            e => return Err(e),
        }
    }
}

/// Output of `slot` to the user: stderr's to stderr, the rest to stdout.
pub fn to_user(io: UserIo, slot: usize, data: &[u8]) {
    let _ = write_all(if slot == 2 { io.stderr } else { io.stdout }, data);
}

/// Passes output on to the original descriptor, which leads to the log.
fn tee(att: &Attached, slot: usize, data: &[u8]) {
    let s = &att.slots[slot];
    if let (Some(orig), false) = (s.original.as_ref(), s.same_as_user) {
        if let Err(e) = write_all(orig.as_raw_fd(), data) {
            tracing::debug!(slot, "passing output on to the original descriptor: {e}");
        }
    }
}

/// islander's read ends of the process's output, with their slots.
fn outputs(att: &Attached) -> Vec<(RawFd, usize)> {
    match &att.ends {
        Ends::Pipes { stdout, stderr, .. } => {
            let mut v = Vec::new();
            if let Some(o) = stdout {
                v.push((o.as_raw_fd(), 1));
            }
            if let Some(e) = stderr {
                v.push((e.as_raw_fd(), 2));
            }
            v
        }
        Ends::Tty { master, tty, .. } => vec![(master.as_raw_fd(), *tty)],
    }
}

/// Reads everything the channel holds now, to the originals and `out`.
pub fn drain(att: &Attached, out: &mut (dyn FnMut(usize, &[u8]) + Send)) {
    let mut buf = vec![0u8; 64 * 1024];
    for (fd, slot) in outputs(att) {
        while let Ok(n @ 1..) = read_some(fd, &mut buf) {
            tee(att, slot, &buf[..n]);
            out(slot, &buf[..n]);
        }
    }
}

/// The user's terminal in raw mode for the life of the value.
struct RawMode {
    fd: RawFd,
    saved: Termios,
}

impl RawMode {
    /// `keep_output`: leave output processing on (newline to CR-LF), for
    /// output that no pty has processed.
    fn enter(fd: RawFd, keep_output: bool) -> Result<RawMode> {
        // SAFETY: the caller's descriptor stays open while attached.
        let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
        let saved = termios::tcgetattr(bfd).map_err(sys("reading the terminal's settings"))?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        if keep_output {
            raw.output_flags = saved.output_flags;
        }
        termios::tcsetattr(bfd, SetArg::TCSANOW, &raw).map_err(sys("setting the terminal to raw mode"))?;
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: as in `enter`.
        let _ = termios::tcsetattr(unsafe { BorrowedFd::borrow_raw(self.fd) }, SetArg::TCSANOW, &self.saved);
    }
}

/// A pty of the attacher's own, between the user's raw terminal and the
/// process's stdin pipe: keys go into its master, its line discipline
/// echoes (read back from the master) and edits, whole lines come out of
/// its slave.
struct LocalLine {
    master: OwnedFd,
    slave: OwnedFd,
}

impl LocalLine {
    fn new(user: &Termios) -> Result<LocalLine> {
        let mut t = user.clone();
        // Signals are sent by the loop, and the user's terminal processes
        // the output, so neither is done twice.
        t.local_flags.remove(LocalFlags::ISIG);
        t.output_flags.remove(OutputFlags::OPOST);
        t.control_flags.insert(ControlFlags::CREAD);
        let pty = nix::pty::openpty(None, Some(&t)).map_err(sys("openpty"))?;
        for fd in [&pty.master, &pty.slave] {
            nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).map_err(sys("F_SETFD"))?;
            super::channel::set_nonblocking(fd.as_fd())?;
        }
        Ok(LocalLine { master: pty.master, slave: pty.slave })
    }
}

/// The signal a typed byte stands for under `t`, if its ISIG is on.
fn signal_key(t: &Termios, b: u8) -> Option<Signal> {
    if !t.local_flags.contains(LocalFlags::ISIG) || b == 0 {
        return None;
    }
    let cc = &t.control_chars;
    if b == cc[SpecialCharacterIndices::VINTR as usize] {
        Some(Signal::SIGINT)
    } else if b == cc[SpecialCharacterIndices::VQUIT as usize] {
        Some(Signal::SIGQUIT)
    } else if b == cc[SpecialCharacterIndices::VSUSP as usize] {
        Some(Signal::SIGTSTP)
    } else {
        None
    }
}

fn queued_input(att: &Attached) -> i32 {
    let fd = match &att.ends {
        Ends::Pipes { stdin: Some(w), .. } => w.as_raw_fd(),
        Ends::Pipes { .. } => return 0,
        Ends::Tty { slave, .. } => slave.as_raw_fd(),
    };
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD stores an int.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) } != 0 {
        return 0;
    }
    n
}

struct Poller {
    fds: Vec<libc::pollfd>,
}

impl Poller {
    fn add(&mut self, fd: RawFd, events: libc::c_short) -> usize {
        self.fds.push(libc::pollfd { fd, events, revents: 0 });
        self.fds.len() - 1
    }

    fn ready(&self, i: Option<usize>, mask: libc::c_short) -> bool {
        i.is_some_and(|i| self.fds[i].revents & (mask | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0)
    }
}

pub fn run(att: &mut Attached, io: UserIo, keys: &DetachKeys, signals: &SignalFd, guard: &mut Guard, read_input: bool) -> Result<End> {
    let tty_mode = matches!(att.ends, Ends::Tty { .. });
    let user_tty = read_input && isatty(io.stdin);
    let has_stdin = att.slots[0].redirected;
    let raw = if user_tty { Some(RawMode::enter(io.stdin, !tty_mode)?) } else { None };
    let local = match &raw {
        Some(r) if !tty_mode && has_stdin => Some(LocalLine::new(&r.saved)?),
        _ => None,
    };
    if let (Ends::Tty { tty, .. }, Some(ws)) = (&att.ends, user_window(io)) {
        if let Some(orig) = att.slots[*tty].original.as_ref() {
            set_window(orig.as_fd(), &ws);
        }
    }
    let mut matcher = keys.matcher();
    let mut sources: Vec<(RawFd, usize, bool)> = outputs(att).into_iter().map(|(fd, s)| (fd, s, true)).collect();
    let mut input: Vec<u8> = Vec::new();
    let mut to_local: Vec<u8> = Vec::new();
    let mut stdin_open = read_input;
    let mut closing: Option<Instant> = None;
    let mut consumed: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    let mut passed = Vec::new();

    loop {
        let input_fd = match &att.ends {
            Ends::Pipes { stdin: Some(w), .. } => Some(w.as_raw_fd()),
            Ends::Pipes { .. } => None,
            Ends::Tty { master, .. } => Some(master.as_raw_fd()),
        };
        let mut p = Poller { fds: Vec::with_capacity(8) };
        let i_sig = Some(p.add(signals.as_fd().as_raw_fd(), libc::POLLIN));
        let i_exit = Some(p.add(att.pidfd.as_raw_fd(), libc::POLLIN));
        let i_stdin = (stdin_open && input.len() < MAX_PENDING).then(|| p.add(io.stdin, libc::POLLIN));
        let i_sources: Vec<Option<usize>> = sources
            .iter()
            .map(|&(fd, _, open)| {
                let out = if tty_mode && !input.is_empty() { libc::POLLOUT } else { 0 };
                open.then(|| p.add(fd, libc::POLLIN | out))
            })
            .collect();
        let i_input = match input_fd {
            Some(fd) if !tty_mode && !input.is_empty() => Some(p.add(fd, libc::POLLOUT)),
            _ => None,
        };
        let (i_echo, i_lines) = match &local {
            Some(l) => {
                let out = if to_local.is_empty() { 0 } else { libc::POLLOUT };
                (Some(p.add(l.master.as_raw_fd(), libc::POLLIN | out)), Some(p.add(l.slave.as_raw_fd(), libc::POLLIN)))
            }
            None => (None, None),
        };
        let timeout = if closing.is_some() { 20 } else { -1 };
        // SAFETY: poll over our own vector of pollfds.
        if unsafe { libc::poll(p.fds.as_mut_ptr(), p.fds.len() as libc::nfds_t, timeout) } < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                e => return Err(super::AttachError::Sys("poll", e)),
            }
        }

        if p.ready(i_sig, libc::POLLIN) {
            while let Ok(Some(info)) = signals.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGWINCH) => resize(att, io),
                    Ok(_) => return Ok(End::Detached),
                    Err(_) => {}
                }
            }
        }

        // Output first, so that the log never waits for the user's input.
        for (k, src) in sources.iter_mut().enumerate() {
            if !p.ready(i_sources[k], libc::POLLIN) {
                continue;
            }
            match read_some(src.0, &mut buf) {
                Ok(0) | Err(Errno::EIO) => src.2 = false,
                Ok(n) => {
                    tee(att, src.1, &buf[..n]);
                    if write_all(if src.1 == 2 && !tty_mode { io.stderr } else { io.stdout }, &buf[..n]).is_err() {
                        // The user's terminal is gone.
                        return Ok(End::Detached);
                    }
                }
                Err(Errno::EAGAIN) => {}
                Err(_) => src.2 = false,
            }
        }

        // Pending input into the process.
        let writable = if tty_mode { i_sources.first().copied().flatten() } else { i_input };
        if !input.is_empty() && p.ready(writable, libc::POLLOUT) {
            if let Some(fd) = input_fd {
                // SAFETY: write from a valid buffer.
                let n = unsafe { libc::write(fd, input.as_ptr().cast(), input.len()) };
                if n > 0 {
                    input.drain(..n as usize);
                } else if n < 0 && !matches!(Errno::last(), Errno::EAGAIN | Errno::EINTR) {
                    // Nobody reads the process's stdin any more.
                    input.clear();
                }
            }
        }

        if let Some(l) = &local {
            if !to_local.is_empty() && p.ready(i_echo, libc::POLLOUT) {
                // SAFETY: write from a valid buffer.
                let n = unsafe { libc::write(l.master.as_raw_fd(), to_local.as_ptr().cast(), to_local.len()) };
                if n > 0 {
                    to_local.drain(..n as usize);
                }
            }
            if p.ready(i_echo, libc::POLLIN) {
                if let Ok(n @ 1..) = read_some(l.master.as_raw_fd(), &mut buf) {
                    if write_all(io.stdout, &buf[..n]).is_err() {
                        return Ok(End::Detached);
                    }
                }
            }
            if p.ready(i_lines, libc::POLLIN) {
                match read_some(l.slave.as_raw_fd(), &mut buf) {
                    Ok(0) => {
                        // ctrl-d: the process's input ends, as in Docker.
                        if let Ends::Pipes { stdin, .. } = &mut att.ends {
                            *stdin = None;
                        }
                        guard.input_closed();
                        input.clear();
                    }
                    Ok(n) => {
                        if matches!(att.ends, Ends::Pipes { stdin: Some(_), .. }) {
                            input.extend_from_slice(&buf[..n]);
                        }
                    }
                    Err(_) => {}
                }
            }
        }

        if p.ready(i_stdin, libc::POLLIN) {
            match read_some(io.stdin, &mut buf) {
                Ok(n @ 1..) => {
                    passed.clear();
                    let detach = matcher.feed(&buf[..n], &mut passed);
                    take_input(att, &passed, raw.as_ref().map(|r| &r.saved), &local, &mut input, &mut to_local);
                    if detach {
                        flush_input(att, &input);
                        return Ok(End::Detached);
                    }
                }
                Err(Errno::EAGAIN) => {}
                _ if user_tty => return Ok(End::Detached),
                _ => {
                    // The user's input (a pipe, a file) has ended: once the
                    // process has read it and gone quiet, detach.
                    passed.clear();
                    matcher.flush(&mut passed);
                    take_input(att, &passed, None, &local, &mut input, &mut to_local);
                    stdin_open = false;
                    closing = Some(Instant::now());
                }
            }
        }

        if p.ready(i_exit, libc::POLLIN) {
            drain(att, &mut |slot, data| to_user_mode(io, tty_mode, slot, data));
            return Ok(End::Exited);
        }

        if let Some(since) = closing {
            if consumed.is_none() && input.is_empty() && queued_input(att) == 0 {
                consumed = Some(Instant::now());
            }
            if consumed.is_some_and(|c| c.elapsed() >= ANSWER) || since.elapsed() >= LINGER {
                return Ok(End::Detached);
            }
        }
        drop(p);
    }
}

pub fn to_user_mode(io: UserIo, tty_mode: bool, slot: usize, data: &[u8]) {
    to_user(io, if tty_mode { 1 } else { slot }, data)
}

/// Input the user typed (the detach keys taken out) on its way in.
fn take_input(
    att: &Attached,
    bytes: &[u8],
    user: Option<&Termios>,
    local: &Option<LocalLine>,
    input: &mut Vec<u8>,
    to_local: &mut Vec<u8>,
) {
    match &att.ends {
        Ends::Tty { master, .. } => {
            // The new pty's line discipline signals nobody: it is no one's
            // controlling terminal. Do it for it, then let it see the key
            // too (it echoes ^C and flushes, as it would).
            if let Ok(t) = termios::tcgetattr(master.as_fd()) {
                for &b in bytes {
                    if let Some(sig) = signal_key(&t, b) {
                        signal_foreground(att, sig);
                    }
                }
            }
            input.extend_from_slice(bytes);
        }
        Ends::Pipes { stdin, .. } => {
            for &b in bytes {
                match user.and_then(|t| signal_key(t, b)) {
                    Some(Signal::SIGTSTP) => {}
                    Some(sig) => {
                        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(att.target.tgid), sig);
                    }
                    None if local.is_some() => to_local.push(b),
                    None if stdin.is_some() => input.push(b),
                    None => {}
                }
            }
        }
    }
}

/// Sends `sig` to the foreground process group of the process's terminal,
/// or to the process when it has none.
fn signal_foreground(att: &Attached, sig: Signal) {
    let tgid = att.target.tgid;
    let r = match target::foreground_group(tgid) {
        Some(pgrp) => nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgrp), sig),
        None => nix::sys::signal::kill(nix::unistd::Pid::from_raw(tgid), sig),
    };
    if let Err(e) = r {
        tracing::debug!("forwarding {sig}: {e}");
    }
}

/// The user's terminal changed size: so do both ptys.
fn resize(att: &Attached, io: UserIo) {
    let (Ends::Tty { master, tty, .. }, Some(ws)) = (&att.ends, user_window(io)) else { return };
    set_window(master.as_fd(), &ws);
    if let Some(orig) = att.slots[*tty].original.as_ref() {
        set_window(orig.as_fd(), &ws);
    }
}

/// Last input before a detach: what fits without waiting.
fn flush_input(att: &Attached, input: &[u8]) {
    let fd = match &att.ends {
        Ends::Pipes { stdin: Some(w), .. } => w.as_raw_fd(),
        Ends::Pipes { .. } => return,
        Ends::Tty { master, .. } => master.as_raw_fd(),
    };
    if !input.is_empty() {
        // SAFETY: write from a valid buffer; the descriptor is non-blocking.
        unsafe { libc::write(fd, input.as_ptr().cast(), input.len()) };
    }
}
