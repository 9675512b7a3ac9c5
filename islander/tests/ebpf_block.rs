//! Block IO is counted in the isle that causes it, on the device behind the
//! file: direct IO at the block layer, buffered writes as the pages are
//! dirtied (the fsync that writes them out is not counted again), reads as
//! they reach the device. Needs root and a disk-backed /var/tmp.

mod ebpf_support;

use std::{
    alloc::{alloc_zeroed, dealloc, Layout},
    fs,
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
};

use ebpf_support::{assert_near, cstring, observer, run_in, Ended, TestCgroup};
use islander::ebpf::{BlockCounters, IsleCounters};

const MIB: u64 = 1 << 20;
const CHUNK: usize = 1 << 20;
const CHUNKS: u64 = 64;
const FILE_BYTES: u64 = CHUNKS * CHUNK as u64;

/// A page-aligned buffer, as O_DIRECT needs, allocated before any fork.
struct Buffer {
    ptr: *mut u8,
    layout: Layout,
}

impl Buffer {
    fn new() -> Self {
        let layout = Layout::from_size_align(CHUNK, 4096).unwrap();
        // SAFETY: a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "allocating {CHUNK} bytes");
        // Not all zeros, so nothing along the way can treat it as a hole.
        // SAFETY: `ptr` holds CHUNK writable bytes.
        unsafe { std::ptr::write_bytes(ptr, 0x5a, CHUNK) };
        Self { ptr, layout }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) };
    }
}

/// Files under /var/tmp, removed at the end.
struct Scratch(Vec<PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

fn device_of(counters: &IsleCounters, major: u32, minor: u32) -> BlockCounters {
    counters
        .block
        .iter()
        .find(|b| (b.major, b.minor) == (major, minor))
        .cloned()
        .unwrap_or_else(|| panic!("nothing counted on {major}:{minor}: {counters:?}"))
}

/// Writes (or reads) the whole file in CHUNK pieces; 0 on success, else the
/// step that failed. Raw syscalls only: it runs in a forked child.
fn transfer(path: &std::ffi::CStr, flags: i32, buffer: *mut u8, write: bool, sync: bool) -> i32 {
    // SAFETY: every call gets a valid path, fd and buffer of CHUNK bytes.
    unsafe {
        let fd = libc::open(path.as_ptr(), flags, 0o600);
        if fd < 0 {
            return 10;
        }
        for _ in 0..CHUNKS {
            let done = if write {
                libc::write(fd, buffer.cast(), CHUNK)
            } else {
                libc::read(fd, buffer.cast(), CHUNK)
            };
            if done != CHUNK as isize {
                return 11;
            }
        }
        if sync && libc::fsync(fd) != 0 {
            return 12;
        }
        if libc::close(fd) != 0 {
            return 13;
        }
    }
    0
}

#[test]
fn counts_direct_and_buffered_io_once_each() {
    let observer = observer();
    let dir = PathBuf::from("/var/tmp");
    let dev = fs::metadata(&dir).expect("stat /var/tmp").dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    assert_ne!(
        major, 0,
        "/var/tmp is not on a block device ({major}:{minor}); this test needs one"
    );

    let direct = dir.join(format!("islander-test-{}-direct", std::process::id()));
    let buffered = dir.join(format!("islander-test-{}-buffered", std::process::id()));
    let _scratch = Scratch(vec![direct.clone(), buffered.clone()]);
    let (direct_c, buffered_c) = (cstring(&direct), cstring(&buffered));
    let buffer = Buffer::new();

    let cgroup = TestCgroup::unified("block");
    observer
        .register(cgroup.id())
        .unwrap_or_else(|err| panic!("{err}"));

    let create = libc::O_CREAT | libc::O_TRUNC | libc::O_WRONLY | libc::O_CLOEXEC;
    let ended = run_in(&[&cgroup], || {
        let step = transfer(&direct_c, create | libc::O_DIRECT, buffer.ptr, true, false);
        if step != 0 {
            return step;
        }
        transfer(&buffered_c, create, buffer.ptr, true, true)
    });
    assert_eq!(
        ended,
        Ended::Exited(0),
        "writing the files (10 open, 11 write, 12 fsync, 13 close)"
    );

    let written = device_of(&observer.isle(cgroup.id()).unwrap(), major, minor);
    eprintln!("after writing: {written:?}");
    assert_near("bytes written", written.write_bytes, 2 * FILE_BYTES, 5.0);
    assert!(written.writes > 0, "{written:?}");

    // Both files back again: one directly, one through a page cache that
    // has been told to drop them, so every byte comes from the device.
    for path in [&direct, &buffered] {
        let file = fs::File::open(path).unwrap();
        // SAFETY: an fd we own; the call only drops clean cached pages.
        let dropped = unsafe {
            libc::posix_fadvise(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
                0,
                libc::POSIX_FADV_DONTNEED,
            )
        };
        assert_eq!(dropped, 0, "posix_fadvise DONTNEED on {}", path.display());
    }
    let read = libc::O_RDONLY | libc::O_CLOEXEC;
    let ended = run_in(&[&cgroup], || {
        let step = transfer(&direct_c, read | libc::O_DIRECT, buffer.ptr, false, false);
        if step != 0 {
            return step;
        }
        transfer(&buffered_c, read, buffer.ptr, false, false)
    });
    assert_eq!(ended, Ended::Exited(0), "reading the files back");

    let after = device_of(&observer.isle(cgroup.id()).unwrap(), major, minor);
    eprintln!("after reading: {after:?}");
    assert_near(
        "bytes read",
        after.read_bytes - written.read_bytes,
        2 * FILE_BYTES,
        5.0,
    );
    assert!(after.reads > written.reads, "{after:?}");
    // Reading wrote nothing worth a mention (an atime update at most).
    assert!(
        after.write_bytes - written.write_bytes < MIB,
        "reading counted writes: {written:?} then {after:?}"
    );

    // Forgetting drops the device entries too: registered again, the isle
    // starts from nothing.
    observer.forget(cgroup.id());
    observer
        .register(cgroup.id())
        .unwrap_or_else(|err| panic!("{err}"));
    let fresh = observer.isle(cgroup.id()).unwrap();
    assert!(fresh.block.is_empty(), "{fresh:?}");
    observer.forget(cgroup.id());
}

#[test]
fn io_outside_the_isle_is_not_counted() {
    let observer = observer();
    let cgroup = TestCgroup::unified("block-idle");
    observer
        .register(cgroup.id())
        .unwrap_or_else(|err| panic!("{err}"));
    let path = PathBuf::from(format!(
        "/var/tmp/islander-test-{}-outside",
        std::process::id()
    ));
    let _scratch = Scratch(vec![path.clone()]);
    fs::write(&path, vec![7u8; 4 * CHUNK]).unwrap();
    fs::File::open(&path).unwrap().sync_all().unwrap();
    let counters = observer.isle(cgroup.id()).unwrap();
    assert!(counters.block.is_empty(), "{counters:?}");
    observer.forget(cgroup.id());
}
