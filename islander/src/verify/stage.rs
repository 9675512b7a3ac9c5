//! The extra lower layer a verify isle gets: the workload helper and the
//! file the direct reader reads, under [`plan::IN_ISLE_DIR`].
//!
//! It is made in the isle's own layer directory (`<lib>/isles/<id>/verify`),
//! on the disk the isle writes to (so reading the file is IO on the isle's
//! disk), and whatever removes the isle removes it with the layer, `rm` or
//! the clean-up after a killed islander alike.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::plan::{IN_ISLE_DIR, READ_FILE_BYTES, READ_FILE_NAME, WORKLOAD_NAME};
use super::{io_err, Result};

/// islander-workload, compiled statically by build.rs.
static WORKLOAD: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/islander-workload"));

pub struct Stage {
    /// The layer: what the isle sees at `/`, holding only IN_ISLE_DIR.
    pub lower: PathBuf,
    layer_dir: PathBuf,
}

impl Stage {
    /// Makes the layer under `layer_dir`, the isle's layer directory
    /// (which must not exist yet). `read_file` adds the reader's file.
    pub fn create(layer_dir: &Path, read_file: bool) -> Result<Stage> {
        fs::create_dir_all(layer_dir.parent().unwrap_or(layer_dir)).map_err(io_err("creating", layer_dir))?;
        fs::create_dir(layer_dir).map_err(io_err("creating", layer_dir))?;
        let stage = Stage {
            lower: layer_dir.join("verify"),
            layer_dir: layer_dir.to_path_buf(),
        };
        let dir = stage.lower.join(IN_ISLE_DIR.trim_start_matches('/'));
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        let exe = dir.join(WORKLOAD_NAME);
        fs::write(&exe, WORKLOAD).map_err(io_err("writing", &exe))?;
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).map_err(io_err("setting the mode of", &exe))?;
        if read_file {
            let path = dir.join(READ_FILE_NAME);
            write_read_file(&path, READ_FILE_BYTES)?;
        }
        Ok(stage)
    }

    /// Removes what is left: the layer, and the isle's layer directory if
    /// nothing else is in it (the isle never started).
    pub fn remove(&self) {
        match fs::remove_dir_all(&self.lower) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("removing {}: {e}", self.lower.display()),
        }
        let _ = fs::remove_dir(&self.layer_dir);
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        self.remove();
    }
}

/// `bytes` of a non-zero pattern, on the disk (synced), for O_DIRECT reads.
fn write_read_file(path: &Path, bytes: u64) -> Result<()> {
    const CHUNK: usize = 1 << 20;
    let chunk: Vec<u8> = (0..CHUNK)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect();
    let mut f = fs::File::create(path).map_err(io_err("creating", path))?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        f.write_all(&chunk[..n]).map_err(io_err("writing", path))?;
        left -= n as u64;
    }
    f.sync_all().map_err(io_err("syncing", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).map_err(io_err("setting the mode of", path))?;
    Ok(())
}
