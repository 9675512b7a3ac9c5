//! `flock(2)` locks on files under the cache directory.
//!
//! flock locks belong to an open file description, so two threads of one
//! test binary that each open the file exclude each other exactly as two
//! processes do (cargo test threads, nextest processes, a second checkout).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Held until dropped; closing the file releases the lock.
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    pub(crate) fn exclusive(path: &Path) -> Self {
        Self::take(path, libc::LOCK_EX)
    }

    pub(crate) fn shared(path: &Path) -> Self {
        Self::take(path, libc::LOCK_SH)
    }

    fn take(path: &Path, op: libc::c_int) -> Self {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("cannot open lock file {}: {e}", path.display()));
        loop {
            // SAFETY: flock on a descriptor we own; no memory is involved.
            if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
                return FileLock { _file: file };
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                panic!("cannot lock {}: {err}", path.display());
            }
        }
    }
}
