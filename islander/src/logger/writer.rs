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
        let tail = record_tail(stream);
        let time = tail.as_slice();
        let idx = stream as usize;
        let mut rest = data;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            let (line, tail) = rest.split_at(pos + 1);
            if self.partial[idx].is_empty() {
                self.record_split(line, time)?;
            } else {
                let mut whole = std::mem::take(&mut self.partial[idx]);
                whole.extend_from_slice(line);
                self.record_split(&whole, time)?;
            }
            rest = tail;
        }
        if !rest.is_empty() {
            self.partial[idx].extend_from_slice(rest);
            while self.partial[idx].len() >= self.max_line {
                let chunk: Vec<u8> = self.partial[idx].drain(..self.max_line).collect();
                self.record(&chunk, time)?;
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
            let tail = record_tail(stream);
            let line = std::mem::take(&mut self.partial[idx]);
            self.record(&line, &tail)?;
        }
        self.flush()
    }

    fn record_split(&mut self, line: &[u8], tail: &[u8]) -> Result<()> {
        for chunk in line.chunks(self.max_line) {
            self.record(chunk, tail)?;
        }
        Ok(())
    }

    /// `tail` is [`record_tail`]'s: what follows the line in every record
    /// of one chunk.
    fn record(&mut self, line: &[u8], tail: &[u8]) -> Result<()> {
        let start = self.buf.len();
        self.buf.reserve(line.len() + tail.len() + 16);
        self.buf.extend_from_slice(b"{\"log\":\"");
        escape_line(&mut self.buf, line);
        self.buf.extend_from_slice(tail);
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

/// `","stream":"stdout","time":"2026-12-01T20:00:00.123456789Z"}` and a
/// newline: the end of every record made from one chunk of a stream.
fn record_tail(stream: Stream) -> Vec<u8> {
    format!(
        "\",\"stream\":\"{}\",\"time\":\"{}\"}}\n",
        stream.as_str(),
        humantime::format_rfc3339_nanos(SystemTime::now())
    )
    .into_bytes()
}

/// Appends `line` as the inside of a JSON string, as encoding/json writes it
/// for the json-file driver; invalid UTF-8 becomes U+FFFD, as with
/// `String::from_utf8_lossy`.
fn escape_line(out: &mut Vec<u8>, line: &[u8]) {
    // Nearly every record is a line with its newline: escaped apart, the
    // rest is usually a run with nothing to escape.
    if let Some(body) = line.strip_suffix(b"\n") {
        escape_line(out, body);
        out.extend_from_slice(b"\\n");
        return;
    }
    // The common case, ASCII text, is checked and escaped in one pass;
    // anything else is validated first.
    if !escape_ascii(out, line) {
        match std::str::from_utf8(line) {
            Ok(text) => escape_into(out, text.as_bytes()),
            Err(_) => escape_into(out, String::from_utf8_lossy(line).as_bytes()),
        }
    }
}

/// Escapes `line` if it is all ASCII and returns true; otherwise appends
/// nothing and returns false.
fn escape_ascii(out: &mut Vec<u8>, line: &[u8]) -> bool {
    let mark = out.len();
    let mut pos = 0;
    loop {
        let k = plain_run(&line[pos..]);
        out.extend_from_slice(&line[pos..pos + k]);
        pos += k;
        let Some(&b) = line.get(pos) else { return true };
        if b >= 0x80 {
            out.truncate(mark);
            return false;
        }
        push_escape(out, b);
        pos += 1;
    }
}

/// Escapes valid UTF-8: only ASCII bytes ever need it.
fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut pos = 0;
    loop {
        let k = plain_run(&bytes[pos..]);
        out.extend_from_slice(&bytes[pos..pos + k]);
        pos += k;
        let Some(&b) = bytes.get(pos) else { return };
        if b >= 0x80 {
            out.push(b);
        } else {
            push_escape(out, b);
        }
        pos += 1;
    }
}

/// The length of the leading run of printable ASCII other than '"' and
/// '\\': bytes that go into a JSON string as they are. Sixteen bytes at a
/// time with SSE2, which every x86_64 has: this scan is most of the cost of
/// a record.
#[cfg(target_arch = "x86_64")]
fn plain_run(bytes: &[u8]) -> usize {
    use std::arch::x86_64::*;
    let mut i = 0;
    // SAFETY: SSE2 is part of x86_64; every load reads 16 bytes inside
    // `bytes` (i + 16 <= len).
    unsafe {
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let space = _mm_set1_epi8(0x20);
        while i + 16 <= bytes.len() {
            let v = _mm_loadu_si128(bytes.as_ptr().add(i).cast());
            // Signed: bytes of 0x80 and up are negative, so below 0x20 too.
            let hit = _mm_or_si128(_mm_cmplt_epi8(v, space), _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)));
            let mask = _mm_movemask_epi8(hit);
            if mask != 0 {
                return i + mask.trailing_zeros() as usize;
            }
            i += 16;
        }
    }
    i + bytes[i..].iter().position(|&b| b >= 0x80 || NEEDS_ESCAPE[b as usize]).unwrap_or(bytes.len() - i)
}

fn push_escape(out: &mut Vec<u8>, b: u8) {
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        _ => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 15) as usize]);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn plain_run(bytes: &[u8]) -> usize {
    bytes.iter().position(|&b| b >= 0x80 || NEEDS_ESCAPE[b as usize]).unwrap_or(bytes.len())
}

/// Control bytes, '"' and '\\'.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

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
    fn escaping_round_trips_through_a_json_parser() {
        let mut inputs: Vec<Vec<u8>> = vec![
            (0u8..=255).collect(),
            b"plain ascii text of more than sixteen bytes\n".to_vec(),
            "h\u{e9}llo w\u{f6}rld \u{1f600} \"quoted\" back\\slash\ttab\n".as_bytes().to_vec(),
            b"\xff\xfe invalid \xc3 utf8 \x80\n".to_vec(),
            vec![b'x'; 70_000],
        ];
        for n in 0..40 {
            inputs.push((0..n).map(|i| [b'a', b'"', b'\\', 0x01, 0xc3, 0xa9, b'\n', 0x7f][(i * 7 + n) % 8]).collect());
        }
        for input in inputs {
            let mut out = b"\"".to_vec();
            escape_line(&mut out, &input);
            out.push(b'"');
            let back: String = serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&out)));
            assert_eq!(back, String::from_utf8_lossy(&input), "{input:?}");
        }
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
