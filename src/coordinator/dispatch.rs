//! The coordinator's side of dispatch: what the queues hold (as the
//! dispatcher says), which sessions were told "nothing for you", and the
//! offers, continuations and finishes it orders. Which task a session gets
//! is the dispatcher's choice, not decided here.

use super::{Coordinator, Effects, Now};
use crate::dispatcher::{Command, Report, SessionRef};
use crate::queue::QueueCounts;
use crate::sessions::model::Work;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub(super) struct Dispatch {
    /// Leases were reconciled after start-up: offers may go out.
    pub(super) recovered: bool,
    /// Takeable tasks per project, as the dispatcher last said.
    pub(super) waiting: BTreeMap<String, usize>,
    /// When leases were last reconciled against what sessions hold.
    pub(super) last_reconcile: Option<Instant>,
    /// Sessions told "nothing for you" since the project's inbox last changed.
    pub(super) declined: BTreeSet<String>,
    pub(super) counts: BTreeMap<String, QueueCounts>,
    /// `POST /dispatch/pause`.
    pub(super) paused: bool,
}

impl Coordinator {
    pub(super) fn on_dispatch_report(&mut self, report: Report, now: Now, fx: &mut Effects) {
        let sessions = &mut self.pool.sessions;
        match report {
            Report::Waiting { project, tasks } => {
                self.dispatch.declined.retain(|name| sessions.get(name).is_some_and(|s| s.project != project));
                self.dispatch.waiting.insert(project, tasks);
            }
            Report::Dispatched { session, task } => {
                if let Some(s) = sessions.get_mut(&session) {
                    s.offered = false;
                    s.work = Some(Work { turn_seen: true, ..Work::new(&task) });
                }
            }
            Report::NoTask { session } => {
                if let Some(s) = sessions.get_mut(&session) {
                    s.offered = false;
                }
                self.dispatch.declined.insert(session);
            }
            Report::DeliveryFailed { session, task, error } => {
                log::warn!("{session}: {task} was not delivered ({error}); it goes back to the queue");
                if let Some(s) = sessions.get_mut(&session) {
                    s.offered = false;
                }
            }
            Report::Finished { session, task } => {
                if let Some(s) = sessions.get_mut(&session) {
                    if s.work.as_ref().is_some_and(|w| w.task == task) {
                        s.work = None;
                        // A retry that gave up ends here, not in a delivery.
                        s.offered = false;
                    }
                }
            }
            Report::Resumed { session, task, running } => {
                if let Some(s) = sessions.get_mut(&session) {
                    // Still running: its turn settles as usual. Relaunched: the
                    // turn died with the old process, so it is told to continue.
                    s.work = Some(Work { turn_seen: running, resume_prompt: !running, ..Work::new(&task) });
                }
            }
            Report::Recovered => {
                self.dispatch.recovered = true;
                self.consolidate(now, fx);
            }
            Report::Counts { project, counts } => {
                self.dispatch.counts.insert(project, counts);
            }
        }
    }

    /// Every janitor interval, the dispatcher hands back leases no session
    /// holds (the janitor role itself never touches active/).
    pub(super) fn reconcile_leases(&mut self, now: Now, fx: &mut Effects) {
        let every = Duration::from_secs(self.config.janitor.interval_secs);
        let d = &mut self.dispatch;
        if !d.recovered
            || self.swap.running.is_some()
            || d.last_reconcile.is_some_and(|t| now.at.duration_since(t) < every)
        {
            return;
        }
        d.last_reconcile = Some(now.at);
        let held = self
            .pool
            .sessions
            .values()
            .filter_map(|s| Some((s.project.clone(), s.work.as_ref()?.task.clone())))
            .collect();
        fx.dispatcher(Command::Reconcile { held });
    }

    /// Hands work to idle sessions and finishes settled tasks.
    pub(super) fn offer_work(&mut self, now: Now, fx: &mut Effects) {
        let settle = Duration::from_secs(self.config.dispatch.settle_secs);
        let settled: Vec<(SessionRef, String)> = self
            .pool
            .sessions
            .values()
            .filter(|s| s.settled(now.at, settle))
            .filter_map(|s| Some((self.session_ref(s)?, s.work.as_ref()?.task.clone())))
            .collect();
        for (at, task) in settled {
            if let Some(w) = self.pool.sessions.get_mut(&at.session).and_then(|s| s.work.as_mut()) {
                w.finishing = true;
            }
            fx.dispatcher(Command::Finish { at, task });
        }
        let continuations: Vec<(SessionRef, String)> = if self.dispatch_allowed_by_quota(now) {
            self.pool
                .sessions
                .values()
                .filter(|s| s.wants_continuation())
                .filter_map(|s| Some((self.session_ref(s)?, s.work.as_ref()?.task.clone())))
                .collect()
        } else {
            Vec::new()
        };
        for (at, task) in continuations {
            if let Some(s) = self.pool.sessions.get_mut(&at.session) {
                s.offered = true;
            }
            fx.dispatcher(Command::Continue { at, task, after: "a restart of the session" });
        }
        self.retry_failed_turns(now, fx);
        self.resume_limited(now, fx);
        if !self.dispatch.recovered
            || self.dispatch.paused
            || !self.config.dispatch.enabled
            || !self.dispatch_allowed_by_quota(now)
        {
            return;
        }
        let offers: Vec<SessionRef> = self
            .pool
            .sessions
            .values()
            .filter(|s| s.wants_work() && !self.dispatch.declined.contains(&s.name))
            .filter(|s| self.dispatch.waiting.get(&s.project).is_some_and(|n| *n > 0))
            .filter(|s| s.account == self.active_account)
            .filter_map(|s| self.session_ref(s))
            .collect();
        for at in offers {
            if let Some(s) = self.pool.sessions.get_mut(&at.session) {
                s.offered = true;
            }
            fx.dispatcher(Command::Offer(at));
        }
    }
}
