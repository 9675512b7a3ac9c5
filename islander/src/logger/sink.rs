//! The log file's writing thread.
//!
//! Putting records into the page cache costs the logger as much CPU as
//! reading and encoding them; on its own thread it runs beside the loop
//! that drains the isle's pipes, so a chatty isle is held back by the
//! slower of the two instead of by their sum. The loop hands over full
//! buffers and takes empty ones back: a few buffers travel, so memory stays
//! bounded and a loop that gets ahead waits for the disk (the isle's pipe,
//! not the logger, then absorbs the burst).
//!
//! Rotation runs on the thread too, in order with the writes, so the files
//! always hold whole records in the order they came.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use super::{io, log_file, LoggerError, Result};

enum Op {
    /// Append these records to the current file; the buffer comes back.
    Write(Vec<u8>),
    /// Shift the files along (`isle.log` becomes `isle.log.1`, ...) and
    /// start a new current file, keeping at most this many.
    Rotate(u32),
    /// Answer once everything before has been written.
    Sync(SyncSender<()>),
}

pub struct Sink {
    ops: Option<SyncSender<Op>>,
    /// Emptied buffers.
    back: Receiver<Vec<u8>>,
    /// Buffers with the thread, at most [`BUFFERS`].
    in_flight: usize,
    thread: Option<JoinHandle<()>>,
}

/// Buffers with the thread at most. Two make double buffering: the caller
/// hands one over, then waits only for the one the thread is writing, and
/// fills that while the thread goes straight on to the one just handed.
const BUFFERS: usize = 2;

impl Sink {
    /// Starts the thread on an open current file in `dir`.
    pub fn start(dir: &Path, file: File) -> Result<Sink> {
        let (ops, ops_rx) = mpsc::sync_channel::<Op>(BUFFERS + 1);
        let (back_tx, back) = mpsc::sync_channel(BUFFERS + 1);
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut thread = FileThread { dir: dir.to_path_buf(), file, size, dropped: 0 };
        let handle = std::thread::Builder::new()
            .name("isle-log-writer".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                for op in ops_rx {
                    match op {
                        Op::Write(buf) => {
                            thread.write(&buf);
                            if back_tx.send(buf).is_err() {
                                return;
                            }
                        }
                        Op::Rotate(keep) => thread.rotate(keep),
                        Op::Sync(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })
            .map_err(io("starting the log writer thread for", dir))?;
        Ok(Sink { ops: Some(ops), back, in_flight: 0, thread: Some(handle) })
    }

    /// Hands `records` to the thread and returns an empty buffer to fill
    /// next: a new one while fewer than [`BUFFERS`] travel, else the first
    /// one the thread gives back.
    pub fn write(&mut self, records: Vec<u8>) -> Result<Vec<u8>> {
        let capacity = records.capacity();
        self.send(Op::Write(records))?;
        self.in_flight += 1;
        if self.in_flight < BUFFERS {
            return Ok(Vec::with_capacity(capacity));
        }
        self.take_back()
    }

    pub fn rotate(&mut self, keep: u32) -> Result<()> {
        self.send(Op::Rotate(keep))
    }

    /// Waits until every record handed over is in the file.
    pub fn sync(&mut self) -> Result<()> {
        let (done, wait) = mpsc::sync_channel(1);
        self.send(Op::Sync(done))?;
        if wait.recv().is_err() {
            return Err(LoggerError::WriterGone);
        }
        // Buffers the thread gave back meanwhile wait in `back`.
        while self.back.try_recv().is_ok() {
            self.in_flight -= 1;
        }
        Ok(())
    }

    fn take_back(&mut self) -> Result<Vec<u8>> {
        match self.back.recv() {
            Ok(mut buf) => {
                self.in_flight -= 1;
                buf.clear();
                Ok(buf)
            }
            // The thread ends only by panicking.
            Err(_) => Err(LoggerError::WriterGone),
        }
    }

    fn send(&mut self, op: Op) -> Result<()> {
        let sent = self.ops.as_ref().map(|ops| ops.send(op).is_ok()).unwrap_or(false);
        if sent {
            Ok(())
        } else {
            Err(LoggerError::WriterGone)
        }
    }

}

impl Drop for Sink {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has written the rest.
        self.ops = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The thread's side: the current file, and rotation.
///
/// A failed write (the disk full, say) must not stop the isle: its records
/// are dropped, the file is cut back to the last whole record, and writing
/// goes on with the next buffer; a warning says when records start being
/// dropped and how many bytes were lost once writes succeed again. The
/// writer's idea of the file's size then runs ahead of the file, so it
/// rotates a little early, never late.
struct FileThread {
    dir: PathBuf,
    file: File,
    /// The current file's size: where the last whole record ends.
    size: u64,
    /// Bytes of records dropped since writes began to fail; 0 when they work.
    dropped: u64,
}

impl FileThread {
    fn write(&mut self, buf: &[u8]) {
        match self.file.write_all(buf) {
            Ok(()) => {
                self.size += buf.len() as u64;
                if self.dropped > 0 {
                    tracing::warn!("writing {} works again; {} bytes of records were dropped", self.path().display(), self.dropped);
                    self.dropped = 0;
                }
            }
            Err(err) => {
                // What part of the buffer went in would be a torn record.
                let _ = self.file.set_len(self.size);
                if self.dropped == 0 {
                    tracing::warn!("writing {}: {err}; dropping records until writes succeed again", self.path().display());
                }
                self.dropped += buf.len() as u64;
            }
        }
    }

    fn path(&self) -> PathBuf {
        log_file(&self.dir, 0)
    }

    fn rotate(&mut self, keep: u32) {
        if let Err(e) = self.try_rotate(keep) {
            tracing::warn!("rotating the log in {}: {e}; writing on to the current file", self.dir.display());
        }
    }

    fn try_rotate(&mut self, keep: u32) -> Result<()> {
        if keep > 1 {
            for n in (1..keep).rev() {
                let from = log_file(&self.dir, n - 1);
                let to = log_file(&self.dir, n);
                if from.exists() {
                    fs::rename(&from, &to).map_err(io("rotating", &from))?;
                }
            }
        } else {
            let _ = fs::remove_file(log_file(&self.dir, 0));
        }
        let path = log_file(&self.dir, 0);
        self.file = OpenOptions::new().create(true).append(true).open(&path).map_err(io("opening", &path))?;
        self.size = 0;
        Ok(())
    }
}
