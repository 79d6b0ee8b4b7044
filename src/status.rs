//! The `/status` document (docs/http.md#get-status) and what the coordinator publishes for the
//! HTTP role to read. Plain data: the coordinator builds it, HTTP serialises it,
//! `claude-failover status` parses it back for the table.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub version: String,
    pub started_at: String,
    pub active_account: Option<String>,
    pub dispatch_paused: bool,
    pub swap: SwapStatus,
    pub accounts: Vec<AccountStatus>,
    pub sessions: Vec<SessionStatus>,
    pub queues: Vec<QueueStatus>,
    /// `[fleet]` only: the fleet as this host sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetStatus>,
}

/// The `fleet` section of `/status` (docs/fleet.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FleetStatus {
    /// This host's name.
    pub host: String,
    pub policy: String,
    /// `joining`, `connected` or `unreachable`.
    pub state: String,
    /// Since when `state` holds (RFC 3339).
    pub since: Option<String>,
    /// Why etcd is unreachable.
    pub error: Option<String>,
    /// `shared`: the fleet's active account and the etcd revision that chose it.
    pub active: Option<FleetActive>,
    /// `exclusive`: account → the host holding it.
    pub holds: BTreeMap<String, String>,
    /// Account → the host polling its usage for the fleet.
    pub pollers: BTreeMap<String, String>,
    pub hosts: Vec<FleetHost>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FleetActive {
    pub account: String,
    pub revision: i64,
    pub by: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FleetHost {
    pub host: String,
    pub account: Option<String>,
    pub sessions: usize,
    pub busy: usize,
    pub queued: usize,
    /// The host's last renewal (RFC 3339, by its own clock).
    pub last_seen: String,
    /// How far that host's clock runs ahead of this one's (behind:
    /// negative), when it is more than [`CLOCK_SKEW_SHOWN`] off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew_secs: Option<i64>,
}

/// A fleet host's clock this far off this host's is shown (and logged once).
pub const CLOCK_SKEW_SHOWN: i64 = 30;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SwapStatus {
    pub in_progress: bool,
    pub last: Option<SwapRecord>,
    /// The latest swaps, newest first (at most [`RECENT_SWAPS`]); this run's,
    /// after the last one a previous run recorded.
    #[serde(default)]
    pub recent: Vec<SwapRecord>,
}

/// How many swaps `swap.recent` lists.
pub const RECENT_SWAPS: usize = 10;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SwapRecord {
    pub from: String,
    pub to: String,
    pub reason: SwapCause,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub sessions_moved: usize,
}

/// Why a swap ran, as `/status`, events, the failovers metric, the journal
/// and `active.json` spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwapCause {
    /// A confirmed hard limit on the active account.
    HardLimit,
    /// The active account crossed a threshold.
    Threshold,
    /// At its burn rate it would cross one before the next poll.
    Projected,
    /// The first account is eligible again.
    Failback,
    /// The active account's login was revoked.
    LoginRevoked,
    /// `POST /failover`.
    Manual,
    /// After a restart, sessions found on another account were moved back.
    Consolidate,
    /// The active `api_key` account spent its day's cap.
    SpendCap,
    /// Off an `api_key` account: a subscription can work again.
    BackToSubscription,
}

impl SwapCause {
    pub fn as_str(self) -> &'static str {
        match self {
            SwapCause::HardLimit => "hard_limit",
            SwapCause::Threshold => "threshold",
            SwapCause::Projected => "projected",
            SwapCause::Failback => "failback",
            SwapCause::LoginRevoked => "login_revoked",
            SwapCause::Manual => "manual",
            SwapCause::Consolidate => "consolidate",
            SwapCause::SpendCap => "spend_cap",
            SwapCause::BackToSubscription => "back_to_subscription",
        }
    }
}

impl std::fmt::Display for SwapCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Window {
    pub utilization: f64,
    pub resets_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccountStatus {
    pub name: String,
    /// active, standby, exhausted, token_expired, error (or unknown before the first poll).
    pub state: String,
    pub eligible: bool,
    pub five_hour: Option<Window>,
    pub seven_day: Option<Window>,
    pub other_windows: BTreeMap<String, Window>,
    pub last_poll_at: Option<String>,
    pub last_error: Option<String>,
    pub exhausted_until: Option<String>,
    /// The five-hour window's recent burn rate, percent per hour, while it rises.
    #[serde(default)]
    pub burn_rate_per_hour: Option<f64>,
    /// `subscription` or `api_key`.
    #[serde(default = "subscription")]
    pub kind: String,
    /// `api_key` accounts: today's spend and the cap.
    #[serde(default)]
    pub spend: Option<SpendStatus>,
}

fn subscription() -> String {
    "subscription".into()
}

/// What an `api_key` account spent on the current UTC day.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SpendStatus {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    pub spent_usd: f64,
    pub cap_usd: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionStatus {
    pub name: String,
    pub project: String,
    pub account: Option<String>,
    /// starting, idle, busy, waiting, rate_limited, stopped, dead.
    pub state: String,
    pub claude_session_id: Option<String>,
    pub task: Option<String>,
    pub restarts: u32,
    /// When it entered its current `state` (as this daemon saw it).
    #[serde(default)]
    pub state_since: Option<String>,
    /// While `waiting`: what holds it (`permission prompt`, `trust dialog`, ...).
    #[serde(default)]
    pub waiting_for: Option<String>,
    /// While `waiting` on a question it could read: the question.
    #[serde(default)]
    pub question: Option<SessionQuestion>,
}

/// A question on a waiting session's screen, as `session_waiting` events carry it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionQuestion {
    pub title: String,
    pub prompt: String,
    pub detail: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct QueueStatus {
    pub project: String,
    pub inbox: usize,
    pub active: usize,
    pub done: usize,
    pub failed: usize,
}

impl Status {
    /// The one-line summary for systemd's `STATUS=`.
    pub fn summary(&self) -> String {
        let busy = self.sessions.iter().filter(|s| s.state == "busy").count();
        let idle = self.sessions.iter().filter(|s| s.state == "idle").count();
        let inbox: usize = self.queues.iter().map(|q| q.inbox).sum();
        let mut line = format!(
            "active {}; sessions {busy} busy, {idle} idle of {}; {inbox} queued",
            self.active_account.as_deref().unwrap_or("none"),
            self.sessions.len()
        );
        if self.swap.in_progress {
            line.push_str("; swap in progress");
        }
        if self.dispatch_paused {
            line.push_str("; dispatch paused");
        }
        line
    }
}
