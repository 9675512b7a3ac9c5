//! Resource limits of an isle: the CLI's limit options, checked and turned
//! into an OCI [`LinuxResources`] that [`crate::cgroups`] writes out.
//!
//! Every value is checked here, before any cgroup exists, so a bad option
//! fails with one line naming the option, the value and what is accepted,
//! and nothing has to be undone.

use std::collections::HashSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder,
    LinuxDeviceType, LinuxMemoryBuilder, LinuxNetworkBuilder, LinuxResources,
    LinuxResourcesBuilder, LinuxThrottleDevice, LinuxThrottleDeviceBuilder,
};
use oci_spec::OciSpecError;
use thiserror::Error;

pub const DEFAULT_MEMORY_IN_BYTES: &str = "500M";
pub const DEFAULT_CPU_SHARES: &str = "100";
pub const DEFAULT_CPU_PERIOD: &str = "100000";
pub const DEFAULT_CPU_QUOTA: &str = "1000000";
pub const DEFAULT_DEVICE_READ_BPS: &str = "500M";
pub const DEFAULT_DEVICE_WRITE_BPS: &str = "100M";

const MIN_MEMORY: u64 = 4 * 1024 * 1024;
const MIN_CPU_SHARES: u64 = 2;
const CPU_PERIOD_RANGE: std::ops::RangeInclusive<u64> = 1_000..=1_000_000;
const MIN_CPU_QUOTA: i64 = 1_000;

const ACCEPT_MEMORY: &str = "<number>[b|k|m|g], at least 4M";
const ACCEPT_SHARES: &str = "an integer of at least 2";
const ACCEPT_PERIOD: &str = "microseconds from 1000 to 1000000";
const ACCEPT_QUOTA: &str = "microseconds of at least 1000, or -1 for no quota";
const ACCEPT_BPS: &str = "<number>[b|k|m|g|kb|mb|gb] or DEVICE:RATE with DEVICE a block device";
const ACCEPT_CLASSID: &str = "a u32 as 0xAAAABBBB hex or decimal";

#[derive(Debug, Error)]
pub enum LimitError {
    #[error("invalid --{option} '{value}': {reason} (accepted: {accepted})")]
    Invalid {
        option: &'static str,
        value: String,
        reason: String,
        accepted: &'static str,
    },
    #[error("building the isle's resource spec: {0}")]
    Spec(#[from] OciSpecError),
}

pub type Result<T, E = LimitError> = std::result::Result<T, E>;

/// The limit options as the CLI received them, unparsed. `None` (or an empty
/// vector) means the option was not given and its default applies.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LimitArgs {
    pub memory_in_bytes: Option<String>,
    pub cpu_shares: Option<String>,
    pub cpu_period: Option<String>,
    pub cpu_quota: Option<String>,
    /// Given entries replace the default entirely, as for any repeatable
    /// option: `--device-read-bps /dev/vdb:1M` leaves the root device alone.
    pub device_read_bps: Vec<String>,
    pub device_write_bps: Vec<String>,
    pub net_cls_classid: Option<String>,
    pub privileged: bool,
}

/// Checks every option and builds the isle's resources. `root_device` is the
/// major:minor of the block device holding the isle's root filesystem; bare
/// rates (no `DEVICE:`) throttle it.
pub fn resources(args: &LimitArgs, root_device: (u64, u64)) -> Result<LinuxResources> {
    let memory = parse_memory(
        args.memory_in_bytes
            .as_deref()
            .unwrap_or(DEFAULT_MEMORY_IN_BYTES),
    )?;
    let shares = parse_shares(args.cpu_shares.as_deref().unwrap_or(DEFAULT_CPU_SHARES))?;
    let period = parse_period(args.cpu_period.as_deref().unwrap_or(DEFAULT_CPU_PERIOD))?;
    let quota = parse_quota(args.cpu_quota.as_deref().unwrap_or(DEFAULT_CPU_QUOTA))?;
    let read = parse_bps_list(
        "device-read-bps",
        &args.device_read_bps,
        DEFAULT_DEVICE_READ_BPS,
        root_device,
    )?;
    let write = parse_bps_list(
        "device-write-bps",
        &args.device_write_bps,
        DEFAULT_DEVICE_WRITE_BPS,
        root_device,
    )?;
    let classid = args
        .net_cls_classid
        .as_deref()
        .map(parse_classid)
        .transpose()?;

    // swap is memory+swap in OCI terms: equal to the limit means the isle
    // cannot escape its limit by swapping.
    let memory = LinuxMemoryBuilder::default()
        .limit(memory)
        .swap(memory)
        .build()?;
    let cpu = LinuxCpuBuilder::default()
        .shares(shares)
        .period(period)
        .quota(quota)
        .build()?;
    let block_io = LinuxBlockIoBuilder::default()
        .throttle_read_bps_device(read)
        .throttle_write_bps_device(write)
        .build()?;

    let mut builder = LinuxResourcesBuilder::default()
        .memory(memory)
        .cpu(cpu)
        .block_io(block_io)
        .devices(device_rules(args.privileged)?);
    // The kernel reads classid 0 as "no class", so it is left out entirely.
    if let Some(id) = classid.filter(|&id| id != 0) {
        builder = builder.network(LinuxNetworkBuilder::default().class_id(id).build()?);
    }
    Ok(builder.build()?)
}

fn invalid(
    option: &'static str,
    value: &str,
    reason: impl Into<String>,
    accepted: &'static str,
) -> LimitError {
    LimitError::Invalid {
        option,
        value: value.to_string(),
        reason: reason.into(),
        accepted,
    }
}

/// A size suffix and its multiplier. Lookups are case-insensitive.
type Units = &'static [(&'static str, u64)];

const KIB: u64 = 1024;
const MEMORY_UNITS: Units = &[
    ("", 1),
    ("b", 1),
    ("k", KIB),
    ("m", KIB * KIB),
    ("g", KIB * KIB * KIB),
];
const RATE_UNITS: Units = &[
    ("", 1),
    ("b", 1),
    ("k", KIB),
    ("kb", KIB),
    ("m", KIB * KIB),
    ("mb", KIB * KIB),
    ("g", KIB * KIB * KIB),
    ("gb", KIB * KIB * KIB),
];

/// `<digits><unit>` to bytes. The result is at most `i64::MAX`, because the
/// kernel's files (and OCI's memory limit) hold signed 64-bit values.
fn parse_size(text: &str, units: Units) -> std::result::Result<u64, String> {
    if text.is_empty() {
        return Err("empty value".into());
    }
    if text.starts_with('-') {
        return Err("negative size".into());
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err("not a number".into());
    }
    let lower = unit.to_ascii_lowercase();
    let Some(&(_, multiplier)) = units.iter().find(|(name, _)| *name == lower) else {
        return Err(format!("unknown unit '{unit}'"));
    };
    let number: u64 = digits.parse().map_err(|_| "number too large".to_string())?;
    if number == 0 {
        return Err("must be positive".into());
    }
    number
        .checked_mul(multiplier)
        .filter(|&bytes| bytes <= i64::MAX as u64)
        .ok_or_else(|| format!("too large: beyond {} bytes", i64::MAX))
}

fn parse_memory(value: &str) -> Result<i64> {
    const OPT: &str = "memory-in-bytes";
    let bytes =
        parse_size(value, MEMORY_UNITS).map_err(|r| invalid(OPT, value, r, ACCEPT_MEMORY))?;
    if bytes < MIN_MEMORY {
        return Err(invalid(
            OPT,
            value,
            "below the minimum of 4M",
            ACCEPT_MEMORY,
        ));
    }
    Ok(bytes as i64)
}

/// A plain integer; the reason names what went wrong in words.
fn parse_integer<T: std::str::FromStr>(value: &str) -> std::result::Result<T, String> {
    if value.is_empty() {
        return Err("empty value".into());
    }
    let digits = value.strip_prefix('-').unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not an integer".into());
    }
    value.parse().map_err(|_| "out of range".into())
}

fn parse_shares(value: &str) -> Result<u64> {
    const OPT: &str = "cpu-shares";
    if value.starts_with('-') && parse_integer::<i64>(value).is_ok() {
        return Err(invalid(OPT, value, "negative", ACCEPT_SHARES));
    }
    let shares: u64 = parse_integer(value).map_err(|r| invalid(OPT, value, r, ACCEPT_SHARES))?;
    if shares < MIN_CPU_SHARES {
        return Err(invalid(OPT, value, "below the minimum of 2", ACCEPT_SHARES));
    }
    Ok(shares)
}

fn parse_period(value: &str) -> Result<u64> {
    const OPT: &str = "cpu-period";
    let period: i64 = parse_integer(value).map_err(|r| invalid(OPT, value, r, ACCEPT_PERIOD))?;
    if !u64::try_from(period).is_ok_and(|p| CPU_PERIOD_RANGE.contains(&p)) {
        return Err(invalid(
            OPT,
            value,
            "outside 1000 to 1000000",
            ACCEPT_PERIOD,
        ));
    }
    Ok(period as u64)
}

fn parse_quota(value: &str) -> Result<i64> {
    const OPT: &str = "cpu-quota";
    let quota: i64 = parse_integer(value).map_err(|r| invalid(OPT, value, r, ACCEPT_QUOTA))?;
    if quota != -1 && quota < MIN_CPU_QUOTA {
        return Err(invalid(
            OPT,
            value,
            "below the minimum of 1000 (and not -1)",
            ACCEPT_QUOTA,
        ));
    }
    Ok(quota)
}

fn parse_classid(value: &str) -> Result<u32> {
    const OPT: &str = "net-cls-classid";
    let parsed = if let Some(hex) = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(OPT, value, "not a hex number", ACCEPT_CLASSID));
        }
        u32::from_str_radix(hex, 16).map_err(|_| "larger than 0xFFFFFFFF".to_string())
    } else {
        parse_integer::<i64>(value)
            .and_then(|n| u32::try_from(n).map_err(|_| format!("outside 0..={}", u32::MAX)))
    };
    parsed.map_err(|r| invalid(OPT, value, r, ACCEPT_CLASSID))
}

/// All entries of one `--device-*-bps` option, each device at most once.
fn parse_bps_list(
    option: &'static str,
    given: &[String],
    default: &str,
    root_device: (u64, u64),
) -> Result<Vec<LinuxThrottleDevice>> {
    let defaults = [default.to_string()];
    let entries = if given.is_empty() {
        &defaults[..]
    } else {
        given
    };
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let ((major, minor), rate) = parse_bps(option, entry, root_device)?;
        if !seen.insert((major, minor)) {
            let reason = format!("device {major}:{minor} given more than once");
            return Err(invalid(option, entry, reason, ACCEPT_BPS));
        }
        out.push(
            LinuxThrottleDeviceBuilder::default()
                .major(major as i64)
                .minor(minor as i64)
                .rate(rate)
                .build()?,
        );
    }
    Ok(out)
}

/// `RATE` (for the root device) or `DEVICE:RATE`.
fn parse_bps(
    option: &'static str,
    entry: &str,
    root_device: (u64, u64),
) -> Result<((u64, u64), u64)> {
    let bad = |reason: String| invalid(option, entry, reason, ACCEPT_BPS);
    let (device, rate) = match entry.rsplit_once(':') {
        None => (root_device, entry),
        Some(("", _)) => return Err(bad("empty device".into())),
        Some((path, rate)) => (block_device(path).map_err(bad)?, rate),
    };
    let rate = parse_size(rate, RATE_UNITS).map_err(|r| bad(format!("rate: {r}")))?;
    Ok((device, rate))
}

/// major:minor of the block device at `path` (symlinks followed, so
/// /dev/disk/by-* names work).
fn block_device(path: &str) -> std::result::Result<(u64, u64), String> {
    let meta =
        std::fs::metadata(Path::new(path)).map_err(|e| format!("cannot stat {path}: {e}"))?;
    if !meta.file_type().is_block_device() {
        return Err(format!("{path} is not a block device"));
    }
    let rdev = meta.rdev();
    Ok((nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev)))
}

/// The device rules: deny everything, then allow what Docker allows by
/// default (or everything, for a privileged isle).
fn device_rules(privileged: bool) -> Result<Vec<LinuxDeviceCgroup>> {
    use LinuxDeviceType::{A, B, C};
    let rule = |allow: bool,
                typ: LinuxDeviceType,
                major: Option<i64>,
                minor: Option<i64>,
                access: &str| {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access(access);
        if let Some(major) = major {
            b = b.major(major);
        }
        if let Some(minor) = minor {
            b = b.minor(minor);
        }
        b.build()
    };
    let mut rules = vec![rule(false, A, None, None, "rwm")?];
    if privileged {
        rules.push(rule(true, A, None, None, "rwm")?);
        return Ok(rules);
    }
    // (type, major, minor, access); None is the `*` wildcard.
    let allowed: [(LinuxDeviceType, Option<i64>, Option<i64>, &str); 12] = [
        (C, None, None, "m"),            // mknod of any char device
        (B, None, None, "m"),            // mknod of any block device
        (C, Some(1), Some(3), "rwm"),    // /dev/null
        (C, Some(1), Some(5), "rwm"),    // /dev/zero
        (C, Some(1), Some(7), "rwm"),    // /dev/full
        (C, Some(1), Some(8), "rwm"),    // /dev/random
        (C, Some(1), Some(9), "rwm"),    // /dev/urandom
        (C, Some(5), Some(0), "rwm"),    // /dev/tty
        (C, Some(5), Some(1), "rwm"),    // /dev/console
        (C, Some(5), Some(2), "rwm"),    // /dev/ptmx
        (C, Some(136), None, "rwm"),     // /dev/pts/*
        (C, Some(10), Some(200), "rwm"), // /dev/net/tun
    ];
    for (typ, major, minor, access) in allowed {
        rules.push(rule(true, typ, major, minor, access)?);
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: (u64, u64) = (254, 0);
    const MIB: u64 = 1024 * 1024;

    fn with(f: impl FnOnce(&mut LimitArgs)) -> Result<LinuxResources> {
        let mut args = LimitArgs::default();
        f(&mut args);
        resources(&args, ROOT)
    }

    fn error(f: impl FnOnce(&mut LimitArgs)) -> String {
        match with(f) {
            Ok(r) => panic!("expected an error, got {r:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn memory_of(value: &str) -> Result<i64> {
        with(|a| a.memory_in_bytes = Some(value.into()))
            .map(|r| r.memory().unwrap().limit().unwrap())
    }

    fn throttle(list: &Option<Vec<LinuxThrottleDevice>>) -> Vec<(i64, i64, u64)> {
        list.as_ref()
            .unwrap()
            .iter()
            .map(|d| (d.major(), d.minor(), d.rate()))
            .collect()
    }

    /// major:minor of a path as the `stat` tool sees it, so the expectation
    /// does not share code with the implementation.
    fn stat_rdev(path: &str) -> Option<(i64, i64)> {
        let out = std::process::Command::new("stat")
            .args(["-L", "-c", "%Hr:%Lr", path])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8(out.stdout).ok()?;
        let (major, minor) = text.trim().split_once(':')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    }

    #[test]
    fn defaults() {
        let r = resources(&LimitArgs::default(), ROOT).unwrap();
        let mem = r.memory().unwrap();
        assert_eq!(mem.limit(), Some(500 * MIB as i64));
        assert_eq!(mem.swap(), Some(500 * MIB as i64));
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!(cpu.shares(), Some(100));
        assert_eq!(cpu.period(), Some(100_000));
        assert_eq!(cpu.quota(), Some(1_000_000));
        let bio = r.block_io().as_ref().unwrap();
        assert_eq!(
            throttle(bio.throttle_read_bps_device()),
            vec![(254, 0, 500 * MIB)]
        );
        assert_eq!(
            throttle(bio.throttle_write_bps_device()),
            vec![(254, 0, 100 * MIB)]
        );
        assert!(r.network().is_none());
        assert!(r.pids().is_none());
        let devices = r.devices().as_ref().unwrap();
        assert_eq!(devices.len(), 13);
        assert!(!devices[0].allow());
        assert_eq!(devices[0].typ(), Some(LinuxDeviceType::A));
    }

    #[test]
    fn memory_units() {
        assert_eq!(memory_of("4M").unwrap(), 4 * MIB as i64);
        assert_eq!(memory_of("4m").unwrap(), 4 * MIB as i64);
        assert_eq!(memory_of("4096k").unwrap(), 4 * MIB as i64);
        assert_eq!(memory_of("4096K").unwrap(), 4 * MIB as i64);
        assert_eq!(memory_of("1g").unwrap(), 1024 * MIB as i64);
        assert_eq!(memory_of("1G").unwrap(), 1024 * MIB as i64);
        assert_eq!(memory_of("4194304").unwrap(), 4 * MIB as i64);
        assert_eq!(memory_of("4194304b").unwrap(), 4 * MIB as i64);
        assert_eq!(memory_of("4194304B").unwrap(), 4 * MIB as i64);
    }

    #[test]
    fn memory_errors() {
        let e = |v: &str| memory_of(v).unwrap_err().to_string();
        assert_eq!(
            e("3M"),
            "invalid --memory-in-bytes '3M': below the minimum of 4M (accepted: <number>[b|k|m|g], at least 4M)"
        );
        assert!(e("4194303").contains("below the minimum of 4M"));
        assert!(e("0").contains("'0': must be positive"));
        assert!(e("-5M").contains("'-5M': negative size"));
        assert!(e("10x").contains("'10x': unknown unit 'x'"));
        assert!(
            e("10mb").contains("unknown unit 'mb'"),
            "memory takes single-letter units only"
        );
        assert!(e("").contains("'': empty value"));
        assert!(e("M").contains("'M': not a number"));
        assert!(e("lots").contains("not a number"));
        assert!(e("1.5G").contains("unknown unit '.5G'"));
        assert!(e(" 5M").contains("not a number"));
        assert!(e("99999999999g").contains("'99999999999g': too large"));
        assert!(e("99999999999999999999999").contains("number too large"));
        // 8 EiB is one past i64::MAX bytes.
        assert!(e("8589934592g").contains("too large"));
        assert_eq!(
            memory_of("8589934591g").unwrap(),
            8589934591 * 1024 * MIB as i64
        );
        for v in ["3M", "10x", "", "-1", "99999999999g"] {
            assert!(e(v).starts_with("invalid --memory-in-bytes "), "{v}");
            assert!(
                e(v).ends_with("(accepted: <number>[b|k|m|g], at least 4M)"),
                "{v}"
            );
        }
    }

    #[test]
    fn cpu_shares() {
        let ok = |v: &str| {
            with(|a| a.cpu_shares = Some(v.into()))
                .unwrap()
                .cpu()
                .as_ref()
                .unwrap()
                .shares()
        };
        assert_eq!(ok("2"), Some(2));
        assert_eq!(ok("1024"), Some(1024));
        let e = |v: &str| error(|a| a.cpu_shares = Some(v.into()));
        assert_eq!(
            e("1"),
            "invalid --cpu-shares '1': below the minimum of 2 (accepted: an integer of at least 2)"
        );
        assert!(e("0").contains("below the minimum"));
        assert!(e("-4").contains("'-4': negative"));
        assert!(e("").contains("'': empty value"));
        assert!(e("ten").contains("'ten': not an integer"));
        assert!(e("10k").contains("not an integer"));
        assert!(e("-").contains("not an integer"));
        assert!(e("99999999999999999999999").contains("out of range"));
    }

    #[test]
    fn cpu_period() {
        let ok = |v: &str| {
            with(|a| a.cpu_period = Some(v.into()))
                .unwrap()
                .cpu()
                .as_ref()
                .unwrap()
                .period()
        };
        assert_eq!(ok("1000"), Some(1000));
        assert_eq!(ok("1000000"), Some(1_000_000));
        let e = |v: &str| error(|a| a.cpu_period = Some(v.into()));
        assert_eq!(
            e("999"),
            "invalid --cpu-period '999': outside 1000 to 1000000 (accepted: microseconds from 1000 to 1000000)"
        );
        assert!(e("1000001").contains("outside"));
        assert!(e("-1").contains("outside"));
        assert!(e("").contains("empty value"));
        assert!(e("1ms").contains("not an integer"));
        assert!(e("99999999999999999999999").contains("out of range"));
    }

    #[test]
    fn cpu_quota() {
        let ok = |v: &str| {
            with(|a| a.cpu_quota = Some(v.into()))
                .unwrap()
                .cpu()
                .as_ref()
                .unwrap()
                .quota()
        };
        assert_eq!(ok("-1"), Some(-1));
        assert_eq!(ok("1000"), Some(1000));
        assert_eq!(ok("50000"), Some(50_000));
        let e = |v: &str| error(|a| a.cpu_quota = Some(v.into()));
        assert_eq!(
            e("999"),
            "invalid --cpu-quota '999': below the minimum of 1000 (and not -1) \
             (accepted: microseconds of at least 1000, or -1 for no quota)"
        );
        assert!(e("-2").contains("below the minimum"));
        assert!(e("0").contains("below the minimum"));
        assert!(e("").contains("empty value"));
        assert!(e("none").contains("not an integer"));
        assert!(e("99999999999999999999999").contains("out of range"));
    }

    #[test]
    fn bare_rates_throttle_the_root_device() {
        let r = with(|a| {
            a.device_read_bps = vec!["10mb".into()];
            a.device_write_bps = vec!["1GB".into()];
        })
        .unwrap();
        let bio = r.block_io().as_ref().unwrap();
        assert_eq!(
            throttle(bio.throttle_read_bps_device()),
            vec![(254, 0, 10 * MIB)]
        );
        assert_eq!(
            throttle(bio.throttle_write_bps_device()),
            vec![(254, 0, 1024 * MIB)]
        );
        for (text, bytes) in [
            ("512", 512),
            ("512b", 512),
            ("2k", 2048),
            ("2KB", 2048),
            ("3M", 3 * MIB),
            ("1g", 1024 * MIB),
        ] {
            let r = with(|a| a.device_read_bps = vec![text.into()]).unwrap();
            assert_eq!(
                throttle(r.block_io().as_ref().unwrap().throttle_read_bps_device()),
                vec![(254, 0, bytes)]
            );
        }
    }

    #[test]
    fn rate_errors() {
        let e = |v: &str| error(|a| a.device_write_bps = vec![v.into()]);
        let accepted =
            "(accepted: <number>[b|k|m|g|kb|mb|gb] or DEVICE:RATE with DEVICE a block device)";
        assert_eq!(
            e("10x"),
            format!("invalid --device-write-bps '10x': rate: unknown unit 'x' {accepted}")
        );
        assert!(e("").contains("'': rate: empty value"));
        assert!(e("0").contains("rate: must be positive"));
        assert!(e("-1M").contains("rate: negative size"));
        assert!(e("fast").contains("rate: not a number"));
        assert!(e("99999999999g").contains("rate: too large"));
        assert!(e(":10M").contains("empty device"));
        assert!(e("/dev/null:10M").contains("/dev/null is not a block device"));
        assert!(e("/no/such/dev:10M").contains("cannot stat /no/such/dev"));
        let read = error(|a| a.device_read_bps = vec!["1q".into()]);
        assert!(read.starts_with("invalid --device-read-bps '1q'"), "{read}");
    }

    #[test]
    fn device_rate_with_a_real_block_device() {
        let Some((major, minor)) = stat_rdev("/dev/vda") else {
            eprintln!("note: /dev/vda not found, skipping DEVICE:RATE test");
            return;
        };
        // A root device other than vda, so the entries land on two devices.
        let other_root = (7, 99);
        let args = LimitArgs {
            device_read_bps: vec!["/dev/vda:20M".into(), "5m".into()],
            device_write_bps: vec!["/dev/vda:1g".into()],
            ..Default::default()
        };
        let r = resources(&args, other_root).unwrap();
        let bio = r.block_io().as_ref().unwrap();
        assert_eq!(
            throttle(bio.throttle_read_bps_device()),
            vec![(major, minor, 20 * MIB), (7, 99, 5 * MIB)]
        );
        assert_eq!(
            throttle(bio.throttle_write_bps_device()),
            vec![(major, minor, 1024 * MIB)]
        );

        // The same device twice, by path or as the root device, is refused.
        let twice = LimitArgs {
            device_read_bps: vec!["/dev/vda:1M".into(), "/dev/vda:2M".into()],
            ..Default::default()
        };
        let e = resources(&twice, other_root).unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "'/dev/vda:2M': device {major}:{minor} given more than once"
            )),
            "{e}"
        );
        let root = (major as u64, minor as u64);
        let aliased = LimitArgs {
            device_write_bps: vec!["/dev/vda:1M".into(), "2M".into()],
            ..Default::default()
        };
        assert!(resources(&aliased, root)
            .unwrap_err()
            .to_string()
            .contains("given more than once"));
        assert!(error(|a| a.device_read_bps = vec!["/dev/vda:10x".into()])
            .contains("rate: unknown unit 'x'"));
    }

    #[test]
    fn classid() {
        let ok = |v: &str| {
            with(|a| a.net_cls_classid = Some(v.into()))
                .unwrap()
                .network()
                .as_ref()
                .map(|n| n.class_id())
        };
        assert_eq!(ok("0x00100001"), Some(Some(0x0010_0001)));
        assert_eq!(ok("0XFFFFFFFF"), Some(Some(u32::MAX)));
        assert_eq!(ok("1048577"), Some(Some(1_048_577)));
        assert_eq!(ok("4294967295"), Some(Some(u32::MAX)));
        assert_eq!(ok("0"), None);
        assert_eq!(ok("0x0"), None);
        let e = |v: &str| error(|a| a.net_cls_classid = Some(v.into()));
        assert_eq!(
            e("4294967296"),
            "invalid --net-cls-classid '4294967296': outside 0..=4294967295 (accepted: a u32 as 0xAAAABBBB hex or decimal)"
        );
        assert!(e("-1").contains("outside"));
        assert!(e("0x100000000").contains("larger than 0xFFFFFFFF"));
        assert!(e("0x").contains("not a hex number"));
        assert!(e("0xfg").contains("not a hex number"));
        assert!(e("").contains("empty value"));
        assert!(e("10:1").contains("not an integer"));
    }

    #[test]
    fn device_allow_list() {
        let r = resources(&LimitArgs::default(), ROOT).unwrap();
        let text: Vec<String> = r
            .devices()
            .as_ref()
            .unwrap()
            .iter()
            .map(|d| {
                let n = |v: Option<i64>| v.map_or("*".to_string(), |v| v.to_string());
                format!(
                    "{} {} {}:{} {}",
                    if d.allow() { "allow" } else { "deny" },
                    d.typ().unwrap().as_str(),
                    n(d.major()),
                    n(d.minor()),
                    d.access().as_deref().unwrap()
                )
            })
            .collect();
        assert_eq!(
            text,
            [
                "deny a *:* rwm",
                "allow c *:* m",
                "allow b *:* m",
                "allow c 1:3 rwm",
                "allow c 1:5 rwm",
                "allow c 1:7 rwm",
                "allow c 1:8 rwm",
                "allow c 1:9 rwm",
                "allow c 5:0 rwm",
                "allow c 5:1 rwm",
                "allow c 5:2 rwm",
                "allow c 136:* rwm",
                "allow c 10:200 rwm",
            ]
        );
        let privileged = with(|a| a.privileged = true).unwrap();
        let devices = privileged.devices().as_ref().unwrap();
        assert_eq!(devices.len(), 2);
        assert!(devices[1].allow());
        assert_eq!(devices[1].typ(), Some(LinuxDeviceType::A));
        assert_eq!(devices[1].access().as_deref(), Some("rwm"));
    }
}
