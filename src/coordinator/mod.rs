//! The coordinator: the one thread that owns the daemon's state and decides.
//!
//! Observers (signals, HTTP, and the session, queue and quota roles) send it
//! a closed set of inputs. `Coordinator::handle` takes one input and the time
//! (read once per turn by the loop) and returns the effects it decided on:
//! orders to the roles, events, metrics, `quota.json`, the `/status`
//! snapshot and what systemd is told. It does no I/O and reads no clock, so a
//! test drives a whole failover in microseconds; `run.rs` is the thin loop
//! that carries the effects out.
//!
//! Its state comes in four parts, each in its own file with the handlers
//! that mostly touch it: the sessions (`pool.rs`), dispatch (`dispatch.rs`),
//! per-account quota (`quotas.rs`) and the swap (`swap.rs`).

use crate::config::{Config, ConfigError};
use crate::control::{Control, ControlError, ControlRequest};
use crate::dispatcher;
use crate::events::Kind;
use crate::quota::QuotaReport;
use crate::sessions;
use crate::signals::SignalEvent;
use crate::status::{QueueStatus, SessionQuestion, SessionStatus, Status, SwapRecord, SwapStatus};
use crossbeam_channel::Receiver;
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

mod dispatch;
mod effects;
mod fleet;
mod pool;
mod quotas;
mod run;
mod swap;
#[cfg(test)]
mod tests;
mod turns;

pub use effects::{Effects, Emit, Exit, Metric, Notify, Order, StateWrite};
pub use run::{run, Hands, Outputs};
pub use swap::SWAP_WAITS_FOR_TURNS;
pub use turns::REPAIR_AFTER;

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
    Session(sessions::Report),
    Dispatch(dispatcher::Report),
    Swap(crate::switcher::Finished),
    Fleet(crate::fleet::Report),
}

/// Called with a reloaded config.
pub type ReloadHook = Box<dyn Fn(&Arc<Config>) + Send>;

/// Everything the coordinator listens to.
pub struct Inputs {
    pub signals: Receiver<SignalEvent>,
    pub control: Receiver<ControlRequest>,
    pub reports: Receiver<RoleReport>,
    pub quota: Receiver<QuotaReport>,
}

/// One input, as `handle` takes it.
pub enum Input {
    /// The first turn: adopt running sessions, look around, say ready.
    Start,
    /// The periodic look; `stale` names the roles whose heartbeat is late.
    Tick {
        stale: Vec<&'static str>,
    },
    Role(RoleReport),
    Quota(QuotaReport),
    /// A control-plane request; its answer is `Effects::reply`.
    Control(Control),
    Signal(SignalEvent),
    /// Signals, control and reports all closed.
    Closed,
}

/// The time of one turn, read once by the loop and passed down: the
/// monotonic clock for durations, the wall clock for what is shown or kept.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub at: Instant,
    pub wall: SystemTime,
}

impl Now {
    pub fn read() -> Now {
        Now { at: Instant::now(), wall: SystemTime::now() }
    }

    /// The same moment `by` later on both clocks.
    pub fn later(self, by: Duration) -> Now {
        Now { at: self.at + by, wall: self.wall + by }
    }

    /// A past monotonic instant as a wall time relative to this turn: a
    /// wall-clock jump can neither shorten nor stretch what it measures.
    pub fn wall_of(self, then: Instant) -> SystemTime {
        self.wall - self.at.saturating_duration_since(then)
    }
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
    /// What `api_key` accounts spent (`spend.json`).
    pub spend: crate::quota::spend_file::SpendFile,
}

pub struct Coordinator {
    config: Arc<Config>,
    pool: pool::Pool,
    dispatch: dispatch::Dispatch,
    quotas: quotas::Quotas,
    swap: swap::Swap,
    /// `[fleet]` only: the other hosts and what they agreed on.
    fleet: Option<fleet::Fleet>,
    started_at: SystemTime,
    active_account: Option<String>,
    /// How often systemd wants a watchdog ping, if at all.
    watchdog_interval: Option<Duration>,
    last_watchdog: Option<Instant>,
    last_status_line: String,
    /// The config was rejected on the last reload; kept in `STATUS=`.
    reload_problem: Option<String>,
    /// Per session, the state `/status` last showed and since when.
    state_since: BTreeMap<String, (&'static str, SystemTime)>,
    /// The latest swaps, newest first, for `swap.recent`.
    recent_swaps: VecDeque<SwapRecord>,
}

impl Coordinator {
    pub fn new(config: Arc<Config>, restored: Restored, watchdog_interval: Option<Duration>, now: Now) -> Self {
        let known = |a: &Option<String>| a.as_ref().filter(|a| config.account(a).is_some()).cloned();
        let active_account = known(&restored.journal.as_ref().map(|j| j.to.clone()))
            .or_else(|| known(&restored.active.as_ref().map(|a| a.account.clone())))
            .or_else(|| config.first_account().map(|a| a.name.clone()));
        let quotas = quotas::Quotas::restore(&config, &restored.quota, &restored.spend, now);
        let last_swap = restored.active.and_then(|a| a.last_swap);
        let recent_swaps = last_swap.iter().cloned().collect();
        Coordinator {
            pool: pool::Pool::new(&config, crate::time::unix_secs(now.wall).max(0) as u64),
            dispatch: dispatch::Dispatch::default(),
            quotas,
            swap: swap::Swap {
                last_at: last_swap.as_ref().and_then(|s| swap_started(s, now)),
                last: last_swap,
                journal: restored.journal,
                ..swap::Swap::default()
            },
            fleet: config.fleet.as_ref().map(|f| fleet::Fleet::new(f, now.wall)),
            started_at: now.wall,
            active_account,
            watchdog_interval,
            last_watchdog: None,
            last_status_line: String::new(),
            reload_problem: None,
            state_since: BTreeMap::new(),
            recent_swaps,
            config,
        }
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The tick interval: fast enough for the watchdog, at most one second.
    pub fn tick_interval(&self) -> Duration {
        let watchdog = self.watchdog_interval.map(|w| w / 2);
        watchdog.map_or(Duration::from_secs(1), |w| w.clamp(Duration::from_millis(50), Duration::from_secs(1)))
    }

    /// One turn: the input at `now`, and what to do about it.
    pub fn handle(&mut self, input: Input, now: Now) -> Effects {
        let mut fx = Effects::default();
        match input {
            Input::Start => {
                fx.sessions(sessions::Command::Adopt);
                if self.config.sessions.is_empty() {
                    // Nothing to adopt: leases are reconciled (all requeued) at once.
                    self.adoption_done("", &mut fx);
                }
                self.on_tick(&[], now, &mut fx);
                self.publish(now, &mut fx);
                fx.notify.push(Notify::Ready);
            }
            Input::Tick { stale } => self.on_tick(&stale, now, &mut fx),
            Input::Role(report) => {
                match report {
                    RoleReport::Session(report) => self.on_session_report(report, now, &mut fx),
                    RoleReport::Dispatch(report) => self.on_dispatch_report(report, now, &mut fx),
                    RoleReport::Swap(finished) => self.on_swap_finished(finished, now, &mut fx),
                    RoleReport::Fleet(report) => self.on_fleet_report(report, now, &mut fx),
                }
                self.consider_swap(now, &mut fx);
                self.offer_work(now, &mut fx);
            }
            Input::Quota(report) => self.on_quota_report(report, now, &mut fx),
            Input::Control(control) => fx.reply = Some(self.handle_control(control, now, &mut fx)),
            Input::Signal(SignalEvent::Reload(result)) => self.reload(*result, now, &mut fx),
            Input::Signal(SignalEvent::Stop(why)) => {
                self.stop(why, now, &mut fx);
                return fx;
            }
            Input::Closed => {
                self.stop("inputs closed", now, &mut fx);
                return fx;
            }
        }
        self.publish(now, &mut fx);
        fx
    }

    fn stop(&mut self, why: &'static str, now: Now, fx: &mut Effects) {
        fx.notify.push(Notify::Stopping);
        self.save_quota(now, true, fx);
        self.save_history(now, true, fx);
        fx.emit(Kind::DaemonStopping, "daemon", format!("stopping on {why}"), json!({}));
        fx.exit = Some(Exit::Stopped(why));
    }

    fn on_tick(&mut self, stale: &[&'static str], now: Now, fx: &mut Effects) {
        self.fence_due(now, fx);
        self.relaunch_due(now, fx);
        self.dialogs_due(now, fx);
        self.reconcile_leases(now, fx);
        self.repair_stuck(now, fx);
        self.save_history(now, false, fx);
        self.consider_swap(now, fx);
        self.offer_work(now, fx);
        if let Some(interval) = self.watchdog_interval {
            let due = self.last_watchdog.is_none_or(|last| now.at.duration_since(last) >= interval);
            if due {
                if stale.is_empty() {
                    fx.notify.push(Notify::Watchdog);
                    self.last_watchdog = Some(now.at);
                } else {
                    log::error!("withholding the watchdog ping: roles not beating: {}", stale.join(", "));
                }
            }
        }
    }

    fn handle_control(&mut self, control: Control, now: Now, fx: &mut Effects) -> crate::control::Reply {
        match control {
            Control::PauseDispatch | Control::ResumeDispatch => {
                self.dispatch.paused = control == Control::PauseDispatch;
                log::info!("dispatch {} by request", if self.dispatch.paused { "paused" } else { "resumed" });
                Ok(json!({"paused": self.dispatch.paused}))
            }
            Control::Failover { to } => self.failover_request(to, now, fx),
            Control::RestartSession(name) => {
                if !self.pool.sessions.contains_key(&name) {
                    return Err(ControlError::NotFound(format!("no session named {name:?} in the config")));
                }
                if self.swap.running.is_some() || self.pool.sessions.get(&name).is_some_and(|s| s.moving) {
                    return Err(ControlError::Conflict("a swap is moving the sessions; try again after it".into()));
                }
                let Some(account) = self.active_account.clone() else {
                    return Err(ControlError::Conflict("no account is active to launch it on".into()));
                };
                if self.fleet_holds_elsewhere(&account) {
                    return Err(ControlError::Conflict(format!(
                        "another host holds {account} in the fleet; this host launches nothing there until it is free"
                    )));
                }
                self.restart(&name, &account, now, fx);
                Ok(json!({"accepted": true, "session": name, "account": account}))
            }
            Control::Answer(answer) => self.answer(answer, now, fx),
        }
    }

    fn reload(&mut self, result: Result<Config, ConfigError>, now: Now, fx: &mut Effects) {
        fx.notify.push(Notify::Reloading);
        match result {
            Ok(new) => {
                let restart_needed = restart_only_keys(&self.config, &new);
                if !restart_needed.is_empty() {
                    log::warn!("reload: {} take effect only after a restart", restart_needed.join(", "));
                }
                if self.active_account.as_deref().is_none_or(|a| new.account(a).is_none()) {
                    self.active_account = new.first_account().map(|a| a.name.clone());
                }
                self.config = Arc::new(new);
                self.reload_problem = None;
                self.apply_session_changes(now, fx);
                fx.dispatcher(dispatcher::Command::Configure(Arc::clone(&self.config)));
                self.apply_account_changes(now, fx);
                fx.reconfigured = Some(Arc::clone(&self.config));
                let path = self.config.source.display().to_string();
                fx.emit(Kind::ConfigReloaded, &path, "configuration reloaded", json!({}));
            }
            Err(err) => {
                let path = self.config.source.display().to_string();
                let problems: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
                self.reload_problem = Some(format!("{} problem(s) in the new config, old config kept", problems.len()));
                fx.emit(
                    Kind::ConfigRejected,
                    &path,
                    format!("new configuration rejected, old one kept: {}", problems.join("; ")),
                    json!({"problems": problems}),
                );
            }
        }
        self.publish(now, fx);
        fx.notify.push(Notify::Ready);
    }

    /// Builds the `/status` document from the state for readers; tells
    /// systemd when the one-line summary changed.
    fn publish(&mut self, now: Now, fx: &mut Effects) {
        self.note_swaps();
        for s in self.pool.sessions.values() {
            let state = s.activity.as_str();
            match self.state_since.get(&s.name) {
                Some((shown, _)) if *shown == state => {}
                _ => {
                    self.state_since.insert(s.name.clone(), (state, now.wall));
                }
            }
        }
        self.publish_host(fx, false);
        let status = self.status(now.wall);
        let mut line = status.summary();
        if let Some(problem) = &self.reload_problem {
            line.push_str("; ");
            line.push_str(problem);
        }
        fx.status = Some(status);
        if line != self.last_status_line {
            fx.notify.push(Notify::Status(line.clone()));
            self.last_status_line = line;
        }
    }

    /// Keeps `swap.last` in the recent swaps: a finished swap replaces its
    /// running self (same start), a new one goes in front.
    fn note_swaps(&mut self) {
        let Some(last) = &self.swap.last else { return };
        match self.recent_swaps.front_mut() {
            Some(front) if front.started_at == last.started_at && front.from == last.from => *front = last.clone(),
            _ => {
                self.recent_swaps.push_front(last.clone());
                self.recent_swaps.truncate(crate::status::RECENT_SWAPS);
            }
        }
    }

    fn status(&self, now: SystemTime) -> Status {
        let accounts = self
            .quotas
            .accounts
            .iter()
            .map(|q| q.to_status(self.active_account.as_deref() == Some(q.name.as_str()), &self.config.quota, now))
            .collect();
        let sessions = self
            .pool
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
                state_since: self.state_since.get(&s.name).map(|(_, t)| crate::time::rfc3339(*t)),
                waiting_for: s.waiting_for.clone().filter(|_| s.activity == sessions::model::Activity::Waiting),
                question: s.question.as_ref().filter(|_| s.activity == sessions::model::Activity::Waiting).map(|q| {
                    SessionQuestion {
                        title: q.title.clone(),
                        prompt: q.prompt.clone(),
                        detail: q.detail.clone(),
                        options: q.options.clone(),
                    }
                }),
            })
            .collect();
        let queues = self
            .config
            .projects
            .iter()
            .map(|p| {
                let c = self.dispatch.counts.get(&p.name).copied().unwrap_or_default();
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
            dispatch_paused: self.dispatch.paused,
            swap: SwapStatus {
                in_progress: self.swap.running.is_some() || self.swap.pending.is_some() || self.swap_asked(),
                last: self.swap.last.clone(),
                recent: self.recent_swaps.iter().cloned().collect(),
            },
            accounts,
            sessions,
            queues,
            fleet: self.fleet_status(),
        }
    }
}

/// When a swap a previous run recorded started, on this run's monotonic
/// clock (which `min_dwell_secs` is measured on); `None` when the record's
/// time does not parse (or lies before what the clock can express), and the
/// dwell is then taken as over.
fn swap_started(swap: &SwapRecord, now: Now) -> Option<Instant> {
    let started = crate::time::parse_rfc3339(&swap.started_at)?;
    now.at.checked_sub(now.wall.duration_since(started).unwrap_or_default())
}

/// Keys a reload cannot apply to a running daemon.
fn restart_only_keys(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.state_dir != new.state_dir {
        keys.push("state_dir");
    }
    if old.fleet != new.fleet {
        keys.push("fleet");
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
