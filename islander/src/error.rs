//! The engine's error: one variant per module, each carrying that module's
//! own error type. The binary adds context with anyhow at its edge only.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Limit(#[from] crate::limits::LimitError),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    #[error(transparent)]
    Process(#[from] crate::process::ProcessError),
    #[error(transparent)]
    Isle(#[from] crate::isle::IsleError),
    #[error(transparent)]
    Ebpf(#[from] crate::ebpf::EbpfError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error(transparent)]
    Logger(#[from] crate::logger::LoggerError),
    #[error(transparent)]
    Attach(#[from] crate::attach::AttachError),
    #[error(transparent)]
    Verify(#[from] crate::verify::VerifyError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
