//! The coordinator's view of turns: how each turn of a task began and ended
//! (transcript records, `StopFailure` hooks), and what an ending that was
//! not normal means for its task. A task is finished only by a turn that
//! ended normally; after an API error it is continued with the attempt
//! counted (or failed); after a limit or a dead login it waits for an
//! account, then is continued, spread over `resume_spread_secs`; a task left
//! on an idle session of a working account is repaired on its evidence.

use super::{Coordinator, Effects, Now};
use crate::dispatcher::{Command, SessionRef};
use crate::events::Kind;
use crate::sessions::model::{Activity, Session, TurnEnd};
use serde_json::json;
use std::time::{Duration, Instant};

/// How long past its settle time a task may sit on an idle session of a
/// working account, neither settling nor going on, before it is repaired.
pub const REPAIR_AFTER: Duration = Duration::from_secs(30);

impl Coordinator {
    /// A new user turn began in `session`: a prompt typed, or Claude Code's
    /// own continue at a reset. Whatever stopped the task is behind it.
    pub(super) fn turn_started(&mut self, session: &str, now: Now) {
        let fenced = self.fenced();
        let Some(s) = self.pool.sessions.get_mut(session).filter(|s| !s.moving) else { return };
        if let Some(w) = &mut s.work {
            w.failure = None;
            w.unlimit();
            w.ended_normally = false;
            w.limit_taken_over = false;
            w.takeover_offered = false;
            w.turn_seen = true;
            if fenced {
                // Begun while this host may not work (and stopped as it
                // went busy): it goes on once the fence lifts, never
                // settles as it stands.
                w.fence(now.at);
            }
        }
    }

    /// How the turn in `session` ended.
    pub(super) fn turn_ended(&mut self, session: &str, end: TurnEnd, now: Now, fx: &mut Effects) {
        let Some(s) = self.pool.sessions.get_mut(session).filter(|s| !s.moving) else { return };
        let account = s.account.clone();
        let task = s.work.as_ref().map(|w| w.task.clone());
        match &end {
            TurnEnd::Normal => {
                if let Some(w) = &mut s.work {
                    w.failure = None;
                    w.unlimit();
                    w.ended_normally = true;
                }
            }
            // Held by a login wait like a limit: not an attempt, continued
            // on the account the sessions move to.
            TurnEnd::LoginRevoked => {
                if let Some(w) = &mut s.work {
                    w.limit(now.at);
                    w.failure = None;
                    w.ended_normally = false;
                }
                if let Some(account) = account {
                    self.session_login_revoked(&account, now, fx);
                }
            }
            TurnEnd::ApiError { .. } => {
                let Some(w) = &mut s.work else {
                    return log::warn!("{session}: a turn with no task of ours ended in {}", end.describe());
                };
                w.ended_normally = false;
                if w.failure.is_some() {
                    // The hook and the transcript both tell of one failure.
                    return;
                }
                w.failure = Some(end.clone());
                fx.emit(
                    Kind::TurnFailed,
                    session,
                    format!(
                        "the turn on {} in {session} ended in {}; it is not done and will be continued",
                        task.as_deref().unwrap_or("its task"),
                        end.describe()
                    ),
                    json!({"session": session, "task": task, "account": account, "error": end.describe()}),
                );
            }
        }
    }

    /// Claude Code shows it will continue a limited turn by itself at the
    /// reset, or asks what to do. When the sessions wait (no account can take
    /// them) the daemon takes that over, once per episode, for a task of
    /// ours, so it alone continues the task (spread with the others, once
    /// the account can work) and no task is sent twice; a swap stops the
    /// session anyway, so then nothing is pressed.
    pub(super) fn limit_takeover(&mut self, session: &str, now: Now, fx: &mut Effects) {
        let Some(w) = self.pool.sessions.get_mut(session).filter(|s| !s.moving).and_then(|s| s.work.as_mut()) else {
            return;
        };
        w.limit(now.at);
        w.takeover_offered = true;
        if self.swap.exhausted {
            self.take_over_limits(fx);
        }
    }

    /// Every limit a screen offered to take over and not taken yet is taken
    /// over now: the sessions are to wait where they are.
    pub(super) fn take_over_limits(&mut self, fx: &mut Effects) {
        for s in self.pool.sessions.values_mut().filter(|s| !s.moving) {
            let Some(w) = s.work.as_mut().filter(|w| w.takeover_offered && !w.limit_taken_over) else { continue };
            w.limit_taken_over = true;
            fx.sessions(crate::sessions::Command::TakeOverLimit { session: s.name.clone() });
        }
    }

    /// Turns that ended in an API error, once their session has been idle
    /// for `settle_secs` on an account that can work: continued with the
    /// attempt counted, or failed after `max_attempts` (the dispatcher's
    /// call, on the lease's count).
    pub(super) fn retry_failed_turns(&mut self, now: Now, fx: &mut Effects) {
        if !self.dispatch_allowed_by_quota(now) {
            return;
        }
        let settle = Duration::from_secs(self.config.dispatch.settle_secs);
        let due: Vec<(SessionRef, String, String)> = self
            .pool
            .sessions
            .values()
            .filter(|s| self.on_working_account(s) && idle_for(s, now.at, settle))
            .filter_map(|s| {
                let w = s.work.as_ref()?;
                let why = w.failure.as_ref()?.describe();
                Some((self.session_ref(s)?, w.task.clone(), why))
            })
            .collect();
        for (at, task, why) in due {
            if let Some(s) = self.pool.sessions.get_mut(&at.session) {
                s.offered = true;
            }
            fx.dispatcher(Command::Retry { at, task, why });
        }
    }

    /// Tasks stopped by a limit or a dead login go on once their account
    /// can work: each is given a moment spread over `resume_spread_secs`
    /// (twenty sessions must not hit the API in one instant), and told to
    /// continue when it comes.
    pub(super) fn resume_limited(&mut self, now: Now, fx: &mut Effects) {
        if !self.dispatch_allowed_by_quota(now) {
            return;
        }
        let waiting: Vec<String> = self
            .pool
            .sessions
            .values()
            .filter(|s| self.on_working_account(s) && s.activity == Activity::Idle)
            .filter(|s| s.work.as_ref().is_some_and(|w| w.limited && !w.finishing && w.resume_at.is_none()))
            .filter(|s| self.news_since_limit(s, now))
            .map(|s| s.name.clone())
            .collect();
        if !waiting.is_empty() {
            let step = self.config.quota.resume_spread() / waiting.len() as u32;
            for (k, name) in waiting.iter().enumerate() {
                if let Some(w) = self.pool.sessions.get_mut(name).and_then(|s| s.work.as_mut()) {
                    w.resume_at = Some(now.at + step * k as u32);
                }
            }
            log::info!(
                "{} task(s) stopped by a limit can go on; continuing them over {} s",
                waiting.len(),
                self.config.quota.resume_spread_secs
            );
        }
        let due: Vec<(SessionRef, String, bool)> = self
            .pool
            .sessions
            .values()
            .filter(|s| self.on_working_account(s) && s.activity == Activity::Idle)
            .filter_map(|s| {
                let w = s.work.as_ref()?;
                let due = w.limited && !w.finishing && w.resume_at.is_some_and(|t| t <= now.at);
                due.then(|| Some((self.session_ref(s)?, w.task.clone(), w.fenced))).flatten()
            })
            .collect();
        for (at, task, fenced) in due {
            if let Some(s) = self.pool.sessions.get_mut(&at.session) {
                s.offered = true;
            }
            let after =
                if fenced { "a pause while this host could not vouch for its account" } else { "a usage limit" };
            fx.dispatcher(Command::Continue { at, task, after });
        }
    }

    /// The next moment after `now` a spread-out continuation is due, for
    /// the loop to wake at (its tick is a second; the spread is finer).
    pub fn wake_at(&self, now: Instant) -> Option<Instant> {
        self.pool
            .sessions
            .values()
            .filter(|s| !s.offered)
            .filter_map(|s| s.work.as_ref().filter(|w| w.limited)?.resume_at)
            .chain(self.fence_wake())
            .filter(|t| *t > now)
            .min()
    }

    /// Has the session's account been heard of since the limit stopped its
    /// task: a usage reading newer than that, or its hold's reset passed?
    /// (A limit nobody confirmed holds nothing, and must not be walked
    /// into again at once.)
    fn news_since_limit(&self, s: &Session, now: Now) -> bool {
        if s.work.as_ref().is_some_and(|w| w.fenced) {
            return true;
        }
        let Some(since) = s.work.as_ref().and_then(|w| w.limited_since).map(|t| now.wall_of(t)) else { return true };
        let Some(q) = self.quotas.accounts.iter().find(|q| Some(&q.name) == s.account.as_ref()) else { return false };
        q.windows_at.is_some_and(|t| t > since) || q.exhausted_until.is_some_and(|u| u > since && u <= now.wall)
    }

    /// A task on an idle session of a working account that neither settles
    /// nor goes on (no turn seen since a move, say) is repaired on its
    /// evidence: settled when its last turn ended normally, continued
    /// otherwise; never called done without a normal turn.
    pub(super) fn repair_stuck(&mut self, now: Now, fx: &mut Effects) {
        if !self.dispatch_allowed_by_quota(now) {
            return;
        }
        let after = Duration::from_secs(self.config.dispatch.settle_secs) + REPAIR_AFTER;
        let stuck: Vec<(String, String, bool)> = self
            .pool
            .sessions
            .values()
            .filter(|s| self.on_working_account(s) && idle_for(s, now.at, after))
            .filter_map(|s| {
                let w = s.work.as_ref()?;
                let stuck = !w.turn_seen && !w.limited && w.failure.is_none() && !w.finishing && !w.resume_prompt;
                stuck.then(|| (s.name.clone(), w.task.clone(), w.ended_normally))
            })
            .collect();
        for (session, task, ended_normally) in stuck {
            let Some(w) = self.pool.sessions.get_mut(&session).and_then(|s| s.work.as_mut()) else { continue };
            let action = if ended_normally {
                // Settles on the next pass: its turn ended normally.
                w.turn_seen = true;
                "settled: its last turn ended normally"
            } else {
                w.resume_prompt = true;
                "continued: no turn of it ended normally"
            };
            fx.emit(
                Kind::TaskRepaired,
                &task,
                format!("task {task} sat on idle session {session} past its settle time; {action}"),
                json!({"session": session, "task": task, "action": if ended_normally { "settled" } else { "continued" }}),
            );
        }
    }

    /// On the active account, not moving, not being handed something.
    fn on_working_account(&self, s: &Session) -> bool {
        !s.moving && !s.offered && s.account.is_some() && s.account == self.active_account
    }
}

/// Idle at its prompt for at least `long`, with a task.
fn idle_for(s: &Session, now: Instant, long: Duration) -> bool {
    s.activity == Activity::Idle
        && s.work.as_ref().is_some_and(|w| w.idle_since.is_some_and(|t| now.saturating_duration_since(t) >= long))
}
