//! `islander logs [-f] [--tail N] [--since T] [--until T] ISLE`: an isle's
//! log records, oldest first, and with `follow` the ones that arrive until
//! the isle ends.
//!
//! History and the live part are read through one [`Cursor`], so nothing is
//! lost or shown twice at the seam: every file is opened once, the rotated
//! ones oldest first and the current one last, and is read to its end; when
//! the logger rotates, the old file (still open here) is finished before
//! the new one is opened.

use std::collections::{HashSet, VecDeque};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::record::{Record, Status};
use super::{gc, lookup, IsleError};
use crate::logger::log_file;
use crate::logger::reader::{self, LogRecord};
use crate::paths::StateRoot;

/// How often a follower looks for new records and for the isle's end.
const FOLLOW_POLL: Duration = Duration::from_millis(50);
const READ_CHUNK: usize = 256 * 1024;

#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    pub follow: bool,
    /// Only the last N records of the history (before following).
    pub tail: Option<usize>,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
}

/// Where records go.
pub trait LogSink {
    fn record(&mut self, rec: &LogRecord) -> io::Result<()>;
    /// Everything so far is out: called before waiting for more.
    fn flush(&mut self) -> io::Result<()>;
}

/// Writes the records of the isle `query` names to `sink`. Returns when the
/// history is out, or with `follow` once the isle has ended and its last
/// records are out. A sink whose reader went away (EPIPE) ends it quietly.
pub fn logs(
    root: &StateRoot,
    query: &str,
    opts: &LogsOptions,
    sink: &mut dyn LogSink,
) -> crate::Result<()> {
    gc::reap_orphans(root);
    let rec = lookup::find(root, query)?;
    let dir = log_dir(root, &rec);
    let run_dir = root.isle_run(&rec.id);
    match show(&dir, &run_dir, opts, sink) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(source) => Err(IsleError::Io {
            op: "writing the log of",
            path: dir,
            source,
        }
        .into()),
        Ok(()) => Ok(()),
    }
}

/// The log directory of `rec`: recorded, or where `run` puts it.
pub fn log_dir(root: &StateRoot, rec: &Record) -> PathBuf {
    if rec.log_dir.as_os_str().is_empty() {
        root.isle_layers(&rec.id).join("log")
    } else {
        rec.log_dir.clone()
    }
}

fn show(dir: &Path, run_dir: &Path, opts: &LogsOptions, sink: &mut dyn LogSink) -> io::Result<()> {
    let wanted = |r: &LogRecord| {
        if opts.since.is_none() && opts.until.is_none() {
            return true;
        }
        let Some(t) = r.timestamp() else { return false };
        opts.since.is_none_or(|s| t >= s) && opts.until.is_none_or(|u| t <= u)
    };
    let mut cursor = Cursor::open(dir);
    // Checked before the history is read: a record that says the isle has
    // ended was written after its last log line, so that read gets them all.
    let mut ended = !opts.follow || has_ended(run_dir);
    match opts.tail {
        Some(n) => {
            let mut last: VecDeque<LogRecord> = VecDeque::with_capacity(n.min(1 << 16));
            cursor.read(&mut |r| {
                if n > 0 && wanted(&r) {
                    if last.len() == n {
                        last.pop_front();
                    }
                    last.push_back(r);
                }
                Ok(())
            })?;
            for r in &last {
                sink.record(r)?;
            }
        }
        None => cursor.read(&mut |r| if wanted(&r) { sink.record(&r) } else { Ok(()) })?,
    }
    sink.flush()?;
    while !ended {
        std::thread::sleep(FOLLOW_POLL);
        ended = has_ended(run_dir) || opts.until.is_some_and(|u| SystemTime::now() > u);
        cursor.read(&mut |r| if wanted(&r) { sink.record(&r) } else { Ok(()) })?;
        sink.flush()?;
    }
    Ok(())
}

/// Whether the isle's logger is done: its record says exited, or is gone
/// (a foreground isle, removed at its end), or its supervisor is dead.
fn has_ended(run_dir: &Path) -> bool {
    match Record::load(run_dir) {
        Some(r) => r.status == Status::Exited || !r.supervisor.is_alive(),
        None => true,
    }
}

/// A reading position across an isle's log files.
struct Cursor {
    dir: PathBuf,
    /// Rotated files not read to their end yet, oldest first.
    older: VecDeque<File>,
    /// The current file (`isle.log`) and its inode, once it exists.
    current: Option<(File, u64)>,
    /// The start of a line whose end has not been read yet.
    pending: Vec<u8>,
}

impl Cursor {
    fn open(dir: &Path) -> Cursor {
        // The current file first: if the logger rotates meanwhile, it shows
        // up again among the rotated ones and is skipped there by inode.
        let current = open_with_inode(&log_file(dir, 0));
        let mut seen: HashSet<u64> = current.iter().map(|(_, ino)| *ino).collect();
        let older = reader::files(dir)
            .into_iter()
            .filter(|p| *p != log_file(dir, 0))
            .filter_map(|p| open_with_inode(&p))
            .filter(|(_, ino)| seen.insert(*ino))
            .map(|(f, _)| f)
            .collect();
        Cursor {
            dir: dir.to_path_buf(),
            older,
            current,
            pending: Vec::new(),
        }
    }

    /// Passes every complete record readable now to `each`, in order.
    fn read(&mut self, each: &mut dyn FnMut(LogRecord) -> io::Result<()>) -> io::Result<()> {
        while let Some(mut f) = self.older.pop_front() {
            drain(&mut f, &mut self.pending, each)?;
            // A rotated file is finished; a torn last line (the logger was
            // killed mid-write) is not the start of the next file's first.
            self.pending.clear();
        }
        loop {
            if let Some((f, _)) = self.current.as_mut() {
                drain(f, &mut self.pending, each)?;
            }
            let path = log_file(&self.dir, 0);
            let now = fs::metadata(&path).ok().map(|m| m.ino());
            if now.is_none() || now == self.current.as_ref().map(|(_, ino)| *ino) {
                return Ok(());
            }
            // The logger moved to a new file: what it wrote to the old one
            // before rotating is there to finish first.
            if let Some((f, _)) = self.current.as_mut() {
                drain(f, &mut self.pending, each)?;
                self.pending.clear();
            }
            match open_with_inode(&path) {
                Some(next) => self.current = Some(next),
                None => return Ok(()),
            }
        }
    }
}

fn open_with_inode(path: &Path) -> Option<(File, u64)> {
    let f = File::open(path).ok()?;
    let ino = f.metadata().ok()?.ino();
    Some((f, ino))
}

/// Reads `f` to its current end, passing each complete line's record on.
fn drain(
    f: &mut File,
    pending: &mut Vec<u8>,
    each: &mut dyn FnMut(LogRecord) -> io::Result<()>,
) -> io::Result<()> {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The file is the logger's; one we cannot read has nothing more.
            Err(_) => return Ok(()),
        };
        let chunk = &buf[..n];
        let Some(last_nl) = chunk.iter().rposition(|&b| b == b'\n') else {
            pending.extend_from_slice(chunk);
            continue;
        };
        let mut lines = &chunk[..=last_nl];
        if !pending.is_empty() {
            let first_nl = lines
                .iter()
                .position(|&b| b == b'\n')
                .expect("there is a newline");
            pending.extend_from_slice(&lines[..=first_nl]);
            parse_line(pending, each)?;
            pending.clear();
            lines = &lines[first_nl + 1..];
        }
        for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            parse_line(line, each)?;
        }
        pending.extend_from_slice(&chunk[last_nl + 1..]);
    }
}

fn parse_line(line: &[u8], each: &mut dyn FnMut(LogRecord) -> io::Result<()>) -> io::Result<()> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    // Not a record (a torn line): skipped, as reader::read_all does.
    match serde_json::from_slice::<LogRecord>(line) {
        Ok(r) => each(r),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logger::writer::LogWriter;
    use crate::logger::{Rotation, Stream};

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("islander-logs-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn collect(c: &mut Cursor) -> Vec<String> {
        let mut out = Vec::new();
        c.read(&mut |r| {
            out.push(r.log);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn the_cursor_reads_history_then_follows_across_rotations() {
        let dir = tmpdir("cursor");
        let mut w = LogWriter::open(
            &dir,
            Rotation {
                max_size: 4096,
                max_files: 4,
            },
        )
        .unwrap();
        for i in 0..60 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        w.sync().unwrap();
        let mut c = Cursor::open(&dir);
        let mut got = collect(&mut c);
        // Rotations while following: every file is finished before the next.
        for i in 60..200 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
            w.flush().unwrap();
            if i % 7 == 0 {
                got.extend(collect(&mut c));
            }
        }
        w.finish(Stream::Stdout).unwrap();
        got.extend(collect(&mut c));
        let want: Vec<String> = (0..200).map(|i| format!("line {i}\n")).collect();
        assert_eq!(got, want);
        assert!(reader::files(&dir).len() > 1, "the test rotated");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_log_reads_as_empty_until_it_appears() {
        let dir = tmpdir("missing");
        let mut c = Cursor::open(&dir);
        assert!(collect(&mut c).is_empty());
        let mut w = LogWriter::open(&dir, Rotation::default()).unwrap();
        w.write(Stream::Stderr, b"late\n").unwrap();
        w.sync().unwrap();
        assert_eq!(collect(&mut c), vec!["late\n".to_string()]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_line_waits_for_its_end() {
        let dir = tmpdir("torn");
        fs::create_dir_all(&dir).unwrap();
        let path = log_file(&dir, 0);
        let full = "{\"log\":\"a\\n\",\"stream\":\"stdout\",\"time\":\"2026-12-01T00:00:00.000000001Z\"}\n";
        fs::write(&path, &full[..20]).unwrap();
        let mut c = Cursor::open(&dir);
        assert!(collect(&mut c).is_empty());
        use std::io::Write;
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&full.as_bytes()[20..])
            .unwrap();
        assert_eq!(collect(&mut c), vec!["a\n".to_string()]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
