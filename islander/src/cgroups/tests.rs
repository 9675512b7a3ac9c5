use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

use super::testfs::{Op, RecordingFs, HOST_MOUNTINFO};
use super::*;
use crate::limits::{self, LimitArgs};

const ROOT_DEV: (u64, u64) = (254, 0);

fn resources(f: impl FnOnce(&mut LimitArgs)) -> LinuxResources {
    let mut args = LimitArgs::default();
    f(&mut args);
    limits::resources(&args, ROOT_DEV).unwrap()
}

fn small() -> LinuxResources {
    resources(|a| {
        a.memory_in_bytes = Some("64M".into());
        a.cpu_quota = Some("50000".into());
        a.cpu_period = Some("100000".into());
        a.device_write_bps = vec!["10M".into()];
        a.net_cls_classid = Some("0x00100001".into());
    })
}

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

fn create(fs: &Arc<RecordingFs>, id: &str, r: &LinuxResources) -> Result<Cgroups> {
    Cgroups::create_with(fs.clone(), id, r)
}

#[test]
fn create_writes_limits_in_order() {
    let fs = Arc::new(RecordingFs::new(HOST_MOUNTINFO));
    let cg = create(&fs, "a1", &small()).unwrap();

    assert_eq!(
        fs.ops()[0],
        Op::Mount("net_cls".into(), p("/sys/fs/cgroup/net_cls"))
    );
    let made: Vec<PathBuf> = fs
        .ops()
        .into_iter()
        .filter_map(|op| match op {
            Op::Mkdir(path) => Some(path),
            _ => None,
        })
        .filter(|path| path.ends_with("a1"))
        .collect();
    let expected: Vec<PathBuf> = [
        "cpu", "cpuacct", "memory", "devices", "freezer", "blkio", "pids", "net_cls", "unified",
    ]
    .iter()
    .map(|c| p(&format!("/sys/fs/cgroup/{c}/islander/a1")))
    .collect();
    assert_eq!(
        made, expected,
        "no cpuset or name=systemd dir, one per hierarchy"
    );
    assert_eq!(cg.paths(), expected);

    let at = |c: &str, f: &str, v: &str| {
        (
            p(&format!("/sys/fs/cgroup/{c}/islander/a1/{f}")),
            v.to_string(),
        )
    };
    let mut want = vec![
        at("memory", "memory.limit_in_bytes", "67108864"),
        at("memory", "memory.memsw.limit_in_bytes", "67108864"),
        at("cpu", "cpu.shares", "100"),
        at("cpu", "cpu.cfs_period_us", "100000"),
        at("cpu", "cpu.cfs_quota_us", "50000"),
        at("blkio", "blkio.throttle.read_bps_device", "254:0 524288000"),
        at("blkio", "blkio.throttle.write_bps_device", "254:0 10485760"),
        at("devices", "devices.deny", "a"),
    ];
    for rule in [
        "c *:* m",
        "b *:* m",
        "c 1:3 rwm",
        "c 1:5 rwm",
        "c 1:7 rwm",
        "c 1:8 rwm",
        "c 1:9 rwm",
        "c 5:0 rwm",
        "c 5:1 rwm",
        "c 5:2 rwm",
        "c 136:* rwm",
        "c 10:200 rwm",
    ] {
        want.push(at("devices", "devices.allow", rule));
    }
    want.push(at("net_cls", "net_cls.classid", "1048577"));
    assert_eq!(fs.writes(), want);
}

#[test]
fn period_goes_before_quota() {
    let fs = Arc::new(RecordingFs::new(HOST_MOUNTINFO));
    create(&fs, "q", &resources(|a| a.cpu_quota = Some("-1".into()))).unwrap();
    let cpu: Vec<String> = fs
        .writes()
        .into_iter()
        .filter(|(path, _)| path.starts_with("/sys/fs/cgroup/cpu/"))
        .map(|(path, v)| format!("{}={v}", path.file_name().unwrap().to_str().unwrap()))
        .collect();
    assert_eq!(
        cpu,
        [
            "cpu.shares=100",
            "cpu.cfs_period_us=100000",
            "cpu.cfs_quota_us=-1"
        ]
    );
}

#[test]
fn privileged_allows_all_and_no_classid_when_unset() {
    let fs = Arc::new(RecordingFs::new(HOST_MOUNTINFO));
    create(&fs, "p", &resources(|a| a.privileged = true)).unwrap();
    let devices: Vec<(String, String)> = fs
        .writes()
        .into_iter()
        .filter(|(path, _)| path.starts_with("/sys/fs/cgroup/devices/"))
        .map(|(path, v)| (path.file_name().unwrap().to_str().unwrap().to_string(), v))
        .collect();
    assert_eq!(
        devices,
        [
            ("devices.deny".into(), "a".into()),
            ("devices.allow".into(), "a".into())
        ]
    );
    assert!(!fs
        .writes()
        .iter()
        .any(|(path, _)| path.ends_with("net_cls.classid")));
}

#[test]
fn co_mounted_controllers_share_a_dir() {
    let mountinfo = "\
25 20 0:22 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
26 20 0:23 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio
27 20 0:24 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
28 20 0:25 / /sys/fs/cgroup/blkio rw - cgroup cgroup rw,blkio
29 20 0:26 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices
30 20 0:27 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
31 20 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
    let fs = Arc::new(RecordingFs::new(mountinfo));
    let cg = create(&fs, "c", &small()).unwrap();
    assert!(
        !fs.ops().iter().any(|op| matches!(op, Op::Mount(..))),
        "net_cls is mounted already"
    );
    let shared = p("/sys/fs/cgroup/cpu,cpuacct/islander/c");
    assert_eq!(cg.path("cpu"), Some(shared.clone()));
    assert_eq!(cg.path("cpuacct"), Some(shared.clone()));
    assert_eq!(
        cg.path("net_cls"),
        Some(p("/sys/fs/cgroup/net_cls,net_prio/islander/c"))
    );
    assert_eq!(cg.path("freezer"), None);
    assert_eq!(
        cg.path(UNIFIED),
        Some(p("/sys/fs/cgroup/unified/islander/c"))
    );
    assert_eq!(
        fs.ops()
            .iter()
            .filter(|op| **op == Op::Mkdir(shared.clone()))
            .count(),
        1
    );
    assert_eq!(cg.paths().len(), 7);
    assert!(fs
        .writes()
        .contains(&(shared.join("cpu.cfs_quota_us"), "50000".into())));
}

#[test]
fn failure_removes_everything_created() {
    let fs = Arc::new(RecordingFs::new(HOST_MOUNTINFO));
    let before = fs.dirs();
    fs.fail_write("/sys/fs/cgroup/cpu/islander/f/cpu.cfs_quota_us");
    let e = create(&fs, "f", &small()).unwrap_err().to_string();
    assert!(
        e.starts_with("writing '50000' to /sys/fs/cgroup/cpu/islander/f/cpu.cfs_quota_us: "),
        "{e}"
    );
    // Only the net_cls mount point, which is host configuration, is new.
    let mut expected = before;
    expected.insert(p("/sys/fs/cgroup/net_cls"));
    assert_eq!(fs.dirs(), expected);
    assert!(fs
        .ops()
        .contains(&Op::Rmdir(p("/sys/fs/cgroup/cpu/islander"))));
}

#[test]
fn existing_dir_is_an_error_and_is_left_alone() {
    let fs = Arc::new(RecordingFs::new(HOST_MOUNTINFO));
    create(&fs, "other", &small()).unwrap();
    let first = create(&fs, "dup", &small()).unwrap();
    let before = fs.dirs();
    let e = create(&fs, "dup", &small()).unwrap_err().to_string();
    assert_eq!(
        e,
        "cgroup /sys/fs/cgroup/cpu/islander/dup already exists (another isle with id 'dup'?)"
    );
    assert_eq!(
        fs.dirs(),
        before,
        "the first isle's dirs and the shared parents stay"
    );
    first.destroy().unwrap();
    assert!(
        fs.dirs()
            .contains(&p("/sys/fs/cgroup/memory/islander/other")),
        "a parent in use stays"
    );
    assert!(!fs.dirs().contains(&p("/sys/fs/cgroup/memory/islander/dup")));
}

#[test]
fn missing_controller() {
    let mountinfo: String = HOST_MOUNTINFO
        .lines()
        .filter(|l| !l.contains("pids"))
        .map(|l| format!("{l}\n"))
        .collect();
    let fs = Arc::new(RecordingFs::new(&mountinfo));
    let before = fs.dirs();
    let e = create(&fs, "m", &small()).unwrap_err().to_string();
    assert_eq!(
        e,
        "cgroup controller 'pids' is not mounted (looked in /proc/self/mountinfo)"
    );
    assert_eq!(fs.dirs(), before);
    assert!(
        fs.ops().is_empty(),
        "no net_cls mount on a host we cannot use"
    );

    let no_v2: String = HOST_MOUNTINFO
        .lines()
        .filter(|l| !l.contains("cgroup2"))
        .map(|l| format!("{l}\n"))
        .collect();
    let fs = Arc::new(RecordingFs::new(&no_v2));
    assert!(create(&fs, "m", &small())
        .unwrap_err()
        .to_string()
        .contains("'cgroup2' is not mounted"));
}

#[test]
fn no_memsw_without_swap_accounting() {
    let fs = Arc::new(RecordingFs::new(HOST_MOUNTINFO));
    fs.without_stock_file("memory.memsw.limit_in_bytes");
    create(&fs, "s", &small()).unwrap();
    assert!(!fs
        .writes()
        .iter()
        .any(|(path, _)| path.ends_with("memory.memsw.limit_in_bytes")));
}

#[test]
fn invalid_ids() {
    let fs = Arc::new(RecordingFs::new(HOST_MOUNTINFO));
    for id in ["", ".", "..", "a/b", "../x"] {
        let e = create(&fs, id, &small()).unwrap_err().to_string();
        assert!(e.starts_with(&format!("invalid isle id '{id}'")), "{e}");
        assert!(Cgroups::open_with(fs.clone(), id).paths().is_empty());
    }
    assert!(fs.ops().is_empty());
}

#[test]
fn add_task_joins_every_dir() {
    let fs = Arc::new(RecordingFs::new(HOST_MOUNTINFO));
    let cg = create(&fs, "t", &small()).unwrap();
    let before = fs.writes().len();
    cg.add_task(4242).unwrap();
    let joined: Vec<(PathBuf, String)> = fs.writes()[before..].to_vec();
    let want: Vec<(PathBuf, String)> = cg
        .paths()
        .iter()
        .map(|d| (d.join("cgroup.procs"), "4242".into()))
        .collect();
    assert_eq!(joined, want);
    assert_eq!(cg.pids(), [4242]);
}

#[test]
fn counters() {
    let fs = Arc::new(RecordingFs::new(HOST_MOUNTINFO));
    let cg = create(&fs, "n", &small()).unwrap();
    assert_eq!(cg.oom_kills(), 0);
    assert_eq!(cg.memory_failcnt(), 0);
    assert!(cg
        .cpu_usage_ns()
        .unwrap_err()
        .to_string()
        .starts_with("reading /sys/fs/cgroup/cpuacct/islander/n/cpuacct.usage"));

    fs.set_file(
        "/sys/fs/cgroup/memory/islander/n/memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
    );
    fs.set_file("/sys/fs/cgroup/memory/islander/n/memory.failcnt", "17\n");
    fs.set_file(
        "/sys/fs/cgroup/cpuacct/islander/n/cpuacct.usage",
        "123456789\n",
    );
    fs.set_file("/sys/fs/cgroup/pids/islander/n/cgroup.procs", "12\n7\n");
    assert_eq!(cg.oom_kills(), 3);
    assert_eq!(cg.memory_failcnt(), 17);
    assert_eq!(cg.cpu_usage_ns().unwrap(), 123_456_789);
    assert_eq!(cg.pids(), [7, 12]);
    assert_eq!(cg.read("memory", "memory.failcnt").unwrap(), "17\n");
    assert!(cg.unified_id().unwrap() > 0);

    fs.set_file("/sys/fs/cgroup/cpuacct/islander/n/cpuacct.usage", "lots");
    assert_eq!(
        cg.cpu_usage_ns().unwrap_err().to_string(),
        "unexpected content 'lots' in /sys/fs/cgroup/cpuacct/islander/n/cpuacct.usage"
    );
    assert_eq!(
        cg.read("hugetlb", "x").unwrap_err().to_string(),
        "isle 'n' has no 'hugetlb' cgroup"
    );
}

#[test]
fn destroy_kills_frozen_tasks_then_removes_dirs() {
    let fs = Arc::new(RecordingFs::new(HOST_MOUNTINFO));
    let before = fs.dirs();
    let cg = create(&fs, "d", &small()).unwrap();
    cg.add_task(100).unwrap();
    cg.add_task(101).unwrap();
    // A sub-cgroup the isle made for itself, with a task in it.
    let sub = p("/sys/fs/cgroup/memory/islander/d/inner");
    fs.mkdir(&sub).unwrap();
    fs.write(&sub.join("cgroup.procs"), "102").unwrap();
    fs.set_file("/sys/fs/cgroup/freezer/islander/d/freezer.state", "THAWED");

    let start = fs.ops().len();
    cg.destroy().unwrap();
    let ops = fs.ops()[start..].to_vec();
    let state = p("/sys/fs/cgroup/freezer/islander/d/freezer.state");
    let kills: Vec<&Op> = ops.iter().filter(|op| matches!(op, Op::Kill(_))).collect();
    assert_eq!(kills, [&Op::Kill(100), &Op::Kill(101), &Op::Kill(102)]);
    let frozen = ops
        .iter()
        .position(|op| *op == Op::Write(state.clone(), "FROZEN".into()))
        .unwrap();
    let thawed = ops
        .iter()
        .position(|op| *op == Op::Write(state.clone(), "THAWED".into()))
        .unwrap();
    let first_kill = ops.iter().position(|op| matches!(op, Op::Kill(_))).unwrap();
    assert!(frozen < first_kill && first_kill < thawed);
    let inner = ops
        .iter()
        .position(|op| *op == Op::Rmdir(sub.clone()))
        .unwrap();
    let outer = ops
        .iter()
        .position(|op| *op == Op::Rmdir(p("/sys/fs/cgroup/memory/islander/d")))
        .unwrap();
    assert!(inner < outer, "children go first");

    let mut expected = before;
    expected.insert(p("/sys/fs/cgroup/net_cls"));
    assert_eq!(
        fs.dirs(),
        expected,
        "the last isle takes the shared parents along"
    );

    // Again, and through open(): nothing to do, no error.
    cg.destroy().unwrap();
    Cgroups::open_with(fs.clone(), "d").destroy().unwrap();
    assert_eq!(
        Cgroups::open_with(fs.clone(), "d").pids(),
        Vec::<i32>::new()
    );
}

#[test]
fn destroy_gives_up_on_unkillable_tasks() {
    let fs = Arc::new(RecordingFs::new(HOST_MOUNTINFO));
    let cg = create(&fs, "u", &small()).unwrap();
    cg.add_task(300).unwrap();
    fs.unkillable(300);
    let e = cg.destroy().unwrap_err().to_string();
    assert_eq!(
        e,
        "tasks [300] still in /sys/fs/cgroup/cpu/islander/u after SIGKILL for 5 s"
    );
    let kills = fs.ops().iter().filter(|op| **op == Op::Kill(300)).count();
    assert_eq!(kills, KILL_ROUNDS as usize);
}

/// Major:minor of the device holding `/`, or None where it is not a real
/// block device (overlay, tmpfs root) and blkio cannot throttle it.
fn root_device() -> Option<(u64, u64)> {
    let dev = std::fs::metadata("/").ok()?.dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    (major != 0).then_some((major, minor))
}

fn skip_unless_root(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return false;
    }
    eprintln!("note: {test} needs root; skipped");
    true
}

#[test]
fn real_cgroups_as_root() {
    if skip_unless_root("real_cgroups_as_root") {
        return;
    }
    let Some(root_dev) = root_device() else {
        eprintln!("note: / is not on a block device; real_cgroups_as_root skipped");
        return;
    };
    let args = LimitArgs {
        memory_in_bytes: Some("64M".into()),
        cpu_quota: Some("50000".into()),
        cpu_period: Some("100000".into()),
        device_write_bps: vec!["10M".into()],
        net_cls_classid: Some("0x00100001".into()),
        ..Default::default()
    };
    let resources = limits::resources(&args, root_dev).unwrap();
    let id = format!("unit-{}", std::process::id());
    let cg = Cgroups::create(&id, &resources).unwrap();
    let read = |c: &str, f: &str| cg.read(c, f).unwrap().trim().to_string();
    assert_eq!(read("memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(read("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(read("cpu", "cpu.shares"), "100");
    let (major, minor) = root_dev;
    assert_eq!(
        read("blkio", "blkio.throttle.write_bps_device"),
        format!("{major}:{minor} 10485760")
    );
    assert_eq!(
        read("blkio", "blkio.throttle.read_bps_device"),
        format!("{major}:{minor} 524288000")
    );
    assert_eq!(read("net_cls", "net_cls.classid"), "1048577");
    let devices = read("devices", "devices.list");
    assert!(
        devices.contains("c 1:3 rwm")
            && devices.contains("c 136:* rwm")
            && !devices.contains("a *:*"),
        "{devices}"
    );
    assert!(cg.unified_id().unwrap() > 1);

    // A real task: it joins, is counted, and destroy kills it.
    let mut child = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    cg.add_task(pid).unwrap();
    assert_eq!(cg.pids(), [pid]);
    let cgroup_file = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cgroup_file.contains(&format!("0::/islander/{id}")),
        "{cgroup_file}"
    );
    cg.destroy().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    for dir in cg.paths() {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    cg.destroy().unwrap();
}

#[test]
fn real_failure_leaves_nothing_as_root() {
    if skip_unless_root("real_failure_leaves_nothing_as_root") {
        return;
    }
    // No such block device: the kernel refuses the throttle rule.
    let args = LimitArgs {
        device_write_bps: vec!["10M".into()],
        ..Default::default()
    };
    let resources = limits::resources(&args, (4095, 4095)).unwrap();
    let id = format!("unit-fail-{}", std::process::id());
    let e = Cgroups::create(&id, &resources).unwrap_err().to_string();
    assert!(
        e.contains("blkio.throttle.read_bps_device") && e.contains("4095:4095"),
        "{e}"
    );
    for dir in Cgroups::open(&id).paths() {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}
