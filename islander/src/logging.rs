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

/// For `islander-logger`, which lives as long as its isle and must stay
/// small: warnings and errors, one line each, to stderr (the isle's
/// `supervisor.log`), without the filter and formatting machinery of
/// [`init`], whose code would stay resident beside every isle.
pub fn init_minimal(program: &'static str) {
    let _ = tracing::subscriber::set_global_default(Minimal { program });
}

struct Minimal {
    program: &'static str,
}

impl tracing::Subscriber for Minimal {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        *meta.level() <= tracing::Level::WARN
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = format!("{} {} {}:", humantime::format_rfc3339_seconds(std::time::SystemTime::now()), self.program, event.metadata().level());
        event.record(&mut Fields(&mut line));
        line.push('\n');
        // Not eprintln!, which panics when stderr cannot be written: the
        // supervisor log may sit on the very disk that is full.
        use std::io::Write;
        let _ = std::io::stderr().write_all(line.as_bytes());
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// `message` as it is, other fields as ` key=value`.
struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}
