//! An OOM kill is counted for the isle of the process killed, though the
//! kernel reports it from whichever task ran out of memory. Needs root and
//! the cgroup v1 memory controller.

mod ebpf_support;

use ebpf_support::{observer, run_in, Ended, TestCgroup, MEMORY_ROOT};

const LIMIT: usize = 32 << 20;
const ALLOCATE: usize = 256 << 20;

/// Touches ALLOCATE bytes of fresh anonymous memory; the memory cgroup's
/// limit ends it long before that. Raw syscalls only: it runs in a fork.
fn exhaust_memory() -> i32 {
    // SAFETY: a private anonymous mapping, written only within its length.
    unsafe {
        let memory = libc::mmap(
            std::ptr::null_mut(),
            ALLOCATE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if memory == libc::MAP_FAILED {
            return 10;
        }
        let bytes = memory.cast::<u8>();
        for page in (0..ALLOCATE).step_by(4096) {
            bytes.add(page).write_volatile(1);
        }
    }
    // Still alive: the limit did not hold.
    20
}

#[test]
fn counts_an_oom_kill_for_the_victims_isle() {
    let observer = observer();
    let memory = TestCgroup::new(MEMORY_ROOT, "oom");
    memory.write("memory.limit_in_bytes", &LIMIT.to_string());
    let unified = TestCgroup::unified("oom");
    let bystander = TestCgroup::unified("oom-bystander");
    observer
        .register(unified.id())
        .unwrap_or_else(|err| panic!("{err}"));
    observer
        .register(bystander.id())
        .unwrap_or_else(|err| panic!("{err}"));

    let ended = run_in(&[&memory, &unified], exhaust_memory);
    assert_eq!(
        ended,
        Ended::Killed(libc::SIGKILL),
        "the child should have been OOM-killed"
    );
    let oom_control = std::fs::read_to_string(memory.path.join("memory.oom_control")).unwrap();
    assert!(
        oom_control.contains("oom_kill 1"),
        "the kernel's own count: {oom_control}"
    );

    let counters = observer.isle(unified.id()).unwrap();
    assert_eq!(counters.oom_kills, 1, "{counters:?}");
    assert_eq!(observer.isle(bystander.id()).unwrap().oom_kills, 0);

    observer.forget(unified.id());
    observer.forget(bystander.id());
}
