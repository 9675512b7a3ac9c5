//! An isle's cgroups: one directory per cgroup v1 hierarchy islander uses,
//! `<mount>/islander/<id>`, plus `<cgroup2 mount>/islander/<id>`.
//!
//! Limits live in v1 (memory, cpu, blkio, devices, net_cls). The cgroup2
//! directory has no controllers enabled; it exists so the isle's tasks get a
//! cgroup2 id of their own, which is what eBPF programs can read
//! (`bpf_get_current_cgroup_id`). pids and cpuacct are joined for counting,
//! freezer (when mounted) to stop forks while tasks are killed.
//!
//! Mount points come from /proc/self/mountinfo, so co-mounted controllers
//! (`cpu,cpuacct`) share one directory. net_cls is mounted at
//! /sys/fs/cgroup/net_cls when no hierarchy has it; that mount is host
//! configuration and stays.

mod fs;
pub(crate) mod mountinfo;
#[cfg(test)]
mod testfs;

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};
use thiserror::Error;

pub use fs::{CgroupFs, HostFs};
pub use mountinfo::{Hierarchy, Mounts};

/// The directory under each hierarchy's root that holds all isles.
pub const PARENT: &str = "islander";
/// The name [`Cgroups::path`] and [`Cgroups::read`] take for the cgroup2 dir.
pub const UNIFIED: &str = "unified";
const NET_CLS_MOUNT: &str = "/sys/fs/cgroup/net_cls";

const REQUIRED: [&str; 7] = [
    "memory", "cpu", "cpuacct", "blkio", "devices", "net_cls", "pids",
];
const OPTIONAL: [&str; 1] = ["freezer"];

/// Teardown bounds: SIGKILL rounds (about 5 s in all) and rmdir retries on
/// EBUSY (about 1 s per dir), which the kernel returns while dying tasks
/// still hold the cgroup.
const KILL_ROUNDS: u32 = 250;
const KILL_PAUSE: Duration = Duration::from_millis(20);
const RMDIR_TRIES: u32 = 50;
const RMDIR_PAUSE: Duration = Duration::from_millis(20);
const FREEZE_POLLS: u32 = 20;
const FREEZE_PAUSE: Duration = Duration::from_millis(5);

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error("invalid isle id '{id}' for a cgroup (accepted: a non-empty name without '/', not '.' or '..')")]
    InvalidId { id: String },
    #[error(
        "cgroup controller '{controller}' is not mounted (looked in {})",
        mountinfo::MOUNTINFO
    )]
    NotMounted { controller: String },
    #[error("mounting the {controller} cgroup hierarchy at {path}: {source}")]
    Mount {
        controller: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("unexpected content '{value}' in {path}")]
    Parse { path: PathBuf, value: String },
    #[error("writing '{value}' to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("creating cgroup {path}: {source}")]
    Mkdir { path: PathBuf, source: io::Error },
    #[error("cgroup {path} already exists (another isle with id '{id}'?)")]
    Exists { path: PathBuf, id: String },
    #[error("removing cgroup {path}: {source}")]
    Rmdir { path: PathBuf, source: io::Error },
    #[error("killing task {pid} of {path}: {source}")]
    Kill {
        pid: i32,
        path: PathBuf,
        source: io::Error,
    },
    #[error("tasks {pids:?} still in {path} after SIGKILL for {secs} s")]
    TasksRemain {
        path: PathBuf,
        pids: Vec<i32>,
        secs: u64,
    },
    #[error("isle '{id}' has no '{controller}' cgroup")]
    NoController { controller: String, id: String },
}

pub type Result<T, E = CgroupError> = std::result::Result<T, E>;

/// One v1 directory and the controllers of ours it serves.
#[derive(Debug, Clone)]
struct Dir {
    controllers: Vec<&'static str>,
    path: PathBuf,
}

/// The cgroup directories of one isle.
#[derive(Clone)]
pub struct Cgroups {
    id: String,
    v1: Vec<Dir>,
    unified: Option<PathBuf>,
    fs: Arc<dyn CgroupFs>,
}

impl fmt::Debug for Cgroups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cgroups")
            .field("id", &self.id)
            .field("paths", &self.paths())
            .finish()
    }
}

fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id == "." || id == ".." || id.contains('/') || id.contains('\0') {
        return Err(CgroupError::InvalidId { id: id.to_string() });
    }
    Ok(())
}

fn read_mounts(fs: &dyn CgroupFs) -> Result<Mounts> {
    let path = Path::new(mountinfo::MOUNTINFO);
    let text = fs.read(path).map_err(|source| CgroupError::Read {
        path: path.into(),
        source,
    })?;
    Ok(mountinfo::parse(&text))
}

fn is_errno(e: &io::Error, errno: i32) -> bool {
    e.raw_os_error() == Some(errno)
}

impl Cgroups {
    /// Creates the isle's cgroups and writes `resources` into them. On any
    /// failure everything created so far is removed again.
    pub fn create(id: &str, resources: &LinuxResources) -> Result<Cgroups> {
        Self::create_with(Arc::new(HostFs), id, resources)
    }

    /// [`Cgroups::create`] on a given host (tests pass a recording one).
    pub fn create_with(
        fs: Arc<dyn CgroupFs>,
        id: &str,
        resources: &LinuxResources,
    ) -> Result<Cgroups> {
        check_id(id)?;
        let mut mounts = read_mounts(&*fs)?;
        let missing = |c: &str| CgroupError::NotMounted {
            controller: c.to_string(),
        };
        // Everything else is checked first, so a host we cannot use anyway
        // does not get a net_cls mount.
        if let Some(c) = REQUIRED
            .iter()
            .find(|c| **c != "net_cls" && mounts.v1_with(c).is_none())
        {
            return Err(missing(c));
        }
        if mounts.unified.is_none() {
            return Err(missing("cgroup2"));
        }
        if mounts.v1_with("net_cls").is_none() {
            let path = PathBuf::from(NET_CLS_MOUNT);
            fs.mount_v1("net_cls", &path)
                .map_err(|source| CgroupError::Mount {
                    controller: "net_cls".into(),
                    path,
                    source,
                })?;
            mounts = read_mounts(&*fs)?;
            if mounts.v1_with("net_cls").is_none() {
                return Err(missing("net_cls"));
            }
        }

        let cgroups = Self::laid_out(fs, id, &mounts);
        let mut created = Vec::new();
        let outcome = cgroups
            .make_dirs(&mut created)
            .and_then(|()| cgroups.apply(resources));
        if let Err(e) = outcome {
            // Children before parents; a shared `islander` parent that
            // another isle uses refuses rmdir, which is what we want.
            for path in created.iter().rev() {
                if let Err(err) = cgroups.fs.rmdir(path) {
                    tracing::warn!("undoing cgroup {}: {err}", path.display());
                }
            }
            return Err(e);
        }
        Ok(cgroups)
    }

    /// The cgroups an isle `id` has (or had), for inspection or cleanup.
    /// Nothing is checked: missing directories simply read as empty. An id
    /// that cannot name a cgroup yields a set with no directories.
    pub fn open(id: &str) -> Cgroups {
        Self::open_with(Arc::new(HostFs), id)
    }

    pub fn open_with(fs: Arc<dyn CgroupFs>, id: &str) -> Cgroups {
        let mounts = if check_id(id).is_ok() {
            read_mounts(&*fs).unwrap_or_default()
        } else {
            Mounts::default()
        };
        Self::laid_out(fs, id, &mounts)
    }

    fn laid_out(fs: Arc<dyn CgroupFs>, id: &str, mounts: &Mounts) -> Cgroups {
        let v1 = mounts
            .v1
            .iter()
            .filter_map(|h| {
                let controllers: Vec<&'static str> = REQUIRED
                    .iter()
                    .chain(OPTIONAL.iter())
                    .copied()
                    .filter(|c| h.has(c))
                    .collect();
                let path = h.mount.join(PARENT).join(id);
                (!controllers.is_empty()).then_some(Dir { controllers, path })
            })
            .collect();
        let unified = mounts.unified.as_ref().map(|u| u.join(PARENT).join(id));
        Cgroups {
            id: id.to_string(),
            v1,
            unified,
            fs,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The directory serving `controller` ([`UNIFIED`] for the cgroup2 one).
    pub fn path(&self, controller: &str) -> Option<PathBuf> {
        if controller == UNIFIED {
            return self.unified.clone();
        }
        self.v1
            .iter()
            .find(|d| d.controllers.contains(&controller))
            .map(|d| d.path.clone())
    }

    /// Every directory, v1 ones first, each once.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.v1
            .iter()
            .map(|d| d.path.clone())
            .chain(self.unified.clone())
            .collect()
    }

    fn file(&self, controller: &str, file: &str) -> Result<PathBuf> {
        let dir = self
            .path(controller)
            .ok_or_else(|| CgroupError::NoController {
                controller: controller.into(),
                id: self.id.clone(),
            })?;
        Ok(dir.join(file))
    }

    /// The text of `file` in `controller`'s directory.
    pub fn read(&self, controller: &str, file: &str) -> Result<String> {
        let path = self.file(controller, file)?;
        self.fs
            .read(&path)
            .map_err(|source| CgroupError::Read { path, source })
    }

    fn write(&self, controller: &str, file: &str, value: &str) -> Result<()> {
        let path = self.file(controller, file)?;
        self.fs
            .write(&path, value)
            .map_err(|source| CgroupError::Write {
                path,
                value: value.into(),
                source,
            })
    }

    fn make_dirs(&self, created: &mut Vec<PathBuf>) -> Result<()> {
        for path in self.paths() {
            self.make_dir(&path, created)?;
        }
        Ok(())
    }

    /// Makes `path` and, when missing, its `islander` parent. A parent can
    /// vanish between the two mkdirs when the last other isle is destroyed
    /// at that moment; a few attempts ride that out.
    fn make_dir(&self, path: &Path, created: &mut Vec<PathBuf>) -> Result<()> {
        let parent = path.parent().expect("cgroup paths have a parent");
        let mut attempts = 3;
        loop {
            if !self.fs.exists(parent) {
                match self.fs.mkdir(parent) {
                    Ok(()) => created.push(parent.to_path_buf()),
                    // Another islander made it just now.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(source) => {
                        return Err(CgroupError::Mkdir {
                            path: parent.into(),
                            source,
                        })
                    }
                }
            }
            match self.fs.mkdir(path) {
                Ok(()) => {
                    created.push(path.to_path_buf());
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(CgroupError::Exists {
                        path: path.into(),
                        id: self.id.clone(),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts > 1 => attempts -= 1,
                Err(source) => {
                    return Err(CgroupError::Mkdir {
                        path: path.into(),
                        source,
                    })
                }
            }
        }
    }

    /// Writes the limits. Fields islander does not set (hugepages, rdma,
    /// cpusets, realtime, weights) are not applied.
    fn apply(&self, resources: &LinuxResources) -> Result<()> {
        if let Some(memory) = resources.memory() {
            if let Some(limit) = memory.limit() {
                self.write("memory", "memory.limit_in_bytes", &limit.to_string())?;
            }
            // memsw must not be below the limit, so it comes second. Without
            // swap accounting the file is absent and there is nothing to cap.
            if let Some(swap) = memory.swap() {
                let memsw = self.file("memory", "memory.memsw.limit_in_bytes")?;
                if self.fs.exists(&memsw) {
                    self.write("memory", "memory.memsw.limit_in_bytes", &swap.to_string())?;
                }
            }
        }
        if let Some(cpu) = resources.cpu() {
            if let Some(shares) = cpu.shares() {
                self.write("cpu", "cpu.shares", &shares.to_string())?;
            }
            // The kernel checks quota/period against the parent as each is
            // written, so the period goes first.
            if let Some(period) = cpu.period() {
                self.write("cpu", "cpu.cfs_period_us", &period.to_string())?;
            }
            if let Some(quota) = cpu.quota() {
                self.write("cpu", "cpu.cfs_quota_us", &quota.to_string())?;
            }
        }
        if let Some(bio) = resources.block_io() {
            let lists = [
                (
                    "blkio.throttle.read_bps_device",
                    bio.throttle_read_bps_device(),
                ),
                (
                    "blkio.throttle.write_bps_device",
                    bio.throttle_write_bps_device(),
                ),
                (
                    "blkio.throttle.read_iops_device",
                    bio.throttle_read_iops_device(),
                ),
                (
                    "blkio.throttle.write_iops_device",
                    bio.throttle_write_iops_device(),
                ),
            ];
            for (file, devices) in lists {
                // The kernel takes one device per write.
                for d in devices.iter().flatten() {
                    self.write(
                        "blkio",
                        file,
                        &format!("{}:{} {}", d.major(), d.minor(), d.rate()),
                    )?;
                }
            }
        }
        for rule in resources.devices().iter().flatten() {
            let file = if rule.allow() {
                "devices.allow"
            } else {
                "devices.deny"
            };
            self.write("devices", file, &device_rule(rule))?;
        }
        if let Some(classid) = resources
            .network()
            .as_ref()
            .and_then(|n| n.class_id())
            .filter(|&c| c != 0)
        {
            self.write("net_cls", "net_cls.classid", &classid.to_string())?;
        }
        if let Some(pids) = resources.pids() {
            let max = if pids.limit() > 0 {
                pids.limit().to_string()
            } else {
                "max".into()
            };
            self.write("pids", "pids.max", &max)?;
        }
        Ok(())
    }

    /// Moves process `pid` (all its threads) into every directory.
    pub fn add_task(&self, pid: i32) -> Result<()> {
        let value = pid.to_string();
        for dir in self.paths() {
            let path = dir.join("cgroup.procs");
            self.fs
                .write(&path, &value)
                .map_err(|source| CgroupError::Write {
                    path,
                    value: value.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// The cgroup2 id of the isle: the inode number of its cgroup2 dir.
    pub fn unified_id(&self) -> io::Result<u64> {
        let dir = self.unified.as_ref().ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "no cgroup2 hierarchy is mounted")
        })?;
        self.fs.inode(dir)
    }

    /// How many times the kernel's OOM killer killed a task of the isle
    /// (0 when unknown).
    pub fn oom_kills(&self) -> u64 {
        let Ok(text) = self.read("memory", "memory.oom_control") else {
            return 0;
        };
        text.lines()
            .find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// How many times the memory limit was hit (0 when unknown).
    pub fn memory_failcnt(&self) -> u64 {
        self.read("memory", "memory.failcnt")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    /// CPU time used by the isle's tasks, in nanoseconds.
    pub fn cpu_usage_ns(&self) -> Result<u64> {
        let text = self.read("cpuacct", "cpuacct.usage")?;
        text.trim().parse().map_err(|_| CgroupError::Parse {
            path: self.file("cpuacct", "cpuacct.usage").unwrap_or_default(),
            value: text.trim().into(),
        })
    }

    /// The processes in the isle (its pids cgroup and any sub-cgroups the
    /// isle made), sorted; empty when the cgroup is gone.
    pub fn pids(&self) -> Vec<i32> {
        let Some(dir) = self
            .path("pids")
            .or_else(|| self.paths().into_iter().next())
        else {
            return Vec::new();
        };
        self.tasks_in(&self.tree(&dir)).into_iter().collect()
    }

    /// `root` and every directory below it, parents before children.
    fn tree(&self, root: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            if !self.fs.exists(&dir) {
                continue;
            }
            stack.extend(self.fs.subdirs(&dir).unwrap_or_default());
            out.push(dir);
        }
        out
    }

    fn tasks_in(&self, dirs: &[PathBuf]) -> BTreeSet<i32> {
        dirs.iter()
            .filter_map(|d| self.fs.read(&d.join("cgroup.procs")).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect()
    }

    /// Kills every task left in the isle's cgroups and removes the
    /// directories (sub-cgroups the isle made included, and the `islander`
    /// parents once no isle is left). Safe to repeat; directories already
    /// gone are fine.
    pub fn destroy(&self) -> Result<()> {
        let trees: Vec<Vec<PathBuf>> = self.paths().iter().map(|p| self.tree(p)).collect();
        let all: Vec<PathBuf> = trees.iter().flatten().cloned().collect();
        self.kill_all(&all)?;
        let mut first_error = None;
        // Children before parents within each tree.
        for dir in trees.iter().flat_map(|t| t.iter().rev()) {
            if let Err(e) = self.remove_dir(dir) {
                tracing::warn!("{e}");
                first_error.get_or_insert(e);
            }
        }
        // The shared `islander` dirs go with the last isle; while other
        // isles live there the kernel refuses, which is fine.
        for dir in self.paths() {
            if let Some(parent) = dir.parent() {
                let _ = self.fs.rmdir(parent);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn kill_all(&self, dirs: &[PathBuf]) -> Result<()> {
        let me = std::process::id() as i32;
        let freezer = self
            .path("freezer")
            .map(|d| d.join("freezer.state"))
            .filter(|f| self.fs.exists(f));
        for _ in 0..KILL_ROUNDS {
            let tasks = self.tasks_in(dirs);
            // Never kill ourselves; if only we are left, rmdir will say so.
            let targets: Vec<i32> = tasks.iter().copied().filter(|&p| p != me).collect();
            if targets.is_empty() {
                return Ok(());
            }
            // Frozen tasks cannot fork new ones while we kill; they die as
            // soon as they are thawed.
            if let Some(state) = &freezer {
                self.freeze(state);
            }
            let mut failure = None;
            for &pid in &targets {
                match self.fs.kill(pid) {
                    Ok(()) => {}
                    Err(e) if is_errno(&e, libc::ESRCH) => {}
                    Err(source) => {
                        failure.get_or_insert(CgroupError::Kill {
                            pid,
                            path: dirs[0].clone(),
                            source,
                        });
                    }
                }
            }
            if let Some(state) = &freezer {
                if let Err(e) = self.fs.write(state, "THAWED") {
                    tracing::warn!("thawing {}: {e}", state.display());
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
            self.fs.sleep(KILL_PAUSE);
        }
        let pids: Vec<i32> = self.tasks_in(dirs).into_iter().collect();
        if pids.is_empty() {
            return Ok(());
        }
        let secs = (KILL_PAUSE * KILL_ROUNDS).as_secs();
        Err(CgroupError::TasksRemain {
            path: dirs[0].clone(),
            pids,
            secs,
        })
    }

    /// Best effort: a freezer that does not settle only means tasks may
    /// fork during this round, and the next round kills those.
    fn freeze(&self, state: &Path) {
        if let Err(e) = self.fs.write(state, "FROZEN") {
            tracing::warn!("freezing {}: {e}", state.display());
            return;
        }
        for _ in 0..FREEZE_POLLS {
            if self.fs.read(state).is_ok_and(|s| s.trim() == "FROZEN") {
                return;
            }
            self.fs.sleep(FREEZE_PAUSE);
        }
    }

    fn remove_dir(&self, dir: &Path) -> Result<()> {
        for _ in 0..RMDIR_TRIES {
            match self.fs.rmdir(dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) if is_errno(&e, libc::EBUSY) => self.fs.sleep(RMDIR_PAUSE),
                Err(source) => {
                    return Err(CgroupError::Rmdir {
                        path: dir.into(),
                        source,
                    })
                }
            }
        }
        let source = io::Error::from_raw_os_error(libc::EBUSY);
        Err(CgroupError::Rmdir {
            path: dir.into(),
            source,
        })
    }
}

/// A devices.allow / devices.deny line: `a`, or `TYPE MAJOR:MINOR ACCESS`
/// with `*` for a missing number.
fn device_rule(rule: &LinuxDeviceCgroup) -> String {
    let typ = rule.typ().unwrap_or_default();
    if typ == LinuxDeviceType::A && rule.major().is_none() && rule.minor().is_none() {
        return "a".into();
    }
    let number = |n: Option<i64>| n.map_or_else(|| "*".to_string(), |n| n.to_string());
    let access = rule.access().as_deref().unwrap_or("rwm");
    format!(
        "{} {}:{} {access}",
        typ.as_str(),
        number(rule.major()),
        number(rule.minor())
    )
}

#[cfg(test)]
mod tests;
