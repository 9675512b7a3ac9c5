//! cgroup v1 limits: the values islander writes, and that the kernel then
//! holds the isle to them.

use std::fs;
use std::time::{Duration, Instant};

use islander_tests::host::{cgroup_procs, device_of};
use islander_tests::{
    isle_cgroup, read_isle_cgroup, root_device, Islander, OutputExt, RunningIsle,
};

const MIB: u64 = 1024 * 1024;

fn assert_cgroup(isle: &RunningIsle, controller: &str, file: &str, want: &str) {
    let got = read_isle_cgroup(controller, isle.id(), file);
    assert_eq!(got, want, "{controller}/islander/{}/{file}", isle.id());
}

/// Asserts `file` throttles the host's root device at `bps`.
fn assert_bps(isle: &RunningIsle, file: &str, bps: u64) {
    let got = read_isle_cgroup("blkio", isle.id(), file);
    let want = format!("{} {bps}", root_device());
    assert!(
        got.lines().any(|l| l.trim() == want),
        "blkio {file} should hold '{want}', holds:\n{got}"
    );
}

fn finish_clean(isl: &Islander, isle: RunningIsle) {
    let id = isle.id().to_string();
    isle.finish().assert_success("the waiting isle");
    isl.assert_no_leftovers(&id);
}

#[test]
fn default_limits_are_written() {
    let isl = Islander::new("limits-default");
    let isle = isl.spawn(&[], "", "");
    assert_cgroup(
        &isle,
        "memory",
        "memory.limit_in_bytes",
        &(500 * MIB).to_string(),
    );
    assert_cgroup(&isle, "cpu", "cpu.shares", "100");
    assert_cgroup(&isle, "cpu", "cpu.cfs_period_us", "100000");
    assert_cgroup(&isle, "cpu", "cpu.cfs_quota_us", "1000000");
    assert_bps(&isle, "blkio.throttle.read_bps_device", 500 * MIB);
    assert_bps(&isle, "blkio.throttle.write_bps_device", 100 * MIB);
    finish_clean(&isl, isle);
}

#[test]
fn isle_is_a_member_of_each_cgroup() {
    let isl = Islander::new("limits-membership");
    let isle = isl.spawn(&[], "", "");
    let pid1 = isle.pid1();
    for controller in [
        "memory", "cpu", "cpuacct", "blkio", "devices", "pids", "freezer", "unified",
    ] {
        let dir = isle_cgroup(controller, isle.id());
        let procs = cgroup_procs(&dir);
        assert!(
            procs.contains(&pid1),
            "the isle's PID 1 (host pid {pid1}) is not in {} ({procs:?})",
            dir.display()
        );
    }
    finish_clean(&isl, isle);
}

#[test]
fn given_limits_are_written() {
    let isl = Islander::new("limits-given");
    let isle = isl.spawn(
        &[
            "--memory-in-bytes",
            "64m",
            "--cpu-shares",
            "512",
            "--cpu-period",
            "50000",
            "--cpu-quota",
            "25000",
            "--device-read-bps",
            "20M",
            "--device-write-bps",
            "10M",
        ],
        "",
        "",
    );
    assert_cgroup(
        &isle,
        "memory",
        "memory.limit_in_bytes",
        &(64 * MIB).to_string(),
    );
    assert_cgroup(&isle, "cpu", "cpu.shares", "512");
    assert_cgroup(&isle, "cpu", "cpu.cfs_period_us", "50000");
    assert_cgroup(&isle, "cpu", "cpu.cfs_quota_us", "25000");
    assert_bps(&isle, "blkio.throttle.read_bps_device", 20 * MIB);
    assert_bps(&isle, "blkio.throttle.write_bps_device", 10 * MIB);
    finish_clean(&isl, isle);
}

#[test]
fn cpu_quota_minus_one_lifts_the_limit() {
    let isl = Islander::new("limits-quota-none");
    let isle = isl.spawn(&["--cpu-quota", "-1"], "", "");
    assert_cgroup(&isle, "cpu", "cpu.cfs_quota_us", "-1");
    finish_clean(&isl, isle);
}

#[test]
fn memory_units_are_binary() {
    let isl = Islander::new("limits-memory-units");
    for (arg, bytes) in [
        ("4M", 4 * MIB),
        ("6144k", 6 * MIB),
        ("8388608b", 8 * MIB),
        ("8388608", 8 * MIB),
        ("1g", 1024 * MIB),
    ] {
        let isle = isl.spawn(&["--memory-in-bytes", arg], "", "");
        assert_cgroup(&isle, "memory", "memory.limit_in_bytes", &bytes.to_string());
        finish_clean(&isl, isle);
    }
}

#[test]
fn device_rates_accept_kb_mb_gb() {
    let isl = Islander::new("limits-bps-units");
    let isle = isl.spawn(
        &["--device-read-bps", "20mb", "--device-write-bps", "512kb"],
        "",
        "",
    );
    assert_bps(&isle, "blkio.throttle.read_bps_device", 20 * MIB);
    assert_bps(&isle, "blkio.throttle.write_bps_device", 512 * 1024);
    finish_clean(&isl, isle);
    let isle = isl.spawn(
        &["--device-read-bps", "1gb", "--device-write-bps", "1G"],
        "",
        "",
    );
    assert_bps(&isle, "blkio.throttle.read_bps_device", 1024 * MIB);
    assert_bps(&isle, "blkio.throttle.write_bps_device", 1024 * MIB);
    finish_clean(&isl, isle);
}

#[test]
fn device_rate_for_a_named_device() {
    let isl = Islander::new("limits-bps-device");
    let dev = root_device();
    // /sys/dev/block/<maj:min>/uevent names the node, e.g. DEVNAME=vda.
    let uevent = fs::read_to_string(format!("/sys/dev/block/{dev}/uevent"))
        .unwrap_or_else(|e| panic!("/sys/dev/block/{dev}/uevent: {e}"));
    let name = uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .unwrap_or_else(|| panic!("no DEVNAME for {dev}:\n{uevent}"));
    let node = format!("/dev/{name}");
    assert_eq!(device_of_node(&node), dev, "{node} is not {dev}");
    let isle = isl.spawn(&["--device-write-bps", &format!("{node}:30M")], "", "");
    assert_bps(&isle, "blkio.throttle.write_bps_device", 30 * MIB);
    finish_clean(&isl, isle);
}

/// `major:minor` a block device node stands for.
fn device_of_node(node: &str) -> String {
    use std::os::unix::fs::MetadataExt;
    let rdev = fs::metadata(node)
        .unwrap_or_else(|e| panic!("{node}: {e}"))
        .rdev();
    format!("{}:{}", libc::major(rdev), libc::minor(rdev))
}

#[test]
fn net_cls_classid_is_written() {
    let isl = Islander::new("limits-net-cls");
    let isle = isl.spawn(&["--net-cls-classid", "1048577"], "", "");
    // net_cls is not mounted at boot here; the contract has islander use it,
    // so isle_cgroup panics if no hierarchy carries it while the isle runs.
    assert_cgroup(&isle, "net_cls", "net_cls.classid", "1048577");
    finish_clean(&isl, isle);
}

#[test]
fn device_access_is_restricted() {
    let isl = Islander::new("limits-devices");
    let isle = isl.spawn(&[], "", "");
    let list = read_isle_cgroup("devices", isle.id(), "devices.list");
    let rules: Vec<(&str, &str, &str)> = list
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?, f.next()?, f.next()?))
        })
        .collect();
    let allows = |kind: &str, dev: &str, access: char| {
        rules.iter().any(|(k, d, a)| {
            let (maj, min) = dev.split_once(':').unwrap();
            let (rmaj, rmin) = d.split_once(':').unwrap_or(("", ""));
            (*k == "a" || *k == kind)
                && (rmaj == "*" || rmaj == maj)
                && (rmin == "*" || rmin == min)
                && a.contains(access)
        })
    };
    for (name, dev) in [
        ("null", "1:3"),
        ("zero", "1:5"),
        ("full", "1:7"),
        ("random", "1:8"),
        ("urandom", "1:9"),
        ("tty", "5:0"),
        ("ptmx", "5:2"),
        ("pts/0", "136:0"),
    ] {
        assert!(
            allows("c", dev, 'r') && allows("c", dev, 'w'),
            "/dev/{name} (c {dev}) is not allowed rw:\n{list}"
        );
    }
    let disk = root_device();
    assert!(
        !allows("b", &disk, 'r'),
        "the host disk (b {disk}) is readable from the isle:\n{list}"
    );
    assert!(
        !allows("b", &disk, 'w'),
        "the host disk (b {disk}) is writable from the isle:\n{list}"
    );
    finish_clean(&isl, isle);
}

#[test]
fn host_disk_cannot_be_opened_from_the_isle() {
    let isl = Islander::new("limits-devices-enforced");
    let (maj, min) = root_device()
        .split_once(':')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .unwrap();
    // The isle holds CAP_MKNOD (a Docker default), so only the devices
    // cgroup stands between it and the disk.
    let out = isl.run_isle(
        &[],
        &[
            "sh",
            "-c",
            &format!("mknod /tmp/disk b {maj} {min}; head -c 512 /tmp/disk | wc -c; head -c 512 /dev/zero | wc -c"),
        ],
    );
    let text = out.stdout_str();
    let counts: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(
        counts,
        ["0", "512"],
        "reading the host disk from the isle: {}",
        out.describe()
    );
}

#[test]
fn memory_limit_kills_an_isle_that_exceeds_it() {
    let isl = Islander::new("limits-oom");
    // busybox dd allocates a bs-sized buffer and fills it from /dev/zero.
    let out = isl.run_isle(
        &["--memory-in-bytes", "64M"],
        &[
            "sh",
            "-c",
            "cat /proc/self/cgroup; exec dd if=/dev/zero of=/dev/null bs=200M count=1",
        ],
    );
    out.assert_code(137, "dd of 200M under a 64M limit");
    assert!(
        out.stderr_str().contains("OOM-killed"),
        "no 'OOM-killed' on stderr: {}",
        out.describe()
    );
    isl.assert_no_leftovers(&out.isle_id());
}

#[test]
fn memory_limit_lets_an_isle_within_it_run() {
    let isl = Islander::new("limits-no-oom");
    let out = isl.run_isle(
        &["--memory-in-bytes", "64M"],
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=16M", "count=4"],
    );
    out.assert_success("dd of 16M under a 64M limit");
    assert!(
        !out.stderr_str().contains("OOM"),
        "OOM reported without one: {}",
        out.describe()
    );
}

fn cpuacct_usage(id: &str) -> u64 {
    let text = read_isle_cgroup("cpuacct", id, "cpuacct.usage");
    text.parse()
        .unwrap_or_else(|e| panic!("cpuacct.usage '{text}': {e}"))
}

#[test]
fn cpu_quota_caps_cpu_time() {
    let isl = Islander::new("limits-cpu");
    // Two spinning loops would use both cores; half a CPU is the cap. High
    // shares keep busy host processes (weight 1024 each against the default
    // 100) from starving the loops below the cap.
    let isle = isl.spawn(
        &[
            "--cpu-quota",
            "50000",
            "--cpu-period",
            "100000",
            "--cpu-shares",
            "10240",
        ],
        "while :; do :; done &\nwhile :; do :; done &",
        "",
    );
    let (u0, t0) = (cpuacct_usage(isle.id()), Instant::now());
    while t0.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (u1, t1) = (cpuacct_usage(isle.id()), Instant::now());
    let ratio = (u1 - u0) as f64 / (t1 - t0).as_nanos() as f64;
    let stat = read_isle_cgroup("cpu", isle.id(), "cpu.stat");
    let throttled: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("nr_throttled "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no nr_throttled in cpu.stat:\n{stat}"));
    finish_clean(&isl, isle);
    // The lower bound only shows the loops ran; two busy cores may hold
    // them below the quota, never above it.
    assert!(
        (0.3..=0.6).contains(&ratio),
        "the isle used {ratio:.2} CPUs under a 0.5 CPU quota"
    );
    assert!(throttled > 0, "the isle was never throttled:\n{stat}");
}

/// Runs `after` in an isle and returns the time between the `START` and
/// `END <status>` lines it prints, asserting the status is 0.
fn timed(isl: &Islander, opts: &[&str], before: &str, work: &str) -> Duration {
    let mut isle = isl.spawn(
        opts,
        before,
        &format!("echo START; {work} 2>&1; echo END $?"),
    );
    let (start, line) = isle.next_line(Duration::from_secs(60));
    assert_eq!(line, "START", "unexpected line from the isle");
    let mut log = Vec::new();
    let end = loop {
        let (at, line) = isle.next_line(Duration::from_secs(120));
        if let Some(status) = line.strip_prefix("END ") {
            assert_eq!(
                status,
                "0",
                "'{work}' failed in the isle:\n{}",
                log.join("\n")
            );
            break at;
        }
        log.push(line);
    };
    let id = isle.id().to_string();
    isle.wait().assert_success("the timed isle");
    isl.assert_no_leftovers(&id);
    end - start
}

#[test]
fn write_rate_is_throttled() {
    let isl = Islander::new("limits-write-bps");
    // The isle's /tmp is in its upper layer, on the disk under the state root.
    assert_eq!(
        device_of(isl.root()),
        root_device(),
        "the test root is not on the root device"
    );
    let took = timed(
        &isl,
        &["--device-write-bps", "10M"],
        "",
        "dd if=/dev/zero of=/tmp/f bs=1M count=40 oflag=direct",
    );
    // 40 MiB at 10 MiB/s is 4 s; the throttle may let a slice through early.
    assert!(
        took >= Duration::from_millis(3600),
        "40 MiB written in {took:?} under a 10 MiB/s limit"
    );
}

#[test]
fn read_rate_is_throttled() {
    let isl = Islander::new("limits-read-bps");
    assert_eq!(
        device_of(isl.root()),
        root_device(),
        "the test root is not on the root device"
    );
    let took = timed(
        &isl,
        &["--device-read-bps", "8M"],
        "dd if=/dev/zero of=/tmp/f bs=1M count=24 oflag=direct 2>/dev/null",
        "dd if=/tmp/f of=/dev/null bs=1M iflag=direct",
    );
    // 24 MiB at 8 MiB/s is 3 s.
    assert!(
        took >= Duration::from_millis(2700),
        "24 MiB read in {took:?} under an 8 MiB/s limit"
    );
}
