//! The notifier role (docs/events.md): takes every event from `Events::emit`, drops
//! repeats within `notify.min_interval_secs`, and hands each to its sinks —
//! the webhook (every kind, as JSON) and Telegram (the kinds a person acts on).
//! Logging is not its job: `Events::emit` already logged the event.
//!
//! The notifier thread never waits on the network. Each sink has its own
//! bounded queue (dropping the oldest when full) and its own worker thread
//! that POSTs with a global timeout and retries with backoff, so a hanging or
//! failing sink delays nothing but its own later messages.
//!
//! Routing is fixed (see [`telegram_wants`]); making it configurable needs a
//! config key such as `notify.telegram.kinds`, which the schema does not have.

mod dedup;
mod sink;
mod text;

pub use dedup::Dedup;
pub use sink::DeliveryError;
pub use text::telegram_text;

use crate::config::{NotifyConfig, Secret};
use crate::events::{Kind, Notice};
use crate::heartbeat::Beat;
use crate::metrics::Metrics;
use crossbeam_channel::{select, Receiver, Sender};
use sink::{SinkQueue, Target};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Log targets that print full request URLs (with the Telegram bot token) at
/// trace level. The daemon's logger must cap them at `debug`, after reading
/// `RUST_LOG`, so that no log level shows the token.
pub const URL_LOGGING_TARGETS: &[&str] = &["ureq", "ureq_proto"];

/// The kinds a person acts on: these go to Telegram. The webhook gets all.
pub fn telegram_wants(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::FailoverStarted
            | Kind::FailoverFinished
            | Kind::FailoverFailed
            | Kind::AllAccountsExhausted
            | Kind::AccountRecovered
            | Kind::TokenExpired
            | Kind::LoginRevoked
            | Kind::SessionCrashLoop
            | Kind::TaskFailed
    )
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
}

impl NotifierHandle {
    /// Stops the notifier: events already emitted are still routed, then the
    /// sinks get `flush_deadline` to deliver their queues (without further
    /// retries). A sink still busy after that is left behind, not waited for.
    pub fn join(self) {
        let NotifierHandle { stop, thread, workers, workers_done, flush_deadline } = self;
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
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
    let mut sinks = Vec::new();
    let mut workers = Vec::new();
    for target in targets(config) {
        let (queue, worker) = sink::start(target, &tuning, metrics.clone(), stop_rx.clone(), done_tx.clone())?;
        sinks.push(queue);
        workers.push(worker);
    }
    drop(done_tx);
    let notifier = Notifier { dedup: Dedup::new(Duration::from_secs(config.min_interval_secs)), sinks, metrics, beat };
    let thread = std::thread::Builder::new().name("notifier".into()).spawn(move || notifier.run(rx, stop_rx))?;
    Ok(NotifierHandle { stop: stop_tx, thread, workers, workers_done: done_rx, flush_deadline: tuning.flush_deadline })
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
                let url = format!("{}/bot{}/sendMessage", telegram.api_base.trim_end_matches('/'), token.expose());
                out.push(Target::Telegram { url: Secret::new(url), chat_id: telegram.chat_id.clone(), token });
            }
            _ => log::warn!(
                "notify.telegram: no bot token was read from {}; Telegram notifications are off",
                telegram.bot_token_file.display()
            ),
        }
    }
    out
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
        if !self.dedup.admit(notice.kind, &notice.subject, now) {
            self.metrics.inc("claude_failover_notify_deduplicated_total", &[]);
            return;
        }
        let notice = Arc::new(notice);
        for queue in &self.sinks {
            if queue.wants(notice.kind) {
                queue.push(Arc::clone(&notice));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telegram_gets_the_kinds_a_person_acts_on() {
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
            (Kind::TaskFailed, true),
            (Kind::SessionDied, false),
            (Kind::SessionRestarted, false),
            (Kind::SessionWaiting, false),
            (Kind::TaskDispatched, false),
            (Kind::TaskDone, false),
            (Kind::ConfigReloaded, false),
            (Kind::ConfigRejected, false),
            (Kind::DaemonStarted, false),
            (Kind::DaemonStopping, false),
        ];
        for (kind, want) in table {
            assert_eq!(telegram_wants(kind), want, "{kind:?}");
        }
    }
}
