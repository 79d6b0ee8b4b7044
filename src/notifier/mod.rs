//! The notifier role (docs/events.md): takes every event from `Events::emit`, drops
//! repeats within `notify.min_interval_secs`, and hands each to its sinks —
//! the webhook (every kind, as JSON) and Telegram (`notify.telegram.kinds`, by
//! default [`DEFAULT_TELEGRAM_KINDS`]: the kinds a person acts on). A question a
//! session waits on goes to Telegram with one button per option.
//! Logging is not its job: `Events::emit` already logged the event.
//!
//! The notifier thread never waits on the network. Each sink has its own
//! bounded queue (dropping the oldest when full) and its own worker thread
//! that POSTs with a global timeout and retries with backoff, so a hanging or
//! failing sink delays nothing but its own later messages. The Telegram
//! receiver (`crate::telegram`) sends its replies through Telegram's queue
//! ([`TelegramOutbox`]), so one worker keeps to the bot's rate limit.

mod dedup;
mod sink;
mod text;

pub use dedup::Dedup;
pub use sink::{DeliveryError, Outgoing};
pub use text::{episode_in, split_message, telegram_text, utf16_len, MAX_TELEGRAM_TEXT};

use crate::config::{NotifyConfig, Secret, TelegramConfig};
use crate::events::{Kind, Notice};
use crate::heartbeat::Beat;
use crate::metrics::Metrics;
use crossbeam_channel::{select, Receiver, Sender};
use sink::{SinkQueue, Target};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Log targets that print full request URLs (with the Telegram bot token) at
/// trace level. The daemon's logger must cap them at `debug`, after reading
/// `RUST_LOG`, so that no log level shows the token.
pub const URL_LOGGING_TARGETS: &[&str] = &["ureq", "ureq_proto"];

/// The kinds a person acts on: these go to Telegram unless
/// `notify.telegram.kinds` says otherwise. The webhook gets all. The one list
/// to add a kind to when it must reach a phone by default.
pub const DEFAULT_TELEGRAM_KINDS: &[Kind] = &[
    Kind::FailoverStarted,
    Kind::FailoverFinished,
    Kind::FailoverFailed,
    Kind::AllAccountsExhausted,
    Kind::AccountRecovered,
    Kind::TokenExpired,
    Kind::LoginRevoked,
    Kind::SessionCrashLoop,
    Kind::SessionWaiting,
    Kind::TaskFailed,
    Kind::SpendCapReached,
    Kind::FleetFenced,
    Kind::FleetUnfenced,
];

/// The kinds sent to Telegram under `config`: its `kinds`, or the default.
/// Names `Config::load` refused never get here; any left over are skipped.
pub fn telegram_kinds(config: &TelegramConfig) -> BTreeSet<Kind> {
    match &config.kinds {
        Some(names) => names.iter().filter_map(|n| Kind::parse(n)).collect(),
        None => DEFAULT_TELEGRAM_KINDS.iter().copied().collect(),
    }
}

/// The Telegram receiver's way out: Bot API calls queued on Telegram's sink
/// (never blocking; the oldest is dropped when the queue is full).
#[derive(Clone)]
pub struct TelegramOutbox {
    queue: SinkQueue,
    chat_id: String,
}

impl TelegramOutbox {
    /// Queues a call of `method` with `body`.
    pub fn call(&self, method: &'static str, body: serde_json::Value) {
        self.queue.push(Outgoing::Call { method, body });
    }

    /// The configured chat the notices go to.
    pub fn chat_id(&self) -> &str {
        &self.chat_id
    }
}

/// Delivery knobs that are not configuration keys; tests shorten them.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Notices waiting per sink before the oldest is dropped.
    pub queue_capacity: usize,
    /// Pause before each retry; its length is the number of retries.
    pub backoff: Vec<Duration>,
    /// Whole-request timeout (connect, send, answer).
    pub request_timeout: Duration,
    /// How long `join` lets the sinks deliver what is queued.
    pub flush_deadline: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            queue_capacity: 256,
            backoff: vec![Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(4)],
            request_timeout: Duration::from_secs(10),
            flush_deadline: Duration::from_secs(2),
        }
    }
}

pub struct NotifierHandle {
    /// Never sent on: dropping it tells the notifier and the sink workers to stop.
    stop: Sender<()>,
    thread: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    /// Disconnects once every worker has ended.
    workers_done: Receiver<()>,
    flush_deadline: Duration,
    telegram: Option<TelegramOutbox>,
}

impl NotifierHandle {
    /// Telegram's queue, for the receiver's replies; None without a bot token.
    pub fn telegram_outbox(&self) -> Option<TelegramOutbox> {
        self.telegram.clone()
    }

    /// Stops the notifier: events already emitted are still routed, then the
    /// sinks get `flush_deadline` to deliver their queues (without further
    /// retries). A sink still busy after that is left behind, not waited for.
    pub fn join(self) {
        let NotifierHandle { stop, thread, workers, workers_done, flush_deadline, telegram } = self;
        drop(telegram);
        drop(stop);
        let deadline = Instant::now() + flush_deadline;
        if thread.join().is_err() {
            log::error!("the notifier thread panicked");
        }
        // Nothing is ever sent on it: this returns when the last worker has
        // ended (disconnected) or at the deadline, whichever comes first.
        let _ = workers_done.recv_deadline(deadline);
        for worker in workers {
            if worker.is_finished() {
                let _ = worker.join();
            } else {
                log::warn!(
                    "notify sink thread {} still delivering at shutdown; not waiting for it",
                    worker.thread().name().unwrap_or("?")
                );
            }
        }
    }
}

/// Starts the notifier thread ("notifier") and one worker per configured sink.
/// It ends when `rx` disconnects or on [`NotifierHandle::join`].
pub fn spawn(
    config: &NotifyConfig,
    rx: Receiver<Notice>,
    metrics: Metrics,
    beat: Beat,
) -> std::io::Result<NotifierHandle> {
    spawn_tuned(config, Tuning::default(), rx, metrics, beat)
}

/// [`spawn`] with explicit delivery knobs.
pub fn spawn_tuned(
    config: &NotifyConfig,
    tuning: Tuning,
    rx: Receiver<Notice>,
    metrics: Metrics,
    beat: Beat,
) -> std::io::Result<NotifierHandle> {
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    // Never sent on: disconnects when the notifier thread has routed its
    // last notice, so the workers end then even while the Telegram
    // receiver still holds a way into their queue.
    let (routed_tx, routed_rx) = crossbeam_channel::bounded::<()>(0);
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
    let mut sinks = Vec::new();
    let mut workers = Vec::new();
    for target in targets(config) {
        let (queue, worker) =
            sink::start(target, &tuning, metrics.clone(), stop_rx.clone(), routed_rx.clone(), done_tx.clone())?;
        sinks.push(queue);
        workers.push(worker);
    }
    drop(done_tx);
    let telegram = sinks.iter().find(|q| q.is_telegram()).map(|queue| TelegramOutbox {
        queue: queue.clone(),
        chat_id: config.telegram.as_ref().map(|t| t.chat_id.clone()).unwrap_or_default(),
    });
    let notifier = Notifier { dedup: Dedup::new(Duration::from_secs(config.min_interval_secs)), sinks, metrics, beat };
    let thread = std::thread::Builder::new().name("notifier".into()).spawn(move || {
        notifier.run(rx, stop_rx);
        drop(routed_tx);
    })?;
    Ok(NotifierHandle {
        stop: stop_tx,
        thread,
        workers,
        workers_done: done_rx,
        flush_deadline: tuning.flush_deadline,
        telegram,
    })
}

fn targets(config: &NotifyConfig) -> Vec<Target> {
    let mut out = Vec::new();
    if let Some(webhook) = &config.webhook {
        out.push(Target::Webhook { url: webhook.url.clone() });
    }
    if let Some(telegram) = &config.telegram {
        match &telegram.bot_token {
            Some(token) if !token.expose().trim().is_empty() => {
                let token = Secret::new(token.expose().trim().to_string());
                let base = bot_base(&telegram.api_base, &token);
                let kinds = telegram_kinds(telegram);
                out.push(Target::Telegram { base, chat_id: telegram.chat_id.clone(), token, kinds });
            }
            _ => log::warn!(
                "notify.telegram: no bot token was read from {}; Telegram notifications are off",
                telegram.bot_token_file.display()
            ),
        }
    }
    out
}

/// `text` with every one of `secrets` replaced by `***` (the bot token, the
/// URLs that carry it), for a log line.
pub fn scrub_secrets(text: &str, secrets: &[String]) -> String {
    let mut all = secrets.to_vec();
    all.extend(secrets.iter().map(|s| s.replace(':', "%3A")));
    sink::scrub(text, &all)
}

/// `<api_base>/bot<token>`, the Bot API methods' common prefix (a secret).
pub fn bot_base(api_base: &str, token: &Secret) -> Secret {
    Secret::new(format!("{}/bot{}", api_base.trim_end_matches('/'), token.expose().trim()))
}

struct Notifier {
    dedup: Dedup,
    sinks: Vec<SinkQueue>,
    metrics: Metrics,
    beat: Beat,
}

impl Notifier {
    fn run(mut self, rx: Receiver<Notice>, stop: Receiver<()>) {
        let asks = self.beat.asks();
        loop {
            select! {
                recv(rx) -> notice => match notice {
                    Ok(notice) => self.route(notice, Instant::now()),
                    Err(_) => return,
                },
                recv(stop) -> _ => {
                    // Route what was emitted before the stop, nothing after.
                    let pending: Vec<Notice> = rx.try_iter().collect();
                    for notice in pending {
                        self.route(notice, Instant::now());
                    }
                    return;
                },
                recv(asks) -> _ => {},
            }
            self.beat.beat();
        }
    }

    fn route(&mut self, notice: Notice, now: Instant) {
        // Each question (waiting episode) is its own message, however soon
        // after another on the same session it comes.
        let question = notice.details.contains_key("episode");
        if !question && !self.dedup.admit(notice.kind, &notice.subject, now) {
            self.metrics.inc("claude_failover_notify_deduplicated_total", &[]);
            return;
        }
        let notice = Arc::new(notice);
        for queue in &self.sinks {
            if queue.wants(notice.kind) {
                queue.push(Outgoing::Notice(Arc::clone(&notice)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn telegram(kinds: Option<&[&str]>) -> TelegramConfig {
        TelegramConfig {
            bot_token_file: "/t".into(),
            chat_id: "1".into(),
            chat_ids: Vec::new(),
            user_ids: Vec::new(),
            kinds: kinds.map(|k| k.iter().map(|s| s.to_string()).collect()),
            api_base: "http://127.0.0.1:1".into(),
            bot_token: None,
        }
    }

    #[test]
    fn telegram_gets_the_kinds_a_person_acts_on_unless_told_otherwise() {
        let table = [
            (Kind::FailoverStarted, true),
            (Kind::FailoverFinished, true),
            (Kind::FailoverFailed, true),
            (Kind::AllAccountsExhausted, true),
            (Kind::AccountRecovered, true),
            (Kind::TokenExpired, true),
            (Kind::LoginRevoked, true),
            (Kind::TurnFailed, false),
            (Kind::TaskRepaired, false),
            (Kind::SessionCrashLoop, true),
            (Kind::SessionWaiting, true),
            (Kind::TaskFailed, true),
            (Kind::SessionDied, false),
            (Kind::SessionRestarted, false),
            (Kind::TaskDispatched, false),
            (Kind::TaskDone, false),
            (Kind::ConfigReloaded, false),
            (Kind::ConfigRejected, false),
            (Kind::DaemonStarted, false),
            (Kind::DaemonStopping, false),
            (Kind::McpCall, false),
            (Kind::QuestionAnswered, false),
            (Kind::TelegramCommand, false),
            (Kind::SpendCapReached, true),
            (Kind::FleetJoined, false),
            (Kind::FleetUnreachable, false),
            (Kind::FleetFenced, true),
            (Kind::FleetUnfenced, true),
            (Kind::FleetNews, false),
            (Kind::FleetGarbage, false),
        ];
        assert_eq!(table.len(), Kind::ALL.len(), "every kind has a row");
        let defaults = telegram_kinds(&telegram(None));
        for (kind, want) in table {
            assert_eq!(defaults.contains(&kind), want, "{kind:?}");
        }
        let chosen = telegram_kinds(&telegram(Some(&["task_done", "session_waiting"])));
        assert_eq!(chosen, BTreeSet::from([Kind::SessionWaiting, Kind::TaskDone]));
        assert!(telegram_kinds(&telegram(Some(&[]))).is_empty());
    }
}
