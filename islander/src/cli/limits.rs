//! The limit options `run` and `verify` share, with the names and defaults
//! of the original Islander README.

use clap::Args;
use islander::limits::{self, LimitArgs};

#[derive(Debug, Args)]
pub struct LimitOptions {
    /// Memory limit: <number>[b|k|m|g], at least 4M.
    #[arg(long, value_name = "SIZE", default_value = limits::DEFAULT_MEMORY_IN_BYTES, allow_hyphen_values = true)]
    pub memory_in_bytes: String,
    /// CPU shares (relative weight), at least 2.
    #[arg(long, value_name = "N", default_value = limits::DEFAULT_CPU_SHARES, allow_hyphen_values = true)]
    pub cpu_shares: String,
    /// CFS period in microseconds, 1000..1000000.
    #[arg(long, value_name = "US", default_value = limits::DEFAULT_CPU_PERIOD, allow_hyphen_values = true)]
    pub cpu_period: String,
    /// CFS quota in microseconds, at least 1000, or -1 for none.
    #[arg(long, value_name = "US", default_value = limits::DEFAULT_CPU_QUOTA, allow_hyphen_values = true)]
    pub cpu_quota: String,
    /// Read rate limit: RATE (<number>[kb|mb|gb], on the isle's disk) or DEVICE:RATE; repeatable. [default: 500M]
    #[arg(long, value_name = "RATE", allow_hyphen_values = true)]
    pub device_read_bps: Vec<String>,
    /// Write rate limit, as --device-read-bps. [default: 100M]
    #[arg(long, value_name = "RATE", allow_hyphen_values = true)]
    pub device_write_bps: Vec<String>,
    /// net_cls class id of the isle's traffic (0xAAAABBBB or decimal).
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    pub net_cls_classid: Option<String>,
}

impl LimitOptions {
    /// The options as the engine takes them, still unparsed.
    pub fn into_limit_args(self, privileged: bool) -> LimitArgs {
        LimitArgs {
            memory_in_bytes: Some(self.memory_in_bytes),
            cpu_shares: Some(self.cpu_shares),
            cpu_period: Some(self.cpu_period),
            cpu_quota: Some(self.cpu_quota),
            device_read_bps: self.device_read_bps,
            device_write_bps: self.device_write_bps,
            net_cls_classid: self.net_cls_classid,
            privileged,
        }
    }
}
