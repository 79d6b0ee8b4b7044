//! What one turn of the coordinator decided to do, returned rather than done:
//! orders to the roles, events, metrics, state files, the status snapshot and
//! what systemd is told. The thin loop in `run.rs` carries them out in one
//! fixed order; a table test reads them.

use crate::config::Config;
use crate::control::Reply;
use crate::dispatcher;
use crate::events::Kind;
use crate::quota::history::Recorded;
use crate::quota::persist::QuotaFile;
use crate::quota::QuotaCommand;
use crate::sessions;
use crate::status::Status;
use crate::switcher::Plan;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

/// An order to one role.
#[derive(Debug, Clone)]
pub enum Order {
    Sessions(sessions::Command),
    Dispatcher(dispatcher::Command),
    Quota(QuotaCommand),
    Switcher(Plan),
    Fleet(crate::fleet::Command),
}

/// An event for the ring, `/events` and the notifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Emit {
    pub kind: Kind,
    pub subject: String,
    pub message: String,
    pub details: serde_json::Value,
}

/// A counter to bump by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub labels: Vec<(&'static str, String)>,
    /// How much the counter grows.
    pub by: u64,
}

/// A file under state_dir to write.
#[derive(Debug, Clone, PartialEq)]
pub enum StateWrite {
    /// `quota.json`; a failed write is logged and retried on the next change.
    Quota { state_dir: PathBuf, file: QuotaFile, at: SystemTime },
    /// `history.json`, from the shared history the readings went into.
    History { state_dir: PathBuf },
    /// `spend.json`; a failed write is logged and retried on the next change.
    Spend { state_dir: PathBuf, file: crate::quota::spend_file::SpendFile },
}

/// What the service manager is told (sd_notify).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notify {
    Ready,
    Status(String),
    Watchdog,
    Reloading,
    Stopping,
}

/// Why the coordinator returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM/SIGINT or every input closed: a clean stop.
    Stopped(&'static str),
}

/// Everything one input made the coordinator decide, in the order the loop
/// carries it out: files, metrics, events, orders, reload hooks, the status
/// snapshot, systemd, then the control reply (so a client that got its
/// answer reads a `/status` that already shows it) and the exit.
#[derive(Debug, Default)]
pub struct Effects {
    pub files: Vec<StateWrite>,
    /// Usage readings for the history behind the dashboard's charts.
    pub readings: Vec<Recorded>,
    pub metrics: Vec<Metric>,
    pub events: Vec<Emit>,
    pub orders: Vec<Order>,
    /// A reloaded config for the roles outside the coordinator's orders.
    pub reconfigured: Option<Arc<Config>>,
    pub status: Option<Status>,
    pub notify: Vec<Notify>,
    pub reply: Option<Reply>,
    pub exit: Option<Exit>,
}

impl Effects {
    pub fn emit(&mut self, kind: Kind, subject: &str, message: impl Into<String>, details: serde_json::Value) {
        self.events.push(Emit { kind, subject: subject.into(), message: message.into(), details });
    }

    pub fn count(&mut self, name: &'static str, labels: &[(&'static str, &str)]) {
        self.add(name, labels, 1);
    }

    pub fn add(&mut self, name: &'static str, labels: &[(&'static str, &str)], by: u64) {
        self.metrics.push(Metric { name, labels: labels.iter().map(|(k, v)| (*k, v.to_string())).collect(), by });
    }

    pub fn sessions(&mut self, command: sessions::Command) {
        self.orders.push(Order::Sessions(command));
    }

    pub fn dispatcher(&mut self, command: dispatcher::Command) {
        self.orders.push(Order::Dispatcher(command));
    }

    pub fn quota(&mut self, command: QuotaCommand) {
        self.orders.push(Order::Quota(command));
    }

    pub fn fleet(&mut self, command: crate::fleet::Command) {
        self.orders.push(Order::Fleet(command));
    }

    /// The kinds of the events, in order.
    pub fn kinds(&self) -> Vec<Kind> {
        self.events.iter().map(|e| e.kind).collect()
    }
}
