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

use super::{log_file, LoggerError, Result};

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
    /// Emptied buffers, or the error that stopped the thread.
    back: Receiver<Result<Vec<u8>>>,
    /// Buffers with the thread, at most [`BUFFERS`]; the caller fills one
    /// more meanwhile.
    in_flight: usize,
    thread: Option<JoinHandle<()>>,
    error: Option<LoggerError>,
}

/// Buffers with the thread at most: one it writes and one queued behind
/// it, so it never waits for the caller while the caller fills a third.
const BUFFERS: usize = 2;

impl Sink {
    /// Starts the thread on an open current file in `dir`.
    pub fn start(dir: &Path, file: File) -> Result<Sink> {
        let (ops, ops_rx) = mpsc::sync_channel::<Op>(BUFFERS + 1);
        let (back_tx, back) = mpsc::sync_channel(BUFFERS + 1);
        let mut thread = FileThread { dir: dir.to_path_buf(), file };
        let handle = std::thread::Builder::new()
            .name("isle-log-writer".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                for op in ops_rx {
                    let answer = match op {
                        Op::Write(buf) => thread.write(buf),
                        Op::Rotate(keep) => match thread.rotate(keep) {
                            Ok(()) => continue,
                            Err(e) => Err(e),
                        },
                        Op::Sync(done) => {
                            let _ = done.send(());
                            continue;
                        }
                    };
                    let failed = answer.is_err();
                    if back_tx.send(answer).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|err| LoggerError::Io { op: "starting the log writer thread for", path: dir.to_path_buf(), err })?;
        Ok(Sink { ops: Some(ops), back, in_flight: 0, thread: Some(handle), error: None })
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
            return Err(self.stopped());
        }
        // Buffers the thread gave back meanwhile wait in `back`; an error
        // among them is this sync's.
        while let Ok(answer) = self.back.try_recv() {
            self.in_flight -= 1;
            answer?;
        }
        Ok(())
    }

    fn take_back(&mut self) -> Result<Vec<u8>> {
        match self.back.recv() {
            Ok(answer) => {
                self.in_flight -= 1;
                let mut buf = answer?;
                buf.clear();
                Ok(buf)
            }
            Err(_) => Err(self.stopped()),
        }
    }

    fn send(&mut self, op: Op) -> Result<()> {
        let sent = self.ops.as_ref().map(|ops| ops.send(op).is_ok()).unwrap_or(false);
        if sent {
            Ok(())
        } else {
            Err(self.stopped())
        }
    }

    /// The error that stopped the thread (it sends one before it ends).
    fn stopped(&mut self) -> LoggerError {
        if let Some(e) = self.error.take() {
            return e;
        }
        while let Ok(answer) = self.back.try_recv() {
            if let Err(e) = answer {
                return e;
            }
        }
        LoggerError::WriterGone
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
struct FileThread {
    dir: PathBuf,
    file: File,
}

impl FileThread {
    fn write(&mut self, buf: Vec<u8>) -> Result<Vec<u8>> {
        self.file.write_all(&buf).map_err(|err| LoggerError::Io { op: "writing", path: log_file(&self.dir, 0), err })?;
        Ok(buf)
    }

    fn rotate(&mut self, keep: u32) -> Result<()> {
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |err| LoggerError::Io { op, path, err }
        };
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
        Ok(())
    }
}
