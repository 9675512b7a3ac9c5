//! The seccomp filters of a stopped tracee, and a classic BPF interpreter
//! that runs them on a system call before it is injected.
//!
//! A filter may kill the process, or send it SIGSYS, for a call it never
//! makes itself; injecting that call would harm it. PTRACE_SECCOMP_GET_FILTER
//! hands out each filter's program (as root, with CONFIG_CHECKPOINT_RESTORE),
//! so every call is tried against all of them first, with the exact
//! arguments and instruction pointer it will have, and only run when the
//! combined verdict is to allow (or to log) it.

use nix::errno::Errno;
use nix::unistd::Pid;

const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `struct seccomp_data`: nr, arch, instruction_pointer, args[6].
const DATA_LEN: u32 = 64;

#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct Insn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

/// Every filter of the task, most recently installed first.
#[derive(Debug, Clone, Default)]
pub struct Filters(Vec<Vec<Insn>>);

/// What the filters decide for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict(u32);

pub fn fetch(pid: Pid) -> Result<Filters, Errno> {
    let mut filters = Vec::new();
    for index in 0.. {
        // SAFETY: a null buffer asks for the program's length only.
        let len = unsafe { libc::ptrace(PTRACE_SECCOMP_GET_FILTER, pid.as_raw(), index as libc::c_long, std::ptr::null_mut::<Insn>()) };
        if len < 0 {
            match Errno::last() {
                // Past the last filter.
                Errno::ENOENT => break,
                e => return Err(e),
            }
        }
        let mut prog = vec![Insn { code: 0, jt: 0, jf: 0, k: 0 }; len as usize];
        // SAFETY: the buffer holds `len` instructions, as the kernel said.
        let got = unsafe { libc::ptrace(PTRACE_SECCOMP_GET_FILTER, pid.as_raw(), index as libc::c_long, prog.as_mut_ptr()) };
        if got < 0 {
            return Err(Errno::last());
        }
        prog.truncate(got as usize);
        filters.push(prog);
    }
    Ok(Filters(filters))
}

impl Filters {
    #[cfg(test)]
    fn from_programs(progs: Vec<Vec<Insn>>) -> Filters {
        Filters(progs)
    }

    /// The combined verdict for call `nr` with `args`, entered from `ip`
    /// (the address after the `syscall` instruction): the most restrictive
    /// action of all filters, as the kernel combines them.
    pub fn evaluate(&self, nr: i32, ip: u64, args: &[u64; 6]) -> Verdict {
        let mut data = [0u8; DATA_LEN as usize];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&AUDIT_ARCH_X86_64.to_le_bytes());
        data[8..16].copy_from_slice(&ip.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let mut worst = libc::SECCOMP_RET_ALLOW;
        for prog in &self.0 {
            let ret = run(prog, &data);
            // Actions order by their value read as signed: KILL_PROCESS
            // (0x80000000) is the most restrictive, ALLOW the least.
            let rank = |r: u32| (r & libc::SECCOMP_RET_ACTION_FULL) as i32;
            if rank(ret) < rank(worst) {
                worst = ret;
            }
        }
        Verdict(worst)
    }
}

impl Verdict {
    pub fn allows(self) -> bool {
        matches!(self.0 & libc::SECCOMP_RET_ACTION_FULL, libc::SECCOMP_RET_ALLOW | libc::SECCOMP_RET_LOG)
    }

    pub fn describe(self) -> String {
        let data = self.0 & libc::SECCOMP_RET_DATA;
        match self.0 & libc::SECCOMP_RET_ACTION_FULL {
            libc::SECCOMP_RET_KILL_PROCESS => "kill the process".into(),
            libc::SECCOMP_RET_KILL_THREAD => "kill the thread".into(),
            libc::SECCOMP_RET_TRAP => "send it SIGSYS".into(),
            libc::SECCOMP_RET_ERRNO => format!("fail with {}", Errno::from_raw(data as i32)),
            libc::SECCOMP_RET_USER_NOTIF => "ask its seccomp supervisor".into(),
            libc::SECCOMP_RET_TRACE => "ask a seccomp tracer (and fail with ENOSYS without one)".into(),
            other => format!("return action {other:#x}"),
        }
    }
}

/// Runs one classic BPF program over `data`, as the kernel's seccomp
/// checker admits them: loads of the data (aligned 32-bit words) and of
/// the scratch memory, ALU, jumps, returns. Anything else, or a load out of
/// bounds, counts as KILL, which the kernel would have refused to load.
fn run(prog: &[Insn], data: &[u8; DATA_LEN as usize]) -> u32 {
    const KILL: u32 = libc::SECCOMP_RET_KILL_THREAD;
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; 16];
    let mut pc = 0usize;
    while let Some(insn) = prog.get(pc) {
        pc += 1;
        let k = insn.k;
        let src = if insn.code & 0x08 != 0 { x } else { k };
        match insn.code {
            0x20 => {
                // ld [k]
                if k % 4 != 0 || k + 4 > DATA_LEN {
                    return KILL;
                }
                let k = k as usize;
                a = u32::from_le_bytes([data[k], data[k + 1], data[k + 2], data[k + 3]]);
            }
            0x80 => a = DATA_LEN,
            0x81 => x = DATA_LEN,
            0x00 => a = k,
            0x01 => x = k,
            0x60 | 0x61 | 0x02 | 0x03 if k >= 16 => return KILL,
            0x60 => a = mem[k as usize],
            0x61 => x = mem[k as usize],
            0x02 => mem[k as usize] = a,
            0x03 => mem[k as usize] = x,
            0x04 | 0x0c => a = a.wrapping_add(src),
            0x14 | 0x1c => a = a.wrapping_sub(src),
            0x24 | 0x2c => a = a.wrapping_mul(src),
            // Division by a zero X ends the program with 0 (KILL), as in the kernel.
            0x34 | 0x3c => {
                a = match a.checked_div(src) {
                    Some(q) => q,
                    None => return 0,
                }
            }
            0x94 | 0x9c => {
                a = match a.checked_rem(src) {
                    Some(r) => r,
                    None => return 0,
                }
            }
            0x44 | 0x4c => a |= src,
            0x54 | 0x5c => a &= src,
            0xa4 | 0xac => a ^= src,
            0x64 | 0x6c => a = if src >= 32 { 0 } else { a << src },
            0x74 | 0x7c => a = if src >= 32 { 0 } else { a >> src },
            0x84 => a = a.wrapping_neg(),
            0x05 => pc += k as usize,
            0x15 | 0x1d | 0x25 | 0x2d | 0x35 | 0x3d | 0x45 | 0x4d => {
                let taken = match insn.code & 0xf0 {
                    0x10 => a == src,
                    0x20 => a > src,
                    0x30 => a >= src,
                    _ => a & src != 0,
                };
                pc += if taken { insn.jt } else { insn.jf } as usize;
            }
            0x06 => return k,
            0x16 => return a,
            0x07 => x = a,
            0x87 => a = x,
            _ => return KILL,
        }
    }
    KILL
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
        Insn { code, jt, jf, k }
    }

    /// arch check, then: socket -> KILL_PROCESS; nr 3 (close) with fd
    /// argument 7 -> ERRNO(EPERM); anything else -> ALLOW.
    fn program() -> Vec<Insn> {
        vec![
            insn(0x20, 0, 0, 4),
            insn(0x15, 1, 0, AUDIT_ARCH_X86_64),
            insn(0x06, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
            insn(0x20, 0, 0, 0),
            insn(0x15, 0, 1, libc::SYS_socket as u32),
            insn(0x06, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
            insn(0x15, 0, 3, 3),
            insn(0x20, 0, 0, 16),
            insn(0x15, 0, 1, 7),
            insn(0x06, 0, 0, libc::SECCOMP_RET_ERRNO | 1),
            insn(0x06, 0, 0, libc::SECCOMP_RET_ALLOW),
        ]
    }

    #[test]
    fn a_filter_is_run_on_the_call() {
        let f = Filters::from_programs(vec![program()]);
        let none = [0u64; 6];
        assert!(f.evaluate(libc::SYS_dup2 as i32, 0, &none).allows());
        let v = f.evaluate(libc::SYS_socket as i32, 0, &none);
        assert!(!v.allows());
        assert_eq!(v.describe(), "kill the process");
        let v = f.evaluate(3, 0, &[7, 0, 0, 0, 0, 0]);
        assert_eq!(v.describe(), "fail with EPERM: Operation not permitted");
        assert!(f.evaluate(3, 0, &[8, 0, 0, 0, 0, 0]).allows());
    }

    #[test]
    fn the_most_restrictive_filter_wins() {
        let allow_all = vec![insn(0x06, 0, 0, libc::SECCOMP_RET_ALLOW)];
        let log_all = vec![insn(0x06, 0, 0, libc::SECCOMP_RET_LOG)];
        let trap_dup2 = vec![
            insn(0x20, 0, 0, 0),
            insn(0x15, 0, 1, libc::SYS_dup2 as u32),
            insn(0x06, 0, 0, libc::SECCOMP_RET_TRAP),
            insn(0x06, 0, 0, libc::SECCOMP_RET_ALLOW),
        ];
        let f = Filters::from_programs(vec![allow_all, log_all, trap_dup2]);
        assert!(f.evaluate(libc::SYS_close as i32, 0, &[0; 6]).allows(), "LOG allows");
        assert_eq!(f.evaluate(libc::SYS_dup2 as i32, 0, &[0; 6]).describe(), "send it SIGSYS");
    }

    #[test]
    fn bad_programs_count_as_kill() {
        let f = Filters::from_programs(vec![vec![insn(0x20, 0, 0, 62)]]);
        assert!(!f.evaluate(0, 0, &[0; 6]).allows());
        let f = Filters::from_programs(vec![vec![]]);
        assert!(!f.evaluate(0, 0, &[0; 6]).allows());
    }
}
