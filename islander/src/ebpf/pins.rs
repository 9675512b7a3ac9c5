//! The programs' home on bpffs, shared by every islander on the host.
//!
//! `/sys/fs/bpf/islander/<hash of the embedded object>/` holds, once some
//! islander has installed them:
//!
//! - the maps, pinned under their own names (`ISLES`, `BLOCK`, `AYA_LOGS`);
//! - each program as `prog_<name>` and each tracepoint's link as
//!   `link_<name>`: a pinned link stays attached after its loader exits;
//! - `net_<cgroup id>_<program>`: the cgroup_skb links of one isle;
//! - `ready`, a directory made last, so a half-made install (a crash while
//!   loading) is recognised and redone.
//!
//! Changes are made under an exclusive flock(2) on `/sys/fs/bpf/islander`,
//! so two islanders never both install, nor attach one isle twice.

use std::{
    fs::{self, File},
    io,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use aya::{
    programs::{links::FdLink, BtfTracePoint, CgroupSkb},
    Btf, EbpfLoader,
};
use islander_common::{BLOCK_MAP, ISLES_MAP, LAYOUT_GLOBAL, LOGS_MAP, PROGRAMS};

use super::{btf, EbpfError, Result, OBJECT};

const BASE: &str = "/sys/fs/bpf/islander";

/// The pin directory of the embedded object.
pub(super) struct PinDir {
    path: PathBuf,
}

impl PinDir {
    pub(super) fn for_object() -> Self {
        Self {
            path: Path::new(BASE).join(object_hash(OBJECT)),
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn map(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub(super) fn program(&self, name: &str) -> PathBuf {
        self.path.join(format!("prog_{name}"))
    }

    fn link(&self, name: &str) -> PathBuf {
        self.path.join(format!("link_{name}"))
    }

    pub(super) fn net_link(&self, cgroup: u64, program: &str) -> PathBuf {
        self.path.join(format!("net_{cgroup}_{program}"))
    }

    fn ready(&self) -> PathBuf {
        self.path.join("ready")
    }

    pub(super) fn is_ready(&self) -> bool {
        self.ready().is_dir()
    }

    /// Loads the object, pins its maps and programs and attaches the
    /// tracepoint programs through pinned links. Other builds' directories
    /// are removed first (which detaches their programs): left alone, every
    /// rebuild would add its own set of hooks to every syscall on the host.
    pub(super) fn install(&self, _lock: &HostLock) -> Result<()> {
        let pin_error = |action, path: &Path| {
            let path = path.to_path_buf();
            move |error| EbpfError::Pin {
                action,
                path,
                error,
            }
        };
        for entry in fs::read_dir(BASE).map_err(pin_error("listing", Path::new(BASE)))? {
            let entry = entry.map_err(pin_error("listing", Path::new(BASE)))?;
            let path = entry.path();
            if path != self.path && path.is_dir() {
                tracing::info!(
                    "detaching the eBPF programs of another islander build ({})",
                    path.display()
                );
                fs::remove_dir_all(&path).map_err(pin_error("removing", &path))?;
            }
        }
        if self.path.exists() {
            tracing::info!(
                "redoing a half-made eBPF install at {}",
                self.path.display()
            );
            fs::remove_dir_all(&self.path).map_err(pin_error("removing", &self.path))?;
        }
        fs::create_dir(&self.path).map_err(pin_error("creating", &self.path))?;
        let installed = self.load_and_pin().and_then(|()| {
            fs::create_dir(self.ready()).map_err(pin_error("creating", &self.ready()))
        });
        if installed.is_err() {
            // Unpinning detaches whatever got attached.
            if let Err(err) = fs::remove_dir_all(&self.path) {
                tracing::warn!("removing {}: {err}", self.path.display());
            }
        }
        installed
    }

    fn load_and_pin(&self) -> Result<()> {
        let btf = Btf::from_sys_fs().map_err(EbpfError::Btf)?;
        let layout = btf::kernel_layout()?;
        let mut loader = EbpfLoader::new();
        loader
            .btf(Some(&btf))
            .override_global(LAYOUT_GLOBAL, &layout, true);
        for map in [ISLES_MAP, BLOCK_MAP, LOGS_MAP] {
            loader.map_pin_path(map, self.map(map));
        }
        // The maps stay open in `ebpf` while the programs load: their
        // instructions refer to the maps by these fds.
        let mut ebpf = loader.load(OBJECT).map_err(EbpfError::Object)?;

        for spec in &PROGRAMS {
            let name = spec.name;
            let failed = |action| {
                move |error| EbpfError::Program {
                    action,
                    program: name,
                    error,
                }
            };
            let program = ebpf.program_mut(name).ok_or(EbpfError::NoProgram(name))?;
            let pinned = |error: aya::pin::PinError| EbpfError::Pin {
                action: "pinning",
                path: self.program(name),
                error: io::Error::other(error),
            };
            match spec.tracepoint {
                Some(tracepoint) => {
                    let program: &mut BtfTracePoint =
                        program.try_into().map_err(failed("loading"))?;
                    program.load(tracepoint, &btf).map_err(failed("loading"))?;
                    program.pin(self.program(name)).map_err(pinned)?;
                    let link = program.attach().map_err(failed("attaching"))?;
                    let link = program.take_link(link).map_err(failed("attaching"))?;
                    FdLink::from(link)
                        .pin(self.link(name))
                        .map_err(|error| EbpfError::Pin {
                            action: "pinning",
                            path: self.link(name),
                            error: io::Error::other(error),
                        })?;
                }
                None => {
                    let program: &mut CgroupSkb = program.try_into().map_err(failed("loading"))?;
                    program.load().map_err(failed("loading"))?;
                    program.pin(self.program(name)).map_err(pinned)?;
                }
            }
        }
        Ok(())
    }
}

/// An exclusive flock(2) on the base directory, held until dropped.
pub(super) struct HostLock {
    _dir: File,
}

impl HostLock {
    pub(super) fn acquire() -> Result<Self> {
        let failed = |action| {
            move |error| EbpfError::Pin {
                action,
                path: BASE.into(),
                error,
            }
        };
        fs::create_dir_all(BASE).map_err(failed("creating"))?;
        let dir = File::open(BASE).map_err(failed("opening"))?;
        loop {
            // SAFETY: flock on an fd we own; it touches no memory.
            if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Self { _dir: dir });
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(failed("locking")(error));
            }
        }
    }
}

/// FNV-1a, 64 bits: stable across Rust releases (unlike `DefaultHasher`),
/// so every build with the same object shares one directory.
fn object_hash(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_stably() {
        // The FNV-1a test vectors.
        assert_eq!(object_hash(b""), "cbf29ce484222325");
        assert_eq!(object_hash(b"a"), "af63dc4c8601ec8c");
        assert_ne!(object_hash(b"ab"), object_hash(b"ba"));
    }
}
