//! The Telegram receiver role ("telegram" thread, docs/telegram.md): long-polls
//! the Bot API's `getUpdates` and turns what a person sends into the daemon's
//! requests — a button press or a reply answers a session's question, a
//! command reads the status, a screen or a queue, or asks the coordinator
//! for a change. Writes go to the coordinator as control requests (as HTTP's
//! do), and typing into a session is the sessions role's, on its order; this
//! role decides nothing. Its answers go out through the notifier's Telegram
//! queue, which keeps to the bot's rate limit.
//!
//! Only the configured chats are heard; where `user_ids` is set, only those
//! users may change anything. Everything else is ignored, counted in
//! `claude_failover_telegram_ignored_total`, and never answered with data.
//! Every command and answer heard is an event naming the Telegram user.

mod incoming;
mod texts;

pub use incoming::{parse, Command, Incoming, Who};

use crate::claude::question::Choice;
use crate::config::{Config, Secret, TelegramConfig};
use crate::control::{Answer, Control, ControlRequest, Shared};
use crate::events::Kind;
use crate::heartbeat::Beat;
use crate::notifier::{bot_base, TelegramOutbox};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use serde_json::{json, Value};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a command may have waited in Telegram before the daemon read it
/// and still be carried out (older ones were sent while it was down).
const STALE_COMMAND_SECS: i64 = 300;
/// How long the coordinator has to answer a request.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed poll: the first pause, doubling up to the last.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How long `shutdown` waits for a poll in flight before leaving the thread.
const SHUTDOWN_WAIT: Duration = Duration::from_millis(500);

pub struct TelegramHandle {
    stop: Sender<()>,
    /// Disconnects when the thread ends.
    done: Receiver<()>,
    thread: JoinHandle<()>,
}

impl TelegramHandle {
    /// Stops polling. A long poll in flight is not waited for beyond a
    /// moment: the thread ends when it returns, or with the process.
    pub fn shutdown(self) {
        drop(self.stop);
        let _ = self.done.recv_timeout(SHUTDOWN_WAIT);
        if self.thread.is_finished() {
            if self.thread.join().is_err() {
                log::error!("role telegram had panicked");
            }
        } else {
            log::debug!("telegram: a long poll is in flight at shutdown; not waiting for it");
        }
    }
}

/// The long poll's `timeout`: well inside the heartbeat's staleness limit,
/// since the role beats only between polls.
pub fn poll_timeout(stale_after: Duration) -> Duration {
    (stale_after * 2 / 5).clamp(Duration::from_secs(1), Duration::from_secs(25))
}

/// Starts the receiver when `notify.telegram` has a bot token; None otherwise.
pub fn spawn(
    config: Arc<Config>,
    shared: Shared,
    control: Sender<ControlRequest>,
    outbox: TelegramOutbox,
    beat: Beat,
) -> std::io::Result<Option<TelegramHandle>> {
    let Some(telegram) = config.notify.telegram.clone() else { return Ok(None) };
    let Some(token) = telegram.bot_token.clone().filter(|t| !t.expose().trim().is_empty()) else {
        return Ok(None);
    };
    let poll = poll_timeout(shared.heartbeats.stale_after());
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_global(Some(poll + shared.heartbeats.stale_after() / 5))
            .http_status_as_error(false)
            .build(),
    );
    let base = bot_base(&telegram.api_base, &token);
    let secrets = vec![base.expose().to_string(), token.expose().trim().to_string()];
    let receiver =
        TelegramReceiver { config, telegram, base, secrets, agent, poll, shared, control, outbox, offset: None };
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
    let thread = std::thread::Builder::new().name("telegram".into()).spawn(move || {
        receiver.run(stopped, beat);
        drop(done_tx);
    })?;
    Ok(Some(TelegramHandle { stop, done, thread }))
}

struct TelegramReceiver {
    config: Arc<Config>,
    telegram: TelegramConfig,
    /// `<api_base>/bot<token>`.
    base: Secret,
    /// What must not reach a log line.
    secrets: Vec<String>,
    agent: ureq::Agent,
    poll: Duration,
    shared: Shared,
    control: Sender<ControlRequest>,
    outbox: TelegramOutbox,
    /// The next update wanted (`update_id` + 1 of the last one read).
    offset: Option<i64>,
}

impl TelegramReceiver {
    fn run(mut self, stopped: Receiver<()>, beat: Beat) {
        let mut pause = RETRY_FIRST;
        let mut last_error = String::new();
        loop {
            beat.beat();
            if !matches!(stopped.try_recv(), Err(TryRecvError::Empty)) {
                return;
            }
            match self.poll() {
                Ok(updates) => {
                    if !last_error.is_empty() {
                        log::info!("telegram: polling works again");
                        last_error.clear();
                    }
                    pause = RETRY_FIRST;
                    for update in updates {
                        if let Some(id) = update.get("update_id").and_then(Value::as_i64) {
                            self.offset = Some(id + 1);
                        }
                        self.handle(&incoming::parse(&update));
                        beat.beat();
                    }
                }
                Err(e) => {
                    let e = crate::notifier::scrub_secrets(&e, &self.secrets);
                    if e != last_error {
                        log::warn!("telegram: getUpdates failed: {e}; retrying");
                        last_error = e;
                    }
                    // In steps, beating between them, so a long pause is not silence.
                    let until = Instant::now() + pause;
                    while Instant::now() < until {
                        let step = until.saturating_duration_since(Instant::now()).min(Duration::from_secs(1));
                        match stopped.recv_timeout(step) {
                            Err(RecvTimeoutError::Timeout) => beat.beat(),
                            _ => return,
                        }
                    }
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// One long poll: the updates after `offset` (which confirms the earlier ones).
    fn poll(&self) -> Result<Vec<Value>, String> {
        let mut body = json!({"timeout": self.poll.as_secs(), "allowed_updates": ["message", "callback_query"]});
        if let Some(offset) = self.offset {
            body["offset"] = json!(offset);
        }
        let url = format!("{}/getUpdates", self.base.expose());
        let mut response = self.agent.post(&url).send_json(&body).map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let text =
            response.body_mut().with_config().limit(8 * 1024 * 1024).read_to_string().map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("HTTP {status}: not JSON: {e}"))?;
        if status != 200 || v.get("ok") != Some(&Value::Bool(true)) {
            let said = v.get("description").and_then(Value::as_str).unwrap_or_default();
            return Err(format!("HTTP {status}: {said}"));
        }
        Ok(v.get("result").and_then(Value::as_array).cloned().unwrap_or_default())
    }

    fn chat_allowed(&self, chat: &str) -> bool {
        chat == self.telegram.chat_id.trim() || self.telegram.chat_ids.iter().any(|c| c.trim() == chat)
    }

    fn may_write(&self, user: i64) -> bool {
        self.telegram.user_ids.is_empty() || self.telegram.user_ids.contains(&user)
    }

    fn ignored(&self, reason: &'static str, from: Option<&Who>) {
        self.shared.metrics.inc("claude_failover_telegram_ignored_total", &[("reason", reason)]);
        match from {
            Some(who) => log::info!("telegram: ignored an update from {} in chat {} ({reason})", who.name, who.chat_id),
            None => log::debug!("telegram: ignored an update ({reason})"),
        }
    }

    fn handle(&self, update: &Incoming) {
        let Some(from) = update.from() else { return self.ignored("other", None) };
        if !self.chat_allowed(&from.chat_id) {
            return self.ignored("chat", Some(from));
        }
        if update.is_write() && !self.may_write(from.user_id) {
            if let Incoming::Press { callback_id, .. } = update {
                // Stops the button's spinner; says nothing about the question.
                self.outbox
                    .call("answerCallbackQuery", json!({"callback_query_id": callback_id, "text": "not allowed"}));
            }
            return self.ignored("user", Some(from));
        }
        match update {
            Incoming::Command { from, message_id, date, command } => {
                if crate::time::unix_now() - date > STALE_COMMAND_SECS {
                    return self.ignored("stale", Some(from));
                }
                self.command(from, *message_id, command);
            }
            Incoming::Press { from, callback_id, message_id, message_text, answer } => {
                self.press(from, callback_id, *message_id, message_text, *answer)
            }
            Incoming::Reply { from, message_id, episode, text, .. } => self.reply(from, *message_id, *episode, text),
            Incoming::Other { .. } => {}
        }
    }

    fn command(&self, from: &Who, message_id: i64, command: &Command) {
        let (outcome, answer) = match command {
            Command::Status => ("ok".to_string(), Text::Pre(texts::status(&self.shared.status.read()))),
            Command::Help => ("ok".into(), Text::Plain(texts::HELP.into())),
            Command::Usage(usage) => ("usage".into(), Text::Plain(format!("usage: {usage}"))),
            Command::Unknown(name) => {
                ("unknown".into(), Text::Plain(format!("unknown command {name}; /help lists them")))
            }
            Command::Tail(session) => match texts::tail(&self.config, session) {
                Ok(screen) => ("ok".into(), Text::Pre(screen)),
                Err(why) => (format!("refused: {why}"), Text::Plain(why)),
            },
            Command::Tasks(project) => match texts::tasks(&self.config, project) {
                Ok(list) => ("ok".into(), Text::Pre(list)),
                Err(why) => (format!("refused: {why}"), Text::Plain(why)),
            },
            Command::Failover(to) => self.write(Control::Failover { to: to.clone() }, |v| match v.get("to") {
                Some(Value::String(to)) => format!("failover to {to} started"),
                _ => "failover started".into(),
            }),
            Command::Pause => self.write(Control::PauseDispatch, |_| "dispatch paused".into()),
            Command::Resume => self.write(Control::ResumeDispatch, |_| "dispatch resumed".into()),
            Command::Restart(session) => {
                self.write(Control::RestartSession(session.clone()), |_| format!("restarting {session}"))
            }
        };
        let args = match command {
            Command::Failover(Some(a)) | Command::Restart(a) | Command::Tail(a) | Command::Tasks(a) => a.clone(),
            _ => String::new(),
        };
        self.shared.events.emit(
            Kind::TelegramCommand,
            &from.name,
            format!("{} sent {} {args} on Telegram: {outcome}", from.name, command.name()),
            json!({"command": command.name(), "args": args, "user_id": from.user_id, "user": from.name,
                   "chat_id": from.chat_id, "outcome": outcome}),
        );
        self.send(&from.chat_id, Some(message_id), answer);
    }

    /// A write: the coordinator's answer, or why not.
    fn write(&self, control: Control, said: impl Fn(&Value) -> String) -> (String, Text) {
        match self.ask(control) {
            Ok(v) => ("ok".into(), Text::Plain(said(&v))),
            Err(why) => (format!("refused: {why}"), Text::Plain(format!("refused: {why}"))),
        }
    }

    fn press(&self, from: &Who, callback_id: &str, message_id: Option<i64>, text: &str, answer: Option<(u64, usize)>) {
        let Some((episode, index)) = answer else {
            self.outbox.call("answerCallbackQuery", json!({"callback_query_id": callback_id}));
            return;
        };
        let asked =
            Control::Answer(Answer { episode, choice: Choice::Option(index), by: from.name.clone(), via: "telegram" });
        match self.ask(asked) {
            Ok(v) => {
                let said = v.get("answer").and_then(Value::as_str).unwrap_or_default();
                self.outbox.call(
                    "answerCallbackQuery",
                    json!({"callback_query_id": callback_id, "text": format!("answered: {said}")}),
                );
                if let Some(message_id) = message_id {
                    // Without reply_markup: the buttons go.
                    let edited = format!("{text}\n\n✔ {} answered: {said}", from.name);
                    self.outbox.call(
                        "editMessageText",
                        json!({"chat_id": from.chat_id, "message_id": message_id, "text": edited}),
                    );
                }
            }
            Err(why) => {
                log::info!("telegram: {}'s answer to question #{episode} refused: {why}", from.name);
                self.outbox.call(
                    "answerCallbackQuery",
                    json!({"callback_query_id": callback_id, "text": "already answered / changed"}),
                );
            }
        }
    }

    fn reply(&self, from: &Who, message_id: i64, episode: u64, text: &str) {
        let asked = Control::Answer(Answer {
            episode,
            choice: Choice::Text(text.into()),
            by: from.name.clone(),
            via: "telegram",
        });
        let answer = match self.ask(asked) {
            Ok(v) => {
                let session = v.get("session").and_then(Value::as_str).unwrap_or_default();
                format!("sent to {session}")
            }
            Err(why) => {
                log::info!("telegram: {}'s text for question #{episode} refused: {why}", from.name);
                "already answered / changed".to_string()
            }
        };
        self.send(&from.chat_id, Some(message_id), Text::Plain(answer));
    }

    /// Asks the coordinator; its refusal as a sentence.
    fn ask(&self, control: Control) -> Result<Value, String> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        if self.control.send(ControlRequest { control, reply }).is_err() {
            return Err("the daemon is stopping".into());
        }
        match answer.recv_timeout(CONTROL_TIMEOUT) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the daemon did not answer in time".into()),
        }
    }

    /// Sends `text` to `chat`, in parts when it is long.
    fn send(&self, chat: &str, reply_to: Option<i64>, text: Text) {
        let parts = match &text {
            // Room for the <pre></pre> around each part, escaping counted.
            Text::Pre(t) => texts::split_escaped(t, crate::notifier::MAX_TELEGRAM_TEXT - 16),
            Text::Plain(t) => vec![t.clone()],
        };
        for (i, part) in parts.into_iter().enumerate() {
            let mut body = json!({"chat_id": chat, "disable_web_page_preview": true});
            match &text {
                Text::Pre(_) => {
                    body["text"] = json!(format!("<pre>{part}</pre>"));
                    body["parse_mode"] = json!("HTML");
                }
                Text::Plain(_) => body["text"] = json!(part),
            }
            if let (0, Some(id)) = (i, reply_to) {
                body["reply_parameters"] = json!({"message_id": id, "allow_sending_without_reply": true});
            }
            self.outbox.call("sendMessage", body);
        }
    }
}

/// An answer's text: plain, or preformatted (a table, a screen).
enum Text {
    Plain(String),
    Pre(String),
}
