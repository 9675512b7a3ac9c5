//! `islander run`: validate everything, then create the isle's record,
//! layer and cgroups, start it, and supervise it: in the foreground, where
//! islander is the supervisor and removes every trace of the isle when it
//! ends, or detached, where `islander supervise` (see `cli/supervise.rs`)
//! is, and keeps the exited isle's record, layer and log until `rm`.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::monitor::{self, Monitor};
use super::record::{ProcessId, Record, Status};
use super::{gc, io_err, new_id, now_unix, short_id, IsleError};
use crate::cgroups::Cgroups;
use crate::ebpf::Observer;
use crate::image::ImageStore;
use crate::limits::{self, LimitArgs};
use crate::logger::writer::LogWriter;
use crate::logger::Rotation;
use crate::metrics::server::MetricsServer;
use crate::paths::StateRoot;
use crate::process::init::InitContext;
use crate::process::supervisor::{self, Exit, IsleOutput, Supervision};
use crate::process::{parent, signals, ProcessError};
use crate::rootfs::overlay::Layers;
use crate::spec::{self, RunOptions, USERNS_HOST_BASE};
use crate::Result;

/// What the user asked `islander run` for, as plain values.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunRequest {
    pub image: Option<String>,
    pub rootfs: Option<PathBuf>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<PathBuf>,
    pub hostname: Option<String>,
    pub name: Option<String>,
    pub interactive: bool,
    pub tty: bool,
    pub userns: bool,
    pub privileged: bool,
    pub detach: bool,
    /// `--rm`: remove the isle once it ends.
    #[serde(default)]
    pub auto_remove: bool,
    pub limits: LimitArgs,
    pub log_rotation: Rotation,
    /// `--metrics ADDR`: serve Prometheus metrics while the isle runs.
    pub metrics: Option<String>,
    /// The isle's id, when the caller chose it (a detached isle's CLI does,
    /// so that it can name the isle before its supervisor reports).
    pub id: Option<String>,
    /// A directory mounted read-only above the image as an extra overlay
    /// lower layer: `islander verify` brings its workload in this way.
    #[serde(default)]
    pub extra_lower: Option<PathBuf>,
}

/// How a foreground isle ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub id: String,
    pub exit: Exit,
    /// Processes of the isle the kernel's OOM killer ended.
    pub oom_kills: u64,
    pub memory_limit: Option<i64>,
}

impl RunOutcome {
    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }
}

/// Everything an isle holds on the host, released in reverse order of
/// creation when dropped: whatever path leaves `run`, nothing stays behind.
/// A detached isle that started keeps its record, layer and log
/// (`keep_files`) until `islander rm`.
struct Held<'a> {
    root: &'a StateRoot,
    id: String,
    cgroups: Option<Cgroups>,
    layers: Option<Layers>,
    keep_files: bool,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(cg) = self.cgroups.take() {
            if let Err(e) = cg.destroy() {
                tracing::warn!(isle = %self.id, "removing cgroups: {e}");
            }
        }
        if self.keep_files {
            return;
        }
        if let Some(layers) = self.layers.take() {
            if let Err(e) = layers.remove() {
                tracing::warn!(isle = %self.id, "removing the layer: {e}");
            }
        }
        let _ = fs::remove_dir_all(self.root.isle_run(&self.id));
    }
}

/// A created isle, ready to start.
struct Prepared<'a> {
    held: Held<'a>,
    record: Record,
    run_dir: PathBuf,
    ctx: InitContext,
    memory_limit: Option<i64>,
}

/// The isle's stdio descriptors: islander's ends, and init's (0, 1, 2).
struct Pipes {
    ours: IsleOutput,
    theirs: [Option<OwnedFd>; 3],
    /// A detached `-i` isle's stdin: held open, so the isle's reads block
    /// (for `islander attach`) instead of seeing end of file.
    _stdin_writer: Option<OwnedFd>,
}

fn pipes(req: &RunRequest) -> Result<Pipes> {
    let mk = || -> Result<(OwnedFd, OwnedFd)> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| ProcessError::Sys("pipe", e))?;
        // A larger pipe lets a chatty isle run ahead of the logger.
        // SAFETY: F_SETPIPE_SZ on a pipe we own; failure only keeps 64 KiB.
        unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
        Ok((r, w))
    };
    if req.tty {
        return Ok(Pipes { ours: IsleOutput::default(), theirs: [None, None, None], _stdin_writer: None });
    }
    let (out_r, out_w) = mk()?;
    let (err_r, err_w) = mk()?;
    let (stdin, writer) = if req.detach && req.interactive {
        let (r, w) = mk()?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    Ok(Pipes {
        ours: IsleOutput { pty: None, stdout: Some(out_r), stderr: Some(err_r) },
        theirs: [stdin, Some(out_w), Some(err_w)],
        _stdin_writer: writer,
    })
}

/// Validates the request, then creates record, layer and cgroups.
fn prepare<'a>(root: &'a StateRoot, req: &RunRequest) -> Result<Prepared<'a>> {
    gc::reap_orphans(root);

    // 1. Validate everything before creating anything.
    let hostname_given = req.hostname.clone();
    if let Some(h) = &hostname_given {
        validate_hostname(h)?;
    }
    if let Some(n) = &req.name {
        validate_name(n)?;
    }
    for e in &req.env {
        validate_env(e)?;
    }
    let cwd = req.workdir.clone().unwrap_or_else(|| PathBuf::from("/"));
    if !cwd.is_absolute() {
        return Err(IsleError::BadWorkdir(cwd).into());
    }
    for dir in [root.isles_lib_dir(), root.isles_run_dir()] {
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
    }
    let device = block_device_of(&root.isles_lib_dir())?;
    let resources = limits::resources(&req.limits, device)?;
    let (lower, image_name) = match &req.rootfs {
        Some(dir) => {
            let dir = fs::canonicalize(dir).map_err(|_| IsleError::NoRootfs(dir.clone()))?;
            if !dir.is_dir() {
                return Err(IsleError::NoRootfs(dir).into());
            }
            (dir, None)
        }
        None => {
            let store = ImageStore::new(root);
            let name = req.image.clone().unwrap_or_else(|| "default".to_string());
            let dir = if name == "default" { store.ensure_default()? } else { store.rootfs(&name)? };
            (dir, Some(name))
        }
    };
    let args = if req.args.is_empty() { default_command(&lower)? } else { req.args.clone() };

    // 2. Create: record first, so that a crash at any later point is found
    //    and cleaned by the next islander.
    let id = match &req.id {
        Some(id) if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) => id.clone(),
        Some(id) => return Err(IsleError::BadId(id.clone()).into()),
        None => new_id(),
    };
    let run_dir = root.isle_run(&id);
    fs::create_dir(&run_dir).map_err(io_err("creating", &run_dir))?;
    let mut held = Held { root, id: id.clone(), cgroups: None, layers: None, keep_files: false };
    // Claim the name before anything else exists; the claim is the record.
    let name_lock = match &req.name {
        Some(n) => Some(claim_name(root, n, &id)?),
        None => None,
    };
    let extra_lower = match &req.extra_lower {
        Some(dir) => Some(fs::canonicalize(dir).map_err(io_err("opening the extra lower layer", dir))?),
        None => None,
    };
    let layers = Layers::at(&root.isle_layers(&id), &lower).with_extra_lower(extra_lower);
    let record = Record {
        id: id.clone(),
        status: Status::Creating,
        created_unix: now_unix(),
        supervisor: ProcessId::current(),
        pid: None,
        image: image_name,
        name: req.name.clone(),
        rootfs: lower.clone(),
        layers: layers.dir.clone(),
        detached: req.detach,
        auto_remove: req.auto_remove,
        command: args.clone(),
        log_dir: layers.dir.join("log"),
        exit: None,
    };
    record.save(&run_dir)?;
    drop(name_lock);

    held.layers = Some(layers.clone());
    layers.create(req.userns.then_some((USERNS_HOST_BASE, USERNS_HOST_BASE)))?;
    held.cgroups = Some(Cgroups::create(&id, &resources)?);

    let opts = RunOptions {
        args,
        env: req.env.clone(),
        cwd,
        hostname: hostname_given.unwrap_or_else(|| short_id(&id).to_string()),
        tty: req.tty,
        userns: req.userns,
        privileged: req.privileged,
        resources: resources.clone(),
    };
    let spec = spec::build(&opts, layers.merged.clone()).map_err(IsleError::from)?;
    let config = run_dir.join("config.json");
    super::record::write_atomic(&config, &serde_json::to_vec_pretty(&spec).expect("specs serialize"))?;
    let memory_limit = resources.memory().as_ref().and_then(|m| m.limit());
    let ctx = InitContext { spec, layers, interactive: req.interactive, stdio: [None, None, None] };
    Ok(Prepared { held, record, run_dir, ctx, memory_limit })
}

/// Starts a prepared isle: clone init, join cgroups, record the pid. With
/// `observe`, the eBPF observer is attached and told about the isle before
/// it execs; that happens after the clone, because the observer starts a
/// thread and islander clones only while it has none.
fn start(p: &mut Prepared, pipes: &mut Pipes, observe: bool) -> Result<(parent::Started, Option<Arc<Observer>>)> {
    p.ctx.stdio = [0, 1, 2].map(|i| pipes.theirs[i].as_ref().map(|fd| fd.as_raw_fd()));
    let cgroups = p.held.cgroups.as_ref().expect("prepared isles have cgroups");
    let record = &mut p.record;
    let run_dir = &p.run_dir;
    let mut observer = None;
    let started = parent::start(&p.ctx, |pid| {
        cgroups.add_task(pid.as_raw())?;
        if observe {
            let o = Observer::attach()?;
            let cgroup_id = cgroups.unified_id().map_err(|e| IsleError::Io { op: "reading the cgroup2 id of", path: cgroups.path(crate::cgroups::UNIFIED).unwrap_or_default(), source: e })?;
            o.register(cgroup_id)?;
            observer = Some(Arc::new(o));
        }
        record.pid = ProcessId::of(pid.as_raw());
        record.status = Status::Running;
        record.save(run_dir)?;
        Ok(())
    })?;
    // init has its copies; islander keeps only its own ends, so that end of
    // file comes when the isle's last writer exits.
    pipes.theirs = [None, None, None];
    tracing::debug!(isle = %record.id, pid = started.pid.as_raw(), "isle started");
    Ok((started, observer))
}

/// Stops counting an isle that is going away.
fn unobserve(observer: &Option<Arc<Observer>>, cgroups: &Cgroups) {
    if let (Some(o), Ok(id)) = (observer, cgroups.unified_id()) {
        o.forget(id);
    }
}

/// Runs an isle in the foreground and returns how it ended.
pub fn run(root: &StateRoot, req: RunRequest) -> Result<RunOutcome> {
    let server = req.metrics.as_deref().map(MetricsServer::bind).transpose()?;
    let mut pipes = pipes(&req)?;
    let mut p = prepare(root, &req)?;
    let signal_fd = signals::block()?;
    let (mut started, observer) = start(&mut p, &mut pipes, server.is_some())?;
    if let Some(server) = server {
        tracing::info!("serving metrics on http://{}/metrics", server.local_addr());
        server.serve(root.clone(), observer.clone());
    }
    let mut log = LogWriter::open(&p.record.log_dir, req.log_rotation)?;
    let output = IsleOutput { pty: started.pty_master.take(), ..std::mem::take(&mut pipes.ours) };
    let exit = supervisor::supervise(
        started.pid,
        &signal_fd,
        &output,
        Supervision { echo: true, relay_stdin: req.interactive, log: Some(&mut log) },
    )?;
    let cgroups = p.held.cgroups.as_ref().expect("prepared isles have cgroups");
    let oom_kills = cgroups.oom_kills();
    unobserve(&observer, cgroups);
    let outcome = RunOutcome { id: p.record.id.clone(), exit, oom_kills, memory_limit: p.memory_limit };
    drop(p);
    Ok(outcome)
}

/// The body of a detached isle's supervisor: creates and starts the isle,
/// tells `report` its id (or why it could not start), then drains its
/// output into the log until it ends, and records how it ended.
pub fn run_detached(root: &StateRoot, req: RunRequest, report: impl FnOnce(std::result::Result<&str, &crate::Error>)) -> Result<()> {
    let prepared = (|| -> Result<_> {
        // Without --metrics the supervisor becomes islander-logger once the
        // isle runs; it must exist before anything is created.
        let logger = match req.metrics {
            Some(_) => None,
            None => Some(monitor::logger_program()?),
        };
        let server = req.metrics.as_deref().map(MetricsServer::bind).transpose()?;
        Ok((logger, server, pipes(&req)?, prepare(root, &req)?))
    })();
    let (logger, server, mut pipes, mut p) = match prepared {
        Ok(x) => x,
        Err(e) => {
            report(Err(&e));
            return Err(e);
        }
    };
    let observe = server.is_some();
    let started = signals::block().map_err(crate::Error::from).and_then(|sfd| Ok((sfd, start(&mut p, &mut pipes, observe)?)));
    let (signal_fd, (mut started, observer)) = match started {
        Ok(x) => x,
        Err(e) => {
            report(Err(&e));
            return Err(e);
        }
    };
    // From here the monitor owns the teardown: it removes the cgroups when
    // PID 1 ends, and the record and the layer stay until `rm` (with
    // `--rm`, it removes them too).
    p.held.keep_files = true;
    p.held.cgroups = None;
    report(Ok(&p.record.id));
    let output = IsleOutput { pty: started.pty_master.take(), ..std::mem::take(&mut pipes.ours) };
    let raw = |fd: &Option<OwnedFd>| fd.as_ref().map(AsRawFd::as_raw_fd);
    let mut monitor = Monitor::new(&p.record.id, started.pid, &p.run_dir, &p.record.log_dir, req.log_rotation);
    monitor.stdout = raw(&output.stdout);
    monitor.stderr = raw(&output.stderr);
    monitor.pty = raw(&output.pty);
    monitor.stdin_writer = raw(&pipes._stdin_writer);
    monitor.remove_layers = req.auto_remove.then(|| p.record.layers.clone());
    if let Some(program) = logger {
        let err = monitor.exec(&program);
        tracing::warn!(isle = %p.record.id, "executing {}: {err}; the supervisor watches the isle itself", program.display());
    }
    if let Some(server) = server {
        server.serve(root.clone(), observer.clone());
    }
    let result = monitor.run(&signal_fd, &output, |cgroups| unobserve(&observer, cgroups));
    drop(p);
    result
}

/// `/bin/bash` when the image has it, as the default image does; else `/bin/sh`.
fn default_command(lower: &Path) -> Result<Vec<String>> {
    for candidate in ["bin/bash", "bin/sh"] {
        // Resolve inside the image: /bin is often a relative symlink to usr/bin.
        if resolves_inside(lower, candidate) {
            return Ok(vec![format!("/{candidate}")]);
        }
    }
    Err(IsleError::NoDefaultCommand.into())
}

fn resolves_inside(root: &Path, rel: &str) -> bool {
    let mut path = root.to_path_buf();
    for part in rel.split('/') {
        path.push(part);
        let mut hops = 0;
        while let Ok(target) = fs::read_link(&path) {
            hops += 1;
            if hops > 16 {
                return false;
            }
            path.pop();
            if target.is_absolute() {
                path = root.join(target.strip_prefix("/").unwrap_or(&target));
            } else {
                path.push(target);
            }
        }
    }
    path.is_file()
}

fn validate_hostname(h: &str) -> Result<(), IsleError> {
    let ok = !h.is_empty()
        && h.len() <= 63
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !h.starts_with('-')
        && !h.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(IsleError::BadHostname(h.to_string()))
    }
}

fn validate_name(n: &str) -> Result<(), IsleError> {
    let mut bytes = n.bytes();
    let ok = n.len() <= 128
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(IsleError::BadName(n.to_string()))
    }
}

/// Refuses a name that a live isle of this root already has. An flock on
/// a lock file makes check-and-record atomic between islanders; it is held
/// (the returned value) until the record, which carries the name, is written.
fn claim_name(root: &StateRoot, name: &str, id: &str) -> Result<nix::fcntl::Flock<fs::File>, IsleError> {
    let lock_path = root.isles_run_dir().join(".names.lock");
    let file = fs::File::create(&lock_path).map_err(io_err("creating", &lock_path))?;
    let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| IsleError::Io { op: "locking", path: lock_path.clone(), source: e.into() })?;
    if let Ok(entries) = fs::read_dir(root.isles_run_dir()) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy() == id {
                continue;
            }
            if let Some(rec) = Record::load(&entry.path()) {
                // An exited isle keeps its name until `rm`, as in Docker.
                if rec.name.as_deref() == Some(name) && (rec.status == Status::Exited || rec.supervisor.is_alive()) {
                    return Err(IsleError::NameInUse { name: name.to_string(), id: rec.id });
                }
            }
        }
    }
    Ok(lock)
}

fn validate_env(e: &str) -> Result<(), IsleError> {
    match e.split_once('=') {
        Some((k, _)) if !k.is_empty() && !k.contains('\0') => Ok(()),
        _ => Err(IsleError::BadEnv(e.to_string())),
    }
}

/// The whole-disk block device (major, minor) holding `path`, which is where
/// an isle's reads and writes land: blkio throttling applies to disks, so a
/// partition is mapped to its disk. File systems without a block device of
/// their own (btrfs, tmpfs) are traced through mountinfo, and in the end to
/// the device of `/`.
pub fn block_device_of(path: &Path) -> Result<(u64, u64), IsleError> {
    let dev = fs::metadata(path).map_err(io_err("inspecting", path))?.dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    if let Some(d) = whole_disk(major, minor) {
        return Ok(d);
    }
    if let Some(d) = mount_source_device(path).and_then(|(ma, mi)| whole_disk(ma, mi)) {
        return Ok(d);
    }
    if path != Path::new("/") {
        tracing::debug!("{} has no block device of its own; throttling the device of /", path.display());
        return block_device_of(Path::new("/"));
    }
    Err(IsleError::NoBlockDevice { path: path.to_path_buf(), reason: format!("device {major}:{minor} is not a block device") })
}

fn whole_disk(major: u64, minor: u64) -> Option<(u64, u64)> {
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    if !sys.exists() {
        return None;
    }
    if sys.join("partition").exists() {
        let parent = fs::canonicalize(&sys).ok()?.parent()?.join("dev");
        let text = fs::read_to_string(parent).ok()?;
        let (ma, mi) = text.trim().split_once(':')?;
        return Some((ma.parse().ok()?, mi.parse().ok()?));
    }
    Some((major, minor))
}

/// The device named as the source of the mount that holds `path`.
fn mount_source_device(path: &Path) -> Option<(u64, u64)> {
    let path = fs::canonicalize(path).ok()?;
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let mount_point = fields.get(4)?;
        let sep = fields.iter().position(|f| *f == "-")?;
        let source = fields.get(sep + 2)?;
        if path.starts_with(mount_point) && best.as_ref().map(|(l, _)| mount_point.len() >= *l).unwrap_or(true) {
            best = Some((mount_point.len(), source.to_string()));
        }
    }
    let rdev = fs::metadata(best?.1).ok()?.rdev();
    Some((nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_are_checked() {
        assert!(validate_hostname("isle-1").is_ok());
        for bad in ["", "-a", "a-", "a_b", &"x".repeat(64)] {
            assert!(validate_hostname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn env_needs_a_key() {
        assert!(validate_env("A=").is_ok());
        assert!(validate_env("=x").is_err());
        assert!(validate_env("A").is_err());
    }

    #[test]
    fn the_root_disk_is_found() {
        let (major, _) = block_device_of(Path::new("/")).unwrap();
        assert!(major > 0);
    }
}
