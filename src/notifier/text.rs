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

/// Telegram's limit on a message's text, in UTF-16 code units (what it counts).
pub const MAX_TELEGRAM_TEXT: usize = 4096;

/// A button's label is cut to this many characters.
const MAX_BUTTON_CHARS: usize = 60;

/// The marker that ties a message to its waiting episode: a reply to the
/// message names the episode by it.
pub const EPISODE_MARK: &str = "#q";

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
        Kind::QuestionAnswered => match (d.str("by"), d.str("answer")) {
            (Some(by), Some(answer)) => format!("✔ {by} answered {subject}: {answer}"),
            _ => format!("✔ Session {subject}'s question answered"),
        },
        Kind::TelegramCommand => format!("⌨ {subject} on Telegram"),
        Kind::SpendCapReached => match d.str("until") {
            Some(until) => format!("💸 Account {subject} reached its daily spend cap; usable again {until}"),
            None => format!("💸 Account {subject} reached its daily spend cap"),
        },
        Kind::FleetJoined => format!("🔗 Host {subject} joined the fleet"),
        Kind::FleetUnreachable => format!("⚠ Host {subject}: etcd unreachable, working on alone"),
        Kind::FleetFenced => format!("⛔ Host {subject}: work stopped until it holds an account in the fleet again"),
        Kind::FleetUnfenced => format!("✅ Host {subject}: holds an account in the fleet again; work goes on"),
        Kind::FleetNews => format!("📣 Fleet news of {subject}"),
        Kind::FleetGarbage => format!("⚠ Fleet: ignoring {subject}"),
    };
    if message.is_empty() {
        head
    } else {
        format!("{head} — {message}")
    }
}

/// A `session_waiting` event that carries a question (and its episode):
/// its text (the session, its task, the question as on screen, the episode
/// mark) and one inline button per option, each carrying `a:EPISODE:INDEX`.
/// The text is trimmed, never split: the buttons belong to one message.
pub fn question_message(notice: &Notice) -> Option<(String, Value)> {
    if notice.kind != Kind::SessionWaiting {
        return None;
    }
    let episode = notice.details.get("episode")?.as_u64()?;
    let q = notice.details.get("question")?;
    let options: Vec<&str> = q.get("options")?.as_array()?.iter().filter_map(Value::as_str).collect();
    let line = |key: &str| q.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let mut head = format!("✋ Session {} asks", notice.subject);
    if let Some(task) = notice.details.get("task").and_then(Value::as_str) {
        head.push_str(&format!(" (task {task})"));
    }
    let mut body = Vec::new();
    let title = line("title");
    if !title.is_empty() {
        body.push(title);
    }
    let detail: Vec<String> = q
        .get("detail")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect();
    body.extend(detail);
    let prompt = line("prompt");
    let mut foot = vec![String::new(), prompt];
    if q.get("cancellable").and_then(Value::as_bool) == Some(true) {
        foot.push(String::new());
        foot.push("Or reply to this message with text: the question is cancelled and the text sent instead.".into());
    }
    foot.push(format!("{EPISODE_MARK}{episode}"));
    let foot = foot.join("\n");
    // Whatever must go is taken from the middle (the detail), never the
    // question or the mark.
    let room = MAX_TELEGRAM_TEXT.saturating_sub(utf16_len(&head) + utf16_len(&foot) + 4);
    let middle = cut_utf16(&body.join("\n"), room);
    let text = format!("{head}\n{middle}\n{foot}");
    let keyboard: Vec<Value> = options
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let label = format!("{}. {}", i + 1, shorten_to(label, MAX_BUTTON_CHARS));
            serde_json::json!([{"text": label, "callback_data": format!("a:{episode}:{i}")}])
        })
        .collect();
    Some((text, Value::Array(keyboard)))
}

/// The episode a question message names (its [`EPISODE_MARK`]), if any.
pub fn episode_in(text: &str) -> Option<u64> {
    let at = text.rfind(EPISODE_MARK)? + EPISODE_MARK.len();
    let digits: String = text[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// How long Telegram counts `text` to be.
pub fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// `text` in parts of at most `limit` UTF-16 units, cut after a line break
/// where one falls in the second half of a part, else between characters.
pub fn split_message(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(2);
    let mut parts = Vec::new();
    let mut rest = text;
    while utf16_len(rest) > limit {
        let mut units = 0;
        let mut cut = 0;
        let mut newline = None;
        for (i, c) in rest.char_indices() {
            if units + c.len_utf16() > limit {
                break;
            }
            units += c.len_utf16();
            cut = i + c.len_utf8();
            if c == '\n' && units > limit / 2 {
                newline = Some(cut);
            }
        }
        let cut = newline.unwrap_or(cut);
        parts.push(rest[..cut].trim_end_matches('\n').to_string());
        rest = &rest[cut..];
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(rest.to_string());
    }
    parts
}

/// `text` cut to at most `limit` UTF-16 units, with `…` where it was cut.
fn cut_utf16(text: &str, limit: usize) -> String {
    if utf16_len(text) <= limit {
        return text.to_string();
    }
    let mut out = String::new();
    let mut units = 0;
    for c in text.chars() {
        if units + c.len_utf16() + 1 > limit {
            break;
        }
        units += c.len_utf16();
        out.push(c);
    }
    out.push('…');
    out
}

fn shorten_to(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
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
    fn a_question_gets_one_button_per_option_carrying_its_episode() {
        let n = notice(
            Kind::SessionWaiting,
            "s1",
            "session s1 asks: Do you want to proceed?",
            json!({"episode": 1767000123u64, "task": "fix.md", "waiting_for": "permission prompt",
                   "question": {"title": "Bash command", "prompt": "Do you want to proceed?",
                                "detail": ["touch /tmp/x"], "options": ["Yes", "No"], "cancellable": true}}),
        );
        let (text, keyboard) = question_message(&n).expect("a question message");
        assert!(
            text.starts_with("✋ Session s1 asks (task fix.md)\nBash command\ntouch /tmp/x\n\nDo you want to proceed?")
        );
        assert!(text.ends_with("#q1767000123"), "{text}");
        assert_eq!(episode_in(&text), Some(1767000123));
        assert_eq!(
            keyboard,
            json!([[{"text": "1. Yes", "callback_data": "a:1767000123:0"}],
                   [{"text": "2. No", "callback_data": "a:1767000123:1"}]])
        );
        // Without a question it is an ordinary notice.
        let plain = notice(Kind::SessionWaiting, "s1", "waits", json!({"waiting_for": "dialog"}));
        assert!(question_message(&plain).is_none());
        // A huge detail is trimmed, the question and its mark kept.
        let huge = notice(
            Kind::SessionWaiting,
            "s1",
            "",
            json!({"episode": 7, "question": {"title": "t", "prompt": "Go?", "detail": ["x".repeat(9000)],
                                              "options": ["a", "b"], "cancellable": false}}),
        );
        let (text, _) = question_message(&huge).unwrap();
        assert!(utf16_len(&text) <= MAX_TELEGRAM_TEXT);
        assert!(text.contains("…\n\nGo?\n#q7"), "{}", &text[text.len() - 40..]);
    }

    #[test]
    fn long_texts_split_at_line_breaks_within_the_limit() {
        let lines: Vec<String> = (0..500).map(|i| format!("line {i:03} {}", "é".repeat(20))).collect();
        let text = lines.join("\n");
        let parts = split_message(&text, MAX_TELEGRAM_TEXT);
        assert!(parts.len() >= 3, "{}", parts.len());
        assert!(parts.iter().all(|p| utf16_len(p) <= MAX_TELEGRAM_TEXT));
        assert_eq!(parts.join("\n"), text, "nothing lost at the cuts");
        // No line break at all: cut between characters (an emoji is two units).
        let emoji = "😀".repeat(3000);
        let parts = split_message(&emoji, MAX_TELEGRAM_TEXT);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts.concat(), emoji);
        assert!(parts.iter().all(|p| utf16_len(p) <= MAX_TELEGRAM_TEXT));
        assert_eq!(split_message("short", MAX_TELEGRAM_TEXT), ["short"]);
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let long = "é".repeat(5000);
        let text = telegram_text(&notice(Kind::SessionCrashLoop, "s1", &long, json!({})));
        assert!(text.chars().count() < 1100);
        assert!(text.ends_with('…'));
    }
}
