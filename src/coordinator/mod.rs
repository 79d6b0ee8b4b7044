//! The coordinator: the one thread that owns the daemon's state and decides.
//!
//! Observers (signals, HTTP, and the session, queue and quota roles as they
//! land) send it a closed set of events; it updates its state with plain
//! functions of that state and `now`, tells executors what to do, and
//! publishes a `Status` snapshot for readers. It does no blocking I/O itself:
//! talking to systemd goes through the `Supervisor` trait. The one exception
//! is `quota.json`, a small file written when a hard limit changes, at most
//! every ten minutes otherwise, and on stop (see `failover::save_quota`).

use crate::config::{Config, ConfigError};
use crate::control::{Control, ControlError, ControlRequest, Reply, Shared};
use crate::dispatcher::{self, SessionRef};
use crate::events::Kind;
use crate::heartbeat::Beat;
use crate::queue::QueueCounts;
use crate::quota::{AccountQuota, QuotaCommand, QuotaReport};
use crate::sessions::model::{Activity, Seen, Session, Step, Work};
use crate::sessions::{self, Report};
use crate::signals::SignalEvent;
use crate::status::{QueueStatus, SessionStatus, Status, SwapRecord, SwapStatus};
use crossbeam_channel::{select, Receiver, Sender};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What the coordinator tells the service manager (systemd's sd_notify).
pub trait Supervisor {
    fn ready(&self);
    fn status(&self, line: &str);
    fn watchdog(&self);
    fn reloading(&self);
    fn stopping(&self);
    /// How often to ping the watchdog, if one is armed.
    fn watchdog_interval(&self) -> Option<Duration>;
}

/// Reports from the observer and executor roles, in the one order they
/// arrived in. Each role knows only its own report type; the runtime wraps
/// them into this (see `report::Reporter`).
#[derive(Debug)]
pub enum RoleReport {
    Session(Report),
    Dispatch(dispatcher::Report),
    Swap(crate::switcher::Finished),
}

/// Called with a reloaded config.
pub type ReloadHook = Box<dyn Fn(&Arc<Config>) + Send>;

/// Where the coordinator's orders go.
pub struct Outputs {
    pub sessions: Sender<sessions::Command>,
    pub dispatcher: Sender<dispatcher::Command>,
    pub quota: Sender<QuotaCommand>,
    pub switcher: Sender<crate::switcher::Plan>,
    /// Roles outside the coordinator's orders that take a reloaded config.
    pub on_reload: Vec<ReloadHook>,
}

/// Everything the coordinator listens to.
pub struct Inputs {
    pub signals: Receiver<SignalEvent>,
    pub control: Receiver<ControlRequest>,
    pub events: Receiver<RoleReport>,
    pub quota: Receiver<QuotaReport>,
}

/// What a previous run left in state_dir that the coordinator starts from.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// The account the last swap moved to, and that swap (`active.json`).
    pub active: Option<crate::switcher::Active>,
    /// A swap the last run did not finish.
    pub journal: Option<crate::switcher::Plan>,
    /// Hard limits and windows the last run knew (`quota.json`).
    pub quota: crate::quota::persist::QuotaFile,
}

/// Why the coordinator returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM/SIGINT or every input closed: a clean stop.
    Stopped(&'static str),
}

mod failover;

pub struct Coordinator<S: Supervisor> {
    config: Arc<Config>,
    shared: Shared,
    supervisor: S,
    outputs: Outputs,
    sessions: BTreeMap<String, Session>,
    /// Sessions whose adoption report (Adopted/Absent) has not come yet.
    adoption_pending: Option<std::collections::BTreeSet<String>>,
    /// Leases were reconciled after start-up: offers may go out.
    recovered: bool,
    /// Takeable tasks per project, as the dispatcher last said.
    waiting: BTreeMap<String, usize>,
    /// When leases were last reconciled against what sessions hold.
    last_reconcile: Option<Instant>,
    /// Sessions told "nothing for you" since the project's inbox last changed.
    declined: std::collections::BTreeSet<String>,
    counts: BTreeMap<String, QueueCounts>,
    /// Per account, in config (priority) order.
    quotas: Vec<AccountQuota>,
    /// What `quota.json` holds now (as of the last save or the restore),
    /// and when it was last written.
    quota_saved: crate::quota::persist::QuotaFile,
    quota_saved_at: Instant,
    /// The swap running now, if any.
    swap: Option<crate::switcher::Plan>,
    /// A requested swap (to, reason) waiting for in-flight deliveries.
    pending_swap: Option<failover::PendingSwap>,
    last_swap: Option<SwapRecord>,
    /// When the last swap started (monotonic, for `min_dwell_secs`).
    last_swap_at: Option<Instant>,
    /// No account is eligible: dispatch waits, the event was sent once.
    exhausted: bool,
    /// A swap the last run left unfinished: finished once leases are reconciled.
    journal: Option<crate::switcher::Plan>,
    started_at: SystemTime,
    active_account: Option<String>,
    dispatch_paused: bool,
    last_watchdog: Option<Instant>,
    last_status_line: String,
    /// The config was rejected on the last reload; kept in `STATUS=`.
    reload_problem: Option<String>,
}

impl<S: Supervisor> Coordinator<S> {
    pub fn new(
        config: Arc<Config>,
        shared: Shared,
        supervisor: S,
        outputs: Outputs,
        restored: Restored,
        now: SystemTime,
    ) -> Self {
        let known = |a: &Option<String>| a.as_ref().filter(|a| config.account(a).is_some()).cloned();
        let active_account = known(&restored.journal.as_ref().map(|j| j.to.clone()))
            .or_else(|| known(&restored.active.as_ref().map(|a| a.account.clone())))
            .or_else(|| config.accounts.first().map(|a| a.name.clone()));
        let mut quotas: Vec<AccountQuota> = config.accounts.iter().map(|a| AccountQuota::new(&a.name)).collect();
        // Windows no older than a poll may wait after a sample still count.
        let fresh_for = config.quota.poll_interval() * crate::quota::decide::MAX_DEFER_INTERVALS;
        for name in restored.quota.restore(&mut quotas, fresh_for, now) {
            let until = quotas.iter().find(|q| q.name == name).and_then(|q| q.exhausted_until);
            log::warn!(
                "{name}: hard limit restored from quota.json, held until {}",
                until.map(crate::time::rfc3339).unwrap_or_default()
            );
        }
        let quota_saved = crate::quota::persist::QuotaFile::snapshot(&quotas, now);
        let last_swap = restored.active.and_then(|a| a.last_swap);
        let sessions =
            config.sessions.iter().map(|s| (s.name.clone(), Session::new(&s.name, &s.project, s.dispatch))).collect();
        let pending = config.sessions.iter().map(|s| s.name.clone()).collect();
        let mut c = Coordinator {
            config,
            shared,
            supervisor,
            outputs,
            sessions,
            adoption_pending: Some(pending),
            recovered: false,
            waiting: BTreeMap::new(),
            declined: Default::default(),
            last_reconcile: None,
            counts: BTreeMap::new(),
            quotas,
            quota_saved,
            quota_saved_at: Instant::now(),
            swap: None,
            pending_swap: None,
            last_swap_at: last_swap.as_ref().and_then(|s| swap_started(s, now)),
            last_swap,
            exhausted: false,
            journal: restored.journal,
            started_at: now,
            active_account,
            dispatch_paused: false,
            last_watchdog: None,
            last_status_line: String::new(),
            reload_problem: None,
        };
        c.publish();
        c
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The tick interval: fast enough for the watchdog, at most one second.
    pub fn tick_interval(&self) -> Duration {
        let watchdog = self.supervisor.watchdog_interval().map(|w| w / 2);
        watchdog.map_or(Duration::from_secs(1), |w| w.clamp(Duration::from_millis(50), Duration::from_secs(1)))
    }

    /// Runs until a stop signal or until every input closes.
    pub fn run(mut self, inputs: Inputs, beat: Beat) -> Exit {
        let ticks = crossbeam_channel::tick(self.tick_interval());
        let mut signals = Some(inputs.signals);
        let mut control = Some(inputs.control);
        let mut events = Some(inputs.events);
        let mut quota = Some(inputs.quota);
        self.order(sessions::Command::Adopt);
        if self.config.sessions.is_empty() {
            // Nothing to adopt: leases are reconciled (all requeued) at once.
            self.adoption_done("");
        }
        self.on_tick(Instant::now());
        self.supervisor.ready();
        loop {
            beat.beat();
            let never_signal = crossbeam_channel::never();
            let never_control = crossbeam_channel::never();
            let never_event = crossbeam_channel::never();
            let never_quota = crossbeam_channel::never();
            select! {
                recv(signals.as_ref().unwrap_or(&never_signal)) -> msg => match msg {
                    Ok(SignalEvent::Stop(why)) => return self.stop(why),
                    Ok(SignalEvent::Reload(result)) => self.reload(*result),
                    Err(_) => signals = None,
                },
                recv(control.as_ref().unwrap_or(&never_control)) -> msg => match msg {
                    Ok(req) => {
                        let reply = self.handle_control(req.control);
                        let _ = req.reply.send(reply);
                    }
                    Err(_) => control = None,
                },
                recv(events.as_ref().unwrap_or(&never_event)) -> msg => match msg {
                    Ok(event) => self.handle(event, Instant::now()),
                    Err(_) => events = None,
                },
                recv(quota.as_ref().unwrap_or(&never_quota)) -> msg => match msg {
                    Ok(report) => self.on_quota_report(report, SystemTime::now()),
                    Err(_) => quota = None,
                },
                recv(ticks) -> _ => self.on_tick(Instant::now()),
            }
            if signals.is_none() && control.is_none() && events.is_none() {
                return self.stop("inputs closed");
            }
        }
    }

    fn stop(&mut self, why: &'static str) -> Exit {
        self.supervisor.stopping();
        self.save_quota(SystemTime::now(), true);
        self.shared.events.emit(Kind::DaemonStopping, "daemon", format!("stopping on {why}"), json!({}));
        Exit::Stopped(why)
    }

    fn order(&self, command: sessions::Command) {
        if self.outputs.sessions.send(command).is_err() {
            log::error!("the sessions role is gone; cannot order it");
        }
    }

    pub fn handle(&mut self, event: RoleReport, now: Instant) {
        match event {
            RoleReport::Session(report) => self.on_session_report(report, now),
            RoleReport::Dispatch(report) => self.on_dispatch_report(report),
            RoleReport::Swap(finished) => self.on_swap_finished(finished, now),
        }
        self.consider_swap(SystemTime::now());
        self.offer_work();
        self.publish();
    }

    /// Every janitor interval, the dispatcher hands back leases no session
    /// holds (the janitor role itself never touches active/).
    fn reconcile_leases(&mut self, now: Instant) {
        let every = Duration::from_secs(self.config.janitor.interval_secs);
        if !self.recovered || self.swap.is_some() || self.last_reconcile.is_some_and(|t| now.duration_since(t) < every)
        {
            return;
        }
        self.last_reconcile = Some(now);
        let held =
            self.sessions.values().filter_map(|s| Some((s.project.clone(), s.work.as_ref()?.task.clone()))).collect();
        self.dispatch_order(dispatcher::Command::Reconcile { held });
    }

    fn dispatch_order(&self, command: dispatcher::Command) {
        if self.outputs.dispatcher.send(command).is_err() {
            log::error!("the dispatcher role is gone; cannot order it");
        }
    }

    /// Where a session's conversation is, for the dispatcher.
    fn session_ref(&self, s: &Session) -> Option<SessionRef> {
        let account = self.config.account(s.account.as_deref()?)?;
        Some(SessionRef {
            session: s.name.clone(),
            project: s.project.clone(),
            account: account.name.clone(),
            config_dir: account.config_dir.clone(),
            claude_session_id: s.claude_session_id.clone()?,
        })
    }

    /// Once every session has been adopted or found absent, the dispatcher
    /// reconciles the leases left by the last run.
    fn adoption_done(&mut self, session: &str) {
        let Some(pending) = &mut self.adoption_pending else { return };
        pending.remove(session);
        if !pending.is_empty() {
            return;
        }
        self.adoption_pending = None;
        let sessions = self
            .sessions
            .values()
            .map(|s| {
                let running = s.activity != Activity::Stopped && s.launched_at.is_some() && s.restarts == 0;
                (s.name.clone(), running.then(|| self.session_ref(s)).flatten())
            })
            .collect();
        self.dispatch_order(dispatcher::Command::Recover { sessions });
    }

    fn on_dispatch_report(&mut self, report: dispatcher::Report) {
        use dispatcher::Report as R;
        match report {
            R::Waiting { project, tasks } => {
                let sessions = &self.sessions;
                self.declined.retain(|name| sessions.get(name).is_some_and(|s| s.project != project));
                self.waiting.insert(project, tasks);
            }
            R::Dispatched { session, task } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.offered = false;
                    s.work = Some(Work { turn_seen: true, ..Work::new(&task) });
                }
            }
            R::NoTask { session } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.offered = false;
                }
                self.declined.insert(session);
            }
            R::DeliveryFailed { session, task, error } => {
                log::warn!("{session}: {task} was not delivered ({error}); it goes back to the queue");
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.offered = false;
                }
            }
            R::Finished { session, task } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    if s.work.as_ref().is_some_and(|w| w.task == task) {
                        s.work = None;
                    }
                }
            }
            R::Resumed { session, task, running } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    // Still running: its turn settles as usual. Relaunched: the
                    // turn died with the old process, so it is told to continue.
                    s.work = Some(Work { turn_seen: running, resume_prompt: !running, ..Work::new(&task) });
                }
            }
            R::Recovered => {
                self.recovered = true;
                self.consolidate(SystemTime::now());
            }
            R::Counts { project, counts } => {
                self.counts.insert(project, counts);
            }
        }
    }

    /// Hands work to idle sessions and finishes settled tasks.
    fn offer_work(&mut self) {
        let now = Instant::now();
        let settle = Duration::from_secs(self.config.dispatch.settle_secs);
        let settled: Vec<(SessionRef, String)> = self
            .sessions
            .values()
            .filter(|s| s.settled(now, settle))
            .filter_map(|s| Some((self.session_ref(s)?, s.work.as_ref()?.task.clone())))
            .collect();
        for (at, task) in settled {
            if let Some(w) = self.sessions.get_mut(&at.session).and_then(|s| s.work.as_mut()) {
                w.finishing = true;
            }
            self.dispatch_order(dispatcher::Command::Finish { at, task });
        }
        let continuations: Vec<(SessionRef, String)> = if self.dispatch_allowed_by_quota(SystemTime::now()) {
            self.sessions
                .values()
                .filter(|s| s.wants_continuation())
                .filter_map(|s| Some((self.session_ref(s)?, s.work.as_ref()?.task.clone())))
                .collect()
        } else {
            Vec::new()
        };
        for (at, task) in continuations {
            if let Some(s) = self.sessions.get_mut(&at.session) {
                s.offered = true;
            }
            self.dispatch_order(dispatcher::Command::Continue { at, task });
        }
        if !self.recovered
            || self.dispatch_paused
            || !self.config.dispatch.enabled
            || !self.dispatch_allowed_by_quota(SystemTime::now())
        {
            return;
        }
        let offers: Vec<SessionRef> = self
            .sessions
            .values()
            .filter(|s| s.wants_work() && !self.declined.contains(&s.name))
            .filter(|s| self.waiting.get(&s.project).is_some_and(|n| *n > 0))
            .filter(|s| s.account == self.active_account)
            .filter_map(|s| self.session_ref(s))
            .collect();
        for at in offers {
            if let Some(s) = self.sessions.get_mut(&at.session) {
                s.offered = true;
            }
            self.dispatch_order(dispatcher::Command::Offer(at));
        }
    }

    fn on_session_report(&mut self, report: Report, now: Instant) {
        match report {
            Report::Adopted { session, account, claude_session_id } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    log::info!(
                        "adopted running session {session} (account {account}, conversation {claude_session_id})"
                    );
                    s.launched(&account, &claude_session_id, now);
                }
                self.adoption_done(&session);
            }
            Report::Absent { session } => {
                self.adoption_done(&session);
                self.launch(&session, now);
            }
            Report::Launched { session, account, claude_session_id } => {
                let Some(s) = self.sessions.get_mut(&session) else {
                    return;
                };
                let relaunch = s.restarts > 0;
                s.launched(&account, &claude_session_id, now);
                if relaunch {
                    self.shared.events.emit(
                        Kind::SessionRestarted,
                        &session,
                        format!("relaunched on {account}, resuming conversation {claude_session_id}"),
                        json!({"account": account, "claude_session_id": claude_session_id, "restarts": s.restarts}),
                    );
                }
            }
            Report::LaunchFailed { session, account, error } => {
                log::error!("launching session {session} on {account} failed: {error}");
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.launching = false;
                }
                self.observed(&session, Seen::Missing, now);
            }
            Report::Seen { session, seen } => self.observed(&session, seen, now),
            Report::Limit { session, resets_at, record_time } => {
                if let Some(w) = self.sessions.get_mut(&session).and_then(|s| s.work.as_mut()) {
                    w.limited = true;
                }
                let source = crate::quota::LimitSource::Transcript;
                self.limit_sighting(&session, source, resets_at, record_time, SystemTime::now());
            }
            Report::Sample { session, limits } => self.statusline_sample(&session, &limits, SystemTime::now()),
            Report::ScreenLimit { session } => {
                self.limit_sighting(&session, crate::quota::LimitSource::Pane, None, None, SystemTime::now());
            }
            Report::RateLimitFailure { session } => {
                self.limit_sighting(&session, crate::quota::LimitSource::Hook, None, None, SystemTime::now());
            }
        }
    }

    fn observed(&mut self, name: &str, seen: Seen, now: Instant) {
        let Some(s) = self.sessions.get_mut(name) else {
            return;
        };
        match s.observe(seen, now) {
            Step::Nothing | Step::Changed { .. } => {}
            Step::AnswerTrust if self.config.claude.auto_trust => {
                log::info!("{name}: answering the folder trust dialog (auto_trust)");
                self.order(sessions::Command::AnswerTrust { session: name.into() });
            }
            Step::AnswerTrust => self.waiting_event(name, "the folder trust dialog (auto_trust is off)"),
            Step::NowWaiting(what) => self.waiting_event(name, &what),
            Step::Died { relaunch_at, crash_loop } => {
                let wait = relaunch_at.saturating_duration_since(now);
                let task = s.work.as_ref().map(|w| w.task.clone());
                self.shared.events.emit(
                    Kind::SessionDied,
                    name,
                    format!("session {name} is gone; relaunching in {} s", wait.as_secs()),
                    json!({"relaunch_in_secs": wait.as_secs(), "task": task}),
                );
                if crash_loop {
                    self.shared.events.emit(
                        Kind::SessionCrashLoop,
                        name,
                        format!("session {name} keeps dying; still relaunching, with backoff up to 5 min"),
                        json!({}),
                    );
                }
            }
        }
    }

    fn waiting_event(&self, name: &str, what: &str) {
        self.shared.events.emit(
            Kind::SessionWaiting,
            name,
            format!("session {name} waits on {what}; not answered automatically"),
            json!({"waiting_for": what}),
        );
    }

    /// Launches a session on the active account (or leaves it stopped when
    /// no account is active).
    fn launch(&mut self, name: &str, now: Instant) {
        let Some(account) = self.active_account.clone() else {
            log::warn!("{name}: no active account to launch it on");
            return;
        };
        let Some(s) = self.sessions.get_mut(name) else {
            return;
        };
        s.activity = Activity::Starting;
        s.relaunch_at = None;
        s.launched_at = Some(now);
        s.launching = true;
        self.order(sessions::Command::Launch { session: name.into(), account });
    }

    /// Stops a session and launches it again on `account`, same conversation.
    fn restart(&mut self, name: &str, account: &str, now: Instant) {
        let Some(s) = self.sessions.get_mut(name) else { return };
        s.restarts += 1;
        s.activity = Activity::Starting;
        s.relaunch_at = None;
        s.launched_at = Some(now);
        s.launching = true;
        self.order(sessions::Command::Restart { session: name.into(), account: account.into() });
    }

    fn on_tick(&mut self, now: Instant) {
        let due: Vec<String> = self.sessions.values().filter(|s| s.relaunch_due(now)).map(|s| s.name.clone()).collect();
        for name in due {
            if let Some(s) = self.sessions.get_mut(&name) {
                s.restarts += 1;
            }
            self.launch(&name, now);
        }
        let startup = Duration::from_secs(self.config.claude.startup_timeout_secs);
        let overdue: Vec<String> =
            self.sessions.values().filter(|s| s.startup_overdue(now, startup)).map(|s| s.name.clone()).collect();
        for name in overdue {
            log::warn!("{name}: not at its prompt within {} s; restarting it", startup.as_secs());
            if let Some(account) = self.active_account.clone() {
                self.restart(&name, &account, now);
            }
        }
        self.reconcile_leases(now);
        self.consider_swap(SystemTime::now());
        self.offer_work();
        self.publish();
        if let Some(interval) = self.supervisor.watchdog_interval() {
            let due = self.last_watchdog.is_none_or(|last| now.duration_since(last) >= interval);
            if due {
                let stale = self.shared.heartbeats.stale(now, self.shared.heartbeats.stale_after());
                if stale.is_empty() {
                    self.supervisor.watchdog();
                    self.last_watchdog = Some(now);
                } else {
                    log::error!("withholding the watchdog ping: roles not beating: {}", stale.join(", "));
                }
            }
        }
    }

    pub fn handle_control(&mut self, control: Control) -> Reply {
        match control {
            Control::PauseDispatch | Control::ResumeDispatch => {
                self.dispatch_paused = control == Control::PauseDispatch;
                log::info!("dispatch {} by request", if self.dispatch_paused { "paused" } else { "resumed" });
                self.publish();
                Ok(json!({"paused": self.dispatch_paused}))
            }
            Control::Failover { to } => self.failover_request(to),
            Control::RestartSession(name) => {
                if !self.sessions.contains_key(&name) {
                    return Err(ControlError::NotFound(format!("no session named {name:?} in the config")));
                }
                if self.swap.is_some() || self.sessions.get(&name).is_some_and(|s| s.moving) {
                    return Err(ControlError::Conflict("a swap is moving the sessions; try again after it".into()));
                }
                let Some(account) = self.active_account.clone() else {
                    return Err(ControlError::Conflict("no account is active to launch it on".into()));
                };
                self.restart(&name, &account, Instant::now());
                Ok(json!({"accepted": true, "session": name, "account": account}))
            }
        }
    }

    fn reload(&mut self, result: Result<Config, ConfigError>) {
        self.supervisor.reloading();
        match result {
            Ok(new) => {
                let restart_needed = restart_only_keys(&self.config, &new);
                if !restart_needed.is_empty() {
                    log::warn!("reload: {} take effect only after a restart", restart_needed.join(", "));
                }
                if self.active_account.as_deref().is_none_or(|a| new.account(a).is_none()) {
                    self.active_account = new.accounts.first().map(|a| a.name.clone());
                }
                self.config = Arc::new(new);
                self.reload_problem = None;
                self.apply_session_changes(Instant::now());
                self.dispatch_order(dispatcher::Command::Configure(Arc::clone(&self.config)));
                self.apply_account_changes();
                for hook in &self.outputs.on_reload {
                    hook(&self.config);
                }
                let path = self.config.source.display().to_string();
                self.shared.events.emit(Kind::ConfigReloaded, &path, "configuration reloaded", json!({}));
            }
            Err(err) => {
                let path = self.config.source.display().to_string();
                let problems: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
                self.reload_problem = Some(format!("{} problem(s) in the new config, old config kept", problems.len()));
                self.shared.events.emit(
                    Kind::ConfigRejected,
                    &path,
                    format!("new configuration rejected, old one kept: {}", problems.join("; ")),
                    json!({"problems": problems}),
                );
            }
        }
        self.publish();
        self.supervisor.ready();
    }

    /// After a reload: new sessions are launched, removed ones are left
    /// running but no longer managed, changed ones take the new settings.
    fn apply_session_changes(&mut self, now: Instant) {
        let config = Arc::clone(&self.config);
        self.sessions.retain(|name, _| {
            let keep = config.session(name).is_some();
            if !keep {
                log::info!("{name} is no longer in the config: left running, no longer managed");
            }
            keep
        });
        self.order(sessions::Command::Configure(Arc::clone(&config)));
        let mut added = Vec::new();
        for sc in &config.sessions {
            match self.sessions.get_mut(&sc.name) {
                Some(s) => {
                    s.dispatch = sc.dispatch;
                    s.project = sc.project.clone();
                }
                None => {
                    self.sessions.insert(sc.name.clone(), Session::new(&sc.name, &sc.project, sc.dispatch));
                    added.push(sc.name.clone());
                }
            }
        }
        for name in added {
            self.launch(&name, now);
        }
    }

    /// Builds the `/status` document from the state and hands it to readers;
    /// tells systemd when the one-line summary changed.
    fn publish(&mut self) {
        let status = self.status();
        let mut line = status.summary();
        if let Some(problem) = &self.reload_problem {
            line.push_str("; ");
            line.push_str(problem);
        }
        *self.shared.status.write() = status;
        if line != self.last_status_line {
            self.supervisor.status(&line);
            self.last_status_line = line;
        }
    }

    fn status(&self) -> Status {
        let now = SystemTime::now();
        let accounts = self
            .quotas
            .iter()
            .map(|q| q.to_status(self.active_account.as_deref() == Some(q.name.as_str()), &self.config.quota, now))
            .collect();
        let sessions = self
            .sessions
            .values()
            .map(|s| SessionStatus {
                name: s.name.clone(),
                project: s.project.clone(),
                account: s.account.clone(),
                state: s.activity.as_str().into(),
                claude_session_id: s.claude_session_id.clone(),
                task: s.work.as_ref().map(|w| w.task.clone()),
                restarts: s.restarts,
            })
            .collect();
        let queues = self
            .config
            .projects
            .iter()
            .map(|p| {
                let c = self.counts.get(&p.name).copied().unwrap_or_default();
                QueueStatus {
                    project: p.name.clone(),
                    inbox: c.inbox,
                    active: c.active,
                    done: c.done,
                    failed: c.failed,
                }
            })
            .collect();
        Status {
            version: env!("CARGO_PKG_VERSION").into(),
            started_at: crate::time::rfc3339(self.started_at),
            active_account: self.active_account.clone(),
            dispatch_paused: self.dispatch_paused,
            swap: SwapStatus {
                in_progress: self.swap.is_some() || self.pending_swap.is_some(),
                last: self.last_swap.clone(),
            },
            accounts,
            sessions,
            queues,
        }
    }
}

/// When a swap a previous run recorded started, on this run's monotonic
/// clock (which `min_dwell_secs` is measured on); `None` when the record's
/// time does not parse (or lies before what the clock can express), and the
/// dwell is then taken as over.
fn swap_started(swap: &SwapRecord, now: SystemTime) -> Option<Instant> {
    let started = crate::time::parse_rfc3339(&swap.started_at)?;
    Instant::now().checked_sub(now.duration_since(started).unwrap_or_default())
}

/// Keys a reload cannot apply to a running daemon.
fn restart_only_keys(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.state_dir != new.state_dir {
        keys.push("state_dir");
    }
    if old.http.listen != new.http.listen {
        keys.push("http.listen");
    }
    if old.tmux.socket_name != new.tmux.socket_name {
        keys.push("tmux.socket_name");
    }
    // Debug output hides secrets, so the bot token is compared on its own.
    let token = |c: &Config| c.notify.telegram.as_ref().and_then(|t| t.bot_token.clone());
    if format!("{:?}", old.notify) != format!("{:?}", new.notify) || token(old) != token(new) {
        keys.push("notify");
    }
    keys
}
