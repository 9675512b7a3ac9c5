//! Writing an isle's output as json-file records, with size rotation.
//!
//! [`LogWriter`] cuts each stream into lines, encodes each as a record
//! ([`super::encode`]) and decides where the files rotate; the file itself is
//! written by its own thread ([`super::sink`]).

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use super::encode::{plain_record, record, Tail};
use super::sink::Sink;
use super::{io, log_file, Result, Rotation, Stream};

/// A line longer than this is written as several records, as Docker does,
/// so that a stream without newlines cannot grow the logger without bound.
const MAX_LINE: usize = 16 * 1024;
/// Records are handed to the writing thread in buffers of at most about
/// this size. The supervisor's loop also hands over after each read it
/// encodes (128 KiB of output make about 220 KiB of records), so a quiet
/// isle's last lines reach the file at once; this bounds one large write.
/// Handing over only full buffers was tried: no faster here, and 0.6 MiB
/// more resident.
const FLUSH_AT: usize = 512 * 1024;

pub struct LogWriter {
    rotation: Rotation,
    /// Bytes in the current file, counting those handed to the thread.
    size: u64,
    buf: Vec<u8>,
    partial: [Vec<u8>; 2],
    max_line: usize,
    sink: Sink,
}

impl LogWriter {
    /// Opens (appending to) the isle's current log file in `dir`.
    pub fn open(dir: &Path, rotation: Rotation) -> Result<LogWriter> {
        fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let path: PathBuf = log_file(dir, 0);
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(io("opening", &path))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        // A record must fit in a file, so that no file outgrows max_size.
        let max_line = MAX_LINE.min((rotation.max_size / 4) as usize).max(256);
        let sink = Sink::start(dir, file)?;
        Ok(LogWriter { rotation, size, buf: Vec::with_capacity(FLUSH_AT + 2 * MAX_LINE), partial: [Vec::new(), Vec::new()], max_line, sink })
    }

    /// Takes a chunk read from one stream: complete lines become records at
    /// once, the unfinished tail waits for the rest of its line.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> Result<()> {
        let tail = Tail::now(stream);
        let idx = stream as usize;
        let mut rest = data;
        if !self.partial[idx].is_empty() {
            // The start of this chunk ends a line begun in an earlier one.
            let Some(pos) = memchr::memchr(b'\n', rest) else {
                return self.hold(idx, rest, tail.as_bytes());
            };
            let mut whole = std::mem::take(&mut self.partial[idx]);
            whole.extend_from_slice(&rest[..=pos]);
            self.record_split(&whole, tail.as_bytes())?;
            rest = &rest[pos + 1..];
        }
        while !rest.is_empty() {
            let start = self.buf.len();
            if let Some(n) = plain_record(&mut self.buf, rest, &tail, self.max_line) {
                self.placed(start)?;
                rest = &rest[n..];
                continue;
            }
            match memchr::memchr(b'\n', rest) {
                Some(pos) => {
                    self.record_split(&rest[..=pos], tail.as_bytes())?;
                    rest = &rest[pos + 1..];
                }
                None => return self.hold(idx, rest, tail.as_bytes()),
            }
        }
        Ok(())
    }

    /// Keeps an unfinished line for the next chunk; what passes the
    /// longest record becomes records now.
    fn hold(&mut self, idx: usize, rest: &[u8], tail: &[u8]) -> Result<()> {
        self.partial[idx].extend_from_slice(rest);
        while self.partial[idx].len() >= self.max_line {
            let chunk: Vec<u8> = self.partial[idx].drain(..self.max_line).collect();
            self.record(&chunk, tail)?;
        }
        Ok(())
    }

    /// At end of a stream: its unfinished last line becomes a record, and
    /// everything is in the file when this returns.
    pub fn finish(&mut self, stream: Stream) -> Result<()> {
        let idx = stream as usize;
        if !self.partial[idx].is_empty() {
            let tail = Tail::now(stream);
            let line = std::mem::take(&mut self.partial[idx]);
            self.record(&line, tail.as_bytes())?;
        }
        self.sync()
    }

    /// Waits until every record so far is in the file.
    pub fn sync(&mut self) -> Result<()> {
        self.flush()?;
        self.sink.sync()
    }

    fn record_split(&mut self, line: &[u8], tail: &[u8]) -> Result<()> {
        for chunk in line.chunks(self.max_line) {
            self.record(chunk, tail)?;
        }
        Ok(())
    }

    /// `tail` is a [`Tail`]'s bytes: what follows the line in every record
    /// of one chunk.
    fn record(&mut self, line: &[u8], tail: &[u8]) -> Result<()> {
        let start = self.buf.len();
        record(&mut self.buf, line, tail);
        self.placed(start)
    }

    /// Rotation and hand-over after a record was appended at `start`.
    #[inline(always)]
    fn placed(&mut self, start: usize) -> Result<()> {
        let len = (self.buf.len() - start) as u64;
        if self.size + (start as u64) + len > self.rotation.max_size && self.size + start as u64 > 0 {
            // This record would overflow the file: write what came before
            // it, rotate, and let it open the new file.
            let record = self.buf.split_off(start);
            self.flush()?;
            self.sink.rotate(self.rotation.max_files)?;
            self.size = 0;
            self.buf.extend_from_slice(&record);
        }
        if self.buf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands the gathered records to the writing thread (see [`sync`]).
    ///
    /// [`sync`]: LogWriter::sync
    pub fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.size += self.buf.len() as u64;
        let full = std::mem::take(&mut self.buf);
        self.buf = self.sink.write(full)?;
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        // Records still gathered go to the file before the thread ends.
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logger::reader::read_all;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("islander-log-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn lines_split_across_chunks_are_whole_records() {
        let dir = tmpdir("split");
        let mut w = LogWriter::open(&dir, Rotation::default()).unwrap();
        w.write(Stream::Stdout, b"hel").unwrap();
        w.write(Stream::Stderr, b"oops\n").unwrap();
        w.write(Stream::Stdout, b"lo \"x\"\n\tend").unwrap();
        w.finish(Stream::Stdout).unwrap();
        w.finish(Stream::Stderr).unwrap();
        let recs = read_all(&dir).unwrap();
        let got: Vec<(String, Stream)> = recs.iter().map(|r| (r.log.clone(), r.stream)).collect();
        assert_eq!(
            got,
            vec![
                ("oops\n".to_string(), Stream::Stderr),
                ("hello \"x\"\n".to_string(), Stream::Stdout),
                ("\tend".to_string(), Stream::Stdout)
            ]
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotation_bounds_files_and_sizes_and_keeps_order() {
        let dir = tmpdir("rotate");
        let rot = Rotation { max_size: 4096, max_files: 3 };
        let mut w = LogWriter::open(&dir, rot).unwrap();
        for i in 0..2000 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes()).unwrap();
        }
        w.finish(Stream::Stdout).unwrap();
        let files: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert!(files.len() <= 3, "{files:?}");
        for f in &files {
            assert!(fs::metadata(f).unwrap().len() <= 4096, "{f:?} too big");
        }
        let recs = read_all(&dir).unwrap();
        let nums: Vec<u32> = recs.iter().map(|r| r.log.trim()["line ".len()..].parse().unwrap()).collect();
        assert_eq!(*nums.last().unwrap(), 1999);
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "kept records are consecutive");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn control_bytes_and_bad_utf8_stay_valid_json() {
        let dir = tmpdir("esc");
        let mut w = LogWriter::open(&dir, Rotation::default()).unwrap();
        w.write(Stream::Stdout, b"a\x01\xffb\n").unwrap();
        w.finish(Stream::Stdout).unwrap();
        let recs = read_all(&dir).unwrap();
        assert_eq!(recs[0].log, "a\u{1}\u{fffd}b\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}
