//! What `islander attach ISLE|PID` names, and the checks made on it before
//! it is touched.
//!
//! An exact id or name is an isle; otherwise a number is a host pid (so a
//! pid is never taken for an id prefix made of digits); otherwise the text
//! is an id prefix. An isle means its PID 1. A pid must be inside one of
//! this root's running isles, told by its memory cgroup
//! (`/islander/<id>`), unless `--any-pid` is given.

use std::fs;

use super::{AttachError, Result};
use crate::cgroups::PARENT;
use crate::isle::lookup;
use crate::isle::record::{Record, Status};
use crate::isle::{short_id, IsleError};
use crate::paths::StateRoot;

/// The kernel marks its own threads with PF_KTHREAD in the stat flags.
const PF_KTHREAD: u64 = 0x0020_0000;

#[derive(Debug, Clone)]
pub struct Target {
    /// The task to trace: a pid, or a thread id of a multi-threaded process.
    pub pid: i32,
    /// Its process (thread group), whose descriptors are re-pointed.
    pub tgid: i32,
    /// The isle it is in, when it is in one of this root's.
    pub isle: Option<Record>,
}

impl Target {
    /// Whether the target is its isle's PID 1, whose exit is the isle's.
    pub fn is_isle_init(&self) -> bool {
        self.isle.as_ref().and_then(|r| r.pid).map(|p| p.pid) == Some(self.tgid)
    }

    /// How messages name it: `isle 0123456789ab (pid N)` or `pid N`.
    pub fn label(&self) -> String {
        match &self.isle {
            Some(r) if self.is_isle_init() => format!("isle {} (pid {})", short_id(&r.id), self.pid),
            Some(r) => format!("pid {} of isle {}", self.pid, short_id(&r.id)),
            None => format!("pid {}", self.pid),
        }
    }
}

/// What `/proc/PID/status` says that matters here.
#[derive(Debug, Clone, Default)]
pub struct ProcStatus {
    pub state: String,
    pub tgid: i32,
    pub tracer: i32,
    pub seccomp: u32,
}

pub fn status(pid: i32) -> Option<ProcStatus> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut s = ProcStatus::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match key {
            "State" => s.state = value.to_string(),
            "Tgid" => s.tgid = value.parse().ok()?,
            "TracerPid" => s.tracer = value.parse().unwrap_or(0),
            "Seccomp" => s.seccomp = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    Some(s)
}

/// The fields of `/proc/PID/stat` after the command name: state is 0,
/// ppid 1, pgrp 2, session 3, tty_nr 4, tpgid 5, flags 6.
pub fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The foreground process group of the process's controlling terminal.
pub fn foreground_group(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(5)?.parse().ok().filter(|&g: &i32| g > 0)
}

pub fn resolve(root: &StateRoot, query: &str, any_pid: bool) -> Result<Target> {
    let records = lookup::all(root);
    let exact = records.iter().any(|r| r.id == query || r.name.as_deref() == Some(query));
    let as_pid = query.parse::<i32>().ok().filter(|&p| p > 0 && query.bytes().all(|b| b.is_ascii_digit()));
    match as_pid {
        Some(pid) if !exact => {
            if status(pid).is_some() {
                return of_pid(&records, pid, any_pid);
            }
            // Not a process: perhaps an id prefix after all.
            match lookup::resolve(&records, query) {
                Ok(rec) => of_isle(rec, query),
                Err(IsleError::NoSuchIsle(_)) => Err(AttachError::NoSuchTarget(query.to_string())),
                Err(e) => Err(e.into()),
            }
        }
        _ => of_isle(lookup::resolve(&records, query)?, query),
    }
}

fn of_isle(rec: &Record, label: &str) -> Result<Target> {
    let pid = match (&rec.status, rec.pid) {
        (Status::Running, Some(p)) if p.is_alive() => p.pid,
        _ => return Err(IsleError::NotRunning(label.to_string()).into()),
    };
    let target = Target { pid, tgid: pid, isle: Some(rec.clone()) };
    check(&target)?;
    Ok(target)
}

fn of_pid(records: &[Record], pid: i32, any_pid: bool) -> Result<Target> {
    let st = status(pid).ok_or_else(|| AttachError::NoSuchTarget(pid.to_string()))?;
    let cgroup = memory_cgroup(pid).unwrap_or_else(|| "?".into());
    let isle = isle_of_cgroup(&cgroup)
        .and_then(|id| records.iter().find(|r| r.id == id && r.status == Status::Running && r.pid.is_some_and(|p| p.is_alive())));
    if isle.is_none() && !any_pid {
        return Err(AttachError::NotInIsle { pid, cgroup });
    }
    let target = Target { pid, tgid: if st.tgid > 0 { st.tgid } else { pid }, isle: isle.cloned() };
    check(&target)?;
    Ok(target)
}

/// The path of the process's memory cgroup, as the host sees it.
fn memory_cgroup(pid: i32) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers.split(',').any(|c| c == "memory").then(|| path.to_string())
    })
}

/// The isle id in a cgroup path `/islander/<id>` (or below it).
fn isle_of_cgroup(path: &str) -> Option<String> {
    let rest = path.strip_prefix('/')?.strip_prefix(PARENT)?.strip_prefix('/')?;
    let id = rest.split('/').next()?;
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
}

/// The refusals that need no ptrace: ourselves, zombies, kernel threads,
/// seccomp strict mode.
fn check(t: &Target) -> Result<()> {
    let me = std::process::id() as i32;
    if t.tgid == me || t.pid == me {
        return Err(AttachError::Itself(t.pid));
    }
    let st = status(t.pid).ok_or(AttachError::Exited(t.pid))?;
    if has_exited(t.pid) {
        return Err(AttachError::Zombie(t.pid));
    }
    let flags: u64 = stat_fields(t.pid).and_then(|f| f.get(6)?.parse().ok()).unwrap_or(0);
    if flags & PF_KTHREAD != 0 {
        return Err(AttachError::KernelThread(t.pid));
    }
    if st.seccomp == 1 {
        return Err(AttachError::SeccompStrict(t.pid));
    }
    if st.tracer != 0 {
        return Err(AttachError::PtraceRefused { pid: t.pid, reason: already_traced(st.tracer) });
    }
    Ok(())
}

/// Gone, or a zombie.
pub fn has_exited(pid: i32) -> bool {
    status(pid).is_none_or(|s| s.state.starts_with('Z') || s.state.starts_with('X'))
}

pub fn already_traced(tracer: i32) -> String {
    let name = fs::read_to_string(format!("/proc/{tracer}/comm")).map(|s| s.trim().to_string()).unwrap_or_default();
    format!("it is already traced by pid {tracer} ({name}); a process has one tracer at a time")
}

/// Why PTRACE_SEIZE said EPERM, as far as can be told from here.
pub fn why_refused(pid: i32) -> String {
    if let Some(st) = status(pid) {
        if st.tracer != 0 {
            return already_traced(st.tracer);
        }
    }
    if let Some(me) = status(std::process::id() as i32) {
        if me.seccomp != 0 {
            return format!(
                "islander itself runs under seccomp (Seccomp: {} in /proc/self/status), which refuses ptrace(2) here",
                me.seccomp
            );
        }
    }
    if fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").is_ok_and(|s| s.trim() == "3") {
        return "ptrace is disabled on this host (kernel.yama.ptrace_scope = 3)".into();
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return "operation not permitted: attach needs CAP_SYS_PTRACE (run it as root)".into();
    }
    "operation not permitted (a security module, such as AppArmor or SELinux, may forbid it)".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_paths_name_isles() {
        let id = "ab".repeat(32);
        assert_eq!(isle_of_cgroup(&format!("/islander/{id}")), Some(id.clone()));
        assert_eq!(isle_of_cgroup(&format!("/islander/{id}/sub")), Some(id));
        assert_eq!(isle_of_cgroup("/islander/short"), None);
        assert_eq!(isle_of_cgroup("/user.slice"), None);
        assert_eq!(isle_of_cgroup("/"), None);
    }

    #[test]
    fn our_own_status_reads() {
        let me = std::process::id() as i32;
        let st = status(me).unwrap();
        assert_eq!(st.tgid, me);
        assert!(st.state.starts_with('R') || st.state.starts_with('S'), "{}", st.state);
        let t = Target { pid: me, tgid: me, isle: None };
        assert!(matches!(check(&t), Err(AttachError::Itself(_))));
    }
}
