//! `--detach-keys` in Docker's format, and the matcher that watches the
//! user's input for the sequence.
//!
//! A sequence is comma-separated keys: `ctrl-<x>` for a-z and `@ [ \ ] ^ _`
//! (the control codes 1-26 and 0, 27-31), or a single character standing
//! for itself. The default is Docker's `ctrl-p,ctrl-q`.

use std::fmt;
use std::str::FromStr;

use super::AttachError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachKeys {
    bytes: Vec<u8>,
    text: String,
}

impl Default for DetachKeys {
    fn default() -> Self {
        DetachKeys { bytes: vec![0x10, 0x11], text: "ctrl-p,ctrl-q".into() }
    }
}

impl fmt::Display for DetachKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for DetachKeys {
    type Err = AttachError;

    fn from_str(s: &str) -> Result<Self, AttachError> {
        let bad = || AttachError::BadDetachKeys(s.to_string());
        let mut bytes = Vec::new();
        for key in s.split(',') {
            let byte = match key.strip_prefix("ctrl-") {
                Some(rest) => match rest.as_bytes() {
                    [c @ b'a'..=b'z'] => c - b'a' + 1,
                    [b'@'] => 0,
                    [b'['] => 27,
                    [b'\\'] => 28,
                    [b']'] => 29,
                    [b'^'] => 30,
                    [b'_'] => 31,
                    _ => return Err(bad()),
                },
                // One character, itself: "ctrl-" alone is the five letters
                // only in Docker's parser too, which rejects it; so do we.
                None => match key.as_bytes() {
                    [c] if c.is_ascii() => *c,
                    _ => return Err(bad()),
                },
            };
            bytes.push(byte);
        }
        Ok(DetachKeys { bytes, text: s.to_string() })
    }
}

impl DetachKeys {
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn matcher(&self) -> KeyMatcher {
        KeyMatcher { keys: self.bytes.clone(), held: 0 }
    }
}

/// Watches a byte stream for the detach sequence. Bytes that may begin the
/// sequence are held back until it is clear whether they do; the others
/// pass through unchanged, as Docker's escape proxy does.
#[derive(Debug, Clone)]
pub struct KeyMatcher {
    keys: Vec<u8>,
    held: usize,
}

impl KeyMatcher {
    /// Feeds `input`, appending what passes on to `out`. Returns true when
    /// the whole sequence was typed; the rest of `input` is then dropped.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        for &b in input {
            if b == self.keys[self.held] {
                self.held += 1;
                if self.held == self.keys.len() {
                    self.held = 0;
                    return true;
                }
                continue;
            }
            // Not the sequence after all: what was held is ordinary input,
            // and this byte may start the sequence afresh.
            out.extend_from_slice(&self.keys[..self.held]);
            self.held = 0;
            if b == self.keys[0] {
                self.held = 1;
                if self.keys.len() == 1 {
                    self.held = 0;
                    return true;
                }
            } else {
                out.push(b);
            }
        }
        false
    }

    /// At the end of input: what was held back is ordinary input.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.keys[..self.held]);
        self.held = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(s: &str) -> DetachKeys {
        s.parse().unwrap()
    }

    #[test]
    fn dockers_format_parses() {
        assert_eq!(keys("ctrl-p,ctrl-q").bytes(), &[0x10, 0x11]);
        assert_eq!(DetachKeys::default().bytes(), keys("ctrl-p,ctrl-q").bytes());
        assert_eq!(keys("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_").bytes(), &[0, 27, 28, 29, 30, 31]);
        assert_eq!(keys("x,ctrl-a").bytes(), b"x\x01");
    }

    #[test]
    fn bad_keys_name_the_value() {
        for bad in ["", "ctrl-", "ctrl-1", "ctrl-A", "ab", "ctrl-p,", "é", "ctrl-pq"] {
            let e = bad.parse::<DetachKeys>().unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid --detach-keys '{bad}'")), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_sequence_is_caught_and_the_rest_passes() {
        let mut m = keys("ctrl-p,ctrl-q").matcher();
        let mut out = Vec::new();
        assert!(!m.feed(b"ab\x10", &mut out));
        assert_eq!(out, b"ab", "a possible start is held back");
        assert!(m.feed(b"\x11zz", &mut out));
        assert_eq!(out, b"ab", "the sequence and what follows it are dropped");

        let mut out = Vec::new();
        assert!(!m.feed(b"\x10x", &mut out));
        assert_eq!(out, b"\x10x", "a broken sequence is ordinary input");
        let mut out = Vec::new();
        assert!(m.feed(b"\x10\x10\x11", &mut out));
        assert_eq!(out, b"\x10", "a repeated first key restarts the match");
        let mut out = Vec::new();
        assert!(!m.feed(b"\x10", &mut out));
        m.flush(&mut out);
        assert_eq!(out, b"\x10");
    }

    #[test]
    fn a_single_key_detaches_at_once() {
        let mut m = keys("ctrl-x").matcher();
        let mut out = Vec::new();
        assert!(m.feed(b"ab\x18cd", &mut out));
        assert_eq!(out, b"ab");
    }
}
