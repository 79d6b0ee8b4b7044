//! The one-line Telegram text for an event: what happened, to what, and what
//! the daemon did, readable at a glance on a phone. Built from the event's
//! kind, subject and message plus these optional detail keys when the emitter
//! sets them: `from`, `to`, `reason`, `utilization` (percent), `window`
//! (`five_hour`, `seven_day`, ...), `sessions_moved`, `attempts`, `until`.

use crate::events::{Kind, Notice};
use serde_json::Value;

/// Telegram refuses texts over 4096 characters; the message part is cut well
/// before that.
const MAX_MESSAGE_CHARS: usize = 1000;

pub fn telegram_text(notice: &Notice) -> String {
    let subject = notice.subject.as_str();
    let message = shorten(notice.message.trim());
    let d = Details(&notice.details);
    let head = match notice.kind {
        Kind::FailoverStarted => format!("⏳ Failover {}{} started", route(&d), reason(&d)),
        Kind::FailoverFinished => {
            let moved = match d.num("sessions_moved") {
                Some(n) => format!(": {n} {} moved", plural(n, "session")),
                None => String::new(),
            };
            format!("⚠ Failover {}{}{moved}", route(&d), reason(&d))
        }
        Kind::FailoverFailed => format!("🛑 Failover {}{} FAILED", route(&d), reason(&d)),
        Kind::AllAccountsExhausted => match d.str("until") {
            Some(until) => format!("🛑 All accounts exhausted; work resumes around {until}"),
            None => "🛑 All accounts exhausted".to_string(),
        },
        Kind::AccountRecovered => format!("✅ Account {subject} recovered"),
        Kind::TokenExpired => {
            format!("🔑 Account {subject}: access token expired (renewed when Claude Code runs there)")
        }
        Kind::LoginRevoked => format!("🔑 Account {subject}: login revoked, please log in again"),
        Kind::TurnFailed => format!("⚠ Session {subject}: a turn ended in an API error"),
        Kind::TaskRepaired => format!("🩹 Task {subject} repaired"),
        Kind::SessionDied => format!("💀 Session {subject} died"),
        Kind::SessionRestarted => format!("↻ Session {subject} restarted"),
        Kind::SessionCrashLoop => format!("🛑 Session {subject} is crash-looping"),
        Kind::SessionWaiting => format!("✋ Session {subject} is waiting for input"),
        Kind::TaskDispatched => format!("▶ Task {subject} dispatched"),
        Kind::TaskDone => format!("✅ Task {subject} done"),
        Kind::TaskFailed => match d.num("attempts") {
            Some(n) => format!("❌ Task {subject} failed after {n} {}", plural(n, "attempt")),
            None => format!("❌ Task {subject} failed"),
        },
        Kind::ConfigReloaded => "⚙ Configuration reloaded".to_string(),
        Kind::ConfigRejected => "⚠ New configuration rejected, the old one stays".to_string(),
        Kind::DaemonStarted => "▶ claude-failover started".to_string(),
        Kind::DaemonStopping => "⏹ claude-failover stopping".to_string(),
        Kind::McpCall => format!("🔧 MCP call {subject}"),
    };
    if message.is_empty() {
        head
    } else {
        format!("{head} — {message}")
    }
}

struct Details<'a>(&'a serde_json::Map<String, Value>);

impl Details<'_> {
    fn str(&self, key: &str) -> Option<String> {
        match self.0.get(key)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    fn num(&self, key: &str) -> Option<f64> {
        match self.0.get(key)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }
}

/// "alpha → beta", "→ beta", "alpha" or "".
fn route(d: &Details) -> String {
    match (d.str("from"), d.str("to")) {
        (Some(from), Some(to)) => format!("{from} → {to}"),
        (None, Some(to)) => format!("→ {to}"),
        (Some(from), None) => format!("from {from}"),
        (None, None) => String::new(),
    }
}

/// " (threshold 91% 5h)", " (hard_limit)" or "".
fn reason(d: &Details) -> String {
    let mut parts = Vec::new();
    if let Some(r) = d.str("reason") {
        parts.push(r);
    }
    if let Some(u) = d.num("utilization") {
        parts.push(format!("{}%", u.round()));
    }
    if let Some(w) = d.str("window") {
        parts.push(window_label(&w));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(" "))
    }
}

fn window_label(window: &str) -> String {
    match window {
        "five_hour" => "5h".to_string(),
        "seven_day" => "7d".to_string(),
        other => other.replace("seven_day_", "7d ").replace('_', " "),
    }
}

fn plural(n: f64, word: &str) -> String {
    if n == 1.0 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

fn shorten(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn notice(kind: Kind, subject: &str, message: &str, details: Value) -> Notice {
        Notice {
            seq: 1,
            at: "2026-11-25T16:00:00Z".into(),
            kind,
            subject: subject.into(),
            message: message.into(),
            details: match details {
                Value::Object(m) => m,
                _ => Default::default(),
            },
        }
    }

    #[test]
    fn texts_say_what_happened_to_what() {
        let table = [
            (
                notice(
                    Kind::FailoverFinished,
                    "beta",
                    "",
                    json!({"from": "alpha", "to": "beta", "reason": "threshold",
                           "utilization": 91.2, "window": "five_hour", "sessions_moved": 4}),
                ),
                "⚠ Failover alpha → beta (threshold 91% 5h): 4 sessions moved",
            ),
            (
                notice(
                    Kind::FailoverFailed,
                    "alpha",
                    "beta's token expired",
                    json!({"from": "alpha", "to": "beta", "reason": "hard_limit"}),
                ),
                "🛑 Failover alpha → beta (hard_limit) FAILED — beta's token expired",
            ),
            (
                notice(Kind::TaskFailed, "fix-login.md", "not UTF-8", json!({"attempts": 1})),
                "❌ Task fix-login.md failed after 1 attempt — not UTF-8",
            ),
            (
                notice(Kind::TokenExpired, "gamma", "", json!({})),
                "🔑 Account gamma: access token expired (renewed when Claude Code runs there)",
            ),
            (
                notice(Kind::LoginRevoked, "gamma", "log in", json!({})),
                "🔑 Account gamma: login revoked, please log in again — log in",
            ),
            (
                notice(Kind::AllAccountsExhausted, "pool", "dispatch paused", json!({"until": "2026-11-25T20:00:00Z"})),
                "🛑 All accounts exhausted; work resumes around 2026-11-25T20:00:00Z — dispatch paused",
            ),
        ];
        for (n, want) in table {
            assert_eq!(telegram_text(&n), want);
        }
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let long = "é".repeat(5000);
        let text = telegram_text(&notice(Kind::SessionCrashLoop, "s1", &long, json!({})));
        assert!(text.chars().count() < 1100);
        assert!(text.ends_with('…'));
    }
}
