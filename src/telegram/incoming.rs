//! What a Bot API update says, as the receiver acts on it: a command, a press
//! of a question's button, a reply to a question's message, or nothing to
//! act on. Pure: a table test drives it with Bot API JSON.

use crate::notifier::episode_in;
use serde_json::Value;

/// Who sent an update, and from which chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub user_id: i64,
    /// How events and edited messages name them: `@alice (12345)`, or the
    /// first name when there is no username.
    pub name: String,
    pub chat_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Status,
    Failover(Option<String>),
    Pause,
    Resume,
    Restart(String),
    Tail(String),
    Tasks(String),
    Help,
    /// A known command without the argument it needs: its usage line.
    Usage(&'static str),
    Unknown(String),
}

impl Command {
    /// Commands that change something: limited to `user_ids` when set.
    pub fn is_write(&self) -> bool {
        matches!(self, Command::Failover(_) | Command::Pause | Command::Resume | Command::Restart(_))
    }

    /// Its name as typed, for events.
    pub fn name(&self) -> String {
        match self {
            Command::Status => "/status".into(),
            Command::Failover(_) => "/failover".into(),
            Command::Pause => "/pause".into(),
            Command::Resume => "/resume".into(),
            Command::Restart(_) => "/restart".into(),
            Command::Tail(_) => "/tail".into(),
            Command::Tasks(_) => "/tasks".into(),
            Command::Help => "/help".into(),
            Command::Usage(usage) => usage.split(' ').next().unwrap_or(usage).to_string(),
            Command::Unknown(name) => name.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Command {
        from: Who,
        message_id: i64,
        /// When it was sent (unix seconds).
        date: i64,
        command: Command,
    },
    /// A button of a question message: `a:EPISODE:INDEX`. `answer` is None
    /// for data that is not a question's button.
    Press {
        from: Who,
        callback_id: String,
        message_id: Option<i64>,
        /// The pressed message's text, to edit it with who answered.
        message_text: String,
        answer: Option<(u64, usize)>,
    },
    /// Text in reply to a question message (its episode mark).
    Reply { from: Who, message_id: i64, date: i64, episode: u64, text: String },
    /// Anything else (chatter, edits, joins): not acted on.
    Other { from: Option<Who> },
}

impl Incoming {
    pub fn from(&self) -> Option<&Who> {
        match self {
            Incoming::Command { from, .. } | Incoming::Press { from, .. } | Incoming::Reply { from, .. } => Some(from),
            Incoming::Other { from } => from.as_ref(),
        }
    }

    /// Button presses and replies answer questions: writes.
    pub fn is_write(&self) -> bool {
        match self {
            Incoming::Command { command, .. } => command.is_write(),
            Incoming::Press { .. } | Incoming::Reply { .. } => true,
            Incoming::Other { .. } => false,
        }
    }
}

/// One update of `getUpdates`.
pub fn parse(update: &Value) -> Incoming {
    if let Some(cb) = update.get("callback_query") {
        let Some(from) = who(cb.get("from"), cb.pointer("/message/chat/id")) else {
            return Incoming::Other { from: None };
        };
        let data = cb.get("data").and_then(Value::as_str).unwrap_or_default();
        return Incoming::Press {
            from,
            callback_id: cb.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
            message_id: cb.pointer("/message/message_id").and_then(Value::as_i64),
            message_text: cb.pointer("/message/text").and_then(Value::as_str).unwrap_or_default().to_string(),
            answer: button(data),
        };
    }
    let Some(message) = update.get("message") else { return Incoming::Other { from: None } };
    let from = who(message.get("from"), message.pointer("/chat/id"));
    let Some(from) = from else { return Incoming::Other { from: None } };
    let text = message.get("text").and_then(Value::as_str).unwrap_or_default().trim();
    let message_id = message.get("message_id").and_then(Value::as_i64).unwrap_or_default();
    let date = message.get("date").and_then(Value::as_i64).unwrap_or_default();
    if text.starts_with('/') {
        return Incoming::Command { from, message_id, date, command: command(text) };
    }
    let replied = message.pointer("/reply_to_message/text").and_then(Value::as_str);
    match replied.and_then(episode_in) {
        Some(episode) if !text.is_empty() => {
            Incoming::Reply { from, message_id, date, episode, text: text.to_string() }
        }
        _ => Incoming::Other { from: Some(from) },
    }
}

fn who(user: Option<&Value>, chat: Option<&Value>) -> Option<Who> {
    let user = user?;
    let user_id = user.get("id")?.as_i64()?;
    let chat_id = match chat? {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    let name = match user.get("username").and_then(Value::as_str) {
        Some(u) => format!("@{u} ({user_id})"),
        None => {
            let first = user.get("first_name").and_then(Value::as_str).unwrap_or("user");
            format!("{first} ({user_id})")
        }
    };
    Some(Who { user_id, name, chat_id })
}

/// `a:EPISODE:INDEX`.
fn button(data: &str) -> Option<(u64, usize)> {
    let mut parts = data.strip_prefix("a:")?.split(':');
    let episode = parts.next()?.parse().ok()?;
    let index = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((episode, index))
}

/// `/name@bot arg ...`.
fn command(text: &str) -> Command {
    let mut words = text.split_whitespace();
    let head = words.next().unwrap_or_default();
    let name = head.split('@').next().unwrap_or(head).to_lowercase();
    let arg = words.next().map(str::to_string);
    let needs = |usage: &'static str, make: fn(String) -> Command| arg.clone().map_or(Command::Usage(usage), make);
    match name.as_str() {
        "/status" => Command::Status,
        "/failover" => Command::Failover(arg),
        "/pause" => Command::Pause,
        "/resume" => Command::Resume,
        "/restart" => needs("/restart SESSION", Command::Restart),
        "/tail" => needs("/tail SESSION", Command::Tail),
        "/tasks" => needs("/tasks PROJECT", Command::Tasks),
        "/help" | "/start" => Command::Help,
        _ => Command::Unknown(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(text: &str) -> Value {
        json!({"update_id": 7, "message": {"message_id": 70, "date": 1767000000,
            "from": {"id": 42, "is_bot": false, "first_name": "Ann", "username": "ann"},
            "chat": {"id": -100123, "type": "group"}, "text": text}})
    }

    fn alice() -> Who {
        Who { user_id: 42, name: "@ann (42)".into(), chat_id: "-100123".into() }
    }

    #[test]
    fn commands_with_and_without_their_arguments() {
        let table = [
            ("/status", Command::Status),
            ("/status@cf_bot", Command::Status),
            ("/failover", Command::Failover(None)),
            ("/failover beta", Command::Failover(Some("beta".into()))),
            ("/pause", Command::Pause),
            ("/resume", Command::Resume),
            ("/restart s1", Command::Restart("s1".into())),
            ("/restart", Command::Usage("/restart SESSION")),
            ("/tail s1", Command::Tail("s1".into())),
            ("/tasks proj", Command::Tasks("proj".into())),
            ("/tasks", Command::Usage("/tasks PROJECT")),
            ("/help", Command::Help),
            ("/rm -rf", Command::Unknown("/rm".into())),
        ];
        for (text, want) in table {
            let got = parse(&message(text));
            let want = Incoming::Command { from: alice(), message_id: 70, date: 1767000000, command: want };
            assert_eq!(got, want, "{text}");
        }
        assert!(Command::Pause.is_write() && Command::Restart("s".into()).is_write());
        assert!(!Command::Status.is_write() && !Command::Tail("s".into()).is_write());
    }

    #[test]
    fn presses_replies_and_chatter() {
        let press = json!({"update_id": 8, "callback_query": {"id": "cb1", "data": "a:1767000123:2",
            "from": {"id": 42, "first_name": "Ann"},
            "message": {"message_id": 71, "chat": {"id": -100123}, "text": "✋ Session s1 asks\n#q1767000123"}}});
        assert_eq!(
            parse(&press),
            Incoming::Press {
                from: Who { user_id: 42, name: "Ann (42)".into(), chat_id: "-100123".into() },
                callback_id: "cb1".into(),
                message_id: Some(71),
                message_text: "✋ Session s1 asks\n#q1767000123".into(),
                answer: Some((1767000123, 2)),
            }
        );
        let mut odd = press.clone();
        odd["callback_query"]["data"] = json!("a:1:2:3");
        assert!(matches!(parse(&odd), Incoming::Press { answer: None, .. }));

        let mut reply = message("use /tmp/y instead");
        reply["message"]["reply_to_message"] = json!({"message_id": 71, "text": "✋ Session s1 asks\n#q55"});
        assert_eq!(
            parse(&reply),
            Incoming::Reply {
                from: alice(),
                message_id: 70,
                date: 1767000000,
                episode: 55,
                text: "use /tmp/y instead".into()
            }
        );
        assert_eq!(parse(&message("hello all")), Incoming::Other { from: Some(alice()) });
        assert_eq!(parse(&json!({"update_id": 9, "edited_message": {}})), Incoming::Other { from: None });
    }
}
