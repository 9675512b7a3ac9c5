//! Unit tests of the plan, the verdicts, the rows and the plot: everything
//! but running isles, which tests/tests/verify_*.rs do as root.

use std::path::Path;

use super::drive::{rows, MemoryFigures, Outcome};
use super::plan::{block_for, memory_target, LoadKind, Plan};
use super::sample::service_bytes;
use super::*;

const MIB: u64 = 1024 * 1024;
const DISK: (u64, u64) = (254, 0);

fn plan(f: impl FnOnce(&mut LimitArgs)) -> Plan {
    let mut args = LimitArgs::default();
    f(&mut args);
    Plan::new(&args, DISK, 2, Some(16 * 1024 * MIB)).expect("valid limits")
}

fn kinds(p: &Plan) -> Vec<LoadKind> {
    p.loads.iter().map(|l| l.kind).collect()
}

#[test]
fn defaults_plan_every_load_in_order() {
    let p = plan(|_| {});
    assert_eq!(p.cpu, Some((1_000_000, 100_000)));
    assert_eq!(p.cpu_cpus(), Some(10.0));
    assert_eq!(p.memory, Some(500 * MIB));
    assert_eq!(p.write_bps, Some(100 * MIB));
    assert_eq!(p.read_bps, Some(500 * MIB));
    assert_eq!(
        kinds(&p),
        [
            LoadKind::Cpu,
            LoadKind::Memory,
            LoadKind::WriteDirect,
            LoadKind::ReadDirect,
            LoadKind::WriteBuffered
        ]
    );
    let cpu = &p.loads[0];
    assert_eq!(cpu.args, ["/.islander-verify/islander-workload", "cpu", "2", "3"]);
}

#[test]
fn no_quota_means_no_cpu_load_and_a_note() {
    let p = plan(|a| a.cpu_quota = Some("-1".into()));
    assert_eq!(p.cpu, None);
    assert!(!kinds(&p).contains(&LoadKind::Cpu));
    assert!(p.notes.iter().any(|n| n.contains("no CPU quota")), "{:?}", p.notes);
}

#[test]
fn bad_limits_are_refused_as_run_refuses_them() {
    let mut args = LimitArgs {
        cpu_quota: Some("999".into()),
        ..LimitArgs::default()
    };
    let e = Plan::new(&args, DISK, 2, None).unwrap_err().to_string();
    assert!(e.starts_with("invalid --cpu-quota '999'"), "{e}");
    args.cpu_quota = None;
    args.device_read_bps = vec!["fast".into()];
    let e = Plan::new(&args, DISK, 2, None).unwrap_err().to_string();
    assert!(e.starts_with("invalid --device-read-bps 'fast'"), "{e}");
}

#[test]
fn rates_on_other_disks_are_listed_apart() {
    // A bare rate throttles the isle's own disk, whichever it is.
    let args = LimitArgs {
        device_write_bps: vec!["10mb".into()],
        ..LimitArgs::default()
    };
    let p = Plan::new(&args, (7, 99), 2, None).unwrap();
    assert_eq!(p.write_bps, Some(10 * MIB));
    assert!(p.elsewhere.is_empty());
    // DEVICE:RATE for a disk that is not the isle's: listed, not loaded.
    let Ok(meta) = std::fs::metadata("/dev/vda") else {
        eprintln!("note: no /dev/vda, skipping the DEVICE:RATE case");
        return;
    };
    use std::os::unix::fs::MetadataExt as _;
    let vda = (nix::sys::stat::major(meta.rdev()), nix::sys::stat::minor(meta.rdev()));
    let args = LimitArgs {
        device_read_bps: vec!["/dev/vda:1mb".into()],
        ..LimitArgs::default()
    };
    let p = Plan::new(&args, (7, 99), 2, None).unwrap();
    assert_eq!(p.read_bps, None);
    assert!(!kinds(&p).contains(&LoadKind::ReadDirect));
    assert_eq!(p.elsewhere.len(), 1);
    assert_eq!(
        (p.elsewhere[0].option, p.elsewhere[0].device, p.elsewhere[0].rate),
        ("device-read-bps", vda, MIB)
    );
    let rows = rows(&p, &[], "vda");
    assert_eq!(rows.len(), 1);
    assert!(rows[0].limit.starts_with("device-read-bps "), "{}", rows[0].limit);
    assert_eq!((rows[0].measured, rows[0].verdict), (None, Verdict::NotReached));
}

#[test]
fn loads_are_sized_from_the_limits() {
    let p = plan(|a| {
        a.memory_in_bytes = Some("64M".into());
        a.device_write_bps = vec!["10mb".into()];
        a.device_read_bps = vec!["20mb".into()];
    });
    let load = |k| p.loads.iter().find(|l| l.kind == k).unwrap();
    let memory = load(LoadKind::Memory);
    assert_eq!(memory.target_bytes, 80 * MIB);
    assert_eq!(memory.args[1..3], ["memory".to_string(), (80 * MIB).to_string()]);
    let write = load(LoadKind::WriteDirect);
    // Four times 3 s at the limit, in blocks of a sixteenth of a second.
    assert_eq!(write.args[4], (120 * MIB).to_string());
    assert_eq!(write.args[5], (640 * 1024).to_string());
    let read = load(LoadKind::ReadDirect);
    assert_eq!(read.args[2], "/.islander-verify/read.dat");
    assert_eq!(read.args[5], MIB.to_string());
    let buffered = load(LoadKind::WriteBuffered);
    // fsync about every quarter second's worth (whole blocks), well inside
    // an eighth of memory.
    assert_eq!(buffered.args[5], MIB.to_string());
    assert_eq!(buffered.args[6], (2 * MIB).to_string());
}

#[test]
fn memory_target_goes_past_the_limit_but_not_past_the_host() {
    assert_eq!(memory_target(64 * MIB, None), 80 * MIB);
    assert_eq!(memory_target(1024 * MIB, None), 1280 * MIB);
    assert_eq!(memory_target(1024 * MIB, Some(1000 * MIB)), 800 * MIB);
    assert_eq!(memory_target(u64::MAX / 2, Some(100 * MIB)), 80 * MIB);
}

#[test]
fn io_blocks_are_page_multiples() {
    assert_eq!(block_for(1024), 4096);
    assert_eq!(block_for(10 * MIB), 640 * 1024);
    assert_eq!(block_for(100 * 1024 * MIB), MIB);
    for rate in [4097, 123_456, 7_777_777] {
        assert_eq!(block_for(rate) % 4096, 0);
    }
}

#[test]
fn cpu_verdicts() {
    assert_eq!(verdict::cpu(0.5, 0.5), Verdict::Holds);
    assert_eq!(verdict::cpu(0.5, 0.6), Verdict::Holds);
    assert_eq!(verdict::cpu(0.5, 0.61), Verdict::Exceeded);
    assert_eq!(verdict::cpu(0.5, 0.40), Verdict::Holds);
    assert_eq!(verdict::cpu(0.5, 0.39), Verdict::NotReached);
    // More CPUs than the host has: the burner cannot get there.
    assert_eq!(verdict::cpu(10.0, 2.0), Verdict::NotReached);
}

#[test]
fn rate_and_memory_verdicts() {
    assert_eq!(verdict::rate(100.0, 110.0), Verdict::Holds);
    assert_eq!(verdict::rate(100.0, 110.1), Verdict::Exceeded);
    assert_eq!(verdict::rate(100.0, 90.0), Verdict::Holds);
    assert_eq!(verdict::rate(100.0, 89.9), Verdict::NotReached);
    assert_eq!(verdict::memory(100, 100, true), Verdict::Holds);
    assert_eq!(verdict::memory(100, 101, true), Verdict::Exceeded);
    assert_eq!(verdict::memory(100, 101, false), Verdict::Exceeded);
    assert_eq!(verdict::memory(100, 60, false), Verdict::NotReached);
    assert_eq!(
        serde_json::to_string(&Verdict::NotReached).unwrap(),
        "\"could not be reached\""
    );
}

fn sample(t: f64) -> Sample {
    Sample { t, ..Sample::default() }
}

fn outcome(kind: LoadKind, start: Sample, end: Sample) -> Outcome {
    Outcome {
        kind,
        start,
        end,
        memory: None,
        target_bytes: 0,
    }
}

#[test]
fn rows_come_from_the_windows() {
    let p = plan(|a| {
        a.cpu_quota = Some("50000".into());
        a.memory_in_bytes = Some("64M".into());
        a.device_write_bps = vec!["10mb".into()];
        a.device_read_bps = vec!["20mb".into()];
    });
    let cpu = outcome(
        LoadKind::Cpu,
        Sample {
            cpu_ns: 1_000_000_000,
            ..sample(1.0)
        },
        Sample {
            cpu_ns: 2_500_000_000,
            ..sample(4.0)
        },
    );
    let mut memory = outcome(LoadKind::Memory, sample(4.0), sample(6.0));
    memory.memory = Some(MemoryFigures {
        max_usage: 64 * MIB,
        failcnt: 3,
        oom_kills: 1,
    });
    memory.target_bytes = 80 * MIB;
    // blkio saw 30 MiB in 3 s; eBPF saw less (throttled bios go uncounted).
    let write = outcome(
        LoadKind::WriteDirect,
        Sample {
            blkio_write: 0,
            ebpf_write: Some(0),
            ..sample(6.0)
        },
        Sample {
            blkio_write: 30 * MIB,
            ebpf_write: Some(13 * MIB),
            ..sample(9.0)
        },
    );
    // Buffered: eBPF saw more (the flusher wrote some, unseen by blkio).
    let buffered = outcome(
        LoadKind::WriteBuffered,
        Sample {
            blkio_write: 30 * MIB,
            ebpf_write: Some(13 * MIB),
            ..sample(12.0)
        },
        Sample {
            blkio_write: 40 * MIB,
            ebpf_write: Some(73 * MIB),
            ..sample(15.0)
        },
    );
    let read = outcome(
        LoadKind::ReadDirect,
        Sample {
            blkio_read: 0,
            ..sample(9.0)
        },
        Sample {
            blkio_read: 60 * MIB,
            ..sample(12.0)
        },
    );
    let rows = rows(&p, &[cpu, memory, write, read, buffered], "vda");
    let names: Vec<&str> = rows.iter().map(|r| r.limit.as_str()).collect();
    assert_eq!(
        names,
        [
            "cpu",
            "memory",
            "device-write-bps",
            "device-write-bps (buffered)",
            "device-read-bps"
        ]
    );

    assert_eq!(rows[0].unit, "CPUs");
    assert_eq!(rows[0].configured, 0.5);
    assert_eq!(rows[0].measured, Some(0.5));
    assert_eq!(rows[0].verdict, Verdict::Holds);

    assert_eq!(rows[1].measured, Some((64 * MIB) as f64));
    assert_eq!(rows[1].verdict, Verdict::Holds);
    assert!(
        rows[1]
            .detail
            .starts_with("OOM-killed at a peak of 64.0 MiB (1 kill, failcnt 3)"),
        "{}",
        rows[1].detail
    );

    assert_eq!(rows[2].measured, Some((10 * MIB) as f64));
    assert_eq!(rows[2].verdict, Verdict::Holds);
    assert!(
        rows[2].detail.contains("blkio 10.0 MiB/s, eBPF 4.3 MiB/s"),
        "{}",
        rows[2].detail
    );

    assert_eq!(rows[3].measured, Some((20 * MIB) as f64));
    assert_eq!(rows[3].verdict, Verdict::Exceeded);

    assert_eq!(rows[4].unit, "bytes/s");
    assert_eq!(rows[4].measured, Some((20 * MIB) as f64));
    assert_eq!(rows[4].verdict, Verdict::Holds);
    assert!(rows[4].detail.contains("no eBPF figure"), "{}", rows[4].detail);

    let json = serde_json::to_value(&rows[0]).unwrap();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["configured", "detail", "limit", "measured", "unit", "verdict"]);
}

#[test]
fn an_oom_free_peak_below_the_limit_was_not_reached() {
    let p = plan(|a| a.memory_in_bytes = Some("1G".into()));
    let mut memory = outcome(LoadKind::Memory, sample(0.0), sample(2.0));
    memory.memory = Some(MemoryFigures {
        max_usage: 900 * MIB,
        failcnt: 0,
        oom_kills: 0,
    });
    let rows = rows(&p, &[memory], "vda");
    assert_eq!(rows[0].verdict, Verdict::NotReached);
    // Loads that did not run give no rows.
    assert_eq!(rows.len(), 1);
}

#[test]
fn blkio_service_bytes_are_parsed_per_device() {
    let text = "8:16 Read 5\n254:0 Read 100\n254:0 Write 200\n254:0 Sync 300\n254:0 Total 300\nTotal 305\n";
    assert_eq!(service_bytes(text, (254, 0)), (100, 200));
    assert_eq!(service_bytes(text, (8, 16)), (5, 0));
    assert_eq!(service_bytes(text, (1, 1)), (0, 0));
    assert_eq!(service_bytes("", (254, 0)), (0, 0));
}

#[test]
fn plot_paths_are_checked_up_front() {
    assert!(check_plot_path(Path::new("/tmp/ok.svg")).is_ok());
    assert!(check_plot_path(Path::new("relative.SVG")).is_ok());
    let e = |p: &str| check_plot_path(Path::new(p)).unwrap_err().to_string();
    assert!(e("/tmp/x.png").contains("PNG is not drawn"), "{}", e("/tmp/x.png"));
    assert!(e("/tmp/x").contains("not an .svg file name"));
    assert!(e("/no/such/dir/x.svg").contains("its directory does not exist"));
    assert!(e("/tmp/x.png").starts_with("invalid --plot '/tmp/x.png': "));
}

fn report() -> Report {
    let samples: Vec<Sample> = (0..40)
        .map(|i| {
            let t = i as f64 * 0.1;
            Sample {
                t,
                cpu_ns: (t * 0.5e9) as u64,
                memory_bytes: (i as u64) * MIB,
                blkio_write: (t * 10.0 * MIB as f64) as u64,
                ebpf_write: Some((t * 5.0 * MIB as f64) as u64),
                ..Sample::default()
            }
        })
        .collect();
    Report {
        rows: Vec::new(),
        samples,
        spans: vec![Span {
            load: "cpu & <co>",
            start: 0.0,
            end: 3.9,
        }],
        limits: plot::Lines {
            cpu: Some(0.5),
            memory: Some(64 * MIB),
            write_bps: Some(10 * MIB),
            read_bps: None,
        },
        ebpf: true,
        notes: Vec::new(),
    }
}

#[test]
fn the_plot_has_a_panel_per_limit_with_its_lines() {
    let svg = plot::svg(&report());
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    for title in ["CPU (cpuacct.usage)", "Memory (memory.usage_in_bytes)", "Disk writes"] {
        assert!(svg.contains(title), "no '{title}' panel");
    }
    assert!(!svg.contains("Disk reads"), "a panel for a limit that is not there");
    // CPU usage, memory usage, and blkio and eBPF for writes.
    assert_eq!(svg.matches("<polyline").count(), 4);
    assert!(svg.contains("limit 0.50") && svg.contains("limit 64.0 MiB") && svg.contains("limit 10.0 MiB/s"));
    // Text is escaped.
    assert!(svg.contains("cpu &amp; &lt;co&gt;") && !svg.contains("<co>"));
}

#[test]
fn the_plot_shows_steady_rates() {
    let svg = plot::svg(&report());
    // The write rate is a steady 10 MiB/s, so after the first half second
    // every point of the blkio line sits on the limit line's height.
    let limit_y: Vec<&str> = svg
        .lines()
        .filter(|l| l.contains("stroke-dasharray=\"6 4\"") && l.starts_with("<line x1=\"96\""))
        .map(|l| l.split("y1=\"").nth(1).unwrap().split('"').next().unwrap())
        .collect();
    let blkio = svg.lines().filter(|l| l.starts_with("<polyline")).nth(2).unwrap();
    let points: Vec<&str> = blkio
        .split("points=\"")
        .nth(1)
        .unwrap()
        .trim_end_matches("\"/>")
        .split(' ')
        .collect();
    let ys: Vec<&str> = points.iter().skip(6).map(|p| p.split(',').nth(1).unwrap()).collect();
    assert!(ys.iter().all(|y| *y == limit_y[2]), "{ys:?} vs {limit_y:?}");
}
