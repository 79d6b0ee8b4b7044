//! The coordinator's failover decisions: folding quota reports and limit
//! sightings into per-account state, deciding when and where to swap, and
//! planning swaps for the account switcher. Which account is eligible and
//! whether a limit is real are `quota::decide`'s pure functions; this file
//! applies them to the coordinator's state and acts.

use super::{Coordinator, Supervisor};
use crate::control::{ControlError, Reply};
use crate::events::Kind;
use crate::quota::{
    eligible, persist, should_swap, AccountQuota, HardLimitSignal, LimitSource, PollError, QuotaCommand, QuotaReport,
    SwapReason, Verdict,
};
use crate::sessions::model::Activity;
use crate::sessions::{self, model::Seen};
use crate::switcher::{Finished, Mover, Outcome, Plan};
use serde_json::json;
use std::time::{Duration, Instant, SystemTime};

/// How long a decided swap waits for running turns to end before it
/// interrupts them (hard limits never wait).
pub const SWAP_WAITS_FOR_TURNS: Duration = Duration::from_secs(300);

/// A swap decided (or asked for) and not started yet.
#[derive(Debug, Clone)]
pub struct PendingSwap {
    pub to: String,
    pub reason: String,
    pub decided: Instant,
}

impl<S: Supervisor> Coordinator<S> {
    pub(super) fn on_quota_report(&mut self, report: QuotaReport, now: SystemTime) {
        let QuotaReport::Polled { account, at, outcome, next_poll_at } = report;
        let Some(q) = self.quotas.iter_mut().find(|q| q.name == account) else { return };
        let was_expired = matches!(q.last_error, Some(PollError::Unauthorized | PollError::TokenExpired));
        if let Err(e) = &outcome {
            self.shared.metrics.inc("claude_failover_usage_poll_errors_total", &[("account", &account)]);
            log::warn!("usage poll for {account}: {e}");
        }
        q.apply_poll(at, &outcome);
        q.next_poll_at = Some(next_poll_at);
        let expired = matches!(q.last_error, Some(PollError::Unauthorized | PollError::TokenExpired));
        if expired && !was_expired {
            self.shared.events.emit(
                Kind::TokenExpired,
                &account,
                format!("the access token of {account} is expired or refused; Claude Code renews it when it next runs there, or log in again"),
                json!({"account": account}),
            );
        }
        self.save_quota(now, false);
        self.consider_swap(now);
        self.offer_work();
        self.publish();
    }

    /// Writes `quota.json` when what it would hold changed: at once for a
    /// new, moved or lifted hard limit (or on `stopping`), and at most every
    /// [`SAVE_WINDOWS_EVERY`](persist::SAVE_WINDOWS_EVERY) when only windows
    /// moved, which they do on every poll. A failed write is logged and
    /// retried on the next change.
    pub(super) fn save_quota(&mut self, now: SystemTime, stopping: bool) {
        let file = persist::QuotaFile::snapshot(&self.quotas, now);
        if file.same_state(&self.quota_saved) {
            return;
        }
        let limit_changed = file.limits() != self.quota_saved.limits();
        let due = self.quota_saved_at.elapsed() >= persist::SAVE_WINDOWS_EVERY;
        if !(stopping || limit_changed || due) {
            return;
        }
        if let Err(e) = persist::save(&self.config.state_dir, &file, now) {
            log::error!("{e}");
        }
        self.quota_saved = file;
        self.quota_saved_at = Instant::now();
    }

    /// A hard limit seen in a session (pane, transcript or hook); it counts
    /// only when `quota::confirm_hard_limit` says it is real.
    pub(super) fn limit_sighting(
        &mut self,
        session: &str,
        source: LimitSource,
        resets_at: Option<SystemTime>,
        record_time: Option<SystemTime>,
        now: SystemTime,
    ) {
        let Some(s) = self.sessions.get(session) else { return };
        let Some(account) = s.account.clone() else { return };
        let last_launch = s.launched_at.map(|t| now - Instant::now().saturating_duration_since(t));
        let signal = HardLimitSignal {
            account: account.clone(),
            source,
            at: now,
            resets_at,
            record_time,
            session: Some(session.into()),
        };
        let Some(q) = self.quotas.iter_mut().find(|q| q.name == account) else { return };
        if q.sighting(signal, last_launch, now) {
            log::warn!("{account}: hard limit confirmed (seen in {session} by {source:?})");
            self.save_quota(now, false);
            self.consider_swap(now);
        }
    }

    /// The statusline's windows for the account `session` runs on: fresher
    /// than a poll, and free; the poller may then wait longer.
    pub(super) fn statusline_sample(
        &mut self,
        session: &str,
        limits: &[crate::claude::hook::RateLimit],
        now: SystemTime,
    ) {
        let Some(account) = self.sessions.get(session).and_then(|s| s.account.clone()) else { return };
        let Some(q) = self.quotas.iter_mut().find(|q| q.name == account) else { return };
        q.apply_sample(now, &crate::quota::Windows::from(limits));
        let _ = self.outputs.quota.send(QuotaCommand::Sampled { account, at: now });
        self.save_quota(now, false);
        self.consider_swap(now);
    }

    /// Dispatch goes on only while the active account can work.
    pub(super) fn dispatch_allowed_by_quota(&self, now: SystemTime) -> bool {
        let Some(active) = &self.active_account else { return false };
        self.swap.is_none()
            && self.pending_swap.is_none()
            && !self.exhausted
            && !self.quotas.iter().any(|q| &q.name == active && q.exhausted(now))
    }

    /// Swaps when the quota says so; latches "all exhausted" once.
    pub(super) fn consider_swap(&mut self, now: SystemTime) {
        if self.swap.is_some() || !self.recovered || self.journal.is_some() {
            return;
        }
        if self.pending_swap.is_none() {
            self.decide_swap(now);
        }
        let Some(pending) = &self.pending_swap else { return };
        // A paste into a session being stopped would be lost, and a turn
        // interrupted right after its prompt is rewound by Claude Code (the
        // prompt reached the API, yet the conversation has no trace of it):
        // wait for both, except for a hard limit, where the turns are over
        // anyway, or once a turn has held the swap up for too long.
        let hard = pending.reason == "hard_limit";
        let overdue = Instant::now().saturating_duration_since(pending.decided) > SWAP_WAITS_FOR_TURNS;
        if self.delivery_in_flight() || (!hard && !overdue && self.turn_running()) {
            return;
        }
        if let Some(p) = self.pending_swap.take() {
            self.start_swap(&p.to, &p.reason, now);
        }
    }

    /// Some session is in the middle of a turn.
    fn turn_running(&self) -> bool {
        self.sessions.values().any(|s| {
            s.account.is_some()
                && (s.activity == Activity::Busy
                    || s.work.as_ref().is_some_and(|w| w.turn_seen && !w.limited && w.idle_since.is_none()))
        })
    }

    fn decide_swap(&mut self, now: SystemTime) {
        let Some(active) = self.active_account.clone() else { return };
        // The dwell is measured on the monotonic clock and handed to the
        // decision as a wall time relative to `now`: a wall-clock jump can
        // neither shorten nor stretch it.
        let last_swap_at = self.last_swap_at.map(|t| now - Instant::now().saturating_duration_since(t));
        match should_swap(&active, &self.quotas, &self.config.quota, last_swap_at, now) {
            Verdict::Stay => {
                let active_ok = self.quotas.iter().any(|q| q.name == active && !q.exhausted(now));
                if self.exhausted && active_ok {
                    self.exhausted = false;
                    self.shared.events.emit(
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
                    && self.last_swap.as_ref().is_some_and(|s| s.reason == "manual") => {}
            Verdict::Swap(decision) => {
                if self.exhausted {
                    self.exhausted = false;
                    self.shared.events.emit(
                        Kind::AccountRecovered,
                        &decision.to,
                        format!("{} can work again; moving the sessions there", decision.to),
                        json!({"account": decision.to}),
                    );
                }
                // Started by consider_swap once no paste is in flight.
                self.pending_swap = Some(PendingSwap {
                    to: decision.to,
                    reason: decision.reason.as_str().into(),
                    decided: Instant::now(),
                });
            }
            Verdict::AllExhausted(reason) => {
                if !self.exhausted {
                    self.exhausted = true;
                    let until = self.quotas.iter().filter_map(|q| q.exhausted_until).min().map(crate::time::rfc3339);
                    self.shared.events.emit(
                        Kind::AllAccountsExhausted,
                        &active,
                        format!(
                            "no account can take the work ({}); dispatch paused, sessions left as they are{}",
                            reason.as_str(),
                            until.as_ref().map(|u| format!(", first reset {u}")).unwrap_or_default()
                        ),
                        json!({"reason": reason.as_str(), "until": until}),
                    );
                }
            }
        }
    }

    /// After a reload: quota state follows the account list (kept for
    /// accounts that stay, in the new priority order), and the poller too.
    pub(super) fn apply_account_changes(&mut self) {
        let mut old = std::mem::take(&mut self.quotas);
        self.quotas = self
            .config
            .accounts
            .iter()
            .map(|a| match old.iter().position(|q| q.name == a.name) {
                Some(i) => old.swap_remove(i),
                None => AccountQuota::new(&a.name),
            })
            .collect();
        if self.outputs.quota.send(QuotaCommand::Configure(std::sync::Arc::clone(&self.config))).is_err() {
            log::error!("the quota role is gone");
        }
    }

    /// `POST /failover`: to a named account, or to the best other one.
    pub(super) fn failover_request(&mut self, to: Option<String>) -> Reply {
        if self.swap.is_some() || self.pending_swap.is_some() {
            return Err(ControlError::Conflict("a swap is already running".into()));
        }
        let now = SystemTime::now();
        let active = self.active_account.clone().unwrap_or_default();
        let target = match to {
            Some(to) => {
                let Some(q) = self.quotas.iter().find(|q| q.name == to) else {
                    return Err(ControlError::BadRequest(format!("no account named {to:?} in the config")));
                };
                if to == active {
                    return Err(ControlError::BadRequest(format!("{to} is already the active account")));
                }
                if let Err(why) = eligible(q, &self.config.quota, now) {
                    if !why.is_soft() {
                        return Err(ControlError::BadRequest(format!("{to} is not eligible: {why}")));
                    }
                }
                to
            }
            None => {
                let others = || self.quotas.iter().filter(|q| q.name != active);
                let best = others()
                    .find(|q| eligible(q, &self.config.quota, now).is_ok())
                    .or_else(|| others().find(|q| eligible(q, &self.config.quota, now).is_err_and(|w| w.is_soft())));
                match best {
                    Some(q) => q.name.clone(),
                    None => return Err(ControlError::BadRequest("no other account is eligible".into())),
                }
            }
        };
        // Started by consider_swap, now or once no paste or turn is in flight.
        self.pending_swap = Some(PendingSwap { to: target.clone(), reason: "manual".into(), decided: Instant::now() });
        self.consider_swap(now);
        Ok(json!({"accepted": true, "from": active, "to": target}))
    }

    /// A task is being pasted into some session right now.
    fn delivery_in_flight(&self) -> bool {
        self.sessions.values().any(|s| s.offered)
    }

    /// Plans a swap of every session to `to` and hands it to the switcher.
    pub(super) fn start_swap(&mut self, to: &str, reason: &str, now: SystemTime) {
        let from = self.active_account.clone().unwrap_or_default();
        let movers = self.movers();
        let plan = Plan {
            from: from.clone(),
            to: to.into(),
            reason: reason.into(),
            started_at: crate::time::rfc3339(now),
            sessions: movers,
        };
        self.begin(plan);
    }

    /// Every session that runs (or ran) a conversation, with its task.
    fn movers(&self) -> Vec<Mover> {
        self.sessions
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

    fn begin(&mut self, plan: Plan) {
        log::warn!("swap {} → {} ({}) of {} session(s)", plan.from, plan.to, plan.reason, plan.sessions.len());
        for m in &plan.sessions {
            if let Some(s) = self.sessions.get_mut(&m.session) {
                s.moving = true;
                s.offered = false;
            }
        }
        self.active_account = Some(plan.to.clone());
        self.last_swap_at = Some(Instant::now());
        self.shared.metrics.inc("claude_failover_failovers_total", &[("reason", &plan.reason)]);
        let names: Vec<&str> = plan.sessions.iter().map(|m| m.session.as_str()).collect();
        self.shared.events.emit(
            Kind::FailoverStarted,
            &plan.from,
            format!("moving {} session(s) from {} to {} ({})", names.len(), plan.from, plan.to, plan.reason),
            json!({"from": plan.from, "to": plan.to, "reason": plan.reason, "sessions": names}),
        );
        self.swap = Some(plan.clone());
        if self.outputs.switcher.send(plan).is_err() {
            log::error!("the switcher role is gone; the swap cannot run");
        }
        self.publish();
    }

    pub(super) fn on_swap_finished(&mut self, finished: Finished, now: Instant) {
        self.last_swap = Some(finished.record());
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
                    let Some(s) = self.sessions.get_mut(session) else { continue };
                    s.moving = false;
                    let id = s.claude_session_id.clone().unwrap_or_default();
                    s.launched(&plan.to, &id, now);
                    if let Some(w) = &mut s.work {
                        w.limited = false;
                        w.idle_since = None;
                        w.turn_seen = *continued;
                    }
                    self.order(sessions::Command::Track {
                        session: session.clone(),
                        account: plan.to.clone(),
                        claude_session_id: id,
                    });
                }
                Outcome::Failed { session, error } => {
                    log::error!("swap: {session} could not be moved to {}: {error}", plan.to);
                    results.push(json!({"session": session, "ok": false, "error": error}));
                    if let Some(s) = self.sessions.get_mut(session) {
                        s.moving = false;
                    }
                    self.observed(session, Seen::Missing, now);
                }
            }
        }
        let failed = outcomes.len() - moved;
        self.swap = None;
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
        self.shared.events.emit(
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
    pub(super) fn consolidate(&mut self, now: SystemTime) {
        let Some(active) = self.active_account.clone() else { return };
        let journal = self.journal.take();
        let named: Vec<&str> = journal.iter().flat_map(|j| j.sessions.iter().map(|m| m.session.as_str())).collect();
        let stray: Vec<Mover> = self
            .movers()
            .into_iter()
            .filter(|m| {
                named.contains(&m.session.as_str())
                    || self.sessions.get(&m.session).and_then(|s| s.account.as_deref()) != Some(active.as_str())
            })
            .collect();
        if stray.is_empty() && journal.is_none() {
            return;
        }
        let from = journal
            .as_ref()
            .map(|j| j.from.clone())
            .or_else(|| stray.first().and_then(|m| self.sessions.get(&m.session)?.account.clone()))
            .unwrap_or_default();
        let reason = journal.as_ref().map_or("consolidate".to_string(), |j| j.reason.clone());
        log::warn!("finishing an interrupted swap to {active}: {} session(s) still elsewhere", stray.len());
        let plan = Plan { from, to: active, reason, started_at: crate::time::rfc3339(now), sessions: stray };
        self.begin(plan);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Coordinator, Outputs, Restored};
    use crate::config::Config;
    use crate::control::Shared;
    use crate::quota::persist::{QuotaFile, SavedAccount};
    use crate::quota::{QuotaReport, Windows};
    use crate::switcher::Finished;
    use std::sync::Arc;
    use std::time::{Duration, Instant, SystemTime};

    /// Says nothing to a service manager.
    struct NoSupervisor;

    impl super::super::Supervisor for NoSupervisor {
        fn ready(&self) {}
        fn status(&self, _line: &str) {}
        fn watchdog(&self) {}
        fn reloading(&self) {}
        fn stopping(&self) {}
        fn watchdog_interval(&self) -> Option<Duration> {
            None
        }
    }

    /// A coordinator over three accounts and no sessions; its orders go to
    /// channels nobody reads.
    fn coordinator() -> Coordinator<NoSupervisor> {
        coordinator_in(std::path::Path::new("/tmp/cf-unit-state"), Restored::default())
    }

    fn coordinator_in(state_dir: &std::path::Path, restored: Restored) -> Coordinator<NoSupervisor> {
        let text = r#"
            [quota]
            min_dwell_secs = 600
            failback = false
            [[accounts]]
            name = "alpha"
            config_dir = "/tmp/cf-unit/alpha"
            [[accounts]]
            name = "beta"
            config_dir = "/tmp/cf-unit/beta"
            [[accounts]]
            name = "gamma"
            config_dir = "/tmp/cf-unit/gamma"
        "#;
        let text = format!("state_dir = {:?}\n{text}", state_dir.display().to_string());
        let config = Arc::new(Config::from_toml(&text, std::path::Path::new("/tmp/cf-unit.toml")).unwrap());
        let shared = Shared {
            status: Default::default(),
            events: crate::events::Events::new(None),
            metrics: Default::default(),
            heartbeats: crate::heartbeat::Heartbeats::new(None),
        };
        let outputs = Outputs {
            sessions: crossbeam_channel::unbounded().0,
            dispatcher: crossbeam_channel::unbounded().0,
            quota: crossbeam_channel::unbounded().0,
            switcher: crossbeam_channel::unbounded().0,
            on_reload: Vec::new(),
        };
        let mut c = Coordinator::new(config, shared, NoSupervisor, outputs, restored, SystemTime::now());
        c.recovered = true;
        c
    }

    fn poll(c: &mut Coordinator<NoSupervisor>, account: &str, five_hour: f64, at: SystemTime) {
        let q = c.quotas.iter_mut().find(|q| q.name == account).unwrap();
        q.apply_poll(at, &Ok(Windows::from_named([("five_hour", five_hour, None), ("seven_day", 10.0, None)])));
    }

    fn finish_swap(c: &mut Coordinator<NoSupervisor>) {
        let plan = c.swap.clone().expect("a swap started");
        c.on_swap_finished(Finished { plan, outcomes: Vec::new(), finished_at: SystemTime::now() }, Instant::now());
    }

    #[test]
    fn a_wall_clock_jump_neither_shortens_nor_stretches_the_dwell() {
        let now = SystemTime::now();
        let mut c = coordinator();
        for a in ["alpha", "beta", "gamma"] {
            poll(&mut c, a, 10.0, now);
        }
        poll(&mut c, "alpha", 95.0, now);
        c.consider_swap(now);
        assert_eq!(c.active_account.as_deref(), Some("beta"), "a threshold crossing swaps");
        finish_swap(&mut c);

        // beta crosses too, and the wall clock jumps a month ahead: the
        // dwell (600 s, monotonic) has not passed, so no second swap.
        let later = now + Duration::from_secs(30 * 86_400);
        poll(&mut c, "beta", 95.0, later);
        c.consider_swap(later);
        assert!(c.swap.is_none() && c.pending_swap.is_none(), "the jump shortened the dwell");
        assert_eq!(c.active_account.as_deref(), Some("beta"));

        // Back to the real time and an hour back: still within the dwell.
        let earlier = now - Duration::from_secs(3600);
        c.consider_swap(earlier);
        assert!(c.swap.is_none() && c.pending_swap.is_none());

        // A hard limit ignores the dwell, jump or not.
        let q = c.quotas.iter_mut().find(|q| q.name == "beta").unwrap();
        q.exhausted_until = Some(later + Duration::from_secs(3600));
        c.consider_swap(later);
        assert_eq!(c.active_account.as_deref(), Some("gamma"));
    }

    fn report(account: &str, five_hour: f64, resets_at: SystemTime, at: SystemTime) -> QuotaReport {
        let windows = Windows::from_named([("five_hour", five_hour, Some(resets_at)), ("seven_day", 10.0, None)]);
        QuotaReport::Polled { account: account.into(), at, outcome: Ok(windows), next_poll_at: at }
    }

    #[test]
    fn a_restored_hard_limit_shows_at_once_and_moves_off_the_account() {
        let now = SystemTime::now();
        let until = now + Duration::from_secs(3 * 3600);
        let mut quota = QuotaFile::default();
        let saved = SavedAccount { exhausted_until: Some(until), ..SavedAccount::default() };
        quota.accounts.insert("alpha".into(), saved);
        // No active.json: the daemon starts on the first account, alpha.
        let mut c =
            coordinator_in(std::path::Path::new("/tmp/cf-unit-state"), Restored { quota, ..Restored::default() });
        assert_eq!(c.active_account.as_deref(), Some("alpha"));
        let status = c.status();
        let alpha = status.accounts.iter().find(|a| a.name == "alpha").unwrap();
        assert_eq!(alpha.state, "exhausted");
        assert_eq!(alpha.exhausted_until.as_deref(), Some(crate::time::rfc3339(until).as_str()));
        assert!(!alpha.eligible);

        c.consider_swap(now);
        assert_eq!(c.active_account.as_deref(), Some("beta"), "the first decision knows alpha is spent");
    }

    #[test]
    fn a_restart_keeps_the_last_swap_and_its_dwell() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let restart = || Restored { active: crate::switcher::read_active(dir.path()), ..Restored::default() };
        let mut c = coordinator_in(dir.path(), restart());
        for a in ["alpha", "beta", "gamma"] {
            poll(&mut c, a, 10.0, now);
        }
        poll(&mut c, "alpha", 95.0, now);
        c.consider_swap(now);
        finish_swap(&mut c);
        let last = c.status().swap.last.expect("a finished swap");
        // What the switcher leaves in active.json (no switcher runs here).
        let saved = |c: &Coordinator<NoSupervisor>| crate::switcher::Active {
            account: c.active_account.clone().unwrap(),
            last_swap: c.status().swap.last,
        };
        crate::switcher::write_active(dir.path(), &saved(&c));

        let mut c = coordinator_in(dir.path(), restart());
        assert_eq!(c.active_account.as_deref(), Some("beta"));
        assert_eq!(c.status().swap.last.as_ref(), Some(&last), "/status still shows the last swap");
        for a in ["alpha", "gamma"] {
            poll(&mut c, a, 10.0, now);
        }
        poll(&mut c, "beta", 95.0, now);
        c.consider_swap(now);
        assert!(c.swap.is_none() && c.pending_swap.is_none(), "the restart started min_dwell_secs over");

        c.failover_request(Some("gamma".into())).expect("accepted");
        finish_swap(&mut c);
        crate::switcher::write_active(dir.path(), &saved(&c));
        let c = coordinator_in(dir.path(), restart());
        let last = c.status().swap.last.expect("kept");
        assert_eq!((c.active_account.as_deref(), last.reason.as_str()), (Some("gamma"), "manual"));
    }

    #[test]
    fn quota_json_is_written_when_a_limit_changes_not_on_every_poll() {
        let dir = tempfile::tempdir().unwrap();
        let file = crate::quota::persist::path(dir.path());
        let now = SystemTime::now();
        let reset = now + Duration::from_secs(3 * 3600);
        let mut c = coordinator_in(dir.path(), Restored::default());
        c.on_quota_report(report("beta", 10.0, reset, now), now);
        assert!(!file.exists(), "windows alone wait for the next periodic save");

        c.on_quota_report(report("alpha", 100.0, reset, now), now);
        let saved = crate::quota::persist::load(dir.path()).unwrap().expect("a hard limit is saved at once");
        assert_eq!(saved.limits()["alpha"], crate::time::parse_rfc3339(&crate::time::rfc3339(reset)).unwrap());
        assert_eq!(saved.accounts["beta"].windows["five_hour"].utilization, 10.0, "windows go along");

        std::fs::remove_file(&file).unwrap();
        c.on_quota_report(report("beta", 20.0, reset, now), now);
        c.on_quota_report(report("alpha", 100.0, reset, now), now);
        assert!(!file.exists(), "the same limit again is not a change");

        c.stop("test");
        let saved = crate::quota::persist::load(dir.path()).unwrap().expect("saved on stop");
        assert_eq!(saved.accounts["beta"].windows["five_hour"].utilization, 20.0);
        assert!(saved.limits().contains_key("alpha"));
    }
}
