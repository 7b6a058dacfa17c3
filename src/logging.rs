//! The daemon's log: `tracing` lines on stderr, text or JSON, filtered by `HOIST_LOG`
//! (`RUST_LOG` syntax; `RUST_LOG` itself is the fallback), and, under systemd's journal,
//! each line prefixed with its syslog priority (`<3>` error … `<7>` debug, sd-daemon(3)),
//! so that `journalctl -p err` finds the errors.
//!
//! Why prefixes rather than the journal's native protocol (`tracing-journald`): the unit
//! already connects stderr to the journal, the prefixes need no socket and no extra
//! crate, work the same for text and JSON lines and under `systemd-cat`, and a line
//! that cannot reach the journal still reaches stderr. Not for: what is logged (each room
//! logs its own events; `api::access_log` the requests).

use std::io::{self, Write};

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// The filter when neither `HOIST_LOG` nor `RUST_LOG` gives one.
const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// Checks a `HOIST_LOG` value (for clap): a filter in `RUST_LOG` syntax.
pub fn parse_filter(spec: &str) -> Result<String, String> {
    EnvFilter::try_new(spec)
        .map(|_| spec.to_owned())
        .map_err(|e| {
            format!(
                "{spec:?} is not a log filter (RUST_LOG syntax, e.g. \"info,hoist=debug\"): {e}"
            )
        })
}

/// Installs the daemon's subscriber: `filter` (`HOIST_LOG`), else `RUST_LOG`, else
/// `info,sqlx=warn`. Priority prefixes when `JOURNAL_STREAM` says stderr is the journal.
pub fn init(format: LogFormat, filter: Option<&str>) {
    let from_env = std::env::var("RUST_LOG").ok();
    let spec = filter
        .or(from_env.as_deref())
        .filter(|s| !s.trim().is_empty());
    let (filter, bad) = match spec.map(EnvFilter::try_new) {
        Some(Ok(f)) => (f, None),
        Some(Err(e)) => (EnvFilter::new(DEFAULT_FILTER), Some(e)),
        None => (EnvFilter::new(DEFAULT_FILTER), None),
    };
    let journal = std::env::var_os("JOURNAL_STREAM").is_some_and(|v| !v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Stderr { journal })
        .with_ansi(!journal && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    if let Some(e) = bad {
        tracing::warn!(error = %e, filter = DEFAULT_FILTER, "RUST_LOG is not a log filter; using the default");
    }
}

/// The syslog priority of a level, as sd-daemon(3) prefixes it.
fn priority(level: &Level) -> &'static [u8] {
    match *level {
        Level::ERROR => b"<3>",
        Level::WARN => b"<4>",
        Level::INFO => b"<6>",
        Level::DEBUG | Level::TRACE => b"<7>",
    }
}

/// Stderr, with a priority prefix on every line of an event when `journal`.
struct Stderr {
    journal: bool,
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            prefix: self.journal.then_some(b"<6>"),
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        Line {
            prefix: self.journal.then(|| priority(meta.level())),
            buf: Vec::new(),
        }
    }
}

/// One event's bytes, written to stderr in one call when dropped (so the prefix goes in
/// front of each of its lines, and lines of concurrent events do not interleave).
struct Line {
    prefix: Option<&'static [u8]>,
    buf: Vec<u8>,
}

impl Write for Line {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let out = match self.prefix {
            None => std::mem::take(&mut self.buf),
            Some(prefix) => prefixed(&self.buf, prefix),
        };
        let _ = io::stderr().lock().write_all(&out);
    }
}

/// `text` with `prefix` at the start of each of its lines (a message that holds a newline
/// keeps its priority on every journal record it becomes).
fn prefixed(text: &[u8], prefix: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + prefix.len() * 2);
    for line in text.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(prefix);
        out.extend_from_slice(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_an_event_gets_the_prefix() {
        assert_eq!(prefixed(b"one\n", b"<3>"), b"<3>one\n");
        assert_eq!(prefixed(b"one\ntwo\n", b"<4>"), b"<4>one\n<4>two\n");
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(priority(&Level::ERROR), b"<3>");
        assert_eq!(priority(&Level::WARN), b"<4>");
        assert_eq!(priority(&Level::INFO), b"<6>");
        assert_eq!(priority(&Level::DEBUG), b"<7>");
    }

    #[test]
    fn filters_are_checked() {
        assert!(parse_filter("info,hoist=debug").is_ok());
        assert!(parse_filter("hoist=nonsense[").is_err());
    }
}
