//! Log set-up: env_logger to stderr, `RUST_LOG` (default `info`). Under systemd
//! (stderr is the journal stream named by `JOURNAL_STREAM`) each line starts
//! with its syslog priority `<N>` and carries no timestamp, so journald keeps
//! levels and times; elsewhere lines are timestamped. It only formats: what is
//! logged, and that no secret is, is each caller's business.

use log::Level;
use std::io::Write;

/// Installs the logger; a second call (tests) is a no-op.
pub fn init() {
    let journal = stderr_is_journal();
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    builder.target(env_logger::Target::Stderr);
    // At trace level ureq logs whole request URLs, and Telegram's carries the
    // bot token: never let those modules log below debug.
    // Cap them at the most verbose level RUST_LOG asks for, so that a plain
    // `info` does not turn their debug lines on.
    let asked = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build().filter();
    for target in crate::notifier::URL_LOGGING_TARGETS {
        builder.filter_module(target, asked.min(log::LevelFilter::Debug));
    }
    if journal {
        builder.format(|buf, record| {
            writeln!(buf, "<{}>{}: {}", syslog_priority(record.level()), record.target(), record.args())
        });
    } else {
        builder.format(|buf, record| {
            writeln!(buf, "{} {:<5} {}: {}", buf.timestamp_millis(), record.level(), record.target(), record.args())
        });
    }
    let _ = builder.try_init();
}

/// syslog priority of a log level: err 3, warning 4, info 6, debug 7.
pub fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// True when `JOURNAL_STREAM` names the file stderr is connected to.
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(meta) => journal_stream_matches(&value, meta.dev(), meta.ino()),
        Err(_) => false,
    }
}

/// Whether a `JOURNAL_STREAM` value (`device:inode`, decimal) names the file
/// with this device and inode number.
pub fn journal_stream_matches(value: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = value.trim().split_once(':') else {
        return false;
    };
    d.parse::<u64>().is_ok_and(|d| d == dev) && i.parse::<u64>().is_ok_and(|i| i == ino)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn priorities_follow_syslog() {
        assert_eq!(syslog_priority(Level::Error), 3);
        assert_eq!(syslog_priority(Level::Warn), 4);
        assert_eq!(syslog_priority(Level::Info), 6);
        assert_eq!(syslog_priority(Level::Debug), 7);
        assert_eq!(syslog_priority(Level::Trace), 7);
    }

    #[test]
    fn journal_stream_must_name_our_stderr() {
        let file = tempfile::tempfile().unwrap();
        let meta = file.metadata().unwrap();
        let value = format!("{}:{}", meta.dev(), meta.ino());
        assert!(journal_stream_matches(&value, meta.dev(), meta.ino()));
        assert!(!journal_stream_matches(&value, meta.dev(), meta.ino() + 1));
        assert!(!journal_stream_matches("garbage", meta.dev(), meta.ino()));
        assert!(!journal_stream_matches("1:", 1, 0));
    }
}
