//! One delivery target (the webhook or Telegram): its bounded queue that drops
//! the oldest notice when full, and its worker thread that POSTs with a global
//! timeout and retries with backoff. A hanging or failing target only ever
//! delays its own queue.

use super::text::telegram_text;
use super::{telegram_wants, Tuning};
use crate::config::Secret;
use crate::events::{Kind, Notice};
use crate::metrics::Metrics;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest piece of an error answer's body kept for the log line.
const MAX_ERROR_BODY: usize = 200;

#[derive(Clone)]
pub(super) enum Target {
    /// POST of the event JSON to `url`.
    Webhook { url: String },
    /// `sendMessage` of a one-line text; `url` holds the bot token.
    Telegram {
        url: Secret,
        chat_id: String,
        token: Secret,
    },
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
            Target::Telegram { .. } => telegram_wants(kind),
        }
    }

    /// Strings that must not reach a log line: the bot token (also as it
    /// would look percent-encoded) and the whole webhook URL, which often
    /// carries a secret of its own (Slack-style hook URLs).
    fn secrets(&self) -> Vec<String> {
        match self {
            Target::Webhook { url } => vec![url.clone()],
            Target::Telegram { url, token, .. } => {
                let token = token.expose();
                let mut s = vec![url.expose().to_string(), token.to_string()];
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

/// The notifier's end of a sink: never blocks.
pub(super) struct SinkQueue {
    name: &'static str,
    target: Target,
    tx: Sender<Arc<Notice>>,
    /// A second receiver on the same channel, used only to drop the oldest
    /// notice when the queue is full.
    oldest: Receiver<Arc<Notice>>,
    /// Set from the first drop until the queue is half empty again.
    overflowing: Cell<bool>,
    metrics: Metrics,
}

impl SinkQueue {
    pub(super) fn wants(&self, kind: Kind) -> bool {
        self.target.wants(kind)
    }

    pub(super) fn push(&self, notice: Arc<Notice>) {
        let mut notice = notice;
        loop {
            match self.tx.try_send(notice) {
                Ok(()) => {
                    if self.tx.len() < self.tx.capacity().unwrap_or(usize::MAX) / 2 {
                        self.overflowing.set(false);
                    }
                    return;
                }
                Err(TrySendError::Full(back)) => {
                    // If the worker took one meanwhile this drops one more
                    // than needed; it is counted either way.
                    if self.oldest.try_recv().is_ok() {
                        self.metrics.inc(
                            "claude_failover_notify_dropped_total",
                            &[("sink", self.name)],
                        );
                        // One line per overflow spell, not one per notice.
                        if !self.overflowing.replace(true) {
                            log::warn!(
                                "notify sink {}: queue full, dropping the oldest notices",
                                self.name
                            );
                        }
                    }
                    notice = back;
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
    done: Sender<()>,
) -> std::io::Result<(SinkQueue, JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::bounded(tuning.queue_capacity.max(1));
    let name = target.name();
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_global(Some(tuning.request_timeout))
            .http_status_as_error(false)
            .build(),
    );
    let worker = Worker {
        secrets: target.secrets(),
        target: target.clone(),
        agent,
        backoff: tuning.backoff.clone(),
        metrics: metrics.clone(),
        stop,
    };
    let queue = SinkQueue {
        name,
        target,
        tx,
        oldest: rx.clone(),
        overflowing: Cell::new(false),
        metrics,
    };
    let thread = std::thread::Builder::new()
        .name(format!("notify-{name}"))
        .spawn(move || {
            worker.run(rx);
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
}

impl Worker {
    fn run(self, rx: Receiver<Arc<Notice>>) {
        for notice in rx.iter() {
            self.deliver(&notice);
        }
    }

    /// One notice: the first attempt, then one more after each backoff step.
    fn deliver(&self, notice: &Notice) {
        let sink = self.target.name();
        let mut attempt = 0;
        loop {
            let err = match self.send(notice) {
                Ok(()) => {
                    self.metrics
                        .inc("claude_failover_notify_sent_total", &[("sink", sink)]);
                    return;
                }
                Err(e) => e,
            };
            let give_up = !err.retryable
                || match self.backoff.get(attempt) {
                    Some(pause) => self.stop_within(*pause),
                    None => true,
                };
            if give_up {
                log::warn!(
                    "{err}; gave up on {} {} after {} attempt(s)",
                    notice.kind.as_str(),
                    notice.subject,
                    attempt + 1
                );
                self.metrics
                    .inc("claude_failover_notify_failed_total", &[("sink", sink)]);
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

    fn send(&self, notice: &Notice) -> Result<(), DeliveryError> {
        let (url, body) = match &self.target {
            Target::Webhook { url } => (
                url.as_str(),
                serde_json::to_value(notice).unwrap_or(serde_json::Value::Null),
            ),
            Target::Telegram { url, chat_id, .. } => (
                url.expose(),
                serde_json::json!({
                    "chat_id": chat_id,
                    "text": telegram_text(notice),
                    "disable_web_page_preview": true,
                }),
            ),
        };
        let fail = |retryable: bool, detail: String| DeliveryError {
            sink: self.target.name(),
            retryable,
            detail: scrub(&detail, &self.secrets),
        };
        let mut response = match self.agent.post(url).send_json(&body) {
            Ok(r) => r,
            Err(e) => {
                let retryable = !matches!(e, ureq::Error::BadUri(_) | ureq::Error::Http(_));
                return Err(fail(retryable, e.to_string()));
            }
        };
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let text = response
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
            .unwrap_or_default();
        let text: String = text.trim().chars().take(MAX_ERROR_BODY).collect();
        let retryable = status == 429 || status >= 500;
        Err(fail(retryable, format!("HTTP {status}: {text}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_hides_every_secret_and_its_longer_forms_first() {
        let secrets = vec![
            "123:abc".to_string(),
            "http://h/bot123:abc/sendMessage".to_string(),
            "123%3Aabc".to_string(),
        ];
        let text = "bad uri: http://h/bot123:abc/sendMessage (token 123:abc, 123%3Aabc)";
        assert_eq!(scrub(text, &secrets), "bad uri: *** (token ***, ***)");
    }
}
