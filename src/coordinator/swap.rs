//! The coordinator's swap: deciding when and where to move the sessions,
//! waiting for pastes and turns, planning the move for the switcher, folding
//! its outcome back in, and finishing a swap a killed daemon left behind.
//! Which account is eligible is `quota::decide`'s pure functions.

use super::{Coordinator, Effects, Now, Order};
use crate::control::{ControlError, Reply};
use crate::events::Kind;
use crate::quota::{eligible, eligible_again_at, should_swap, SwapReason, Verdict};
use crate::sessions::model::{Activity, Seen};
use crate::sessions::Command;
use crate::status::{SwapCause, SwapRecord};
use crate::switcher::{Finished, Mover, Outcome, Plan};
use serde_json::json;
use std::time::{Duration, Instant};

/// How long a decided swap waits for running turns to end before it
/// interrupts them (hard limits never wait).
pub const SWAP_WAITS_FOR_TURNS: Duration = Duration::from_secs(300);

/// A swap decided (or asked for) and not started yet.
#[derive(Debug, Clone)]
pub struct PendingSwap {
    pub to: String,
    pub reason: SwapCause,
    pub decided: Instant,
}

/// Quota's reasons are a part of the swap's: the ones `quota::decide` gives.
impl From<SwapReason> for SwapCause {
    fn from(reason: SwapReason) -> SwapCause {
        match reason {
            SwapReason::HardLimit => SwapCause::HardLimit,
            SwapReason::Threshold => SwapCause::Threshold,
            SwapReason::Projected => SwapCause::Projected,
            SwapReason::Failback => SwapCause::Failback,
            SwapReason::LoginRevoked => SwapCause::LoginRevoked,
            SwapReason::SpendCap => SwapCause::SpendCap,
            SwapReason::BackToSubscription => SwapCause::BackToSubscription,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Swap {
    /// The swap running now, if any.
    pub(super) running: Option<Plan>,
    /// A requested swap waiting for in-flight deliveries and turns.
    pub(super) pending: Option<PendingSwap>,
    pub(super) last: Option<SwapRecord>,
    /// When the last swap started (monotonic, for `min_dwell_secs`).
    pub(super) last_at: Option<Instant>,
    /// No account is eligible: dispatch waits, the event was sent once.
    pub(super) exhausted: bool,
    /// A swap the last run left unfinished: finished once leases are reconciled.
    pub(super) journal: Option<Plan>,
}

impl Coordinator {
    /// Dispatch goes on only while the active account can work.
    pub(super) fn dispatch_allowed_by_quota(&self, now: Now) -> bool {
        let Some(active) = &self.active_account else { return false };
        self.swap.running.is_none()
            && self.swap.pending.is_none()
            && !self.swap_asked()
            && !self.swap.exhausted
            && !self.fenced()
            && !self.quotas.accounts.iter().any(|q| &q.name == active && q.out(now.wall))
    }

    /// Swaps when the quota says so; latches "all exhausted" once.
    pub(super) fn consider_swap(&mut self, now: Now, fx: &mut Effects) {
        if self.swap.running.is_some() || !self.dispatch.recovered || self.swap.journal.is_some() {
            return;
        }
        if self.fleet.as_ref().is_some_and(|f| f.asking.is_some()) {
            return;
        }
        if self.swap.pending.is_none() {
            self.decide_swap(now, fx);
        }
        let Some(pending) = &self.swap.pending else { return };
        // A paste into a session being stopped would be lost, and a turn
        // interrupted right after its prompt is rewound by Claude Code (the
        // prompt reached the API, yet the conversation has no trace of it):
        // wait for both, except for a hard limit, where the turns are over
        // anyway, or once a turn has held the swap up for too long.
        let hard = matches!(pending.reason, SwapCause::HardLimit | SwapCause::LoginRevoked);
        let overdue = now.at.saturating_duration_since(pending.decided) > SWAP_WAITS_FOR_TURNS;
        if self.delivery_in_flight() || (!hard && !overdue && self.turn_running()) {
            return;
        }
        if let Some(p) = self.swap.pending.take() {
            // With a fleet, the move is the fleet's decision first; one
            // refused (exclusive without etcd) is dropped and decided again.
            if self.fleet_allows(&p, now, fx) {
                self.start_swap(&p.to, p.reason, now, fx);
            }
        }
    }

    /// Some session is in the middle of a turn.
    fn turn_running(&self) -> bool {
        self.pool.sessions.values().any(|s| {
            s.account.is_some()
                && (s.activity == Activity::Busy
                    || s.work.as_ref().is_some_and(|w| w.turn_seen && !w.limited && w.idle_since.is_none()))
        })
    }

    /// A task is being pasted into some session right now.
    fn delivery_in_flight(&self) -> bool {
        self.pool.sessions.values().any(|s| s.offered)
    }

    fn decide_swap(&mut self, now: Now, fx: &mut Effects) {
        let Some(active) = self.active_account.clone() else { return };
        // The dwell is measured on the monotonic clock and handed to the
        // decision as a wall time relative to `now`: a wall-clock jump can
        // neither shorten nor stretch it.
        let last_swap_at = self.swap.last_at.map(|t| now.wall_of(t));
        let candidates = self.swap_candidates();
        match should_swap(&active, &candidates, &self.config.quota, last_swap_at, now.wall) {
            Verdict::Stay => {
                let active_ok = self.quotas.accounts.iter().any(|q| q.name == active && !q.out(now.wall));
                if self.swap.exhausted && active_ok {
                    self.swap.exhausted = false;
                    fx.emit(
                        Kind::AccountRecovered,
                        &active,
                        format!("{active} can work again; dispatch resumes"),
                        json!({"account": active}),
                    );
                }
            }
            // An operator's choice stands until quota forces a move: failing
            // back right after `POST /failover` (or one dwell later) would
            // undo it behind their back.
            Verdict::Swap(decision)
                if decision.reason == SwapReason::Failback
                    && self.swap.last.as_ref().is_some_and(|s| s.reason == SwapCause::Manual) => {}
            Verdict::Swap(decision) => {
                if self.swap.exhausted {
                    self.swap.exhausted = false;
                    fx.emit(
                        Kind::AccountRecovered,
                        &decision.to,
                        format!("{} can work again; moving the sessions there", decision.to),
                        json!({"account": decision.to}),
                    );
                }
                // Started by consider_swap once no paste is in flight.
                self.swap.pending =
                    Some(PendingSwap { to: decision.to, reason: decision.reason.into(), decided: now.at });
            }
            Verdict::AllExhausted(reason) => {
                if !self.swap.exhausted {
                    self.swap.exhausted = true;
                    self.take_over_limits(fx);
                    // When the first account may work again: work resumes then
                    // (or earlier, if a fresh reading says so).
                    let quota = &self.config.quota;
                    let first = self.quotas.accounts.iter().filter_map(|q| eligible_again_at(q, quota, now.wall)).min();
                    let until = first.map(crate::time::rfc3339);
                    let when = match &until {
                        Some(u) => format!("work is expected to resume around {u}"),
                        None => "no account has a known reset: a person must log in or add an account".into(),
                    };
                    fx.emit(
                        Kind::AllAccountsExhausted,
                        &active,
                        format!(
                            "no account can take the work ({}); dispatch paused, sessions left as they are; {when}",
                            reason.as_str()
                        ),
                        json!({"reason": reason.as_str(), "until": until}),
                    );
                }
            }
        }
    }

    /// `POST /failover`: to a named account, or to the best other one.
    pub(super) fn failover_request(&mut self, to: Option<String>, now: Now, fx: &mut Effects) -> Reply {
        if self.swap.running.is_some() || self.swap.pending.is_some() {
            return Err(ControlError::Conflict("a swap is already running".into()));
        }
        let active = self.active_account.clone().unwrap_or_default();
        let quota = &self.config.quota;
        let target = match to {
            Some(to) => {
                let Some(q) = self.quotas.accounts.iter().find(|q| q.name == to) else {
                    return Err(ControlError::BadRequest(format!("no account named {to:?} in the config")));
                };
                if to == active {
                    return Err(ControlError::BadRequest(format!("{to} is already the active account")));
                }
                if let Err(why) = eligible(q, quota, now.wall) {
                    if !why.is_soft() {
                        return Err(ControlError::BadRequest(format!("{to} is not eligible: {why}")));
                    }
                }
                // The decision would move the sessions straight back.
                if let Some(sub) = q.is_paid().then(|| self.eligible_subscription(now)).flatten() {
                    return Err(ControlError::BadRequest(format!(
                        "{to} is an api_key account, used only while no subscription can work, and {sub} can"
                    )));
                }
                to
            }
            None => {
                let others = || self.quotas.accounts.iter().filter(|q| q.name != active);
                let best = others()
                    .find(|q| !q.is_paid() && eligible(q, quota, now.wall).is_ok())
                    .or_else(|| {
                        others().find(|q| !q.is_paid() && eligible(q, quota, now.wall).is_err_and(|w| w.is_soft()))
                    })
                    .or_else(|| others().find(|q| q.is_paid() && eligible(q, quota, now.wall).is_ok()));
                match best {
                    Some(q) => q.name.clone(),
                    None => return Err(ControlError::BadRequest("no other account is eligible".into())),
                }
            }
        };
        // Started by consider_swap, now or once no paste or turn is in flight.
        self.swap.pending = Some(PendingSwap { to: target.clone(), reason: SwapCause::Manual, decided: now.at });
        self.consider_swap(now, fx);
        Ok(json!({"accepted": true, "from": active, "to": target}))
    }

    /// A subscription account that may take the sessions now, if any.
    fn eligible_subscription(&self, now: Now) -> Option<String> {
        let quota = &self.config.quota;
        self.quotas
            .accounts
            .iter()
            .find(|q| !q.is_paid() && eligible(q, quota, now.wall).is_ok())
            .map(|q| q.name.clone())
    }

    /// Plans a swap of every session to `to` and hands it to the switcher.
    pub(super) fn start_swap(&mut self, to: &str, reason: SwapCause, now: Now, fx: &mut Effects) {
        let plan = Plan {
            from: self.active_account.clone().unwrap_or_default(),
            to: to.into(),
            reason,
            started_at: crate::time::rfc3339(now.wall),
            sessions: self.movers(),
        };
        self.begin(plan, now, fx);
    }

    /// Every session that runs (or ran) a conversation, with its task.
    fn movers(&self) -> Vec<Mover> {
        self.pool
            .sessions
            .values()
            .filter(|s| s.account.is_some())
            .filter_map(|s| {
                Some(Mover {
                    session: s.name.clone(),
                    claude_session_id: s.claude_session_id.clone()?,
                    task: s.work.as_ref().map(|w| w.task.clone()),
                })
            })
            .collect()
    }

    fn begin(&mut self, plan: Plan, now: Now, fx: &mut Effects) {
        log::warn!("swap {} → {} ({}) of {} session(s)", plan.from, plan.to, plan.reason, plan.sessions.len());
        for m in &plan.sessions {
            if let Some(s) = self.pool.sessions.get_mut(&m.session) {
                s.moving = true;
                s.offered = false;
            }
        }
        self.active_account = Some(plan.to.clone());
        self.swap.last_at = Some(now.at);
        fx.count("claude_failover_failovers_total", &[("reason", plan.reason.as_str())]);
        let names: Vec<&str> = plan.sessions.iter().map(|m| m.session.as_str()).collect();
        fx.emit(
            Kind::FailoverStarted,
            &plan.from,
            format!("moving {} session(s) from {} to {} ({})", names.len(), plan.from, plan.to, plan.reason),
            json!({"from": plan.from, "to": plan.to, "reason": plan.reason, "sessions": names}),
        );
        self.swap.running = Some(plan.clone());
        fx.orders.push(Order::Switcher(plan));
    }

    pub(super) fn on_swap_finished(&mut self, finished: Finished, now: Now, fx: &mut Effects) {
        self.swap.last = Some(finished.record());
        let Finished { plan, outcomes, .. } = finished;
        let mut results = Vec::new();
        let mut moved = 0;
        for outcome in &outcomes {
            match outcome {
                Outcome::Moved { session, continued, ready_after, resumed_after, .. } => {
                    moved += 1;
                    results.push(json!({"session": session, "ok": true, "continued": continued,
                        "ready_ms": ready_after.as_millis() as u64,
                        "resumed_ms": resumed_after.map(|d| d.as_millis() as u64)}));
                    let Some(s) = self.pool.sessions.get_mut(session) else { continue };
                    s.moving = false;
                    let id = s.claude_session_id.clone().unwrap_or_default();
                    s.launched(&plan.to, &id, now.at);
                    if let Some(w) = &mut s.work {
                        w.unlimit();
                        w.failure = None;
                        w.limit_taken_over = false;
                        w.takeover_offered = false;
                        w.idle_since = None;
                        w.turn_seen = *continued;
                    }
                    fx.sessions(Command::Track {
                        session: session.clone(),
                        account: plan.to.clone(),
                        claude_session_id: id,
                    });
                }
                Outcome::Failed { session, error } => {
                    log::error!("swap: {session} could not be moved to {}: {error}", plan.to);
                    results.push(json!({"session": session, "ok": false, "error": error.to_string()}));
                    if let Some(s) = self.pool.sessions.get_mut(session) {
                        s.moving = false;
                    }
                    self.observed(session, Seen::Missing, now, fx);
                }
            }
        }
        let failed = outcomes.len() - moved;
        self.swap.running = None;
        let (kind, message) = if failed == 0 {
            (
                Kind::FailoverFinished,
                format!("{moved} session(s) moved from {} to {} ({})", plan.from, plan.to, plan.reason),
            )
        } else {
            (
                Kind::FailoverFailed,
                format!(
                    "{moved} of {} session(s) moved from {} to {}; {failed} failed and will be relaunched",
                    outcomes.len(),
                    plan.from,
                    plan.to
                ),
            )
        };
        fx.emit(
            kind,
            &plan.from,
            message,
            json!({"from": plan.from, "to": plan.to, "reason": plan.reason, "sessions_moved": moved, "results": results}),
        );
    }

    /// After a restart, once leases are reconciled: a swap the last run left
    /// unfinished, or sessions found on another account than the active
    /// one, are moved to the active account so none stays split. Every
    /// session the unfinished swap named is moved again, even one found on
    /// the active account: a kill during a side-by-side move leaves its old
    /// claude running in a second pane, and moving stops every pane.
    pub(super) fn consolidate(&mut self, now: Now, fx: &mut Effects) {
        let Some(active) = self.active_account.clone() else { return };
        let journal = self.swap.journal.take();
        let named: Vec<&str> = journal.iter().flat_map(|j| j.sessions.iter().map(|m| m.session.as_str())).collect();
        let stray: Vec<Mover> = self
            .movers()
            .into_iter()
            .filter(|m| {
                named.contains(&m.session.as_str())
                    || self.pool.sessions.get(&m.session).and_then(|s| s.account.as_deref()) != Some(active.as_str())
            })
            .collect();
        if stray.is_empty() && journal.is_none() {
            return;
        }
        let from = journal
            .as_ref()
            .map(|j| j.from.clone())
            .or_else(|| stray.first().and_then(|m| self.pool.sessions.get(&m.session)?.account.clone()))
            .unwrap_or_default();
        let reason = journal.as_ref().map_or(SwapCause::Consolidate, |j| j.reason);
        log::warn!("finishing an interrupted swap to {active}: {} session(s) still elsewhere", stray.len());
        let plan = Plan { from, to: active, reason, started_at: crate::time::rfc3339(now.wall), sessions: stray };
        self.begin(plan, now, fx);
    }
}
