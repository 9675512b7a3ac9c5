//! islander's own diagnostics, through `tracing`: to the journal when a
//! journald socket exists (a daemon or a service manager runs islander),
//! otherwise to stderr. `-v`/`-vv` or `RUST_LOG` choose the level; the
//! default shows warnings and errors only, so an isle's output stays clean.

use std::path::Path;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

pub fn init(verbosity: u8) {
    let default = match verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let registry = tracing_subscriber::registry().with(filter);
    if Path::new(JOURNAL_SOCKET).exists() {
        if let Ok(journald) = tracing_journald::layer() {
            let _ = registry.with(journald.with_syslog_identifier("islander".into())).try_init();
            return;
        }
    }
    let _ = registry
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false))
        .try_init();
}
