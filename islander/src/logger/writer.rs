//! Writing an isle's output as json-file records, with size rotation.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{log_file, LoggerError, Result, Rotation, Stream};

/// A line longer than this is written as several records, as Docker does,
/// so that a stream without newlines cannot grow the logger without bound.
const MAX_LINE: usize = 16 * 1024;
/// Records are gathered and written in chunks of about this size.
const FLUSH_AT: usize = 64 * 1024;

pub struct LogWriter {
    dir: PathBuf,
    rotation: Rotation,
    file: File,
    size: u64,
    buf: Vec<u8>,
    partial: [Vec<u8>; 2],
    max_line: usize,
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LoggerError {
    let path = path.to_path_buf();
    move |err| LoggerError::Io { op, path, err }
}

impl LogWriter {
    /// Opens (appending to) the isle's current log file in `dir`.
    pub fn open(dir: &Path, rotation: Rotation) -> Result<LogWriter> {
        fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let path = log_file(dir, 0);
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(io("opening", &path))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        // A record must fit in a file, so that no file outgrows max_size.
        let max_line = MAX_LINE.min((rotation.max_size / 4) as usize).max(256);
        Ok(LogWriter { dir: dir.to_path_buf(), rotation, file, size, buf: Vec::with_capacity(FLUSH_AT * 2), partial: [Vec::new(), Vec::new()], max_line })
    }

    /// Takes a chunk read from one stream: complete lines become records at
    /// once, the unfinished tail waits for the rest of its line.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> Result<()> {
        let time = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
        let idx = stream as usize;
        let mut rest = data;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(pos + 1);
            if self.partial[idx].is_empty() {
                self.record_split(stream, line, &time)?;
            } else {
                let mut whole = std::mem::take(&mut self.partial[idx]);
                whole.extend_from_slice(line);
                self.record_split(stream, &whole, &time)?;
            }
            rest = tail;
        }
        if !rest.is_empty() {
            self.partial[idx].extend_from_slice(rest);
            while self.partial[idx].len() >= self.max_line {
                let chunk: Vec<u8> = self.partial[idx].drain(..self.max_line).collect();
                self.record(stream, &chunk, &time)?;
            }
        }
        if self.buf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    /// At end of a stream: its unfinished last line becomes a record.
    pub fn finish(&mut self, stream: Stream) -> Result<()> {
        let idx = stream as usize;
        if !self.partial[idx].is_empty() {
            let time = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
            let line = std::mem::take(&mut self.partial[idx]);
            self.record(stream, &line, &time)?;
        }
        self.flush()
    }

    fn record_split(&mut self, stream: Stream, line: &[u8], time: &str) -> Result<()> {
        for chunk in line.chunks(self.max_line) {
            self.record(stream, chunk, time)?;
        }
        Ok(())
    }

    fn record(&mut self, stream: Stream, line: &[u8], time: &str) -> Result<()> {
        let start = self.buf.len();
        self.buf.extend_from_slice(b"{\"log\":\"");
        escape_into(&mut self.buf, &String::from_utf8_lossy(line));
        self.buf.extend_from_slice(b"\",\"stream\":\"");
        self.buf.extend_from_slice(stream.as_str().as_bytes());
        self.buf.extend_from_slice(b"\",\"time\":\"");
        self.buf.extend_from_slice(time.as_bytes());
        self.buf.extend_from_slice(b"\"}\n");
        let len = (self.buf.len() - start) as u64;
        if self.size + (start as u64) + len > self.rotation.max_size && self.size + start as u64 > 0 {
            // This record would overflow the file: write what came before
            // it, rotate, and let it open the new file.
            let record = self.buf.split_off(start);
            self.flush()?;
            self.rotate()?;
            self.buf = record;
        }
        Ok(())
    }

    /// Writes the gathered records to the file.
    pub fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let path = log_file(&self.dir, 0);
        self.file.write_all(&self.buf).map_err(io("writing", &path))?;
        self.size += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        let max = self.rotation.max_files;
        if max > 1 {
            for n in (1..max).rev() {
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

/// JSON string escaping, as encoding/json does for the json-file driver.
fn escape_into(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            }
            _ => out.push(b),
        }
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
