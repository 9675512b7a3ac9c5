//! islander's engine: everything that makes and tears down isles.
//!
//! The command-line front end lives in the binary (`main.rs`, `cli/`); the
//! engine never sees clap types. Each module owns one concern and its own
//! error type, gathered into [`error::Error`].

pub mod attach;
pub mod cgroups;
pub mod ebpf;
pub mod error;
pub mod image;
pub mod isle;
pub mod limits;
pub mod logger;
pub mod logging;
pub mod metrics;
pub mod paths;
pub mod process;
pub mod rootfs;
pub mod spec;
pub mod stats;
pub mod verify;

pub use error::{Error, Result};
