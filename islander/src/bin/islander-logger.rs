//! `islander-logger`: what a detached isle's supervisor becomes once the
//! isle runs (see `isle/monitor.rs`). It is a program of its own, and a
//! small one, so that what stays resident beside each isle for its whole
//! life is the poll loop, the log writer and the record, not the engine.
//!
//! It is started only by `islander run -d`, with descriptors and blocked
//! signals it inherits; by hand it refuses to run.

use std::process::ExitCode;

use islander::isle::monitor::{self, MONITOR_FLAG};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [flag, json] = args.as_slice() else {
        return usage();
    };
    if flag != MONITOR_FLAG {
        return usage();
    }
    islander::logging::init_minimal("islander-logger");
    match monitor::resume(json) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("islander-logger: this is the logger of detached isles, started by `islander run -d`; it is not run by hand");
    ExitCode::from(2)
}
