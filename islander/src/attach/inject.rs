//! System calls run inside another process, with ptrace, on x86_64.
//!
//! [`with_stopped`] seizes the task on a thread of its own, which is the
//! tracer: PTRACE_SEIZE, then PTRACE_INTERRUPT, which stops a task blocked
//! in a system call (the call is interrupted, its return value a restart
//! code) as well as one spinning in user space (it traps on its way back
//! to user mode). The registers are saved; each injected call sets rax and
//! the argument registers, points rip at a `syscall` instruction and single
//! steps over it; the kernel reports the step at the call's exit, with its
//! result in rax. At the end the saved registers go back unchanged and the
//! task is detached: an interrupted call is then restarted by the kernel
//! itself, because the saved orig_rax and restart code in rax are exactly
//! what its signal-return path looks at (the injected calls carry orig_rax
//! -1, so that path leaves them alone).
//!
//! A task that never stops (frozen by the freezer, or in uninterruptible
//! sleep) cannot be detached with PTRACE_DETACH, which wants a stopped task;
//! the tracer thread then simply ends, and the kernel detaches every tracee
//! of an exiting tracer and cancels the pending interrupt.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use libc::user_regs_struct;
use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::seccomp::{self, Filters};
use super::target;
use super::{AttachError, Result};

/// How long the task gets to reach a stop, and an injected call to return.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// The user code segment selector of 64-bit processes.
const USER_CS_64: u64 = 0x33;
const SYSCALL_INSN: [u8; 2] = [0x0f, 0x05];
/// The kernel's restart codes, which user space never sees.
const RESTART_CODES: [i64; 4] = [512, 513, 514, 516];
/// At most this much of one executable mapping is searched for `syscall`.
const SCAN_LIMIT: u64 = 8 << 20;

/// A seized task in a ptrace stop, with its registers saved.
pub struct Stopped {
    pid: Pid,
    tgid: i32,
    saved: user_regs_struct,
    modified: bool,
    done: bool,
    mem: Option<File>,
    insn: u64,
    /// Signals that arrived while stopped or stepping; sent again after the
    /// detach, so that none is lost.
    deferred: Vec<Signal>,
    filters: Option<Filters>,
    wake: SignalFd,
}

/// Runs `f` on the task `pid` (of process `tgid`) while it is stopped, then
/// puts its registers back and detaches, whatever `f` returned.
pub fn with_stopped<R: Send>(pid: i32, tgid: i32, f: impl FnOnce(&mut Stopped) -> Result<R> + Send) -> Result<R> {
    std::thread::scope(|s| s.spawn(move || trace(pid, tgid, f)).join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
}

fn trace<R>(pid: i32, tgid: i32, f: impl FnOnce(&mut Stopped) -> Result<R>) -> Result<R> {
    let p = Pid::from_raw(pid);
    let began = Instant::now();
    // A tracee's stops reach the tracer as SIGCHLD: blocked (islander
    // blocks it in every thread) and read here, it wakes the waits below.
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    chld.thread_block().map_err(super::sys("blocking SIGCHLD"))?;
    let wake = SignalFd::with_flags(&chld, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map_err(super::sys("signalfd"))?;
    tracing::trace!(pid, "seizing");
    ptrace::seize(p, ptrace::Options::empty()).map_err(|e| match e {
        // The kernel says EPERM for a task that has just exited, too.
        Errno::EPERM if target::has_exited(pid) => AttachError::Exited(pid),
        Errno::EPERM => AttachError::PtraceRefused { pid, reason: target::why_refused(pid) },
        Errno::ESRCH => AttachError::Exited(pid),
        e => AttachError::Sys("PTRACE_SEIZE", e),
    })?;
    // From here every way out of this thread detaches: explicitly from a
    // stop, or by the thread's end.
    ptrace::interrupt(p).map_err(|e| match e {
        Errno::ESRCH => AttachError::Exited(pid),
        e => AttachError::Sys("PTRACE_INTERRUPT", e),
    })?;
    let mut deferred = Vec::new();
    match wait_stop(p, &wake, Instant::now() + STOP_TIMEOUT) {
        Ok(WaitStatus::PtraceEvent(..)) => {}
        Ok(WaitStatus::Stopped(_, sig)) => deferred.push(sig),
        Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => return Err(AttachError::Exited(pid)),
        Ok(other) => return Err(AttachError::Lost { pid, what: format!("unexpected wait status {other:?}") }),
        Err(Errno::ETIMEDOUT) => {
            let state = target::status(pid).map(|s| s.state).unwrap_or_else(|| "gone".into());
            return Err(AttachError::NoStop { pid, ms: STOP_TIMEOUT.as_millis() as u64, state });
        }
        Err(Errno::ECHILD) => return Err(AttachError::Exited(pid)),
        Err(e) => return Err(AttachError::Sys("waitpid", e)),
    }
    let saved = ptrace::getregs(p).map_err(|e| esrch(pid, "PTRACE_GETREGS", e))?;
    let mut t = Stopped { pid: p, tgid, saved, modified: false, done: false, mem: None, insn: 0, deferred, filters: None, wake };
    tracing::debug!(
        pid,
        rip = format_args!("{:#x}", saved.rip),
        orig_rax = saved.orig_rax as i64,
        rax = saved.rax as i64,
        "stopped after {:?}",
        began.elapsed()
    );
    let result = t.prepare().and_then(|()| {
        tracing::trace!(pid, "prepared after {:?}", began.elapsed());
        f(&mut t)
    });
    tracing::trace!(pid, "injected after {:?}", began.elapsed());
    let end = t.finish();
    tracing::debug!(pid, "detached after {:?}", began.elapsed());
    let value = result?;
    end.map(|()| value)
}

fn esrch(pid: i32, op: &'static str, e: Errno) -> AttachError {
    match e {
        Errno::ESRCH => AttachError::Exited(pid),
        e => AttachError::Sys(op, e),
    }
}

/// Waits for the next state change of the traced task, until `deadline`
/// (then ETIMEDOUT), so that a task that never stops cannot hang the
/// tracer. SIGCHLD on `wake` says when to look again; a look every few
/// milliseconds covers a SIGCHLD taken by some thread that does not block it.
fn wait_stop(pid: Pid, wake: &SignalFd, deadline: Instant) -> std::result::Result<WaitStatus, Errno> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(status) => return Ok(status),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Errno::ETIMEDOUT);
        }
        let ms = left.min(Duration::from_millis(5)).as_millis().max(1) as libc::c_int;
        let mut p = [libc::pollfd { fd: wake.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        // SAFETY: poll on one valid pollfd.
        unsafe { libc::poll(p.as_mut_ptr(), 1, ms) };
        while let Ok(Some(_)) = wake.read_signal() {}
    }
}

impl Stopped {
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    pub fn tgid(&self) -> i32 {
        self.tgid
    }

    /// Checks the task can take injected calls, and finds the instruction
    /// and the seccomp filters they need.
    fn prepare(&mut self) -> Result<()> {
        let pid = self.pid();
        if self.saved.cs != USER_CS_64 {
            return Err(AttachError::NotX86_64 { pid, cs: self.saved.cs });
        }
        let path = format!("/proc/{pid}/mem");
        self.mem = Some(OpenOptions::new().read(true).write(true).open(&path).map_err(super::io_err("opening", &path))?);
        self.insn = self.find_syscall()?;
        if target::status(pid).is_some_and(|s| s.seccomp == 2) {
            let filters = seccomp::fetch(self.pid).map_err(|errno| match errno {
                Errno::ESRCH => AttachError::Exited(pid),
                errno => AttachError::SeccompUnreadable { pid, errno },
            })?;
            self.filters = Some(filters);
        }
        Ok(())
    }

    /// A `syscall` instruction in the task: the one it stopped in, or one in
    /// its vDSO, or in any executable mapping. Any two bytes 0f 05 will do,
    /// even in the middle of another instruction: execution starts there.
    fn find_syscall(&self) -> Result<u64> {
        let rip = self.saved.rip;
        if (self.saved.orig_rax as i64) >= 0 && rip >= 2 {
            let mut b = [0u8; 2];
            if self.read(rip - 2, &mut b).is_ok() && b == SYSCALL_INSN {
                return Ok(rip - 2);
            }
        }
        let path = format!("/proc/{}/maps", self.pid());
        let maps = fs::read_to_string(&path).map_err(super::io_err("reading", &path))?;
        let mut regions: Vec<(u64, u64, bool)> = Vec::new();
        for line in maps.lines() {
            let mut f = line.split_whitespace();
            let (Some(range), Some(perms)) = (f.next(), f.next()) else { continue };
            let name = f.nth(3).unwrap_or("");
            let Some((a, b)) = range.split_once('-') else { continue };
            let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else { continue };
            // The vsyscall page is emulated: only its fixed entry points work.
            if perms.as_bytes().get(2) == Some(&b'x') && name != "[vsyscall]" {
                regions.push((start, end, name == "[vdso]"));
            }
        }
        regions.sort_by_key(|r| !r.2);
        let mut buf = vec![0u8; 64 * 1024];
        for (start, end, _) in regions {
            let end = end.min(start.saturating_add(SCAN_LIMIT));
            let mut at = start;
            while at + 1 < end {
                let len = ((end - at) as usize).min(buf.len());
                if self.read(at, &mut buf[..len]).is_err() {
                    break;
                }
                if let Some(i) = buf[..len].windows(2).position(|w| w == SYSCALL_INSN) {
                    return Ok(at + i as u64);
                }
                // Overlap by one byte, so that a pair across chunks is found.
                at += len as u64 - 1;
            }
        }
        Err(AttachError::NoSyscallInstruction(self.pid()))
    }

    pub fn read(&self, addr: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.mem.as_ref().expect("prepared").read_exact_at(buf, addr)
    }

    pub fn write(&self, addr: u64, data: &[u8]) -> Result<()> {
        self.mem
            .as_ref()
            .expect("prepared")
            .write_all_at(data, addr)
            .map_err(|e| AttachError::Lost { pid: self.pid(), what: format!("writing its memory at {addr:#x}: {e}") })
    }

    /// Runs one system call in the task and returns its raw result (a
    /// negative errno on failure). `name` is for messages.
    pub fn call(&mut self, name: &'static str, nr: libc::c_long, args: &[u64]) -> Result<i64> {
        let pid = self.pid();
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        if let Some(filters) = &self.filters {
            let verdict = filters.evaluate(nr as i32, self.insn + 2, &a);
            if !verdict.allows() {
                return Err(AttachError::SeccompDenies { pid, call: name, verdict: verdict.describe() });
            }
        }
        let mut regs = self.saved;
        regs.rax = nr as u64;
        regs.orig_rax = u64::MAX;
        regs.rdi = a[0];
        regs.rsi = a[1];
        regs.rdx = a[2];
        regs.r10 = a[3];
        regs.r8 = a[4];
        regs.r9 = a[5];
        regs.rip = self.insn;
        let began = Instant::now();
        for _ in 0..8 {
            ptrace::setregs(self.pid, regs).map_err(|e| esrch(pid, "PTRACE_SETREGS", e))?;
            self.modified = true;
            self.step_over()?;
            let out = ptrace::getregs(self.pid).map_err(|e| esrch(pid, "PTRACE_GETREGS", e))?;
            let ret = out.rax as i64;
            // A signal interrupted the call: the kernel would restart it on
            // the way out, but not with orig_rax -1; run it again instead.
            if RESTART_CODES.contains(&-ret) {
                continue;
            }
            tracing::trace!(pid, call = name, ret, "injected in {:?}", began.elapsed());
            return Ok(ret);
        }
        Err(AttachError::Lost { pid, what: format!("the injected {name} was interrupted again and again") })
    }

    /// [`call`](Self::call), with a failure as an error.
    pub fn call_ok(&mut self, name: &'static str, nr: libc::c_long, args: &[u64]) -> Result<u64> {
        let ret = self.call(name, nr, args)?;
        if ret < 0 && ret > -4096 {
            return Err(AttachError::Injected { pid: self.pid(), call: name, errno: Errno::from_raw(-ret as i32) });
        }
        Ok(ret as u64)
    }

    /// Single-steps over the `syscall` instruction at `self.insn`, setting
    /// aside any signal that arrives meanwhile.
    fn step_over(&mut self) -> Result<()> {
        let pid = self.pid();
        ptrace::step(self.pid, None).map_err(|e| esrch(pid, "PTRACE_SINGLESTEP", e))?;
        loop {
            match wait_stop(self.pid, &self.wake, Instant::now() + STOP_TIMEOUT) {
                Ok(WaitStatus::Stopped(_, Signal::SIGTRAP)) if self.trap_is_ours() => {
                    let rip = ptrace::getregs(self.pid).map_err(|e| esrch(pid, "PTRACE_GETREGS", e))?.rip;
                    if rip == self.insn + 2 {
                        return Ok(());
                    }
                    if rip != self.insn {
                        return Err(AttachError::Lost {
                            pid,
                            what: format!("a step ended at {rip:#x}, not after the syscall at {:#x}", self.insn),
                        });
                    }
                }
                Ok(WaitStatus::Stopped(_, sig)) => self.deferred.push(sig),
                // A group stop (SIGSTOP from elsewhere): it is taken up again
                // after the detach, which re-enters it.
                Ok(WaitStatus::PtraceEvent(..)) => {}
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(Errno::ECHILD) => return Err(AttachError::Exited(pid)),
                Ok(other) => return Err(AttachError::Lost { pid, what: format!("unexpected wait status {other:?}") }),
                Err(Errno::ETIMEDOUT) => {
                    // The injected call blocks: interrupt it, so that the
                    // saved registers can go back.
                    let _ = ptrace::interrupt(self.pid);
                    let _ = wait_stop(self.pid, &self.wake, Instant::now() + STOP_TIMEOUT);
                    return Err(AttachError::Lost { pid, what: "an injected call did not return within 2 s".into() });
                }
                Err(e) => return Err(AttachError::Sys("waitpid", e)),
            }
            ptrace::step(self.pid, None).map_err(|e| esrch(pid, "PTRACE_SINGLESTEP", e))?;
        }
    }

    /// A SIGTRAP the kernel sent for the step, as opposed to one sent by a
    /// process (si_code <= 0), which is the task's own to receive.
    fn trap_is_ours(&self) -> bool {
        ptrace::getsiginfo(self.pid).map(|si| si.si_code > 0).unwrap_or(true)
    }

    /// Puts the saved registers back, detaches, and sends again the signals
    /// set aside. Safe to call twice.
    fn finish(&mut self) -> Result<()> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        let pid = self.pid();
        if self.modified {
            ptrace::setregs(self.pid, self.saved).map_err(|e| esrch(pid, "PTRACE_SETREGS", e))?;
        }
        match ptrace::detach(self.pid, None) {
            Ok(()) => {}
            Err(Errno::ESRCH) if target::status(pid).is_none() => return Err(AttachError::Exited(pid)),
            // Not in a stop after all: the tracer thread's end detaches.
            Err(e) => tracing::warn!(pid, "PTRACE_DETACH: {e}"),
        }
        for sig in self.deferred.drain(..) {
            // SAFETY: tgkill with plain integers.
            unsafe { libc::syscall(libc::SYS_tgkill, self.tgid, pid, sig as libc::c_int) };
        }
        Ok(())
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // Reached only when unwinding: the registers must go back anyway.
        if let Err(e) = self.finish() {
            tracing::warn!(pid = self.pid(), "detaching: {e}");
        }
    }
}
