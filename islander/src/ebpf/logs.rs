//! Carries aya-log records from the kernel into `tracing`.
//!
//! aya-log-ebpf writes records into the AYA_LOGS ring buffer; a reader thread
//! sleeps in poll(2) on it and drains it into [`ToTracing`]. The reader owns
//! the `EbpfLogger`, which also keeps the ring buffer's fd open for as long as
//! programs that write to it may still be loaded from the same object.

use std::{
    io,
    os::fd::{AsFd as _, OwnedFd},
    thread::{self, JoinHandle},
};

use aya_log::EbpfLogger;
use nix::{
    errno::Errno,
    fcntl::OFlag,
    poll::{poll, PollFd, PollFlags, PollTimeout},
    unistd::pipe2,
};

use super::{EbpfError, Result};

/// A `log::Log` that re-emits each record as a `tracing` event. The record's
/// target (the eBPF crate's module path) becomes the `program` field.
pub(super) struct ToTracing;

impl log::Log for ToTracing {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        // tracing's own filters decide; there is nothing to gain by
        // filtering twice.
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let program = record.target();
        let message = record.args();
        match record.level() {
            log::Level::Error => {
                tracing::error!(target: "islander::ebpf::kernel", program, "{message}")
            }
            log::Level::Warn => {
                tracing::warn!(target: "islander::ebpf::kernel", program, "{message}")
            }
            log::Level::Info => {
                tracing::info!(target: "islander::ebpf::kernel", program, "{message}")
            }
            log::Level::Debug => {
                tracing::debug!(target: "islander::ebpf::kernel", program, "{message}")
            }
            log::Level::Trace => {
                tracing::trace!(target: "islander::ebpf::kernel", program, "{message}")
            }
        }
    }

    fn flush(&self) {}
}

/// The running reader thread. Dropping it stops the thread after a last drain.
pub(super) struct LogReader {
    /// Write end of a pipe the thread also polls; closing it wakes the thread
    /// with POLLHUP, which is its signal to finish.
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl LogReader {
    pub(super) fn start(logger: EbpfLogger<ToTracing>) -> Result<Self> {
        let (wake, stop) =
            pipe2(OFlag::O_CLOEXEC).map_err(|errno| EbpfError::LogThread(errno.into()))?;
        let thread = thread::Builder::new()
            .name("islander-ebpf-log".into())
            .spawn(move || read_until_stopped(logger, wake))
            .map_err(EbpfError::LogThread)?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for LogReader {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // A panic in the thread has already been reported by the panic
            // hook; there is nothing more to do with it here.
            let _ = thread.join();
        }
    }
}

fn read_until_stopped(mut logger: EbpfLogger<ToTracing>, wake: OwnedFd) {
    loop {
        let (records, stopping) = {
            let mut fds = [
                PollFd::new(logger.as_fd(), PollFlags::POLLIN),
                PollFd::new(wake.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(errno) => {
                    tracing::error!(
                        "no longer reading eBPF log records: polling their ring buffer failed: {}",
                        io::Error::from(errno)
                    );
                    return;
                }
            }
            let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|events| !events.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if records || stopping {
            logger.flush();
        }
        if stopping {
            return;
        }
    }
}
