//! `islander logs [-f] [--tail N|all] [--since T] [--until T] [-t] ISLE`

use std::io::{self, BufWriter, Write};
use std::os::fd::AsRawFd;

use clap::Args;
use islander::isle::logs::{self, LogSink, LogsOptions};
use islander::logger::reader::{parse_time, LogRecord};
use islander::logger::Stream;
use islander::paths::StateRoot;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new records until the isle ends (or ctrl-c).
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N records, or `all`.
    #[arg(long, value_name = "N", value_parser = parse_tail, allow_hyphen_values = true)]
    pub tail: Option<Tail>,
    /// Only records from T on: an RFC 3339 time, Unix seconds, or a duration before now (10m, 1h30m).
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// Only records up to T (as --since); with -f, stop following at T.
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub until: Option<String>,
    /// Prefix each record with its time (RFC 3339, nanoseconds).
    #[arg(short, long)]
    pub timestamps: bool,
    /// The isle: a name, an id or an unambiguous id prefix.
    #[arg(value_name = "ISLE")]
    pub isle: String,
}

#[derive(Debug, Clone, Copy)]
pub enum Tail {
    All,
    Last(usize),
}

fn parse_tail(s: &str) -> Result<Tail, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(Tail::All);
    }
    s.parse::<usize>()
        .map(Tail::Last)
        .map_err(|_| format!("use a number of records (0 or more) or 'all', not '{s}'"))
}

pub fn run(root: &StateRoot, args: LogsArgs) -> anyhow::Result<i32> {
    let time = |option, v: &Option<String>| {
        v.as_deref()
            .map(|v| parse_time(option, v))
            .transpose()
            .map_err(islander::Error::from)
    };
    let opts = LogsOptions {
        follow: args.follow,
        tail: match args.tail {
            Some(Tail::Last(n)) => Some(n),
            Some(Tail::All) | None => None,
        },
        since: time("--since", &args.since)?,
        until: time("--until", &args.until)?,
    };
    let mut sink = Terminal::new(args.timestamps);
    logs::logs(root, &args.isle, &opts, &mut sink)?;
    match sink.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(0),
    }
}

/// Records to islander's stdout and stderr, by stream. When both are the
/// same file (a terminal, `2>&1`), switching streams flushes, so that the
/// records keep their order there.
struct Terminal {
    out: BufWriter<io::Stdout>,
    err: BufWriter<io::Stderr>,
    timestamps: bool,
    shared: bool,
    last: Option<Stream>,
}

impl Terminal {
    fn new(timestamps: bool) -> Terminal {
        let out = io::stdout();
        let err = io::stderr();
        let shared = same_file(out.as_raw_fd(), err.as_raw_fd());
        Terminal {
            out: BufWriter::with_capacity(1 << 16, out),
            err: BufWriter::with_capacity(1 << 16, err),
            timestamps,
            shared,
            last: None,
        }
    }
}

fn same_file(a: i32, b: i32) -> bool {
    let stat = |fd| nix::sys::stat::fstat(fd).ok().map(|s| (s.st_dev, s.st_ino));
    matches!((stat(a), stat(b)), (Some(x), Some(y)) if x == y)
}

impl LogSink for Terminal {
    fn record(&mut self, rec: &LogRecord) -> io::Result<()> {
        if self.shared && self.last.is_some_and(|s| s != rec.stream) {
            self.flush()?;
        }
        self.last = Some(rec.stream);
        let w: &mut dyn Write = match rec.stream {
            Stream::Stdout => &mut self.out,
            Stream::Stderr => &mut self.err,
        };
        if self.timestamps {
            w.write_all(rec.time.as_bytes())?;
            w.write_all(b" ")?;
        }
        w.write_all(rec.log.as_bytes())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.err.flush()
    }
}
