//! The isle's root file system: an overlay over the image, the kernel file
//! systems an isle expects, a minimal `/dev`, `pivot_root` into it, and the
//! masked and read-only kernel paths.
//!
//! Everything here except [`overlay::Layers`] runs inside the isle's init,
//! after it has entered its own mount namespace: every mount it makes lives
//! and dies with that namespace, so the host never sees one and nothing can
//! be left mounted when the isle ends, however it ends.

pub mod devices;
pub mod hardening;
pub mod idmap;
pub mod mounts;
pub mod overlay;

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum RootfsError {
    #[error("mounting {what} on {target}: {source}")]
    Mount { what: String, target: PathBuf, source: nix::Error },
    #[error("{op} {path}: {source}")]
    Fs { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{op}: {source}")]
    Sys { op: &'static str, source: nix::Error },
    #[error("unsafe mount destination '{0}': it must be an absolute path without '..'")]
    BadDestination(PathBuf),
}

pub type Result<T, E = RootfsError> = std::result::Result<T, E>;

pub(crate) fn fs_err(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> RootfsError {
    let path = path.into();
    move |source| RootfsError::Fs { op, path, source }
}
