//! One reading of the isle's counters: CPU time and memory from its
//! cgroups, block bytes on its disk from both the blkio cgroup and the
//! eBPF observer.
//!
//! Block IO is read from both because each misses bytes the other sees,
//! in opposite situations. The eBPF programs count a bio in the task that
//! queues it; a bio the throttle holds back is queued later by a kernel
//! worker, outside the isle, and goes uncounted, so under an enforced
//! limit eBPF sees less than went through. The blkio cgroup counts each bio
//! by the cgroup it belongs to, wherever it is issued, but knows nothing of
//! page cache the kernel's flusher writes back on the isle's behalf, which
//! eBPF counts when the isle dirties it. A rate is judged on the larger
//! of the two, so neither blind spot can hide a limit that does not hold.

use serde::Serialize;

use crate::cgroups::Cgroups;
use crate::ebpf::Observer;

/// Counters at one moment; `t` in seconds since the run's first sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Sample {
    pub t: f64,
    pub cpu_ns: u64,
    pub memory_bytes: u64,
    pub blkio_read: u64,
    pub blkio_write: u64,
    /// `None` without an observer.
    pub ebpf_read: Option<u64>,
    pub ebpf_write: Option<u64>,
}

impl Sample {
    /// Read bytes as judged: the larger count (see the module's comment).
    pub fn read_bytes(&self) -> u64 {
        self.blkio_read.max(self.ebpf_read.unwrap_or(0))
    }

    pub fn write_bytes(&self) -> u64 {
        self.blkio_write.max(self.ebpf_write.unwrap_or(0))
    }
}

/// Where the counters come from.
pub struct Probe<'a> {
    pub cgroups: &'a Cgroups,
    pub observer: Option<(&'a Observer, u64)>,
    pub device: (u64, u64),
}

impl Probe<'_> {
    pub fn read(&self, t: f64) -> Sample {
        let (blkio_read, blkio_write) = self.blkio();
        let (ebpf_read, ebpf_write) = match self.ebpf() {
            Some((r, w)) => (Some(r), Some(w)),
            None => (None, None),
        };
        Sample {
            t,
            // A counter that cannot be read (the isle is going) reads 0;
            // windows are only taken while the isle runs.
            cpu_ns: self.cgroups.cpu_usage_ns().unwrap_or(0),
            memory_bytes: self.memory_file("memory.usage_in_bytes").unwrap_or(0),
            blkio_read,
            blkio_write,
            ebpf_read,
            ebpf_write,
        }
    }

    pub fn memory_file(&self, file: &str) -> Option<u64> {
        self.cgroups.read("memory", file).ok()?.trim().parse().ok()
    }

    fn blkio(&self) -> (u64, u64) {
        let text = self
            .cgroups
            .read("blkio", "blkio.throttle.io_service_bytes")
            .unwrap_or_default();
        service_bytes(&text, self.device)
    }

    fn ebpf(&self) -> Option<(u64, u64)> {
        let (observer, id) = self.observer?;
        let counters = observer.isle(id).ok()?;
        let on_disk = counters
            .block
            .iter()
            .find(|b| (u64::from(b.major), u64::from(b.minor)) == self.device);
        Some(on_disk.map_or((0, 0), |b| (b.read_bytes, b.write_bytes)))
    }
}

/// Read and write bytes of `device` in a `blkio.throttle.io_service_bytes`
/// text: lines of `MAJOR:MINOR Read|Write|Sync|Async|Discard|Total N`.
pub fn service_bytes(text: &str, device: (u64, u64)) -> (u64, u64) {
    let dev = format!("{}:{}", device.0, device.1);
    let (mut read, mut write) = (0, 0);
    for line in text.lines() {
        let mut f = line.split_whitespace();
        if f.next() != Some(dev.as_str()) {
            continue;
        }
        let (Some(op), Some(n)) = (f.next(), f.next().and_then(|n| n.parse::<u64>().ok())) else {
            continue;
        };
        match op {
            "Read" => read = n,
            "Write" => write = n,
            _ => {}
        }
    }
    (read, write)
}
