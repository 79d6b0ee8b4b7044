//! Reads a session transcript (`projects/<key>/<session>.jsonl`) incrementally and
//! classifies its records: user turns, assistant text, tool use, and the API errors
//! that matter to the daemon. A quota hard limit is `"error":"rate_limit"` AND
//! `quotaLimits.status == "rejected"`; the words "rate limit" alone prove nothing.
//! Read-only; a partial last line (Claude Code mid-write) waits for the next read.

use super::pane::LimitKind;
use serde_json::Value;
use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// `timestamp` of the record, when it has one.
    pub at: Option<SystemTime>,
    pub session_id: Option<String>,
    pub kind: RecordKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RecordKind {
    /// A prompt a person (or the daemon) typed; `text` is its text blocks joined.
    UserTurn {
        text: String,
    },
    AssistantText {
        text: String,
    },
    ToolUse {
        name: String,
    },
    /// The model ended its turn (`message.stop_reason` other than
    /// `tool_use`): the turn finished normally. Written after the turn's
    /// text or tool records of the same line.
    TurnEnded,
    /// A subscription quota is exhausted: swap-worthy.
    QuotaLimit {
        resets_at: Option<SystemTime>,
        /// `five_hour`, `seven_day`, ...
        rate_limit_type: Option<String>,
        text: String,
        /// True when `quotaLimits.status` said `rejected` (2.1.332). 2.1.197 writes
        /// no `quotaLimits`: there the limit is known from Claude Code's own
        /// message text ("You've hit your session limit · resets ..."), and the
        /// window from its wording, with no reset time.
        structured: bool,
    },
    /// The login is dead (401): a person must log in again.
    AuthFailure {
        status: Option<u16>,
        text: String,
    },
    /// Any other API error (a plain 429, 529, 500...): the turn failed, but this
    /// is no reason to swap accounts.
    ApiError {
        error: String,
        status: Option<u16>,
        text: String,
    },
    /// The tokens an API answer used (`message.usage`), with the model that
    /// answered (`message.model`). Every line of one answer (one per content
    /// block) carries the same id and the whole usage: count it once per id.
    Usage {
        message_id: String,
        model: String,
        tokens: TokenUsage,
    },
}

/// The four token counters of `message.usage`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input: u64,
    pub output: u64,
    /// `cache_creation_input_tokens`.
    pub cache_write: u64,
    /// `cache_read_input_tokens`.
    pub cache_read: u64,
}

/// `message.usage` of a real answer (not Claude Code's `<synthetic>` error
/// records), with its id and model.
fn usage(message: Option<&Value>) -> Option<RecordKind> {
    let m = message?;
    let model = m.get("model").and_then(Value::as_str).filter(|m| *m != "<synthetic>")?;
    let message_id = m.get("id").and_then(Value::as_str)?;
    let u = m.get("usage")?;
    let n = |key: &str| u.get(key).and_then(Value::as_u64).unwrap_or(0);
    Some(RecordKind::Usage {
        message_id: message_id.to_string(),
        model: model.to_string(),
        tokens: TokenUsage {
            input: n("input_tokens"),
            output: n("output_tokens"),
            cache_write: n("cache_creation_input_tokens"),
            cache_read: n("cache_read_input_tokens"),
        },
    })
}

/// Classifies one transcript line. None for records the daemon does not care about
/// (attachments, snapshots, tool results, meta records) and for lines that are not
/// JSON. An assistant record holding both text and tool use yields both.
pub fn classify_line(line: &str) -> Vec<Record> {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return Vec::new();
    };
    let at = v.get("timestamp").and_then(Value::as_str).and_then(super::parse_time);
    let session_id = v.get("sessionId").and_then(Value::as_str).map(str::to_string);
    let record = |kind| Record { at, session_id: session_id.clone(), kind };
    let message = v.get("message");
    let content = message.and_then(|m| m.get("content"));
    match v.get("type").and_then(Value::as_str) {
        Some("user") => {
            let meta = v.get("isMeta").and_then(Value::as_bool) == Some(true)
                || v.get("isCompactSummary").and_then(Value::as_bool) == Some(true);
            match content.and_then(user_text) {
                Some(text) if !meta => vec![record(RecordKind::UserTurn { text })],
                _ => Vec::new(),
            }
        }
        Some("assistant") => {
            let text = content.map(texts).unwrap_or_default().join("\n");
            if let Some(kind) = api_error(&v, &text) {
                return vec![record(kind)];
            }
            let mut out: Vec<Record> = usage(message).map(record).into_iter().collect();
            for block in content.and_then(Value::as_array).into_iter().flatten() {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(t) = block.get("text").and_then(Value::as_str) {
                            out.push(record(RecordKind::AssistantText { text: t.to_string() }));
                        }
                    }
                    Some("tool_use") => out.push(record(RecordKind::ToolUse {
                        name: block.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
                    })),
                    _ => {}
                }
            }
            let stop_reason = message.and_then(|m| m.get("stop_reason")).and_then(Value::as_str);
            let synthetic = message.and_then(|m| m.get("model")).and_then(Value::as_str) == Some("<synthetic>");
            if !synthetic && stop_reason.is_some_and(|r| r != "tool_use") {
                out.push(record(RecordKind::TurnEnded));
            }
            out
        }
        _ => Vec::new(),
    }
}

fn api_error(v: &Value, text: &str) -> Option<RecordKind> {
    let error = v.get("error").and_then(|e| match e {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("type").and_then(Value::as_str).map(str::to_string),
        _ => None,
    });
    let is_api_error = v.get("isApiErrorMessage").and_then(Value::as_bool) == Some(true);
    if error.is_none() && !is_api_error {
        return None;
    }
    let status = v.get("apiErrorStatus").and_then(Value::as_u64).and_then(|s| u16::try_from(s).ok());
    let text = text.to_string();
    let quota = v.get("quotaLimits");
    let rejected = quota.and_then(|q| q.get("status")).and_then(Value::as_str) == Some("rejected");
    let error = error.unwrap_or_else(|| "unknown".to_string());
    if error == "rate_limit" && rejected {
        let quota = quota.unwrap_or(&Value::Null);
        return Some(RecordKind::QuotaLimit {
            resets_at: quota.get("resetsAt").and_then(Value::as_f64).and_then(super::unix_time),
            rate_limit_type: quota.get("rateLimitType").and_then(Value::as_str).map(str::to_string),
            text,
            structured: true,
        });
    }
    let no_quota_info = quota.is_none_or(Value::is_null);
    if error == "rate_limit" && no_quota_info {
        if let Some((kind, _)) = text.lines().find_map(super::pane::limit_text) {
            let rate_limit_type = match kind {
                LimitKind::FiveHour => Some("five_hour"),
                LimitKind::Weekly => Some("seven_day"),
                LimitKind::Opus => Some("seven_day_opus"),
                LimitKind::Unspecified => None,
            };
            return Some(RecordKind::QuotaLimit {
                resets_at: None,
                rate_limit_type: rate_limit_type.map(str::to_string),
                text,
                structured: false,
            });
        }
    }
    if error == "authentication_failed" || status == Some(401) {
        return Some(RecordKind::AuthFailure { status, text });
    }
    Some(RecordKind::ApiError { error, status, text })
}

/// The text of a user message, or None for tool results, empty or
/// interrupt-marker messages.
fn user_text(content: &Value) -> Option<String> {
    if let Some(blocks) = content.as_array() {
        if blocks.iter().any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result")) {
            return None;
        }
    }
    let text = texts(content).join("\n");
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.starts_with("[Request interrupted") {
        return None;
    }
    Some(text)
}

/// A string content, or the `text` of each text block of an array content.
fn texts(content: &Value) -> Vec<String> {
    match content {
        Value::String(s) => vec![s.clone()],
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str).map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Reads a transcript from a byte offset on, one complete line at a time.
#[derive(Debug)]
pub struct TranscriptReader {
    path: PathBuf,
    offset: u64,
}

#[derive(Debug)]
pub struct TranscriptError {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for TranscriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "transcript {}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for TranscriptError {}

/// Lines longer than this are skipped whole (a runaway line must not grow memory
/// without bound; Claude Code's request-shape records reach a few hundred KB).
const MAX_LINE: u64 = 16 * 1024 * 1024;

impl TranscriptReader {
    /// Starts at the beginning of the file.
    pub fn new(path: impl Into<PathBuf>) -> TranscriptReader {
        TranscriptReader::at(path, 0)
    }

    /// Starts at `offset`, e.g. the file's length to see only what comes next.
    pub fn at(path: impl Into<PathBuf>, offset: u64) -> TranscriptReader {
        TranscriptReader { path: path.into(), offset }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The byte offset after the last complete line read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The records of every complete line added since the last read. A missing file
    /// reads as empty (it appears with the first prompt); a file shorter than the
    /// offset was replaced, and is read again from the start.
    pub fn read_new(&mut self) -> Result<Vec<Record>, TranscriptError> {
        let err = |reason: String| TranscriptError { path: self.path.clone(), reason };
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(err(format!("cannot open: {e}"))),
        };
        let len = file.metadata().map_err(|e| err(format!("cannot stat: {e}")))?.len();
        if len < self.offset {
            log::warn!(
                "transcript {} shrank below offset {}: reading it again from the start",
                self.path.display(),
                self.offset
            );
            self.offset = 0;
        }
        if len == self.offset {
            return Ok(Vec::new());
        }
        file.seek(SeekFrom::Start(self.offset)).map_err(|e| err(format!("cannot seek to {}: {e}", self.offset)))?;
        let mut buf = Vec::new();
        file.take(len - self.offset)
            .read_to_end(&mut buf)
            .map_err(|e| err(format!("cannot read at {}: {e}", self.offset)))?;
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            if buf.len() as u64 > MAX_LINE {
                self.offset += buf.len() as u64;
            }
            return Ok(Vec::new());
        };
        let mut records = Vec::new();
        for line in buf[..end].split(|&b| b == b'\n') {
            if line.is_empty() || line.len() as u64 > MAX_LINE {
                continue;
            }
            records.extend(classify_line(&String::from_utf8_lossy(line)));
        }
        self.offset += end as u64 + 1;
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::{Duration, UNIX_EPOCH};

    fn kinds(line: &str) -> Vec<RecordKind> {
        classify_line(line).into_iter().map(|r| r.kind).collect()
    }

    #[test]
    fn quota_limit_needs_rejected_quota() {
        let limit = r#"{"type":"assistant","timestamp":"2026-11-25T16:55:51.947Z","sessionId":"s","message":{"model":"<synthetic>","content":[{"type":"text","text":"You've hit your 5-hour limit · resets 5:31pm"}]},"error":"rate_limit","isApiErrorMessage":true,"apiErrorStatus":429,"quotaLimits":{"status":"rejected","resetsAt":1795627867,"rateLimitType":"five_hour"}}"#;
        let r = classify_line(limit);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].session_id.as_deref(), Some("s"));
        assert_eq!(r[0].at, Some(UNIX_EPOCH + Duration::from_millis(1_795_625_751_947)));
        assert_eq!(
            r[0].kind,
            RecordKind::QuotaLimit {
                resets_at: Some(UNIX_EPOCH + Duration::from_secs(1_795_627_867)),
                rate_limit_type: Some("five_hour".into()),
                text: "You've hit your 5-hour limit · resets 5:31pm".into(),
                structured: true,
            }
        );
        let plain = r#"{"type":"assistant","message":{"content":[{"type":"text","text":"API Error: Server is temporarily limiting requests (not your usage limit)"}]},"error":"rate_limit","isApiErrorMessage":true,"apiErrorStatus":429}"#;
        assert!(
            matches!(&kinds(plain)[..], [RecordKind::ApiError { error, status: Some(429), .. }] if error == "rate_limit")
        );
        // 2.1.197: no quotaLimits at all, only Claude Code's own limit message.
        let old = r#"{"type":"assistant","message":{"model":"<synthetic>","content":[{"type":"text","text":"You've hit your weekly limit · resets Nov 28, 8:05pm (UTC)"}]},"error":"rate_limit","isApiErrorMessage":true,"apiErrorStatus":429}"#;
        assert!(
            matches!(&kinds(old)[..], [RecordKind::QuotaLimit { resets_at: None, rate_limit_type: Some(t), structured: false, .. }] if t == "seven_day")
        );
        let allowed = plain.replace("429}", r#"429,"quotaLimits":{"status":"allowed_warning"}}"#);
        assert!(matches!(&kinds(&allowed)[..], [RecordKind::ApiError { .. }]));
        let auth = r#"{"type":"assistant","message":{"content":[{"type":"text","text":"Please run /login"}]},"error":"authentication_failed","isApiErrorMessage":true,"apiErrorStatus":401}"#;
        assert!(matches!(&kinds(auth)[..], [RecordKind::AuthFailure { status: Some(401), .. }]));
    }

    #[test]
    fn user_turns_and_what_is_not_one() {
        assert_eq!(
            kinds(r#"{"type":"user","message":{"role":"user","content":"hello"}}"#),
            [RecordKind::UserTurn { text: "hello".into() }]
        );
        assert_eq!(
            kinds(
                r#"{"type":"user","message":{"content":[{"type":"text","text":"a"},{"type":"image"},{"type":"text","text":"b"}]}}"#
            ),
            [RecordKind::UserTurn { text: "a\nb".into() }]
        );
        for not_turn in [
            r#"{"type":"user","message":{"content":[{"type":"tool_result","content":"ok"}]}}"#,
            r#"{"type":"user","isMeta":true,"message":{"content":"caveat"}}"#,
            r#"{"type":"user","message":{"content":[{"type":"text","text":"[Request interrupted by user]"}]}}"#,
            r#"{"type":"user","message":{"content":42}}"#,
            r#"{"type":"attachment"}"#,
            "not json",
            "",
            "[]",
        ] {
            assert_eq!(kinds(not_turn), [], "{not_turn}");
        }
    }

    #[test]
    fn assistant_text_and_tool_use() {
        assert_eq!(
            kinds(
                r#"{"type":"assistant","message":{"content":[{"type":"text","text":"hi"},{"type":"tool_use","name":"Bash","input":{}}]}}"#
            ),
            [RecordKind::AssistantText { text: "hi".into() }, RecordKind::ToolUse { name: "Bash".into() }]
        );
    }

    #[test]
    fn usage_comes_with_its_message_id_and_model_and_errors_have_none() {
        // 2.1.332's assistant line (tests/fixtures would hold it whole; the
        // fields that matter are kept verbatim).
        let line = r#"{"parentUuid":"5390c802","isSidechain":false,"message":{"id":"msg_fake_1796180437496","type":"message","role":"assistant","model":"claude-opus-5-5","content":[{"type":"text","text":"Hello from the fake API."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":123,"cache_creation_input_tokens":456,"cache_read_input_tokens":789,"output_tokens":42,"output_tokens_details":{"thinking_tokens":0},"service_tier":"standard"}},"requestId":"req_fake_1796180437496","type":"assistant","timestamp":"2026-12-02T03:00:37.515Z","sessionId":"0e23e320"}"#;
        assert_eq!(
            kinds(line),
            [
                RecordKind::Usage {
                    message_id: "msg_fake_1796180437496".into(),
                    model: "claude-opus-5-5".into(),
                    tokens: TokenUsage { input: 123, output: 42, cache_write: 456, cache_read: 789 },
                },
                RecordKind::AssistantText { text: "Hello from the fake API.".into() },
                RecordKind::TurnEnded,
            ]
        );
        let synthetic = r#"{"type":"assistant","message":{"id":"04c56f86","model":"<synthetic>","content":[{"type":"text","text":"Please run /login"}],"usage":{"input_tokens":0,"output_tokens":0}},"error":"authentication_failed","isApiErrorMessage":true,"apiErrorStatus":401}"#;
        assert!(matches!(&kinds(synthetic)[..], [RecordKind::AuthFailure { .. }]));
    }

    #[test]
    fn reader_waits_for_a_complete_line_and_survives_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let mut r = TranscriptReader::new(&path);
        assert_eq!(r.read_new().unwrap(), []);
        let mut f = std::fs::File::create(&path).unwrap();
        let line = r#"{"type":"user","message":{"content":"one"}}"#;
        write!(f, "{line}\n{}", &line[..10]).unwrap();
        assert_eq!(r.read_new().unwrap().len(), 1);
        assert_eq!(r.offset(), line.len() as u64 + 1);
        assert_eq!(r.read_new().unwrap(), []);
        writeln!(f, "{}", &line[10..]).unwrap();
        assert_eq!(r.read_new().unwrap().len(), 1);
        std::fs::write(&path, "{}\n").unwrap();
        assert_eq!(r.read_new().unwrap(), []);
        assert_eq!(r.offset(), 3);
    }
}
