//! Where islander keeps its state.
//!
//! Persistent state (images, isle layers) lives under `/var/lib/islander`,
//! volatile state (running isles) under `/run/islander`. `--root DIR` (or
//! `ISLANDER_ROOT`) moves both under `DIR/lib` and `DIR/run`, so several
//! islanders (tests, for one) run side by side without seeing each other.

use std::path::{Path, PathBuf};

/// The two state trees of one islander installation.
#[derive(Debug, Clone)]
pub struct StateRoot {
    lib: PathBuf,
    run: PathBuf,
}

impl StateRoot {
    pub const DEFAULT_LIB: &'static str = "/var/lib/islander";
    pub const DEFAULT_RUN: &'static str = "/run/islander";

    /// The system-wide default locations.
    pub fn system() -> Self {
        StateRoot { lib: Self::DEFAULT_LIB.into(), run: Self::DEFAULT_RUN.into() }
    }

    /// Explicit directories, as a detached isle's supervisor receives them.
    pub fn from_dirs(lib: PathBuf, run: PathBuf) -> Self {
        StateRoot { lib, run }
    }

    /// Everything under one directory: `DIR/lib` and `DIR/run`.
    pub fn under(dir: &Path) -> Self {
        StateRoot { lib: dir.join("lib"), run: dir.join("run") }
    }

    /// Persistent state: images and per-isle layers.
    pub fn lib(&self) -> &Path {
        &self.lib
    }

    /// Volatile state: one directory per live isle.
    pub fn run(&self) -> &Path {
        &self.run
    }

    /// Image store: `<lib>/images/<name>/rootfs`.
    pub fn images(&self) -> PathBuf {
        self.lib.join("images")
    }

    /// Per-isle copy-on-write layers: `<lib>/isles/<id>/{upper,work,merged}`.
    pub fn isle_layers(&self, id: &str) -> PathBuf {
        self.lib.join("isles").join(id)
    }

    /// Per-isle runtime state: `<run>/isles/<id>/state.json`.
    pub fn isle_run(&self, id: &str) -> PathBuf {
        self.run.join("isles").join(id)
    }

    pub fn isles_run_dir(&self) -> PathBuf {
        self.run.join("isles")
    }

    pub fn isles_lib_dir(&self) -> PathBuf {
        self.lib.join("isles")
    }
}
