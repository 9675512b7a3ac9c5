//! A recording stand-in for the host: an in-memory tree of cgroup dirs and
//! files that logs every operation, so tests can check what was written and
//! in which order, and make chosen writes fail.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::fs::CgroupFs;
use super::mountinfo::MOUNTINFO;

/// This VM's layout, net_cls missing.
pub const HOST_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Mkdir(PathBuf),
    Rmdir(PathBuf),
    Write(PathBuf, String),
    Mount(String, PathBuf),
    Kill(i32),
}

#[derive(Default)]
struct State {
    ops: Vec<Op>,
    dirs: BTreeSet<PathBuf>,
    files: BTreeMap<PathBuf, String>,
    /// File names every cgroup dir is taken to have besides written ones.
    stock_files: BTreeSet<String>,
    failing_writes: BTreeSet<PathBuf>,
    /// Pids that ignore SIGKILL (a stuck task).
    unkillable: BTreeSet<i32>,
}

pub struct RecordingFs {
    state: Mutex<State>,
}

impl RecordingFs {
    /// A host laid out as `mountinfo` says, every mount point a dir.
    pub fn new(mountinfo: &str) -> Self {
        let mut state = State::default();
        for hierarchy in super::mountinfo::parse(mountinfo).v1 {
            state.dirs.insert(hierarchy.mount);
        }
        if let Some(unified) = super::mountinfo::parse(mountinfo).unified {
            state.dirs.insert(unified);
        }
        state.dirs.insert("/sys/fs/cgroup".into());
        state.files.insert(MOUNTINFO.into(), mountinfo.into());
        state
            .stock_files
            .insert("memory.memsw.limit_in_bytes".into());
        RecordingFs {
            state: Mutex::new(state),
        }
    }

    pub fn ops(&self) -> Vec<Op> {
        self.state.lock().unwrap().ops.clone()
    }

    pub fn writes(&self) -> Vec<(PathBuf, String)> {
        self.ops()
            .into_iter()
            .filter_map(|op| match op {
                Op::Write(path, value) => Some((path, value)),
                _ => None,
            })
            .collect()
    }

    pub fn dirs(&self) -> BTreeSet<PathBuf> {
        self.state.lock().unwrap().dirs.clone()
    }

    pub fn fail_write(&self, path: impl Into<PathBuf>) {
        self.state
            .lock()
            .unwrap()
            .failing_writes
            .insert(path.into());
    }

    pub fn without_stock_file(&self, name: &str) {
        self.state.lock().unwrap().stock_files.remove(name);
    }

    pub fn set_file(&self, path: impl Into<PathBuf>, text: &str) {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(path.into(), text.into());
    }

    pub fn unkillable(&self, pid: i32) {
        self.state.lock().unwrap().unkillable.insert(pid);
    }
}

fn err(kind: io::ErrorKind, what: &str) -> io::Error {
    io::Error::new(kind, what.to_string())
}

impl CgroupFs for RecordingFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        let state = self.state.lock().unwrap();
        state
            .files
            .get(path)
            .cloned()
            .ok_or_else(|| err(io::ErrorKind::NotFound, "no such file"))
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        state.ops.push(Op::Write(path.into(), value.into()));
        if state.failing_writes.contains(path) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        if !path.parent().is_some_and(|p| state.dirs.contains(p)) {
            return Err(err(io::ErrorKind::NotFound, "no such dir"));
        }
        let file = state.files.entry(path.into()).or_default();
        if path.ends_with("cgroup.procs") {
            file.push_str(value);
            file.push('\n');
        } else {
            *file = value.into();
        }
        Ok(())
    }

    fn mkdir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        state.ops.push(Op::Mkdir(path.into()));
        if state.dirs.contains(path) {
            return Err(err(io::ErrorKind::AlreadyExists, "exists"));
        }
        if !path.parent().is_some_and(|p| state.dirs.contains(p)) {
            return Err(err(io::ErrorKind::NotFound, "no parent"));
        }
        state.dirs.insert(path.into());
        Ok(())
    }

    fn rmdir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        state.ops.push(Op::Rmdir(path.into()));
        if !state.dirs.contains(path) {
            return Err(err(io::ErrorKind::NotFound, "no such dir"));
        }
        if state.dirs.iter().any(|d| d.parent() == Some(path)) {
            return Err(io::Error::from_raw_os_error(libc::ENOTEMPTY));
        }
        let procs = path.join("cgroup.procs");
        if state
            .files
            .get(&procs)
            .is_some_and(|p| !p.trim().is_empty())
        {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        state.dirs.remove(path);
        state.files.retain(|f, _| f.parent() != Some(path));
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let state = self.state.lock().unwrap();
        let stock = path.parent().is_some_and(|p| state.dirs.contains(p))
            && path
                .file_name()
                .is_some_and(|n| state.stock_files.contains(n.to_str().unwrap_or("")));
        stock || state.dirs.contains(path) || state.files.contains_key(path)
    }

    fn subdirs(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let state = self.state.lock().unwrap();
        if !state.dirs.contains(path) {
            return Err(err(io::ErrorKind::NotFound, "no such dir"));
        }
        Ok(state
            .dirs
            .iter()
            .filter(|d| d.parent() == Some(path))
            .cloned()
            .collect())
    }

    fn inode(&self, path: &Path) -> io::Result<u64> {
        let state = self.state.lock().unwrap();
        // Position in the sorted tree: stable and distinct per dir.
        let index = state
            .dirs
            .iter()
            .position(|d| d == path)
            .ok_or_else(|| err(io::ErrorKind::NotFound, "no dir"))?;
        Ok(1000 + index as u64)
    }

    fn mount_v1(&self, controller: &str, target: &Path) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        state.ops.push(Op::Mount(controller.into(), target.into()));
        state.dirs.insert(target.into());
        let line = format!(
            "99 31 0:99 / {} rw - cgroup {controller} rw,{controller}\n",
            target.display()
        );
        state
            .files
            .get_mut(Path::new(MOUNTINFO))
            .unwrap()
            .push_str(&line);
        Ok(())
    }

    fn kill(&self, pid: i32) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        state.ops.push(Op::Kill(pid));
        if state.unkillable.contains(&pid) {
            return Ok(());
        }
        let gone = pid.to_string();
        for (path, text) in state.files.iter_mut() {
            if path.ends_with("cgroup.procs") {
                *text = text
                    .lines()
                    .filter(|l| *l != gone)
                    .map(|l| format!("{l}\n"))
                    .collect();
            }
        }
        Ok(())
    }

    fn sleep(&self, _time: Duration) {}
}
