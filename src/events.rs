//! Events worth a human's attention (docs/events.md): the ring behind `/events`, the
//! log line, and the hand-off to the notifier. Emitting never blocks: the
//! notifier's channel is unbounded here and the notifier bounds its own queue.

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

/// At least 1000 recent events are kept for `/events`.
pub const RING_CAPACITY: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    FailoverStarted,
    FailoverFinished,
    FailoverFailed,
    AllAccountsExhausted,
    AccountRecovered,
    TokenExpired,
    LoginRevoked,
    TurnFailed,
    TaskRepaired,
    SessionDied,
    SessionRestarted,
    SessionCrashLoop,
    SessionWaiting,
    TaskDispatched,
    TaskDone,
    TaskFailed,
    ConfigReloaded,
    ConfigRejected,
    DaemonStarted,
    DaemonStopping,
    /// A write through the MCP server (docs/mcp.md): the tool, the client, the outcome.
    McpCall,
    QuestionAnswered,
    TelegramCommand,
    /// An `api_key` account spent its day's cap: out until the next UTC day.
    SpendCapReached,
    /// The fleet's etcd answered (at start or after an outage): this host joined.
    FleetJoined,
    /// The fleet's etcd stopped answering: this host works on alone.
    FleetUnreachable,
    /// `exclusive`: this host may no longer hold its account (cut off from
    /// etcd past its lease, or another host holds it): its turns are
    /// stopped and nothing is dispatched until it holds an account again.
    FleetFenced,
    /// `exclusive`: the fenced host holds an account again; work goes on.
    FleetUnfenced,
    /// Another host learnt of a hard limit (or a dead login) of an account.
    FleetNews,
    /// A value under the fleet's prefix that is not the fleet's; ignored.
    FleetGarbage,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::FailoverStarted => "failover_started",
            Kind::FailoverFinished => "failover_finished",
            Kind::FailoverFailed => "failover_failed",
            Kind::AllAccountsExhausted => "all_accounts_exhausted",
            Kind::AccountRecovered => "account_recovered",
            Kind::TokenExpired => "token_expired",
            Kind::LoginRevoked => "login_revoked",
            Kind::TurnFailed => "turn_failed",
            Kind::TaskRepaired => "task_repaired",
            Kind::SessionDied => "session_died",
            Kind::SessionRestarted => "session_restarted",
            Kind::SessionCrashLoop => "session_crash_loop",
            Kind::SessionWaiting => "session_waiting",
            Kind::TaskDispatched => "task_dispatched",
            Kind::TaskDone => "task_done",
            Kind::TaskFailed => "task_failed",
            Kind::ConfigReloaded => "config_reloaded",
            Kind::ConfigRejected => "config_rejected",
            Kind::DaemonStarted => "daemon_started",
            Kind::DaemonStopping => "daemon_stopping",
            Kind::McpCall => "mcp_call",
            Kind::QuestionAnswered => "question_answered",
            Kind::TelegramCommand => "telegram_command",
            Kind::SpendCapReached => "spend_cap_reached",
            Kind::FleetJoined => "fleet_joined",
            Kind::FleetUnreachable => "fleet_unreachable",
            Kind::FleetFenced => "fleet_fenced",
            Kind::FleetUnfenced => "fleet_unfenced",
            Kind::FleetNews => "fleet_news",
            Kind::FleetGarbage => "fleet_garbage",
        }
    }

    /// Every kind, for parsing a kind's name (config) and listing them.
    pub const ALL: [Kind; 30] = [
        Kind::FailoverStarted,
        Kind::FailoverFinished,
        Kind::FailoverFailed,
        Kind::AllAccountsExhausted,
        Kind::AccountRecovered,
        Kind::TokenExpired,
        Kind::LoginRevoked,
        Kind::TurnFailed,
        Kind::TaskRepaired,
        Kind::SessionDied,
        Kind::SessionRestarted,
        Kind::SessionCrashLoop,
        Kind::SessionWaiting,
        Kind::TaskDispatched,
        Kind::TaskDone,
        Kind::TaskFailed,
        Kind::ConfigReloaded,
        Kind::ConfigRejected,
        Kind::DaemonStarted,
        Kind::DaemonStopping,
        Kind::McpCall,
        Kind::QuestionAnswered,
        Kind::TelegramCommand,
        Kind::SpendCapReached,
        Kind::FleetJoined,
        Kind::FleetUnreachable,
        Kind::FleetFenced,
        Kind::FleetUnfenced,
        Kind::FleetNews,
        Kind::FleetGarbage,
    ];

    /// The kind named `name` (as in events and `notify.telegram.kinds`).
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Kinds that mean something went wrong, logged at warn.
    pub fn is_trouble(self) -> bool {
        matches!(
            self,
            Kind::FailoverFailed
                | Kind::AllAccountsExhausted
                | Kind::TokenExpired
                | Kind::LoginRevoked
                | Kind::TurnFailed
                | Kind::TaskRepaired
                | Kind::SessionDied
                | Kind::SessionCrashLoop
                | Kind::TaskFailed
                | Kind::ConfigRejected
                | Kind::FleetUnreachable
                | Kind::FleetFenced
                | Kind::FleetGarbage
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Notice {
    pub seq: u64,
    pub at: String,
    pub kind: Kind,
    /// The account, session, task or project the event is about.
    pub subject: String,
    pub message: String,
    #[serde(flatten)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

struct Ring {
    next_seq: u64,
    notices: VecDeque<Notice>,
}

/// Cloneable handle every role uses to emit events.
#[derive(Clone)]
pub struct Events {
    ring: Arc<Mutex<Ring>>,
    sink: Option<Sender<Notice>>,
}

impl Events {
    /// `sink` receives a copy of every event (the notifier); `None` in tests.
    pub fn new(sink: Option<Sender<Notice>>) -> Events {
        Events { ring: Arc::new(Mutex::new(Ring { next_seq: 1, notices: VecDeque::new() })), sink }
    }

    /// Records an event; returns its sequence number. `details` must be a JSON
    /// object (anything else is ignored).
    pub fn emit(&self, kind: Kind, subject: &str, message: impl Into<String>, details: serde_json::Value) -> u64 {
        let details = match details {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        let message = message.into();
        let notice = {
            let mut ring = self.ring.lock();
            let notice = Notice {
                seq: ring.next_seq,
                at: crate::time::rfc3339(SystemTime::now()),
                kind,
                subject: subject.to_string(),
                message,
                details,
            };
            ring.next_seq += 1;
            if ring.notices.len() == RING_CAPACITY {
                ring.notices.pop_front();
            }
            ring.notices.push_back(notice.clone());
            notice
        };
        let seq = notice.seq;
        log_line(&notice);
        if let Some(sink) = &self.sink {
            // The notifier gone means we are shutting down; nothing to do.
            let _ = sink.send(notice);
        }
        seq
    }

    /// Events with `seq > since`, oldest first.
    pub fn since(&self, since: u64) -> Vec<Notice> {
        self.ring.lock().notices.iter().filter(|n| n.seq > since).cloned().collect()
    }

    pub fn last_seq(&self) -> u64 {
        self.ring.lock().next_seq - 1
    }
}

/// The event's log line; a JSON log line carries the event itself too
/// (`logging::EVENT_KEY`), without its message, which is the line's own.
fn log_line(notice: &Notice) {
    let level = if notice.kind.is_trouble() { log::Level::Warn } else { log::Level::Info };
    if !log::log_enabled!(level) {
        return;
    }
    let mut fields = serde_json::to_value(notice).unwrap_or_default();
    if let Some(map) = fields.as_object_mut() {
        map.remove("message");
    }
    let fields = fields.to_string();
    log::log!(level, event = fields.as_str(); "{} {}: {}", notice.kind.as_str(), notice.subject, notice.message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_ring_keeps_the_newest_and_numbers_them() {
        let events = Events::new(None);
        for i in 0..(RING_CAPACITY + 10) {
            events.emit(Kind::TaskDone, "p", format!("task {i}"), json!({"task": i}));
        }
        let all = events.since(0);
        assert_eq!(all.len(), RING_CAPACITY);
        assert_eq!(all[0].seq, 11);
        assert_eq!(events.since(events.last_seq() - 2).len(), 2);
        let v = serde_json::to_value(&all[0]).unwrap();
        assert_eq!(v["kind"], "task_done");
        assert_eq!(v["task"], 10);
    }
}
