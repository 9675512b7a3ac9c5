//! Reading an isle's log back: every file oldest first, and following the
//! current file across rotations for `islander logs -f`.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::{log_file, LoggerError, Result, Stream};

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct LogRecord {
    pub log: String,
    pub stream: Stream,
    pub time: String,
}

impl LogRecord {
    pub fn timestamp(&self) -> Option<SystemTime> {
        humantime::parse_rfc3339(&self.time).ok()
    }
}

/// `--since`/`--until`: an RFC 3339 time, or a duration before now.
pub fn parse_time(option: &'static str, value: &str) -> Result<SystemTime> {
    if let Ok(t) = humantime::parse_rfc3339_weak(value) {
        return Ok(t);
    }
    if let Ok(d) = humantime::parse_duration(value) {
        return SystemTime::now().checked_sub(d).ok_or(LoggerError::BadTime { option, value: value.into() });
    }
    // Unix seconds, as `docker logs --since 1700000000` takes.
    if let Ok(secs) = value.parse::<u64>() {
        return Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
    }
    Err(LoggerError::BadTime { option, value: value.into() })
}

/// The isle's log files, oldest first.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut n = 1;
    let mut rotated = Vec::new();
    while log_file(dir, n).exists() {
        rotated.push(log_file(dir, n));
        n += 1;
    }
    rotated.reverse();
    if log_file(dir, 0).exists() {
        rotated.push(log_file(dir, 0));
    }
    rotated
}

fn parse_lines(reader: impl BufRead, out: &mut Vec<LogRecord>) {
    for line in reader.lines().map_while(|l| l.ok()) {
        // A torn last line (the logger killed mid-write) is skipped.
        if let Ok(r) = serde_json::from_str::<LogRecord>(&line) {
            out.push(r);
        }
    }
}

/// Every record the isle's log holds, oldest first.
pub fn read_all(dir: &Path) -> Result<Vec<LogRecord>> {
    let mut out = Vec::new();
    for f in files(dir) {
        match File::open(&f) {
            Ok(file) => parse_lines(BufReader::with_capacity(1 << 16, file), &mut out),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // rotated away meanwhile
            Err(err) => return Err(LoggerError::Io { op: "reading", path: f, err }),
        }
    }
    Ok(out)
}

/// Follows the current log file: yields what is appended, and when the
/// logger rotates, finishes the old file before moving to the new one.
pub struct Follower {
    dir: PathBuf,
    file: File,
    inode: u64,
    pending: Vec<u8>,
}

impl Follower {
    /// Starts at the current end of the log.
    pub fn at_end(dir: &Path) -> Result<Follower> {
        let path = log_file(dir, 0);
        let mut file = File::open(&path).map_err(|err| LoggerError::Io { op: "opening", path: path.clone(), err })?;
        let inode = file.metadata().map(|m| m.ino()).unwrap_or(0);
        file.seek(SeekFrom::End(0)).map_err(|err| LoggerError::Io { op: "seeking", path, err })?;
        Ok(Follower { dir: dir.to_path_buf(), file, inode, pending: Vec::new() })
    }

    /// Records appended since the last call.
    pub fn poll(&mut self) -> Vec<LogRecord> {
        let mut out = Vec::new();
        self.drain(&mut out);
        let path = log_file(&self.dir, 0);
        if let Ok(meta) = fs::metadata(&path) {
            if meta.ino() != self.inode {
                if let Ok(file) = File::open(&path) {
                    self.drain(&mut out);
                    self.file = file;
                    self.inode = meta.ino();
                    self.drain(&mut out);
                }
            }
        }
        out
    }

    fn drain(&mut self, out: &mut Vec<LogRecord>) {
        let mut buf = Vec::new();
        let _ = self.file.read_to_end(&mut buf);
        if buf.is_empty() {
            return;
        }
        self.pending.extend_from_slice(&buf);
        if let Some(last_nl) = self.pending.iter().rposition(|&b| b == b'\n') {
            let complete: Vec<u8> = self.pending.drain(..=last_nl).collect();
            parse_lines(&complete[..], out);
        }
    }
}
