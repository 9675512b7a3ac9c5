//! Per-isle metrics: what each running isle uses and does, read at scrape
//! time from its cgroups, its spec and the eBPF [`Observer`](crate::ebpf::Observer),
//! and served in the Prometheus text format by `islander run --metrics`.
//!
//! - [`snapshot`] gathers the figures of every running isle of a state root
//!   into plain values (also what `islander stats` shows).
//! - [`collector`] turns snapshots into Prometheus metric families, as a
//!   custom `prometheus` collector registered on a registry the caller owns.
//! - [`server`] serves that registry at `GET /metrics` over hyper.
//!
//! docs/metrics.md is the reference of every family.

pub mod collector;
pub mod server;
pub mod snapshot;

#[cfg(test)]
mod tests;

use thiserror::Error;

/// The forms `--metrics` accepts, for error messages.
pub const ACCEPTED_ADDRESSES: &str =
    "':PORT' (all interfaces), 'IPV4:PORT', '[IPV6]:PORT' or 'localhost:PORT', with PORT 0 to 65535";

#[derive(Debug, Error)]
pub enum MetricsError {
    #[error("invalid --metrics address '{value}': {reason} (accepted: {ACCEPTED_ADDRESSES})")]
    BadAddress { value: String, reason: &'static str },
    #[error("cannot serve metrics on {addr}: the address is already in use (another islander --metrics or exporter?)")]
    InUse { addr: String },
    #[error("cannot serve metrics on {addr}: it is not an address of this host")]
    NotLocal { addr: String },
    #[error("cannot serve metrics on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("registering islander's metrics: {0}")]
    Register(#[from] prometheus::Error),
}

pub type Result<T, E = MetricsError> = std::result::Result<T, E>;
