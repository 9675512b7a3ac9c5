//! Turning one line of output into one json-file record:
//! `{"log":"<line, escaped>","stream":"stdout","time":"<RFC 3339>"}` and a
//! newline.
//!
//! [`plain_record`] is the path of nearly every line: it finds the line's
//! end, checks that nothing in it needs more than a simple escape, and
//! copies it, in one pass over the bytes. [`record`] handles the rest
//! (non-ASCII, invalid UTF-8, lines without an end in the chunk).

use std::time::SystemTime;

use super::Stream;

pub const PREFIX: &[u8] = b"{\"log\":\"";

/// What follows the line in every record made from one chunk of a stream:
/// `","stream":"stdout","time":"2026-12-01T20:00:00.123456789Z"}` and a
/// newline, built once per chunk. It is kept twice: as it is, for the
/// general path, and after the escaped newline that ends a plain line, in
/// a block of fixed size that the plain path copies whole.
pub struct Tail {
    text: Vec<u8>,
    block: [u8; TAIL_BLOCK],
    /// Bytes of `block` that count; 0 when they do not fit in it.
    block_len: usize,
}

/// 64 bytes hold the escaped newline and the tail (2 + 61) of any time
/// before the year 10000.
const TAIL_BLOCK: usize = 64;

impl Tail {
    pub fn now(stream: Stream) -> Tail {
        let text = format!(
            "\",\"stream\":\"{}\",\"time\":\"{}\"}}\n",
            stream.as_str(),
            humantime::format_rfc3339_nanos(SystemTime::now())
        )
        .into_bytes();
        let mut block = [0u8; TAIL_BLOCK];
        let block_len = if text.len() + 2 <= TAIL_BLOCK {
            block[..2].copy_from_slice(b"\\n");
            block[2..2 + text.len()].copy_from_slice(&text);
            text.len() + 2
        } else {
            0
        };
        Tail { text, block, block_len }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.text
    }
}

/// Appends the record of `line` (its newline, if any, included in the
/// record's `log`), in the general way.
pub fn record(out: &mut Vec<u8>, line: &[u8], tail: &[u8]) {
    out.reserve(line.len() + tail.len() + PREFIX.len() + 8);
    out.extend_from_slice(PREFIX);
    escape_line(out, line);
    out.extend_from_slice(tail);
}

/// Appends the record of the line that starts `data`, if that line is
/// plain: ASCII, ended by a newline inside `data`, and at most `max` bytes
/// with its newline. Returns how many bytes of `data` the line took; `None`
/// leaves `out` as it was, for the general path.
#[inline]
pub fn plain_record(out: &mut Vec<u8>, data: &[u8], tail: &Tail, max: usize) -> Option<usize> {
    if tail.block_len == 0 {
        return None;
    }
    let start = out.len();
    let taken = plain_record_inner(out, data, tail, max);
    if taken.is_none() {
        out.truncate(start);
    }
    taken
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn plain_record_inner(out: &mut Vec<u8>, data: &[u8], tail: &Tail, max: usize) -> Option<usize> {
    use std::arch::x86_64::*;
    // The newline must sit at an index below `limit`.
    let limit = data.len().min(max);
    // Room for the rest of a line of `limit` bytes with nothing escaped,
    // the 32 bytes a block store may write past it, the tail block and one
    // escape.
    let room = |from: usize| (limit - from.min(limit)) + 32 + TAIL_BLOCK + 6;
    out.reserve(PREFIX.len() + room(0));
    let mut o = out.len();
    let mut i = 0;
    // SAFETY: `o` never passes the reserved capacity: every store below is
    // preceded by a reservation covering it (the plain bytes copied so far
    // are at most the bytes read, and each escape re-reserves what the
    // rest of the line may need). Loads read 16 or 32 bytes only when they
    // lie inside `data`. SSE2 is part of x86_64.
    unsafe {
        std::ptr::copy_nonoverlapping(PREFIX.as_ptr(), out.as_mut_ptr().add(o), PREFIX.len());
        o += PREFIX.len();
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let space = _mm_set1_epi8(0x20);
        // Signed compare: bytes of 0x80 and up count as below 0x20, so one
        // test catches control bytes (the newline among them), non-ASCII,
        // '"' and '\\'.
        let special = |v: __m128i| {
            _mm_movemask_epi8(_mm_or_si128(_mm_cmplt_epi8(v, space), _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)))) as u32
        };
        let src = data.as_ptr();
        loop {
            if i >= limit {
                return None;
            }
            let dst = out.as_mut_ptr();
            // Blocks are stored whole before they are checked: the bytes
            // past the first special one are overwritten or cut off later.
            if i + 32 <= data.len() {
                let v0 = _mm_loadu_si128(src.add(i).cast());
                let v1 = _mm_loadu_si128(src.add(i + 16).cast());
                _mm_storeu_si128(dst.add(o).cast(), v0);
                _mm_storeu_si128(dst.add(o + 16).cast(), v1);
                let mask = special(v0) | (special(v1) << 16);
                if mask == 0 {
                    i += 32;
                    o += 32;
                    continue;
                }
                let k = mask.trailing_zeros() as usize;
                i += k;
                o += k;
            } else if i + 16 <= data.len() {
                let v = _mm_loadu_si128(src.add(i).cast());
                _mm_storeu_si128(dst.add(o).cast(), v);
                let mask = special(v);
                if mask == 0 {
                    i += 16;
                    o += 16;
                    continue;
                }
                let k = mask.trailing_zeros() as usize;
                i += k;
                o += k;
            } else {
                while i < data.len() && !self::special(data[i]) {
                    *dst.add(o) = data[i];
                    i += 1;
                    o += 1;
                }
            }
            if i >= limit {
                return None;
            }
            let b = data[i];
            if b == b'\n' {
                // One fixed-size copy: the escaped newline and the tail.
                std::ptr::copy_nonoverlapping(tail.block.as_ptr(), out.as_mut_ptr().add(o), TAIL_BLOCK);
                out.set_len(o + tail.block_len);
                return Some(i + 1);
            }
            if b >= 0x80 {
                return None;
            }
            // An ASCII escape: keep what is written, make room for the
            // escape and the rest of the line, and go on.
            out.set_len(o);
            let need = room(i) + 6;
            if out.capacity() - o < need {
                out.reserve(need);
            }
            push_escape(out, b);
            o = out.len();
            i += 1;
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn plain_record_inner(out: &mut Vec<u8>, data: &[u8], tail: &Tail, max: usize) -> Option<usize> {
    let limit = data.len().min(max);
    let pos = memchr::memchr(b'\n', &data[..limit])?;
    if data[..pos].iter().any(|&b| b >= 0x80) {
        return None;
    }
    record(out, &data[..=pos], tail.as_bytes());
    Some(pos + 1)
}

/// Bytes that end a plain run: control bytes, non-ASCII, '"' and '\\'.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline]
fn special(b: u8) -> bool {
    b >= 0x80 || NEEDS_ESCAPE[b as usize]
}

/// Appends `line` as the inside of a JSON string, as encoding/json writes it
/// for the json-file driver; invalid UTF-8 becomes U+FFFD, as with
/// `String::from_utf8_lossy`.
pub fn escape_line(out: &mut Vec<u8>, line: &[u8]) {
    match std::str::from_utf8(line) {
        Ok(text) => escape_into(out, text.as_bytes()),
        Err(_) => escape_into(out, String::from_utf8_lossy(line).as_bytes()),
    }
}

/// Escapes valid UTF-8: only ASCII bytes ever need it.
fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut pos = 0;
    while pos < bytes.len() {
        let run = bytes[pos..].iter().position(|&b| b < 0x80 && NEEDS_ESCAPE[b as usize]).unwrap_or(bytes.len() - pos);
        out.extend_from_slice(&bytes[pos..pos + run]);
        pos += run;
        if let Some(&b) = bytes.get(pos) {
            push_escape(out, b);
            pos += 1;
        }
    }
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

    fn parse(record: &[u8]) -> serde_json::Value {
        serde_json::from_slice(record).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(record)))
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

    /// The one-pass path and the general one write the same bytes, for
    /// every line the one-pass path takes, at every length around its
    /// 16-byte blocks and with escapes anywhere.
    #[test]
    fn the_plain_path_matches_the_general_one() {
        let tail = Tail::now(Stream::Stderr);
        let alphabet = [b'a', b'"', b'\\', b'\t', 0x01, b'z', b'~', b' '];
        for len in 0..80usize {
            for seed in 0..12usize {
                let mut line: Vec<u8> = (0..len).map(|i| if (i * 31 + seed * 7) % 5 == 0 { alphabet[(i + seed) % 8] } else { b'm' }).collect();
                line.push(b'\n');
                let mut data = line.clone();
                data.extend_from_slice(b"next line\n");
                let mut fast = b"junk".to_vec();
                let took = plain_record(&mut fast, &data, &tail, 16 * 1024).expect("an ASCII line with its newline is plain");
                assert_eq!(took, line.len());
                let mut slow = b"junk".to_vec();
                record(&mut slow, &line, tail.as_bytes());
                assert_eq!(String::from_utf8_lossy(&fast), String::from_utf8_lossy(&slow), "len {len} seed {seed}");
                let v = parse(&fast[4..]);
                assert_eq!(v["log"].as_str().unwrap().as_bytes(), &line[..]);
            }
        }
    }

    #[test]
    fn the_plain_path_declines_what_it_does_not_handle() {
        let tail = Tail::now(Stream::Stdout);
        let max = 64;
        let cases: [&[u8]; 5] = [
            b"no newline here at all, and longer than sixteen bytes",
            b"short",
            "caf\u{e9} au lait\n".as_bytes(),
            b"\xff invalid\n",
            &[b'y'; 64],
        ];
        for data in cases {
            let mut out = b"kept".to_vec();
            assert_eq!(plain_record(&mut out, data, &tail, max), None, "{data:?}");
            assert_eq!(out, b"kept");
        }
        // At most `max` bytes with the newline: 63 + 1 fits, 64 + 1 does not.
        let mut line = vec![b'q'; 63];
        line.push(b'\n');
        assert_eq!(plain_record(&mut Vec::new(), &line, &tail, max), Some(64));
        let mut line = vec![b'q'; 64];
        line.push(b'\n');
        assert_eq!(plain_record(&mut Vec::new(), &line, &tail, max), None);
    }
}
