//! Parses the JSON Claude Code writes on stdin to hook commands and to the
//! statusline command: which session, which event, and the free quota signals
//! (StopFailure's error, the statusline's `rate_limits`). Unknown events and
//! fields pass through; nothing here talks to the daemon.

use serde_json::Value;
use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

#[derive(Clone, Debug, PartialEq)]
pub struct HookInput {
    /// `hook_event_name`; None for the statusline, which sends none.
    pub event: Option<String>,
    pub session_id: Option<String>,
    pub transcript_path: Option<PathBuf>,
    pub cwd: Option<PathBuf>,
    /// StopFailure's `error`: `rate_limit`, `authentication_failed`, ...
    pub error: Option<String>,
    /// SessionStart's `source`: startup, resume, ...
    pub source: Option<String>,
    /// Notification's `notification_type`: idle_prompt, permission_prompt, ...
    pub notification_type: Option<String>,
    /// The statusline's `rate_limits` (Pro/Max since 2.1.80), empty otherwise.
    pub rate_limits: Vec<RateLimit>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RateLimit {
    /// `five_hour`, `seven_day`, ...
    pub window: String,
    pub used_percentage: f64,
    pub resets_at: Option<SystemTime>,
}

impl HookInput {
    /// True for the statusline's document (it carries no event name).
    pub fn is_statusline(&self) -> bool {
        self.event.is_none()
    }

    pub fn rate_limit(&self, window: &str) -> Option<&RateLimit> {
        self.rate_limits.iter().find(|r| r.window == window)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum HookError {
    NotJson { line: usize, column: usize },
    NotAnObject,
}

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookError::NotJson { line, column } => {
                write!(f, "hook input from Claude Code is not JSON (line {line}, column {column})")
            }
            HookError::NotAnObject => write!(f, "hook input from Claude Code is not a JSON object"),
        }
    }
}

impl std::error::Error for HookError {}

pub fn parse(text: &str) -> Result<HookInput, HookError> {
    let v: Value = serde_json::from_str(text).map_err(|e| HookError::NotJson { line: e.line(), column: e.column() })?;
    if !v.is_object() {
        return Err(HookError::NotAnObject);
    }
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let mut rate_limits = Vec::new();
    if let Some(limits) = v.get("rate_limits").and_then(Value::as_object) {
        for (window, w) in limits {
            // A percentage outside 0–100 is not a reading: skip it rather
            // than let it drive a swap (or hide a full window).
            let Some(used) = w.get("used_percentage").and_then(Value::as_f64).filter(|u| (0.0..=100.0).contains(u))
            else {
                continue;
            };
            rate_limits.push(RateLimit {
                window: window.clone(),
                used_percentage: used,
                resets_at: match w.get("resets_at") {
                    Some(Value::Number(n)) => n.as_f64().and_then(super::unix_time),
                    Some(Value::String(t)) => super::parse_time(t),
                    _ => None,
                },
            });
        }
    }
    // StopFailure has carried the reason as `error` and, in some builds, as an
    // object `{ "type": ... }`.
    let error = match v.get("error") {
        Some(Value::String(e)) => Some(e.clone()),
        Some(Value::Object(o)) => o.get("type").and_then(Value::as_str).map(str::to_string),
        _ => None,
    };
    Ok(HookInput {
        event: s("hook_event_name"),
        session_id: s("session_id"),
        transcript_path: s("transcript_path").map(PathBuf::from),
        cwd: s("cwd").or_else(|| v.pointer("/workspace/current_dir")?.as_str().map(str::to_string)).map(PathBuf::from),
        error,
        source: s("source"),
        notification_type: s("notification_type"),
        rate_limits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn stop_failure() {
        let h = parse(r#"{"hook_event_name":"StopFailure","session_id":"s1","transcript_path":"/p/s1.jsonl","cwd":"/w","error":"rate_limit"}"#).unwrap();
        assert_eq!(h.event.as_deref(), Some("StopFailure"));
        assert_eq!(h.error.as_deref(), Some("rate_limit"));
        assert_eq!(h.transcript_path, Some(PathBuf::from("/p/s1.jsonl")));
        assert!(!h.is_statusline());
    }

    #[test]
    fn statusline_rate_limits() {
        let h = parse(r#"{"session_id":"s","cwd":"/w","model":{"id":"x"},"rate_limits":{"five_hour":{"used_percentage":23.5,"resets_at":1738425600},"seven_day":{"used_percentage":41}, "weird":{"used_percentage":"x"},"negative":{"used_percentage":-5},"over":{"used_percentage":250}}}"#).unwrap();
        assert!(h.is_statusline());
        let f = h.rate_limit("five_hour").unwrap();
        assert_eq!(f.used_percentage, 23.5);
        assert_eq!(f.resets_at, Some(UNIX_EPOCH + Duration::from_secs(1_738_425_600)));
        assert_eq!(h.rate_limit("seven_day").unwrap().resets_at, None);
        assert!(h.rate_limit("weird").is_none());
        assert!(h.rate_limit("negative").is_none() && h.rate_limit("over").is_none());
    }

    #[test]
    fn bad_input() {
        assert!(matches!(parse(""), Err(HookError::NotJson { .. })));
        assert_eq!(parse("null"), Err(HookError::NotAnObject));
        assert_eq!(parse("{}").unwrap().event, None);
    }
}
