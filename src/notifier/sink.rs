//! One delivery target (the webhook or Telegram): its bounded queue that drops
//! the oldest item when full, and its worker thread that POSTs with a global
//! timeout and retries with backoff (or, on Telegram's 429, after the
//! `retry_after` it asks for). A hanging or failing target only ever delays
//! its own queue. Telegram's queue also carries the receiver's Bot API calls
//! (replies, edits), so one worker keeps to the bot's rate limit.

use super::text::{self, split_message, telegram_text};
use super::Tuning;
use crate::config::Secret;
use crate::events::{Kind, Notice};
use crate::metrics::Metrics;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest piece of an error answer's body kept for the log line.
const MAX_ERROR_BODY: usize = 200;

#[derive(Clone)]
pub(super) enum Target {
    /// POST of the event JSON to `url`.
    Webhook { url: String },
    /// `sendMessage` of the kinds in `kinds`, and the receiver's calls;
    /// `base` (`<api_base>/bot<token>`) holds the bot token.
    Telegram { base: Secret, chat_id: String, token: Secret, kinds: BTreeSet<Kind> },
}

/// What a sink's queue carries.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// An event, sent as the target sends events.
    Notice(Arc<Notice>),
    /// A Bot API call (`sendMessage`, `editMessageText`,
    /// `answerCallbackQuery`, ...) with its JSON body; Telegram only.
    Call { method: &'static str, body: Value },
}

impl Target {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Target::Webhook { .. } => "webhook",
            Target::Telegram { .. } => "telegram",
        }
    }

    fn wants(&self, kind: Kind) -> bool {
        match self {
            Target::Webhook { .. } => true,
            Target::Telegram { kinds, .. } => kinds.contains(&kind),
        }
    }

    /// Strings that must not reach a log line: the bot token (also as it
    /// would look percent-encoded) and the whole webhook URL, which often
    /// carries a secret of its own (Slack-style hook URLs).
    fn secrets(&self) -> Vec<String> {
        match self {
            Target::Webhook { url } => vec![url.clone()],
            Target::Telegram { base, token, .. } => {
                let token = token.expose();
                let mut s = vec![base.expose().to_string(), token.to_string()];
                let encoded = token.replace(':', "%3A");
                if encoded != token {
                    s.push(encoded);
                }
                s.retain(|x| !x.is_empty());
                s
            }
        }
    }
}

/// Why one delivery attempt failed. Its text has the secrets scrubbed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryError {
    pub sink: &'static str,
    /// Worth another attempt (timeouts, connection errors, 429, 5xx).
    pub retryable: bool,
    /// Telegram's 429 says how long to wait before the next request.
    pub retry_after: Option<Duration>,
    pub detail: String,
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "notify sink {}: {}", self.sink, self.detail)
    }
}

impl std::error::Error for DeliveryError {}

/// Replaces every secret in `text` by `***`, longest first so a secret that
/// contains another is scrubbed whole.
pub(super) fn scrub(text: &str, secrets: &[String]) -> String {
    let mut secrets: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for s in secrets {
        out = out.replace(s.as_str(), "***");
    }
    out
}

/// The producers' end of a sink (the notifier's, and the Telegram
/// receiver's): never blocks.
#[derive(Clone)]
pub(super) struct SinkQueue {
    name: &'static str,
    target: Target,
    tx: Sender<Outgoing>,
    /// A second receiver on the same channel, used only to drop the oldest
    /// item when the queue is full.
    oldest: Receiver<Outgoing>,
    /// Set from the first drop until the queue is half empty again.
    overflowing: Arc<AtomicBool>,
    metrics: Metrics,
}

impl SinkQueue {
    pub(super) fn wants(&self, kind: Kind) -> bool {
        self.target.wants(kind)
    }

    pub(super) fn is_telegram(&self) -> bool {
        matches!(self.target, Target::Telegram { .. })
    }

    pub(super) fn push(&self, item: Outgoing) {
        let mut item = item;
        loop {
            match self.tx.try_send(item) {
                Ok(()) => {
                    if self.tx.len() < self.tx.capacity().unwrap_or(usize::MAX) / 2 {
                        self.overflowing.store(false, Ordering::Relaxed);
                    }
                    return;
                }
                Err(TrySendError::Full(back)) => {
                    // If the worker took one meanwhile this drops one more
                    // than needed; it is counted either way.
                    if self.oldest.try_recv().is_ok() {
                        self.metrics.inc("claude_failover_notify_dropped_total", &[("sink", self.name)]);
                        // One line per overflow spell, not one per notice.
                        if !self.overflowing.swap(true, Ordering::Relaxed) {
                            log::warn!("notify sink {}: queue full, dropping the oldest notices", self.name);
                        }
                    }
                    item = back;
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }
}

/// Starts a sink's worker thread (`notify-<sink>`). The worker ends when the
/// queue is closed and drained; once `stop` disconnects it stops retrying.
/// It drops `done` when it ends.
pub(super) fn start(
    target: Target,
    tuning: &Tuning,
    metrics: Metrics,
    stop: Receiver<()>,
    routed: Receiver<()>,
    done: Sender<()>,
) -> std::io::Result<(SinkQueue, JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::bounded(tuning.queue_capacity.max(1));
    let name = target.name();
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder().timeout_global(Some(tuning.request_timeout)).http_status_as_error(false).build(),
    );
    let worker = Worker {
        secrets: target.secrets(),
        target: target.clone(),
        agent,
        backoff: tuning.backoff.clone(),
        metrics: metrics.clone(),
        stop,
        quiet_until: std::cell::Cell::new(None),
    };
    let queue =
        SinkQueue { name, target, tx, oldest: rx.clone(), overflowing: Arc::new(AtomicBool::new(false)), metrics };
    let thread = std::thread::Builder::new().name(format!("notify-{name}")).spawn(move || {
        worker.run(rx, routed);
        drop(done);
    })?;
    Ok((queue, thread))
}

struct Worker {
    target: Target,
    secrets: Vec<String>,
    agent: ureq::Agent,
    backoff: Vec<Duration>,
    metrics: Metrics,
    stop: Receiver<()>,
    /// No request before this (Telegram's `retry_after`), whatever it is for.
    quiet_until: std::cell::Cell<Option<Instant>>,
}

/// One HTTP request a queued item turns into.
struct Request {
    url: String,
    body: Value,
    /// What the log calls it when it is given up.
    what: String,
}

impl Worker {
    /// Delivers until every producer is gone, or until the notifier has
    /// routed its last notice (`routed` disconnects) and the queue is empty.
    fn run(self, rx: Receiver<Outgoing>, routed: Receiver<()>) {
        loop {
            crossbeam_channel::select! {
                recv(rx) -> item => match item {
                    Ok(item) => self.carry(&item),
                    Err(_) => return,
                },
                recv(routed) -> _ => {
                    for item in rx.try_iter() {
                        self.carry(&item);
                    }
                    return;
                },
            }
        }
    }

    fn carry(&self, item: &Outgoing) {
        for request in self.requests(item) {
            self.deliver(&request);
        }
    }

    /// The requests an item makes: one per part of a text over Telegram's
    /// length limit; none for a call the target does not take.
    fn requests(&self, item: &Outgoing) -> Vec<Request> {
        match (&self.target, item) {
            (Target::Webhook { url }, Outgoing::Notice(notice)) => vec![Request {
                url: url.clone(),
                body: serde_json::to_value(notice.as_ref()).unwrap_or(Value::Null),
                what: format!("{} {}", notice.kind.as_str(), notice.subject),
            }],
            (Target::Webhook { .. }, Outgoing::Call { .. }) => Vec::new(),
            (Target::Telegram { base, chat_id, .. }, Outgoing::Notice(notice)) => {
                let what = format!("{} {}", notice.kind.as_str(), notice.subject);
                let url = format!("{}/sendMessage", base.expose());
                if let Some((text, keyboard)) = text::question_message(notice) {
                    let body = json!({"chat_id": chat_id, "text": text, "disable_web_page_preview": true,
                                      "reply_markup": {"inline_keyboard": keyboard}});
                    return vec![Request { url, body, what }];
                }
                split_message(&telegram_text(notice), text::MAX_TELEGRAM_TEXT)
                    .into_iter()
                    .map(|part| Request {
                        url: url.clone(),
                        body: json!({"chat_id": chat_id, "text": part, "disable_web_page_preview": true}),
                        what: what.clone(),
                    })
                    .collect()
            }
            (Target::Telegram { base, .. }, Outgoing::Call { method, body }) => {
                let url = format!("{}/{method}", base.expose());
                let what = (*method).to_string();
                let text = body.get("text").and_then(Value::as_str).unwrap_or_default();
                // A plain text too long for one message goes as several; a
                // formatted one (its markup cannot be cut anywhere) is the
                // caller's to cut.
                let plain = body.get("parse_mode").is_none() && body.get("reply_markup").is_none();
                if *method == "sendMessage" && plain && text::utf16_len(text) > text::MAX_TELEGRAM_TEXT {
                    return split_message(text, text::MAX_TELEGRAM_TEXT)
                        .into_iter()
                        .map(|part| {
                            let mut body = body.clone();
                            body["text"] = Value::String(part);
                            Request { url: url.clone(), body, what: what.clone() }
                        })
                        .collect();
                }
                vec![Request { url, body: body.clone(), what }]
            }
        }
    }

    /// One request: the first attempt, then one more after each backoff
    /// step (or after the `retry_after` a 429 asked for).
    fn deliver(&self, request: &Request) {
        let sink = self.target.name();
        let mut attempt = 0;
        loop {
            if let Some(until) = self.quiet_until.get() {
                let wait = until.saturating_duration_since(Instant::now());
                if !wait.is_zero() && self.stop_within(wait) {
                    log::warn!(
                        "notify sink {sink}: shutting down during a retry_after pause; {} not sent",
                        request.what
                    );
                    self.metrics.inc("claude_failover_notify_failed_total", &[("sink", sink)]);
                    return;
                }
                self.quiet_until.set(None);
            }
            let err = match self.send(request) {
                Ok(()) => {
                    self.metrics.inc("claude_failover_notify_sent_total", &[("sink", sink)]);
                    return;
                }
                Err(e) => e,
            };
            if let Some(wait) = err.retry_after {
                self.quiet_until.set(Some(Instant::now() + wait));
                self.metrics.inc("claude_failover_notify_retry_after_total", &[("sink", sink)]);
            }
            let give_up = !err.retryable
                || match self.backoff.get(attempt) {
                    // After a retry_after the quiet pause is the wait.
                    Some(_) if err.retry_after.is_some() => false,
                    Some(pause) => self.stop_within(*pause),
                    None => true,
                };
            if give_up {
                log::warn!("{err}; gave up on {} after {} attempt(s)", request.what, attempt + 1);
                self.metrics.inc("claude_failover_notify_failed_total", &[("sink", sink)]);
                return;
            }
            log::debug!("{err}; retrying");
            attempt += 1;
        }
    }

    /// Waits `pause` unless shutdown comes first; true when shutting down.
    fn stop_within(&self, pause: Duration) -> bool {
        match self.stop.recv_timeout(pause) {
            Err(RecvTimeoutError::Timeout) => false,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
        }
    }

    fn send(&self, request: &Request) -> Result<(), DeliveryError> {
        // The whole URL first: an error that quotes it loses it in one piece.
        let mut secrets = self.secrets.clone();
        secrets.push(request.url.clone());
        let fail = |retryable: bool, retry_after: Option<Duration>, detail: String| DeliveryError {
            sink: self.target.name(),
            retryable,
            retry_after,
            detail: scrub(&detail, &secrets),
        };
        let mut response = match self.agent.post(&request.url).send_json(&request.body) {
            Ok(r) => r,
            Err(e) => {
                let retryable = !matches!(e, ureq::Error::BadUri(_) | ureq::Error::Http(_));
                return Err(fail(retryable, None, e.to_string()));
            }
        };
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let text = response.body_mut().with_config().limit(64 * 1024).read_to_string().unwrap_or_default();
        // Telegram: {"ok":false,"error_code":429,"parameters":{"retry_after":5}}
        let retry_after = (status == 429)
            .then(|| serde_json::from_str::<Value>(&text).ok())
            .flatten()
            .and_then(|v| v.pointer("/parameters/retry_after").and_then(Value::as_u64))
            .map(|secs| Duration::from_secs(secs.min(MAX_RETRY_AFTER_SECS)));
        let text: String = text.trim().chars().take(MAX_ERROR_BODY).collect();
        let retryable = status == 429 || status >= 500;
        Err(fail(retryable, retry_after, format!("HTTP {status}: {text}")))
    }
}

/// A `retry_after` longer than this is taken as this: a bot told to wait
/// for hours still tries again within the hour.
const MAX_RETRY_AFTER_SECS: u64 = 3600;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_hides_every_secret_and_its_longer_forms_first() {
        let secrets =
            vec!["123:abc".to_string(), "http://h/bot123:abc/sendMessage".to_string(), "123%3Aabc".to_string()];
        let text = "bad uri: http://h/bot123:abc/sendMessage (token 123:abc, 123%3Aabc)";
        assert_eq!(scrub(text, &secrets), "bad uri: *** (token ***, ***)");
    }
}
