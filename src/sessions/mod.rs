//! Sessions: the coordinator's model of each configured Claude Code session
//! (`model`) and the role that launches, watches and relaunches them.

pub mod launch;
pub mod model;
pub mod observe;
pub mod role;
pub mod seen;
pub mod spool;
pub mod watch;

use crate::claude::question::{Choice, Question};
use crate::config::Config;
use model::Seen;
use std::sync::Arc;

/// What the coordinator asks of the sessions role.
#[derive(Debug, Clone)]
pub enum Command {
    /// At start-up: find configured sessions already running in tmux and
    /// report each as `Adopted` or `Absent`. Nothing is relaunched.
    Adopt,
    /// Start the session's claude on `account`, resuming its conversation
    /// when it has one.
    Launch { session: String, account: String },
    /// Stop it (gracefully, then kill) and launch it again on `account`.
    Restart { session: String, account: String },
    /// Answer the "trust this folder?" dialog (the coordinator checked `auto_trust`).
    AnswerTrust { session: String },
    /// The screen holds a limit Claude Code would act on by itself (its
    /// "Continuing automatically" footer) or asks about ("What do you want
    /// to do?"): leave it to the daemon (Escape, or "Stop and wait"), so the
    /// daemon alone decides when, and on which account, the task goes on.
    TakeOverLimit { session: String },
    /// Stop the turn running in the session (Escape), so it makes no more
    /// calls on its account: the fleet's fence. The coordinator continues
    /// the task once this host may work again.
    Interrupt { session: String },
    /// Type a person's answer to the question on the session's screen, if
    /// that question is still there.
    Answer { session: String, question: Question, choice: Choice },
    /// A swap moved the session (the switcher launched it): watch it again,
    /// now under this account.
    Track { session: String, account: String, claude_session_id: String },
    /// A reloaded config: sessions no longer in it stop being watched (left running).
    Configure(Arc<Config>),
}

/// What the sessions role tells the coordinator.
#[derive(Debug)]
pub enum Report {
    Adopted {
        session: String,
        account: String,
        claude_session_id: String,
    },
    Absent {
        session: String,
    },
    Launched {
        session: String,
        account: String,
        claude_session_id: String,
    },
    LaunchFailed {
        session: String,
        account: String,
        error: launch::StartError,
    },
    Seen {
        session: String,
        seen: Seen,
    },
    /// The transcript gained a quota-limit record. `record_time` is set only
    /// for a structured record (`quotaLimits`, 2.1.332+): older versions write
    /// one that looks like any 429, which wants a second source.
    Limit {
        session: String,
        resets_at: Option<std::time::SystemTime>,
        record_time: Option<std::time::SystemTime>,
        /// The window that ran out (`quotaLimits.rateLimitType`), if named.
        window: Option<String>,
    },
    /// How the running turn ended (a transcript record, or a `StopFailure`
    /// hook for a failure). Quota limits come as `Limit`.
    TurnEnded {
        session: String,
        end: model::TurnEnd,
    },
    /// A new user turn began: a prompt typed, or Claude Code's own
    /// auto-continuation at a reset.
    TurnStarted {
        session: String,
    },
    /// The statusline's rate limits for the account this session runs on.
    Sample {
        session: String,
        limits: Vec<crate::claude::hook::RateLimit>,
    },
    /// Limit text at the bottom of the screen: current, or replayed by
    /// `--resume`; a sighting that needs a second source.
    ScreenLimit {
        session: String,
        /// Claude Code shows it will continue by itself at the reset, or asks
        /// what to do: the daemon may take the limit over.
        takeover: bool,
    },
    /// A `StopFailure` hook with `rate_limit`: a hint, never proof alone.
    RateLimitFailure {
        session: String,
    },
    /// The transcript gained an API answer's token usage, written while the
    /// session ran on `account` (what an `api_key` account's spend is
    /// counted from).
    Usage {
        session: String,
        account: String,
        message_id: String,
        model: String,
        tokens: crate::claude::transcript::TokenUsage,
    },
}
