//! Requests from the control plane to the coordinator, and what every role
//! shares read-only: the published status, the event ring, metrics, heartbeats.
//! Writes always go through the coordinator as a `ControlRequest` with a reply
//! channel, so only the coordinator changes state.

use crate::claude::question::Choice;
use crate::events::Events;
use crate::heartbeat::Heartbeats;
use crate::metrics::Metrics;
use crate::status::Status;
use crossbeam_channel::Sender;
use parking_lot::RwLock;
use std::fmt;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    /// Swap now, to a named account or to the best eligible one.
    Failover {
        to: Option<String>,
    },
    PauseDispatch,
    ResumeDispatch,
    /// Relaunch one session on the active account, resuming its conversation.
    RestartSession(String),
    /// A person's answer to a question a session waits on, for the waiting
    /// episode it was asked in; refused when that episode is over.
    Answer(Answer),
}

/// An answer to the question of waiting episode `episode`.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub episode: u64,
    pub choice: Choice,
    /// Who answered, as events name them (`@alice (12345)`).
    pub by: String,
    /// Where from (`telegram`).
    pub via: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ControlError {
    /// 400: bad arguments (unknown or ineligible account, ...).
    BadRequest(String),
    /// 404: no such session.
    NotFound(String),
    /// 409: conflicts with what is running (a swap in progress).
    Conflict(String),
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::BadRequest(m) | ControlError::NotFound(m) | ControlError::Conflict(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ControlError {}

/// The reply body on success (JSON), or why not.
pub type Reply = Result<serde_json::Value, ControlError>;

pub struct ControlRequest {
    pub control: Control,
    pub reply: Sender<Reply>,
}

/// Read-only views every role may hold.
#[derive(Clone)]
pub struct Shared {
    pub status: Arc<RwLock<Status>>,
    pub events: Events,
    pub metrics: Metrics,
    pub heartbeats: Heartbeats,
    /// Usage readings per account, behind `GET /history` and the dashboard.
    pub history: crate::quota::history::History,
}
