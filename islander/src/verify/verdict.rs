//! The rules that turn a configured limit and a measurement into a verdict.
//!
//! A limit *holds* when the load pushed usage up to it and no further.
//! Pushing matters: a load that stayed well below a limit (a quota of more
//! CPUs than the host has, a rate faster than the disk) shows nothing
//! about it, which is "could not be reached", not "holds".

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    #[serde(rename = "holds")]
    Holds,
    #[serde(rename = "exceeded")]
    Exceeded,
    #[serde(rename = "could not be reached")]
    NotReached,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::Exceeded => "exceeded",
            Verdict::NotReached => "could not be reached",
        }
    }
}

/// Relative slack either side of a CPU or rate limit: sampling, the CFS
/// period and the throttle's first-slice burst all blur a few percent.
pub const TOLERANCE: f64 = 0.10;
/// Absolute slack for CPU, in CPUs: a small quota's 10% is lost in the
/// scheduler's own noise.
pub const CPU_SLACK: f64 = 0.05;

/// CPU in CPUs: holds up to configured × 1.10 + 0.05; the burner must have
/// reached configured × 0.90 − 0.05 for the limit to count as reached.
pub fn cpu(configured: f64, measured: f64) -> Verdict {
    if measured > configured * (1.0 + TOLERANCE) + CPU_SLACK {
        Verdict::Exceeded
    } else if measured >= configured * (1.0 - TOLERANCE) - CPU_SLACK {
        Verdict::Holds
    } else {
        Verdict::NotReached
    }
}

/// A byte rate: holds up to configured × 1.10, reached from × 0.90.
pub fn rate(configured: f64, measured: f64) -> Verdict {
    if measured > configured * (1.0 + TOLERANCE) {
        Verdict::Exceeded
    } else if measured >= configured * (1.0 - TOLERANCE) {
        Verdict::Holds
    } else {
        Verdict::NotReached
    }
}

/// Memory: exceeded when the isle's peak went past the limit; holds when
/// the limit stopped it (an OOM kill, or a failed charge counted in
/// `memory.failcnt`) with the peak at or below the limit.
pub fn memory(limit: u64, max_usage: u64, stopped: bool) -> Verdict {
    if max_usage > limit {
        Verdict::Exceeded
    } else if stopped {
        Verdict::Holds
    } else {
        Verdict::NotReached
    }
}
