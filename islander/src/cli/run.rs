//! `islander run [OPTIONS] [CMD [ARG...]]`

use std::path::PathBuf;

use clap::Args;
use islander::isle::run::{self, RunRequest};
use islander::limits::LimitArgs;
use islander::paths::StateRoot;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Image to run (created on first use when it is `default`).
    #[arg(long, value_name = "NAME", conflicts_with = "rootfs")]
    pub image: Option<String>,
    /// A directory to use as the isle's (read-only) lower layer instead of an image.
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// A unique name for the isle.
    #[arg(long)]
    pub name: Option<String>,
    /// Host name inside the isle [default: the isle's short id].
    #[arg(long)]
    pub hostname: Option<String>,
    /// Keep stdin open and connected to the isle.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the isle a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable in the isle (repeatable).
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the isle.
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Run in a user namespace: root in the isle is host uid/gid 100000 (range 65536).
    #[arg(long)]
    pub userns: bool,
    /// Lift the hardening: all capabilities, all devices, no masked paths.
    #[arg(long)]
    pub privileged: bool,

    /// Memory limit: <number>[b|k|m|g], at least 4M.
    #[arg(long, value_name = "SIZE", default_value = "500M", allow_hyphen_values = true)]
    pub memory_in_bytes: String,
    /// CPU shares (relative weight), at least 2.
    #[arg(long, value_name = "N", default_value = "100", allow_hyphen_values = true)]
    pub cpu_shares: String,
    /// CFS period in microseconds, 1000..1000000.
    #[arg(long, value_name = "US", default_value = "100000", allow_hyphen_values = true)]
    pub cpu_period: String,
    /// CFS quota in microseconds, at least 1000, or -1 for none.
    #[arg(long, value_name = "US", default_value = "1000000", allow_hyphen_values = true)]
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

    /// The command and its arguments [default: /bin/bash, else /bin/sh].
    #[arg(value_name = "CMD", trailing_var_arg = true)]
    pub command: Vec<String>,
}

pub fn run(root: &StateRoot, args: RunArgs) -> anyhow::Result<i32> {
    let req = RunRequest {
        image: args.image,
        rootfs: args.rootfs,
        args: args.command,
        env: args.env,
        workdir: args.workdir,
        hostname: args.hostname,
        name: args.name,
        interactive: args.interactive,
        tty: args.tty,
        userns: args.userns,
        privileged: args.privileged,
        limits: LimitArgs {
            memory_in_bytes: Some(args.memory_in_bytes),
            cpu_shares: Some(args.cpu_shares),
            cpu_period: Some(args.cpu_period),
            cpu_quota: Some(args.cpu_quota),
            device_read_bps: args.device_read_bps,
            device_write_bps: args.device_write_bps,
            net_cls_classid: args.net_cls_classid,
            privileged: args.privileged,
        },
    };
    let outcome = run::run(root, req)?;
    if outcome.oom_kills > 0 {
        let limit = outcome.memory_limit.map(|l| format!(" (memory limit {l} bytes)")).unwrap_or_default();
        eprintln!(
            "islander: isle {} was OOM-killed{limit}: the kernel ended {} of its processes",
            outcome.short_id(),
            outcome.oom_kills
        );
    }
    Ok(outcome.exit.status())
}
