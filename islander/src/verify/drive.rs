//! A verify run: stage, start, load and sample, judge, clean up.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use super::plan::{Load, LoadKind, Plan, IN_ISLE_DIR, WORKLOAD_NAME};
use super::sample::{Probe, Sample};
use super::stage::Stage;
use super::{plot, verdict, Launcher, Progress, Report, Row, Span, VerifyError, VerifyRequest, SAMPLE_EVERY};
use crate::cgroups::Cgroups;
use crate::ebpf::{self, Observer};
use crate::image::ImageStore;
use crate::isle::run::{block_device_of, RunRequest};
use crate::isle::{new_id, remove, IsleError};
use crate::paths::StateRoot;

/// A load that has not ended this long after its expected time is hung.
const HANG_GRACE: Duration = Duration::from_secs(30);

/// One load as it ran: the samples that bound its measured window and,
/// for the memory load, the memory cgroup's figures after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub kind: LoadKind,
    pub start: Sample,
    pub end: Sample,
    pub memory: Option<MemoryFigures>,
    /// The memory load's target, as planned.
    pub target_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryFigures {
    pub max_usage: u64,
    pub failcnt: u64,
    pub oom_kills: u64,
}

pub(super) fn run(
    root: &StateRoot,
    req: &VerifyRequest,
    launcher: &mut dyn Launcher,
    stop: &AtomicBool,
    progress: Progress,
) -> crate::Result<Report> {
    // Everything is checked before anything is made.
    let device = block_device_of(&existing_ancestor(&root.isles_lib_dir()))?;
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let plan = Plan::new(&req.limits, device, cores, mem_available())?;
    check_image(root, req)?;

    let id = new_id();
    let stage = Stage::create(&root.isle_layers(&id), plan.read_bps.is_some())?;
    let run_req = RunRequest {
        image: req.image.clone(),
        rootfs: req.rootfs.clone(),
        args: vec![format!("{IN_ISLE_DIR}/{WORKLOAD_NAME}"), "idle".into()],
        limits: req.limits.clone(),
        id: Some(id.clone()),
        extra_lower: Some(stage.lower.clone()),
        ..RunRequest::default()
    };
    launcher.start(run_req).map_err(VerifyError::Start)?;
    // Declared after the stage, so dropped before it: the isle goes first,
    // then the layer it was mounted from.
    let mut isle = StartedIsle {
        root,
        id: id.clone(),
        observer: None,
    };
    let cgroups = Cgroups::open(&id);
    let mut notes = plan.notes.clone();
    match observe(&cgroups) {
        Ok(o) => isle.observer = Some(o),
        Err(e) => notes.push(format!(
            "eBPF figures unavailable ({e}); block IO is measured by the blkio cgroup alone"
        )),
    }

    let ebpf = isle.observer.is_some();
    let (samples, outcomes) = {
        let probe = Probe {
            cgroups: &cgroups,
            observer: isle.observer.as_ref().map(|(o, cg)| (o, *cg)),
            device,
        };
        let t0 = Instant::now();
        let mut samples = vec![probe.read(0.0)];
        let mut outcomes = Vec::new();
        let count = plan.loads.len().max(1) as f64;
        for (i, load) in plan.loads.iter().enumerate() {
            let label = load.kind.label();
            let mut report = |f: f64| progress(label, (i as f64 + f.clamp(0.0, 1.0)) / count);
            report(0.0);
            let _boost = (load.kind == LoadKind::Cpu).then(|| SharesBoost::raise(&cgroups));
            outcomes.push(run_load(
                launcher,
                &id,
                load,
                &probe,
                t0,
                &mut samples,
                stop,
                &mut report,
            )?);
        }
        progress("done", 1.0);
        (samples, outcomes)
    };
    let rows = rows(&plan, &outcomes, &ebpf::device_name(device.0 as u32, device.1 as u32));
    drop(isle);
    drop(stage);
    let spans = outcomes
        .iter()
        .map(|o| Span {
            load: o.kind.label(),
            start: o.start.t,
            end: o.end.t,
        })
        .collect();
    Ok(Report {
        rows,
        ebpf,
        samples,
        spans,
        limits: plot::Lines {
            cpu: plan.cpu_cpus(),
            memory: plan.memory,
            write_bps: plan.write_bps,
            read_bps: plan.read_bps,
        },
        notes,
    })
}

/// cpu.shares while the CPU load runs. The quota is a ceiling, and
/// measuring a ceiling needs the burner to get at least that much CPU; on a
/// busy host a low weight (run's default is 100, a host task's 1024) would
/// leave it below the quota and the limit unreached. The weight changes
/// what the isle gets only while it competes, never what the quota allows.
pub const CPU_SHARES_DURING_LOAD: u64 = 10240;

/// Raises the isle's cpu.shares to [`CPU_SHARES_DURING_LOAD`] until dropped.
struct SharesBoost {
    file: Option<PathBuf>,
    before: String,
}

impl SharesBoost {
    fn raise(cgroups: &Cgroups) -> SharesBoost {
        let file = cgroups.path("cpu").map(|d| d.join("cpu.shares"));
        let before = file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .unwrap_or_default();
        let raised = match (&file, before.trim().parse::<u64>()) {
            (Some(f), Ok(b)) if b < CPU_SHARES_DURING_LOAD => std::fs::write(f, CPU_SHARES_DURING_LOAD.to_string())
                .inspect_err(|e| tracing::warn!("raising {}: {e}", f.display()))
                .is_ok(),
            _ => false,
        };
        SharesBoost {
            file: file.filter(|_| raised),
            before,
        }
    }
}

impl Drop for SharesBoost {
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            if let Err(e) = std::fs::write(f, self.before.trim()) {
                tracing::warn!("restoring {}: {e}", f.display());
            }
        }
    }
}

/// The isle while verify uses it; dropping it forgets it in the observer
/// and removes it with everything it has.
struct StartedIsle<'a> {
    root: &'a StateRoot,
    id: String,
    observer: Option<(Observer, u64)>,
}

impl Drop for StartedIsle<'_> {
    fn drop(&mut self) {
        if let Some((o, cgroup)) = &self.observer {
            o.forget(*cgroup);
        }
        if let Err(e) = remove::remove(self.root, std::slice::from_ref(&self.id), true, |_| {}) {
            tracing::warn!(isle = %self.id, "removing the verify isle: {e}");
        }
    }
}

fn observe(cgroups: &Cgroups) -> crate::Result<(Observer, u64)> {
    let observer = Observer::attach()?;
    let path = cgroups.path(crate::cgroups::UNIFIED).unwrap_or_default();
    let id = cgroups.unified_id().map_err(|source| IsleError::Io {
        op: "reading the cgroup2 id of",
        path,
        source,
    })?;
    observer.register(id)?;
    Ok((observer, id))
}

/// The isle's image must exist before an isle is made for it; the default
/// image is built on first use, as `run` does.
fn check_image(root: &StateRoot, req: &VerifyRequest) -> crate::Result<()> {
    match (&req.rootfs, &req.image) {
        (Some(dir), _) if !dir.is_dir() => Err(IsleError::NoRootfs(dir.clone()).into()),
        (None, Some(name)) if name != "default" => ImageStore::new(root).rootfs(name).map(|_| ()).map_err(Into::into),
        _ => Ok(()),
    }
}

/// `path`, or its nearest ancestor that exists: the state directories
/// are made only once the isle is, but their disk is known before.
fn existing_ancestor(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    while !p.exists() {
        if !p.pop() {
            return PathBuf::from("/");
        }
    }
    p
}

fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// What the load's reader threads hand the sampling loop.
enum Event {
    Line(String),
    Closed,
}

/// An `islander exec` child: killed with its process group unless it ended.
struct LoadChild(Option<Child>);

impl LoadChild {
    fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let mut child = self.0.take().expect("waited once");
        child.wait()
    }
}

impl Drop for LoadChild {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            // SAFETY: kill(2) on the child's own process group.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_load(
    launcher: &mut dyn Launcher,
    id: &str,
    load: &Load,
    probe: &Probe,
    t0: Instant,
    samples: &mut Vec<Sample>,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(f64),
) -> crate::Result<Outcome> {
    let name = load.kind.label();
    let failed = |reason: String| VerifyError::Workload { load: name, reason };
    let before = (probe.cgroups.memory_failcnt(), probe.cgroups.oom_kills());
    let mut cmd = launcher.exec(id, &load.args);
    // Its own process group: a ^C at the terminal reaches verify alone,
    // which then ends the load itself and cleans up.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut spawned = cmd
        .spawn()
        .map_err(|e| failed(format!("starting islander exec: {e}")))?;
    let stdout = spawned.stdout.take().expect("piped");
    let mut stderr_pipe = spawned.stderr.take().expect("piped");
    let mut child = LoadChild(Some(spawned));

    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(Event::Line(line)).is_err() {
                return;
            }
        }
        let _ = tx.send(Event::Closed);
    });
    let stderr = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });

    let now_t = |at: Instant| at.duration_since(t0).as_secs_f64();
    let began = Instant::now();
    let deadline = began + Duration::from_secs_f64(load.expected_seconds) + HANG_GRACE;
    let mut next = began + SAMPLE_EVERY;
    let (mut start, mut end, mut done): (Option<Sample>, Option<Sample>, bool) = (None, None, false);
    let mut reported = 0.0f64;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Err(VerifyError::Interrupted.into());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(failed(format!("it did not end within {} s", (deadline - began).as_secs())).into());
        }
        if now >= next {
            samples.push(probe.read(now_t(now)));
            next = (next + SAMPLE_EVERY).max(now + SAMPLE_EVERY / 2);
            if let Some(s) = start.as_ref().filter(|_| end.is_none()) {
                let elapsed = now_t(now) - s.t;
                reported = reported.max((elapsed / load.expected_seconds).min(0.99));
                progress(reported);
            }
        }
        match rx.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Ok(Event::Line(line)) => {
                let mut words = line.split_whitespace();
                match words.next() {
                    Some("start") if start.is_none() => {
                        let s = probe.read(now_t(Instant::now()));
                        samples.push(s);
                        start = Some(s);
                    }
                    Some("progress") => {
                        if let Some(f) = words.next().and_then(|f| f.parse::<f64>().ok()) {
                            reported = reported.max(f.min(0.99));
                            progress(reported);
                        }
                    }
                    Some("done") if start.is_some() && end.is_none() => {
                        let s = probe.read(now_t(Instant::now()));
                        samples.push(s);
                        end = Some(s);
                        done = true;
                    }
                    _ => {}
                }
            }
            Ok(Event::Closed) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
    // The load's stdout closed: it ended, done or killed (the memory load
    // is meant to be). Its window closes now if it did not say done.
    let end = match end {
        Some(e) => e,
        None => {
            let s = probe.read(now_t(Instant::now()));
            samples.push(s);
            s
        }
    };
    let status = child
        .wait()
        .map_err(|e| failed(format!("waiting for islander exec: {e}")))?;
    let stderr = stderr.join().unwrap_or_default();
    let memory = (load.kind == LoadKind::Memory).then(|| MemoryFigures {
        max_usage: probe.memory_file("memory.max_usage_in_bytes").unwrap_or(0),
        failcnt: probe.cgroups.memory_failcnt().saturating_sub(before.0),
        oom_kills: probe.cgroups.oom_kills().saturating_sub(before.1),
    });
    let oom_killed = memory.is_some_and(|m| m.oom_kills > 0);
    let Some(start) = start else {
        return Err(failed(why(status, &stderr, "it never started")).into());
    };
    if !(oom_killed || done && status.success()) {
        return Err(failed(why(status, &stderr, "it ended before it was done")).into());
    }
    progress(1.0);
    Ok(Outcome {
        kind: load.kind,
        start,
        end,
        memory,
        target_bytes: load.target_bytes,
    })
}

/// A failed load in one line: its last line on stderr, else its status.
fn why(status: ExitStatus, stderr: &str, otherwise: &str) -> String {
    let last = stderr.lines().map(str::trim).rfind(|l| !l.is_empty());
    match (last, status.code(), status.signal()) {
        (Some(line), _, _) => line.strip_prefix("islander: ").unwrap_or(line).to_string(),
        (None, Some(code), _) if code != 0 => format!("{otherwise} (exit status {code})"),
        (None, _, Some(sig)) => format!("{otherwise} (killed by signal {sig})"),
        _ => otherwise.to_string(),
    }
}

/// The rows for what the loads measured, in a fixed order: CPU, memory,
/// writes (direct, buffered), reads, then limits on other devices.
pub fn rows(plan: &Plan, outcomes: &[Outcome], device_name: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let of = |kind| outcomes.iter().find(|o| o.kind == kind);
    let window = |o: &Outcome| (o.end.t - o.start.t).max(1e-3);

    if let (Some((quota, period)), Some(o)) = (plan.cpu, of(LoadKind::Cpu)) {
        let configured = quota as f64 / period as f64;
        let measured = o.end.cpu_ns.saturating_sub(o.start.cpu_ns) as f64 / 1e9 / window(o);
        rows.push(Row {
            limit: "cpu".into(),
            unit: "CPUs",
            configured,
            measured: Some(measured),
            verdict: verdict::cpu(configured, measured),
            detail: format!(
                "quota {quota} us per {period} us; cpuacct.usage over {:.1} s, {} busy threads on {} CPUs, cpu.shares {CPU_SHARES_DURING_LOAD} meanwhile",
                window(o),
                plan.cores,
                plan.cores
            ),
        });
    }
    if let (Some(limit), Some(o)) = (plan.memory, of(LoadKind::Memory)) {
        let m = o.memory.unwrap_or(MemoryFigures {
            max_usage: 0,
            failcnt: 0,
            oom_kills: 0,
        });
        let stopped = m.oom_kills > 0 || m.failcnt > 0;
        let v = verdict::memory(limit, m.max_usage, stopped);
        let detail = match v {
            _ if m.oom_kills > 0 => format!(
                "OOM-killed at a peak of {} ({} kill{}, failcnt {}); the allocator aimed at {}",
                bytes(m.max_usage as f64),
                m.oom_kills,
                if m.oom_kills == 1 { "" } else { "s" },
                m.failcnt,
                bytes(o.target_bytes as f64)
            ),
            verdict::Verdict::Exceeded => format!(
                "the peak went past the limit without an OOM kill; the allocator aimed at {}",
                bytes(o.target_bytes as f64)
            ),
            verdict::Verdict::Holds => format!("held at the limit (failcnt {}) without an OOM kill", m.failcnt),
            verdict::Verdict::NotReached => format!(
                "the allocator's {} stayed below the limit (capped by the host's available memory)",
                bytes(o.target_bytes as f64)
            ),
        };
        rows.push(Row {
            limit: "memory".into(),
            unit: "bytes",
            configured: limit as f64,
            measured: Some(m.max_usage as f64),
            verdict: v,
            detail,
        });
    }
    let rate_row = |limit: &str, rate: u64, o: &Outcome, read: bool, what: &str| {
        let w = window(o);
        let (blkio, ebpf) = if read {
            (
                o.end.blkio_read.saturating_sub(o.start.blkio_read),
                diff(o.end.ebpf_read, o.start.ebpf_read),
            )
        } else {
            (
                o.end.blkio_write.saturating_sub(o.start.blkio_write),
                diff(o.end.ebpf_write, o.start.ebpf_write),
            )
        };
        let measured = blkio.max(ebpf.unwrap_or(0)) as f64 / w;
        let ebpf_text = match ebpf {
            Some(e) => format!("eBPF {}", byte_rate(e as f64 / w)),
            None => "no eBPF figure".to_string(),
        };
        Row {
            limit: limit.to_string(),
            unit: "bytes/s",
            configured: rate as f64,
            measured: Some(measured),
            verdict: verdict::rate(rate as f64, measured),
            detail: format!(
                "{what} on {device_name} over {w:.1} s: blkio {}, {ebpf_text}",
                byte_rate(blkio as f64 / w)
            ),
        }
    };
    if let Some(rate) = plan.write_bps {
        if let Some(o) = of(LoadKind::WriteDirect) {
            rows.push(rate_row("device-write-bps", rate, o, false, "O_DIRECT writes"));
        }
        if let Some(o) = of(LoadKind::WriteBuffered) {
            rows.push(rate_row(
                "device-write-bps (buffered)",
                rate,
                o,
                false,
                "buffered writes with fsync",
            ));
        }
    }
    if let (Some(rate), Some(o)) = (plan.read_bps, of(LoadKind::ReadDirect)) {
        rows.push(rate_row("device-read-bps", rate, o, true, "O_DIRECT reads"));
    }
    for e in &plan.elsewhere {
        let name = ebpf::device_name(e.device.0 as u32, e.device.1 as u32);
        rows.push(Row {
            limit: format!("{} {name}", e.option),
            unit: "bytes/s",
            configured: e.rate as f64,
            measured: None,
            verdict: verdict::Verdict::NotReached,
            detail: format!("the loads do IO only on the isle's disk, {device_name}"),
        });
    }
    rows
}

fn diff(end: Option<u64>, start: Option<u64>) -> Option<u64> {
    Some(end?.saturating_sub(start?))
}

/// Bytes in binary units, as the rest of islander prints them.
pub fn bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

pub fn byte_rate(b: f64) -> String {
    format!("{}/s", bytes(b))
}
