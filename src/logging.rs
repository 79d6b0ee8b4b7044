//! Log set-up: env_logger to stderr, `RUST_LOG` (default `info`). Under systemd
//! (stderr is the journal stream named by `JOURNAL_STREAM`) each line starts
//! with its syslog priority `<N>` and carries no timestamp, so journald keeps
//! levels and times; elsewhere lines are timestamped. It only formats: what is
//! logged, and that no secret is, is each caller's business.
//!
//! With `[log] format = "json"` or `CLAUDE_FAILOVER_LOG_FORMAT=json` (which
//! wins) each line is one JSON object instead (docs/config.md#log): `time`,
//! `level`, `target`, `message`, and for an event's line the event itself
//! under `event` (events.rs hands it over as the record's `event` value).
//! The logger starts before the config is read, so the format is a switch
//! the config may still turn ([`use_config_format`]).

use log::Level;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// The environment variable that picks the format, over `[log] format`.
pub const FORMAT_ENV: &str = "CLAUDE_FAILOVER_LOG_FORMAT";
/// The record key under which an event's line carries the event, as JSON.
pub const EVENT_KEY: &str = "event";

static JSON: AtomicBool = AtomicBool::new(false);

/// The format the environment asks for, if it names one.
fn env_format() -> Option<bool> {
    match std::env::var(FORMAT_ENV).ok()?.trim() {
        "json" => Some(true),
        "text" => Some(false),
        other => {
            eprintln!("claude-failover: {FORMAT_ENV}={other:?} is neither \"text\" nor \"json\"; ignored");
            None
        }
    }
}

/// Applies `[log] format` (`text` or `json`) unless the environment chose.
pub fn use_config_format(format: &str) {
    if env_format().is_none() {
        JSON.store(format == "json", Ordering::Relaxed);
    }
}

/// Installs the logger; a second call (tests) is a no-op.
pub fn init() {
    if let Some(json) = env_format() {
        JSON.store(json, Ordering::Relaxed);
    }
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
    builder.format(move |buf, record| {
        if JSON.load(Ordering::Relaxed) {
            let line = json_line(record, &crate::time::rfc3339_millis(std::time::SystemTime::now()));
            if journal {
                write!(buf, "<{}>", syslog_priority(record.level()))?;
            }
            writeln!(buf, "{line}")
        } else if journal {
            writeln!(buf, "<{}>{}: {}", syslog_priority(record.level()), record.target(), record.args())
        } else {
            writeln!(buf, "{} {:<5} {}: {}", buf.timestamp_millis(), record.level(), record.target(), record.args())
        }
    });
    let _ = builder.try_init();
}

/// One record as a JSON object on one line (serde_json escapes newlines).
pub fn json_line(record: &log::Record<'_>, time: &str) -> String {
    let mut line = serde_json::json!({
        "time": time,
        "level": record.level().as_str(),
        "target": record.target(),
        "message": record.args().to_string(),
    });
    let event = record.key_values().get(log::kv::Key::from_str(EVENT_KEY));
    if let Some(event) = event.as_ref().and_then(|v| v.to_borrowed_str()) {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(event) {
            line[EVENT_KEY] = value;
        }
    }
    line.to_string()
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
    fn a_json_line_has_the_fields_and_the_event() {
        let event = r#"{"seq":3,"kind":"task_done","subject":"p"}"#;
        let kvs = [("event", event)];
        let record = log::Record::builder()
            .level(Level::Warn)
            .target("claude_failover::events")
            .args(format_args!("task_done p: said \"hi\"\nover two lines"))
            .key_values(&kvs)
            .build();
        let line = json_line(&record, "2026-11-25T16:00:00.000Z");
        assert!(!line.contains('\n'), "one line: {line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["target"], "claude_failover::events");
        assert_eq!(v["time"], "2026-11-25T16:00:00.000Z");
        assert_eq!(v["message"], "task_done p: said \"hi\"\nover two lines");
        assert_eq!(v["event"]["seq"], 3);
        let plain = log::Record::builder().level(Level::Info).target("t").args(format_args!("x")).build();
        assert!(serde_json::from_str::<serde_json::Value>(&json_line(&plain, "t")).unwrap().get("event").is_none());
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
