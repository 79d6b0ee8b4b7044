//! Table tests: a coordinator fed a sequence of inputs at chosen times, and
//! the effects each turn returned checked. No thread, channel or clock: a
//! whole failover runs in microseconds.

use super::{Coordinator, Effects, Hands, Input, Now, Order, Outputs, Restored, RoleReport, StateWrite, Supervisor};
use crate::config::Config;
use crate::control::{Control, ControlError, Shared};
use crate::dispatcher::{self, Command as Dispatch};
use crate::events::Kind;
use crate::quota::persist::{QuotaFile, SavedAccount};
use crate::quota::{PollError, QuotaReport, Windows};
use crate::sessions::model::{Seen, TurnEnd};
use crate::sessions::{self, Command as Sessions};
use crate::status::SwapCause;
use crate::switcher::{Finished, Mover, Outcome, Plan};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const ACCOUNTS: &str = r#"
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

const TWO_SESSIONS: &str = r#"
    [[projects]]
    name = "web"
    path = "/tmp/cf-unit/web"
    [[sessions]]
    name = "s1"
    project = "web"
    [[sessions]]
    name = "s2"
    project = "web"
"#;

fn config(state_dir: &Path, extra: &str) -> Arc<Config> {
    let text = format!("state_dir = {:?}\n{ACCOUNTS}\n{extra}", state_dir.display().to_string());
    Arc::new(Config::from_toml(&text, Path::new("/tmp/cf-unit.toml")).unwrap())
}

/// A coordinator and the time it is fed at.
struct Rig {
    c: Coordinator,
    now: Now,
}

impl Rig {
    fn new(extra: &str, restored: Restored) -> Rig {
        Rig::in_dir(Path::new("/tmp/cf-unit-state"), extra, restored)
    }

    fn in_dir(state_dir: &Path, extra: &str, restored: Restored) -> Rig {
        let now = Now::read();
        Rig { c: Coordinator::new(config(state_dir, extra), restored, None, now), now }
    }

    fn feed(&mut self, input: Input) -> Effects {
        self.c.handle(input, self.now)
    }

    fn session(&mut self, report: sessions::Report) -> Effects {
        self.feed(Input::Role(RoleReport::Session(report)))
    }

    fn dispatch(&mut self, report: dispatcher::Report) -> Effects {
        self.feed(Input::Role(RoleReport::Dispatch(report)))
    }

    fn tick(&mut self) -> Effects {
        self.feed(Input::Tick { stale: Vec::new() })
    }

    fn wait(&mut self, by: Duration) {
        self.now = self.now.later(by);
    }

    /// A usage poll: five-hour at `five_hour` %, resetting in three hours.
    fn poll(&mut self, account: &str, five_hour: f64) -> Effects {
        let at = self.now.wall;
        let reset = at + Duration::from_secs(3 * 3600);
        let windows = Windows::from_named([("five_hour", five_hour, Some(reset)), ("seven_day", 10.0, None)]);
        self.feed(Input::Quota(QuotaReport::Polled {
            asked_at: at,
            account: account.into(),
            at,
            outcome: Ok(windows),
            next_poll_at: at,
        }))
    }

    fn poll_failed(&mut self, account: &str, error: PollError) -> Effects {
        let at = self.now.wall;
        self.feed(Input::Quota(QuotaReport::Polled {
            asked_at: at,
            account: account.into(),
            at,
            outcome: Err(error),
            next_poll_at: at,
        }))
    }

    /// Start, both sessions found running on `account`, leases reconciled,
    /// both idle, every account polled at 10 %.
    fn running_on(extra: &str, account: &str) -> Rig {
        let mut rig = Rig::new(extra, Restored::default());
        rig.feed(Input::Start);
        for s in ["s1", "s2"] {
            rig.session(adopted(s, account));
        }
        rig.dispatch(dispatcher::Report::Recovered);
        for a in ["alpha", "beta", "gamma"] {
            rig.poll(a, 10.0);
        }
        for s in ["s1", "s2"] {
            rig.session(seen(s, Seen::Idle));
        }
        rig
    }

    fn active(&self) -> Option<&str> {
        self.c.active_account.as_deref()
    }
}

fn adopted(session: &str, account: &str) -> sessions::Report {
    sessions::Report::Adopted {
        session: session.into(),
        account: account.into(),
        claude_session_id: format!("id-{session}"),
    }
}

fn seen(session: &str, seen: Seen) -> sessions::Report {
    sessions::Report::Seen { session: session.into(), seen }
}

fn plan_of(fx: &Effects) -> Option<&Plan> {
    fx.orders.iter().find_map(|o| match o {
        Order::Switcher(plan) => Some(plan),
        _ => None,
    })
}

fn session_orders(fx: &Effects) -> Vec<String> {
    fx.orders
        .iter()
        .filter_map(|o| match o {
            Order::Sessions(Sessions::Launch { session, account }) => Some(format!("launch {session} on {account}")),
            Order::Sessions(Sessions::Restart { session, account }) => Some(format!("restart {session} on {account}")),
            Order::Sessions(Sessions::Track { session, account, .. }) => Some(format!("track {session} on {account}")),
            Order::Sessions(Sessions::AnswerTrust { session }) => Some(format!("trust {session}")),
            Order::Sessions(Sessions::Adopt) => Some("adopt".into()),
            _ => None,
        })
        .collect()
}

fn offers(fx: &Effects) -> Vec<String> {
    fx.orders
        .iter()
        .filter_map(|o| match o {
            Order::Dispatcher(Dispatch::Offer(at)) => Some(at.session.clone()),
            _ => None,
        })
        .collect()
}

fn moved(plan: &Plan, at: SystemTime) -> Finished {
    let outcomes = plan
        .sessions
        .iter()
        .map(|m| Outcome::Moved {
            session: m.session.clone(),
            pid: 1,
            continued: m.task.is_some(),
            ready_after: Duration::from_millis(500),
            resumed_after: None,
        })
        .collect();
    Finished { plan: plan.clone(), outcomes, finished_at: at }
}

#[test]
fn a_whole_failover_from_a_threshold_to_the_sessions_tracked_on_the_next_account() {
    let mut rig = Rig::running_on(TWO_SESSIONS, "alpha");
    let fx = rig.dispatch(dispatcher::Report::Waiting { project: "web".into(), tasks: 1 });
    assert_eq!(offers(&fx), ["s1", "s2"], "idle sessions are offered the waiting task");
    let fx = rig.dispatch(dispatcher::Report::Dispatched { session: "s1".into(), task: "t1.md".into() });
    assert!(offers(&fx).is_empty(), "s2 still has its offer out");
    rig.dispatch(dispatcher::Report::NoTask { session: "s2".into() });

    // alpha crosses its threshold while s1 is in a turn: the swap waits.
    rig.session(seen("s1", Seen::Busy));
    rig.wait(Duration::from_secs(60));
    let fx = rig.poll("alpha", 95.0);
    assert!(plan_of(&fx).is_none(), "a running turn holds the swap");
    assert!(fx.status.as_ref().is_some_and(|s| s.swap.in_progress), "/status shows the pending swap");

    // The turn ends: the swap starts on the next report.
    let fx = rig.session(seen("s1", Seen::Idle));
    let plan = plan_of(&fx).expect("the swap starts once the turn is over").clone();
    assert_eq!((plan.from.as_str(), plan.to.as_str(), plan.reason), ("alpha", "beta", SwapCause::Threshold));
    let movers: Vec<(&str, Option<&str>)> =
        plan.sessions.iter().map(|m| (m.session.as_str(), m.task.as_deref())).collect();
    assert_eq!(movers, [("s1", Some("t1.md")), ("s2", None)]);
    assert_eq!(fx.kinds(), [Kind::FailoverStarted]);
    assert_eq!(fx.events[0].details["reason"], "threshold");
    assert_eq!(fx.metrics.len(), 1);
    assert_eq!(fx.metrics[0].name, "claude_failover_failovers_total");
    assert_eq!(fx.metrics[0].labels, [("reason", "threshold".to_string())]);
    assert_eq!(rig.active(), Some("beta"), "the active account moves with the plan");

    // While it runs: no offers, no second swap, observations ignored.
    rig.dispatch(dispatcher::Report::Waiting { project: "web".into(), tasks: 2 });
    let fx = rig.poll("beta", 99.0);
    assert!(plan_of(&fx).is_none() && offers(&fx).is_empty());
    let fx = rig.session(seen("s2", Seen::Missing));
    assert!(fx.events.is_empty(), "a moving session's pane is not a death");
    let fx = rig.feed(Input::Control(Control::Failover { to: None }));
    assert!(matches!(fx.reply, Some(Err(ControlError::Conflict(_)))));

    // The switcher reports both moved.
    rig.wait(Duration::from_secs(3));
    let fx = rig.feed(Input::Role(RoleReport::Swap(moved(&plan, rig.now.wall))));
    assert_eq!(fx.kinds(), [Kind::FailoverFinished]);
    assert_eq!(fx.events[0].details["sessions_moved"], 2);
    assert_eq!(session_orders(&fx), ["track s1 on beta", "track s2 on beta"]);
    let status = fx.status.expect("published");
    assert!(!status.swap.in_progress);
    assert_eq!(status.active_account.as_deref(), Some("beta"));
    let last = status.swap.last.expect("the finished swap is shown");
    assert_eq!((last.from.as_str(), last.to.as_str(), last.sessions_moved), ("alpha", "beta", 2));
    assert!(status.sessions.iter().all(|s| s.account.as_deref() == Some("beta")));
}

#[test]
fn all_accounts_exhausted_waits_once_and_wakes_up_when_one_recovers() {
    let mut rig = Rig::running_on(TWO_SESSIONS, "alpha");
    rig.dispatch(dispatcher::Report::Waiting { project: "web".into(), tasks: 0 });
    for a in ["beta", "gamma"] {
        rig.poll(a, 100.0);
    }
    let fx = rig.poll("alpha", 100.0);
    assert_eq!(fx.kinds(), [Kind::AllAccountsExhausted]);
    assert!(plan_of(&fx).is_none(), "nowhere to go: the sessions stay");
    assert!(
        matches!(&fx.files[..], [StateWrite::Quota { file, .. }] if file.limits().len() == 3),
        "the hard limits are saved at once"
    );
    assert_eq!(rig.active(), Some("alpha"));

    // Tasks arrive: nothing is offered while no account can work, and the
    // event is not repeated on every poll or tick.
    let fx = rig.dispatch(dispatcher::Report::Waiting { project: "web".into(), tasks: 3 });
    assert!(offers(&fx).is_empty());
    rig.wait(Duration::from_secs(600));
    let mut later = rig.poll("alpha", 100.0);
    later.events.extend(rig.poll("beta", 100.0).events);
    later.events.extend(rig.tick().events);
    assert!(later.events.is_empty() && offers(&later).is_empty(), "{:?}", later.kinds());

    // Past gamma's reset (three hours after its poll), before alpha's and
    // beta's (three hours after their later polls), a poll shows gamma free.
    rig.wait(Duration::from_secs(3 * 3600 - 60));
    let fx = rig.poll("gamma", 5.0);
    assert_eq!(fx.kinds(), [Kind::AccountRecovered, Kind::FailoverStarted]);
    assert_eq!(fx.events[0].subject, "gamma");
    let plan = plan_of(&fx).expect("a swap to the recovered account");
    assert_eq!((plan.to.as_str(), plan.sessions.len()), ("gamma", 2));
    let plan = plan.clone();
    rig.feed(Input::Role(RoleReport::Swap(moved(&plan, rig.now.wall))));
    let mut offered = offers(&rig.session(seen("s1", Seen::Idle)));
    offered.extend(offers(&rig.session(seen("s2", Seen::Idle))));
    assert_eq!(offered, ["s1", "s2"], "dispatch resumes on gamma once the sessions are at their prompt");
}

#[test]
fn a_dead_login_is_said_once_and_its_account_is_passed_over() {
    let mut rig = Rig::running_on(TWO_SESSIONS, "alpha");
    let fx = rig.poll_failed("beta", PollError::Unauthorized);
    assert_eq!(fx.kinds(), [Kind::LoginRevoked]);
    assert_eq!(fx.events[0].subject, "beta");
    assert!(fx.events[0].message.contains("/login"), "{}", fx.events[0].message);
    assert_eq!(fx.metrics[0].name, "claude_failover_usage_poll_errors_total");
    assert_eq!(fx.metrics[0].labels, [("account", "beta".to_string())]);
    let fx = rig.poll_failed("beta", PollError::TokenExpired);
    assert!(fx.events.is_empty(), "still revoked: not said again");
    let status = fx.status.expect("published");
    assert_eq!(status.accounts.iter().find(|a| a.name == "beta").map(|a| a.state.as_str()), Some("token_expired"));

    let fx = rig.poll("alpha", 95.0);
    assert_eq!(plan_of(&fx).map(|p| p.to.as_str()), Some("gamma"), "the swap skips the dead login");

    // A session whose screen asks for /login waits on a person, once.
    let mut rig = Rig::running_on(TWO_SESSIONS, "alpha");
    let fx = rig.session(seen("s2", Seen::LoginNeeded));
    assert_eq!(fx.kinds(), [Kind::SessionWaiting]);
    assert_eq!(fx.events[0].details["waiting_for"], "login: the account needs /login");
    let fx = rig.session(seen("s2", Seen::LoginNeeded));
    assert!(fx.events.is_empty());
}

#[test]
fn after_a_crash_the_unfinished_swap_is_finished_once_leases_are_reconciled() {
    let journal = Plan {
        from: "alpha".into(),
        to: "beta".into(),
        reason: SwapCause::HardLimit,
        started_at: crate::time::rfc3339(SystemTime::now() - Duration::from_secs(30)),
        sessions: vec![Mover { session: "s1".into(), claude_session_id: "id-s1".into(), task: Some("t1.md".into()) }],
    };
    let mut rig = Rig::new(TWO_SESSIONS, Restored { journal: Some(journal), ..Restored::default() });
    assert_eq!(rig.active(), Some("beta"), "the journal's target is where the sessions belong");
    let fx = rig.feed(Input::Start);
    assert_eq!(session_orders(&fx), ["adopt"]);
    assert_eq!(fx.notify.last(), Some(&super::Notify::Ready));

    // s1 was already moved (and its old claude may still run beside it); s2
    // is gone and is launched on beta.
    rig.session(adopted("s1", "beta"));
    let fx = rig.session(sessions::Report::Absent { session: "s2".into() });
    assert_eq!(session_orders(&fx), ["launch s2 on beta"]);
    let recover = fx.orders.iter().find_map(|o| match o {
        Order::Dispatcher(Dispatch::Recover { sessions }) => Some(sessions.clone()),
        _ => None,
    });
    let recover = recover.expect("every session reported: leases are reconciled");
    assert_eq!(
        recover.iter().map(|(s, at)| (s.as_str(), at.is_some())).collect::<Vec<_>>(),
        [("s1", true), ("s2", false)]
    );
    for a in ["alpha", "beta", "gamma"] {
        let fx = rig.poll(a, 10.0);
        assert!(plan_of(&fx).is_none(), "no swap decided before the journal is finished");
    }
    rig.session(sessions::Report::Launched {
        session: "s2".into(),
        account: "beta".into(),
        claude_session_id: "id-s2".into(),
    });
    let fx = rig.dispatch(dispatcher::Report::Resumed { session: "s1".into(), task: "t1.md".into(), running: true });
    assert!(plan_of(&fx).is_none());

    let fx = rig.dispatch(dispatcher::Report::Recovered);
    let plan = plan_of(&fx).expect("the interrupted swap is run again").clone();
    assert_eq!((plan.from.as_str(), plan.to.as_str(), plan.reason), ("alpha", "beta", SwapCause::HardLimit));
    let movers: Vec<(&str, Option<&str>)> =
        plan.sessions.iter().map(|m| (m.session.as_str(), m.task.as_deref())).collect();
    assert_eq!(movers, [("s1", Some("t1.md"))], "the session it named moves again, with its task; s2 is on beta");
    let fx = rig.feed(Input::Role(RoleReport::Swap(moved(&plan, rig.now.wall))));
    assert_eq!(fx.kinds(), [Kind::FailoverFinished]);
    let fx = rig.dispatch(dispatcher::Report::Recovered);
    assert!(plan_of(&fx).is_none(), "finished once");
}

#[test]
fn a_dead_session_is_relaunched_after_its_backoff_and_said_restarted() {
    let mut rig = Rig::running_on(TWO_SESSIONS, "alpha");
    rig.dispatch(dispatcher::Report::Dispatched { session: "s1".into(), task: "t1.md".into() });
    let fx = rig.session(seen("s1", Seen::Missing));
    assert_eq!(fx.kinds(), [Kind::SessionDied]);
    assert_eq!(fx.events[0].details["task"], "t1.md");
    let wait = fx.events[0].details["relaunch_in_secs"].as_u64().expect("a backoff");
    assert!(session_orders(&rig.tick()).is_empty(), "not before the backoff");
    rig.wait(Duration::from_secs(wait + 1));
    let fx = rig.tick();
    assert_eq!(session_orders(&fx), ["launch s1 on alpha"]);
    let fx = rig.session(sessions::Report::Launched {
        session: "s1".into(),
        account: "alpha".into(),
        claude_session_id: "id-s1".into(),
    });
    assert_eq!(fx.kinds(), [Kind::SessionRestarted]);
    assert_eq!(fx.events[0].details["restarts"], 1);

    // Back at its prompt, the task it lost its turn on is continued.
    let fx = rig.session(seen("s1", Seen::Idle));
    let continued =
        fx.orders.iter().any(|o| matches!(o, Order::Dispatcher(Dispatch::Continue { task, .. }) if task == "t1.md"));
    assert!(continued, "{:?}", fx.orders);
}

#[test]
fn the_watchdog_is_pinged_only_while_every_role_beats() {
    let now = Now::read();
    let interval = Duration::from_secs(10);
    let mut c = Coordinator::new(config(Path::new("/tmp/cf-unit-state"), ""), Restored::default(), Some(interval), now);
    assert_eq!(c.tick_interval(), Duration::from_secs(1));
    let watchdogs = |fx: &Effects| fx.notify.iter().filter(|n| **n == super::Notify::Watchdog).count();
    assert_eq!(watchdogs(&c.handle(Input::Start, now)), 1);
    assert_eq!(watchdogs(&c.handle(Input::Tick { stale: Vec::new() }, now.later(Duration::from_secs(5)))), 0);
    let late = now.later(interval);
    assert_eq!(watchdogs(&c.handle(Input::Tick { stale: vec!["quota"] }, late)), 0, "withheld");
    assert_eq!(watchdogs(&c.handle(Input::Tick { stale: Vec::new() }, late)), 1);
    let fx = c.handle(Input::Closed, late);
    assert_eq!(fx.notify, [super::Notify::Stopping]);
    assert_eq!(fx.kinds(), [Kind::DaemonStopping]);
    assert_eq!(fx.exit, Some(super::Exit::Stopped("inputs closed")));
}

// The coordinator's earlier unit tests, on the returned effects.

/// A coordinator over three accounts and no sessions, leases reconciled.
fn coordinator_in(state_dir: &Path, restored: Restored) -> Rig {
    let mut rig = Rig::in_dir(state_dir, "", restored);
    rig.c.dispatch.recovered = true;
    rig
}

fn poll_at(rig: &mut Rig, account: &str, five_hour: f64, at: SystemTime) {
    let q = rig.c.quotas.get_mut(account).unwrap();
    q.apply_poll(at, at, &Ok(Windows::from_named([("five_hour", five_hour, None), ("seven_day", 10.0, None)])));
}

fn consider(rig: &mut Rig, wall: SystemTime) -> Effects {
    let mut fx = Effects::default();
    rig.c.consider_swap(Now { at: rig.now.at, wall }, &mut fx);
    fx
}

fn finish_swap(rig: &mut Rig) {
    let plan = rig.c.swap.running.clone().expect("a swap started");
    let finished = Finished { plan, outcomes: Vec::new(), finished_at: rig.now.wall };
    rig.feed(Input::Role(RoleReport::Swap(finished)));
}

fn swapping(rig: &Rig) -> bool {
    rig.c.swap.running.is_some() || rig.c.swap.pending.is_some()
}

#[test]
fn a_wall_clock_jump_neither_shortens_nor_stretches_the_dwell() {
    let mut rig = coordinator_in(Path::new("/tmp/cf-unit-state"), Restored::default());
    let now = rig.now.wall;
    for a in ["alpha", "beta", "gamma"] {
        poll_at(&mut rig, a, 10.0, now);
    }
    poll_at(&mut rig, "alpha", 95.0, now);
    consider(&mut rig, now);
    assert_eq!(rig.active(), Some("beta"), "a threshold crossing swaps");
    finish_swap(&mut rig);

    // beta crosses too, and the wall clock jumps a month ahead: the
    // dwell (600 s, monotonic) has not passed, so no second swap.
    let later = now + Duration::from_secs(30 * 86_400);
    poll_at(&mut rig, "beta", 95.0, later);
    consider(&mut rig, later);
    assert!(!swapping(&rig), "the jump shortened the dwell");
    assert_eq!(rig.active(), Some("beta"));

    // Back to the real time and an hour back: still within the dwell.
    let earlier = now - Duration::from_secs(3600);
    consider(&mut rig, earlier);
    assert!(!swapping(&rig));

    // A hard limit ignores the dwell, jump or not.
    let q = rig.c.quotas.get_mut("beta").unwrap();
    q.exhausted_until = Some(later + Duration::from_secs(3600));
    consider(&mut rig, later);
    assert_eq!(rig.active(), Some("gamma"));
}

#[test]
fn a_restored_hard_limit_shows_at_once_and_moves_off_the_account() {
    let now = SystemTime::now();
    let until = now + Duration::from_secs(3 * 3600);
    let mut quota = QuotaFile::default();
    let saved = SavedAccount { exhausted_until: Some(until), ..SavedAccount::default() };
    quota.accounts.insert("alpha".into(), saved);
    // No active.json: the daemon starts on the first account, alpha.
    let mut rig = coordinator_in(Path::new("/tmp/cf-unit-state"), Restored { quota, ..Restored::default() });
    assert_eq!(rig.active(), Some("alpha"));
    let status = rig.c.status(rig.now.wall);
    let alpha = status.accounts.iter().find(|a| a.name == "alpha").unwrap();
    assert_eq!(alpha.state, "exhausted");
    assert_eq!(alpha.exhausted_until.as_deref(), Some(crate::time::rfc3339(until).as_str()));
    assert!(!alpha.eligible);

    let wall = rig.now.wall;
    consider(&mut rig, wall);
    assert_eq!(rig.active(), Some("beta"), "the first decision knows alpha is spent");
}

#[test]
fn a_restart_keeps_the_last_swap_and_its_dwell() {
    let dir = tempfile::tempdir().unwrap();
    let restart = || Restored { active: crate::switcher::read_active(dir.path()), ..Restored::default() };
    let mut rig = coordinator_in(dir.path(), restart());
    let now = rig.now.wall;
    for a in ["alpha", "beta", "gamma"] {
        poll_at(&mut rig, a, 10.0, now);
    }
    poll_at(&mut rig, "alpha", 95.0, now);
    consider(&mut rig, now);
    finish_swap(&mut rig);
    let last = rig.c.status(now).swap.last.expect("a finished swap");
    // What the switcher leaves in active.json (no switcher runs here).
    let saved = |rig: &Rig| crate::switcher::Active {
        account: rig.active().unwrap().to_string(),
        last_swap: rig.c.status(now).swap.last,
    };
    crate::switcher::write_active(dir.path(), &saved(&rig));

    let mut rig = coordinator_in(dir.path(), restart());
    assert_eq!(rig.active(), Some("beta"));
    assert_eq!(rig.c.status(now).swap.last.as_ref(), Some(&last), "/status still shows the last swap");
    for a in ["alpha", "gamma"] {
        poll_at(&mut rig, a, 10.0, now);
    }
    poll_at(&mut rig, "beta", 95.0, now);
    consider(&mut rig, now);
    assert!(!swapping(&rig), "the restart started min_dwell_secs over");

    let fx = rig.feed(Input::Control(Control::Failover { to: Some("gamma".into()) }));
    fx.reply.expect("answered").expect("accepted");
    finish_swap(&mut rig);
    crate::switcher::write_active(dir.path(), &saved(&rig));
    let rig = coordinator_in(dir.path(), restart());
    let last = rig.c.status(now).swap.last.expect("kept");
    assert_eq!((rig.active(), last.reason), (Some("gamma"), SwapCause::Manual));
}

/// Carries effects out as the loop does, into real files and channels
/// nobody reads.
fn hands() -> Hands<Quiet> {
    Hands {
        shared: Shared {
            status: Default::default(),
            events: crate::events::Events::new(None),
            metrics: Default::default(),
            heartbeats: crate::heartbeat::Heartbeats::new(None),
            history: Default::default(),
        },
        supervisor: Quiet,
        outputs: Outputs {
            sessions: crossbeam_channel::unbounded().0,
            dispatcher: crossbeam_channel::unbounded().0,
            quota: crossbeam_channel::unbounded().0,
            switcher: crossbeam_channel::unbounded().0,
            fleet: None,
            on_reload: Vec::new(),
        },
    }
}

/// Says nothing to a service manager.
struct Quiet;

impl Supervisor for Quiet {
    fn ready(&self) {}
    fn status(&self, _line: &str) {}
    fn watchdog(&self) {}
    fn reloading(&self) {}
    fn stopping(&self) {}
    fn watchdog_interval(&self) -> Option<Duration> {
        None
    }
}

#[test]
fn quota_json_is_written_when_a_limit_changes_not_on_every_poll() {
    let dir = tempfile::tempdir().unwrap();
    let hands = hands();
    let file = crate::state_dir::quota_file(dir.path());
    let now = SystemTime::now();
    let reset = now + Duration::from_secs(3 * 3600);
    let report = |account: &str, five_hour: f64| {
        let windows = Windows::from_named([("five_hour", five_hour, Some(reset)), ("seven_day", 10.0, None)]);
        Input::Quota(QuotaReport::Polled {
            account: account.into(),
            asked_at: now,
            at: now,
            outcome: Ok(windows),
            next_poll_at: now,
        })
    };
    let mut rig = coordinator_in(dir.path(), Restored::default());
    let feed = |rig: &mut Rig, input| hands.carry_out(rig.feed(input));
    feed(&mut rig, report("beta", 10.0));
    assert!(!file.exists(), "windows alone wait for the next periodic save");

    feed(&mut rig, report("alpha", 100.0));
    let saved = crate::quota::persist::load(dir.path()).unwrap().expect("a hard limit is saved at once");
    assert_eq!(saved.limits()["alpha"], crate::time::parse_rfc3339(&crate::time::rfc3339(reset)).unwrap());
    assert_eq!(saved.accounts["beta"].windows["five_hour"].utilization, 10.0, "windows go along");

    std::fs::remove_file(&file).unwrap();
    feed(&mut rig, report("beta", 20.0));
    feed(&mut rig, report("alpha", 100.0));
    assert!(!file.exists(), "the same limit again is not a change");

    feed(&mut rig, Input::Signal(crate::signals::SignalEvent::Stop("test")));
    let saved = crate::quota::persist::load(dir.path()).unwrap().expect("saved on stop");
    assert_eq!(saved.accounts["beta"].windows["five_hour"].utilization, 20.0);
    assert!(saved.limits().contains_key("alpha"));
}

#[test]
fn swap_causes_keep_the_words_files_events_and_metrics_had() {
    use crate::quota::SwapReason;
    for reason in [SwapReason::HardLimit, SwapReason::Threshold, SwapReason::Projected, SwapReason::Failback] {
        assert_eq!(SwapCause::from(reason).as_str(), reason.as_str());
    }
    for cause in [SwapCause::HardLimit, SwapCause::Manual, SwapCause::Consolidate, SwapCause::Failback] {
        let json = serde_json::to_value(cause).unwrap();
        assert_eq!(json, cause.as_str());
        assert_eq!(serde_json::from_value::<SwapCause>(json).unwrap(), cause);
    }
    let journal = r#"{"from":"a","to":"b","reason":"manual","started_at":"2025-01-01T00:00:00Z","sessions":[]}"#;
    let plan: Plan = serde_json::from_str(journal).expect("a journal an earlier build wrote");
    assert_eq!(plan.reason, SwapCause::Manual);
    assert!(serde_json::from_str::<Plan>(&journal.replace("manual", "whim")).is_err(), "an unknown reason is refused");
}

#[test]
fn a_launch_that_fails_counts_as_a_death_and_is_tried_again_after_the_backoff() {
    let mut rig = Rig::new(TWO_SESSIONS, Restored::default());
    rig.feed(Input::Start);
    rig.session(adopted("s1", "alpha"));
    let fx = rig.session(sessions::Report::Absent { session: "s2".into() });
    assert_eq!(session_orders(&fx), ["launch s2 on alpha"]);
    let error = sessions::launch::StartError::Tmux {
        session: "s2".into(),
        account: "alpha".into(),
        error: crate::tmux::TmuxError::NoDirectory { name: "s2".into(), path: "/tmp/cf-unit/web".into() },
    };
    assert_eq!((error.session(), error.account()), ("s2", "alpha"));
    let fx = rig.session(sessions::Report::LaunchFailed { session: "s2".into(), account: "alpha".into(), error });
    assert_eq!(fx.kinds(), [Kind::SessionDied]);
    let wait = fx.events[0].details["relaunch_in_secs"].as_u64().expect("a backoff");
    rig.wait(Duration::from_secs(wait + 1));
    assert_eq!(session_orders(&rig.tick()), ["launch s2 on alpha"]);
}

/// What the effects told the dispatcher, in words.
fn dispatcher_orders(fx: &Effects) -> Vec<String> {
    fx.orders
        .iter()
        .filter_map(|o| match o {
            Order::Dispatcher(Dispatch::Offer(at)) => Some(format!("offer {}", at.session)),
            Order::Dispatcher(Dispatch::Finish { at, task }) => Some(format!("finish {task} of {}", at.session)),
            Order::Dispatcher(Dispatch::Continue { at, task, after }) => {
                Some(format!("continue {task} in {} after {after}", at.session))
            }
            Order::Dispatcher(Dispatch::Retry { at, task, why }) => {
                Some(format!("retry {task} in {}: {why}", at.session))
            }
            _ => None,
        })
        .collect()
}

fn turn_ended(session: &str, end: TurnEnd) -> sessions::Report {
    sessions::Report::TurnEnded { session: session.into(), end }
}

fn limit_record(session: &str, resets_at: SystemTime, window: &str, now: SystemTime) -> sessions::Report {
    sessions::Report::Limit {
        session: session.into(),
        resets_at: Some(resets_at),
        record_time: Some(now),
        window: Some(window.into()),
    }
}

/// `rig` running on alpha with `task` handed to `session`, its turn under way.
fn working(rig: &mut Rig, session: &str, task: &str) {
    rig.dispatch(dispatcher::Report::Dispatched { session: session.into(), task: task.into() });
    rig.session(seen(session, Seen::Busy));
}

#[test]
fn a_turn_ending_in_an_api_error_is_never_done_and_goes_on_with_its_attempt_counted() {
    let mut rig = Rig::running_on(TWO_SESSIONS, "alpha");
    working(&mut rig, "s1", "t1.md");
    let overload = TurnEnd::ApiError { error: "server_error".into(), status: Some(529), text: "Overloaded".into() };
    let fx = rig.session(turn_ended("s1", overload.clone()));
    assert_eq!(fx.kinds(), [Kind::TurnFailed]);
    assert_eq!(fx.events[0].details["task"], "t1.md");
    // The StopFailure hook tells of the same failure: not said twice.
    assert!(rig.session(turn_ended("s1", overload)).events.is_empty());

    let fx = rig.session(seen("s1", Seen::Idle));
    assert!(dispatcher_orders(&fx).is_empty(), "not before settle_secs");
    rig.wait(Duration::from_secs(6));
    let fx = rig.tick();
    assert_eq!(dispatcher_orders(&fx), ["retry t1.md in s1: API error server_error 529: Overloaded"]);
    assert!(dispatcher_orders(&rig.tick()).is_empty(), "one retry at a time");

    // The continuation is typed; that turn ends normally: now it settles.
    let fx = rig.dispatch(dispatcher::Report::Dispatched { session: "s1".into(), task: "t1.md".into() });
    assert!(dispatcher_orders(&fx).is_empty());
    rig.session(sessions::Report::TurnStarted { session: "s1".into() });
    rig.session(seen("s1", Seen::Busy));
    rig.session(turn_ended("s1", TurnEnd::Normal));
    rig.session(seen("s1", Seen::Idle));
    rig.wait(Duration::from_secs(6));
    assert_eq!(dispatcher_orders(&rig.tick()), ["finish t1.md of s1"]);

    // Each kind of API error ending holds the task back the same way.
    for (error, status) in [("rate_limit", 429), ("unknown", 400), ("server_error", 500)] {
        let mut rig = Rig::running_on(TWO_SESSIONS, "alpha");
        working(&mut rig, "s2", "t2.md");
        let end = TurnEnd::ApiError { error: error.into(), status: Some(status), text: String::new() };
        rig.session(turn_ended("s2", end));
        rig.session(seen("s2", Seen::Idle));
        rig.wait(Duration::from_secs(60));
        let orders = dispatcher_orders(&rig.tick());
        assert_eq!(orders, [format!("retry t2.md in s2: API error {error} {status}")], "{error}");
    }
}

#[test]
fn a_revoked_login_is_said_once_moves_the_sessions_and_the_task_goes_on_elsewhere() {
    let mut rig = Rig::running_on(TWO_SESSIONS, "alpha");
    working(&mut rig, "s1", "t1.md");
    let fx = rig.session(turn_ended("s1", TurnEnd::LoginRevoked));
    assert_eq!(fx.kinds(), [Kind::LoginRevoked, Kind::FailoverStarted]);
    assert_eq!(fx.events[0].subject, "alpha");
    let message = &fx.events[0].message;
    assert!(message.contains("CLAUDE_CONFIG_DIR=/tmp/cf-unit/alpha claude") && message.contains("/login"), "{message}");
    let plan = plan_of(&fx).expect("a revoked login moves the sessions at once").clone();
    assert_eq!((plan.to.as_str(), plan.reason), ("beta", SwapCause::LoginRevoked));
    let movers: Vec<(&str, Option<&str>)> =
        plan.sessions.iter().map(|m| (m.session.as_str(), m.task.as_deref())).collect();
    assert_eq!(movers, [("s1", Some("t1.md")), ("s2", None)], "the task goes along to be continued");
    let status = fx.status.expect("published");
    let alpha = status.accounts.iter().find(|a| a.name == "alpha").unwrap();
    assert_eq!((alpha.state.as_str(), alpha.eligible), ("token_expired", false));
    assert!(alpha.last_error.as_deref().is_some_and(|e| e.contains("revoked")), "{:?}", alpha.last_error);
    // The StopFailure hook says it again, and a poll 401s: no second word.
    assert!(rig.session(turn_ended("s1", TurnEnd::LoginRevoked)).events.is_empty());
    assert!(!rig.poll_failed("alpha", PollError::Unauthorized).kinds().contains(&Kind::LoginRevoked));

    // Moved and continued on beta: the continued turn settles like a fresh one.
    rig.feed(Input::Role(RoleReport::Swap(moved(&plan, rig.now.wall))));
    rig.session(seen("s1", Seen::Busy));
    rig.session(turn_ended("s1", TurnEnd::Normal));
    rig.session(seen("s1", Seen::Idle));
    rig.wait(Duration::from_secs(6));
    assert_eq!(dispatcher_orders(&rig.tick()), ["finish t1.md of s1"]);

    // A person logs in again: the next poll succeeds and alpha may work.
    rig.wait(Duration::from_secs(60));
    let fx = rig.poll("alpha", 10.0);
    let alpha = fx.status.unwrap().accounts.into_iter().find(|a| a.name == "alpha").unwrap();
    assert_eq!((alpha.state.as_str(), alpha.eligible), ("standby", true));
}

#[test]
fn after_an_all_exhausted_wait_the_limited_tasks_go_on_spread_over_the_window() {
    let mut rig = Rig::running_on(&format!("{TWO_SESSIONS}\n[dispatch]\nsettle_secs = 5"), "alpha");
    for a in ["beta", "gamma"] {
        rig.poll(a, 100.0);
    }
    working(&mut rig, "s1", "t1.md");
    working(&mut rig, "s2", "t2.md");
    rig.wait(Duration::from_secs(1));
    // Both turns stop on alpha's weekly limit, which resets in ten minutes.
    let reset = rig.now.wall + Duration::from_secs(600);
    let now = rig.now.wall;
    let fx = rig.session(limit_record("s1", reset, "seven_day", now));
    assert_eq!(fx.kinds(), [Kind::AllAccountsExhausted]);
    assert!(fx.events[0].message.contains("work is expected to resume around"), "{}", fx.events[0].message);
    assert_eq!(fx.events[0].details["until"], crate::time::rfc3339(reset), "alpha's weekly reset comes first");
    rig.session(limit_record("s2", reset, "seven_day", now));
    // Claude Code shows it will continue by itself at the reset: cancelled once.
    let screen = |s: &str| sessions::Report::ScreenLimit { session: s.into(), takeover: true };
    let fx = rig.session(screen("s1"));
    assert!(fx
        .orders
        .iter()
        .any(|o| matches!(o, Order::Sessions(Sessions::TakeOverLimit { session }) if session == "s1")));
    assert!(rig
        .session(screen("s1"))
        .orders
        .iter()
        .all(|o| !matches!(o, Order::Sessions(Sessions::TakeOverLimit { .. }))));
    rig.session(screen("s2"));
    for s in ["s1", "s2"] {
        rig.session(seen(s, Seen::Idle));
    }
    rig.wait(Duration::from_secs(60));
    let fx = rig.tick();
    assert!(dispatcher_orders(&fx).is_empty(), "held while alpha is out: {:?}", dispatcher_orders(&fx));

    // The announced reset passes: dispatch wakes and the tasks go on, one
    // now, the other half the spread later.
    rig.wait(Duration::from_secs(541));
    let fx = rig.tick();
    assert_eq!(fx.kinds(), [Kind::AccountRecovered]);
    assert_eq!(dispatcher_orders(&fx), ["continue t1.md in s1 after a usage limit"]);
    let next = rig.c.wake_at(rig.now.at).expect("the loop is woken for the next one");
    assert_eq!(next - rig.now.at, Duration::from_secs(5));
    rig.wait(Duration::from_secs(4));
    assert!(dispatcher_orders(&rig.tick()).is_empty());
    rig.wait(Duration::from_secs(1));
    assert_eq!(dispatcher_orders(&rig.tick()), ["continue t2.md in s2 after a usage limit"]);
}

#[test]
fn a_fresh_reading_ends_a_hold_early_and_an_old_one_does_not() {
    let mut rig = Rig::running_on(TWO_SESSIONS, "alpha");
    for a in ["beta", "gamma"] {
        rig.poll(a, 100.0);
    }
    let asked_before = rig.now.wall;
    working(&mut rig, "s1", "t1.md");
    rig.wait(Duration::from_secs(1));
    let (now, in_two_days) = (rig.now.wall, rig.now.wall + Duration::from_secs(2 * 86400));
    let fx = rig.session(limit_record("s1", in_two_days, "seven_day", now));
    assert_eq!(fx.kinds(), [Kind::AllAccountsExhausted]);
    rig.session(seen("s1", Seen::Idle));
    // An answer to a request sent before the limit says nothing of it.
    let windows = Windows::from_named([("five_hour", 5.0, None), ("seven_day", 3.0, Some(in_two_days))]);
    let stale = Input::Quota(QuotaReport::Polled {
        account: "alpha".into(),
        asked_at: asked_before,
        at: rig.now.wall,
        outcome: Ok(windows.clone()),
        next_poll_at: rig.now.wall,
    });
    let fx = rig.feed(stale);
    assert!(dispatcher_orders(&fx).is_empty());
    // The server reset the window early: a fresh reading ends the hold.
    rig.wait(Duration::from_secs(120));
    let fx = rig.poll("alpha", 5.0);
    assert_eq!(fx.kinds(), [Kind::AccountRecovered]);
    assert_eq!(dispatcher_orders(&fx), ["continue t1.md in s1 after a usage limit"]);
}

#[test]
fn a_task_left_on_an_idle_session_is_repaired_on_its_evidence() {
    for (ended_normally, want) in
        [(false, "continue t1.md in s1 after a restart of the session"), (true, "finish t1.md of s1")]
    {
        let mut rig = Rig::running_on(TWO_SESSIONS, "alpha");
        working(&mut rig, "s1", "t1.md");
        if ended_normally {
            rig.session(turn_ended("s1", TurnEnd::Normal));
        }
        // A move whose continuation did not go in: the task sits, no turn seen.
        let fx = rig.feed(Input::Control(Control::Failover { to: Some("beta".into()) }));
        let fx = if plan_of(&fx).is_some() { fx } else { rig.session(seen("s1", Seen::Idle)) };
        let plan = plan_of(&fx).expect("the manual swap starts").clone();
        let mut done = moved(&plan, rig.now.wall);
        for o in &mut done.outcomes {
            if let Outcome::Moved { continued, .. } = o {
                *continued = false;
            }
        }
        rig.feed(Input::Role(RoleReport::Swap(done)));
        rig.session(seen("s1", Seen::Idle));
        rig.wait(Duration::from_secs(20));
        let fx = rig.tick();
        assert!(fx.events.is_empty() && dispatcher_orders(&fx).is_empty(), "not before its time");
        rig.wait(Duration::from_secs(20));
        let fx = rig.tick();
        assert_eq!(fx.kinds(), [Kind::TaskRepaired]);
        let mut orders = dispatcher_orders(&fx);
        orders.extend(dispatcher_orders(&rig.tick()));
        assert_eq!(orders, [want]);
    }
}

#[test]
fn a_task_failed_after_its_last_retry_frees_its_session_for_the_next() {
    let mut rig = Rig::running_on(TWO_SESSIONS, "alpha");
    working(&mut rig, "s1", "t1.md");
    rig.session(turn_ended(
        "s1",
        TurnEnd::ApiError { error: "unknown".into(), status: Some(400), text: String::new() },
    ));
    rig.session(seen("s1", Seen::Idle));
    rig.wait(Duration::from_secs(6));
    assert_eq!(dispatcher_orders(&rig.tick()), ["retry t1.md in s1: API error unknown 400"]);
    // The dispatcher gave up: the task is in failed/, the session free.
    rig.dispatch(dispatcher::Report::Finished { session: "s1".into(), task: "t1.md".into() });
    let fx = rig.dispatch(dispatcher::Report::Waiting { project: "web".into(), tasks: 1 });
    assert_eq!(offers(&fx), ["s1", "s2"]);
}

fn question(prompt: &str) -> crate::claude::question::Question {
    crate::claude::question::Question {
        title: "Bash command".into(),
        prompt: prompt.into(),
        detail: vec!["touch /tmp/x".into()],
        options: vec!["Yes".into(), "No".into()],
        cursor: 0,
        cancellable: true,
    }
}

fn asking(session: &str, prompt: &str) -> sessions::Report {
    seen(session, Seen::Asking { what: "permission prompt".into(), question: Box::new(question(prompt)) })
}

fn answer(episode: u64, choice: crate::claude::question::Choice) -> Input {
    Input::Control(Control::Answer(crate::control::Answer { episode, choice, by: "@ann (42)".into(), via: "telegram" }))
}

fn episode_of(fx: &Effects) -> u64 {
    fx.events[0].details["episode"].as_u64().expect("an episode in the event")
}

fn typed(fx: &Effects) -> Vec<(String, crate::claude::question::Choice)> {
    fx.orders
        .iter()
        .filter_map(|o| match o {
            Order::Sessions(Sessions::Answer { session, choice, .. }) => Some((session.clone(), choice.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn an_answer_is_typed_only_into_its_own_open_episode() {
    use crate::claude::question::Choice;
    let mut rig = Rig::running_on(TWO_SESSIONS, "alpha");
    let fx = rig.session(asking("s1", "Do you want to proceed?"));
    assert_eq!(fx.kinds(), [Kind::SessionWaiting]);
    assert_eq!(fx.events[0].details["question"]["options"], serde_json::json!(["Yes", "No"]));
    let first = episode_of(&fx);
    // The same question seen again is the same episode: nothing new said.
    assert!(rig.session(asking("s1", "Do you want to proceed?")).events.is_empty());

    // A press for an episode that never was, or an option the question lacks.
    assert!(matches!(rig.feed(answer(first + 100, Choice::Option(0))).reply, Some(Err(ControlError::Conflict(_)))));
    assert!(matches!(rig.feed(answer(first, Choice::Option(5))).reply, Some(Err(ControlError::BadRequest(_)))));

    // The press: typed, an event naming who, the episode closed.
    let fx = rig.feed(answer(first, Choice::Option(1)));
    assert_eq!(fx.reply, Some(Ok(serde_json::json!({"session": "s1", "answer": "No"}))));
    assert_eq!(typed(&fx), [("s1".to_string(), Choice::Option(1))]);
    assert_eq!(fx.kinds(), [Kind::QuestionAnswered]);
    assert_eq!(fx.events[0].details["by"], "@ann (42)");
    // A second press of the same button does nothing.
    let fx = rig.feed(answer(first, Choice::Option(0)));
    assert!(matches!(fx.reply, Some(Err(ControlError::Conflict(_)))));
    assert!(typed(&fx).is_empty() && fx.events.is_empty());

    // The same question still on screen just after the answer is not asked
    // again at once; well after, it is, as a new episode.
    assert!(rig.session(asking("s1", "Do you want to proceed?")).events.is_empty());
    rig.wait(crate::sessions::model::QUESTION_ASK_AGAIN);
    let fx = rig.session(asking("s1", "Do you want to proceed?"));
    let second = episode_of(&fx);
    assert!(second > first);

    // The question changes: the old episode's press is stale, nothing typed.
    let fx = rig.session(asking("s1", "Do you want to make this edit?"));
    let third = episode_of(&fx);
    let fx = rig.feed(answer(second, Choice::Option(0)));
    assert!(matches!(fx.reply, Some(Err(ControlError::Conflict(_)))));
    assert!(typed(&fx).is_empty());
    // The session moves on (busy): its episode is over, a press refused.
    rig.session(seen("s1", Seen::Busy));
    assert!(matches!(rig.feed(answer(third, Choice::Option(0))).reply, Some(Err(ControlError::Conflict(_)))));

    // A text answer to an open one.
    let fx = rig.session(asking("s2", "Do you want to proceed?"));
    let fourth = episode_of(&fx);
    let fx = rig.feed(answer(fourth, Choice::Text("use /tmp/y".into())));
    assert_eq!(typed(&fx), [("s2".to_string(), Choice::Text("use /tmp/y".into()))]);
    assert_eq!(fx.events[0].details["answer_kind"], "text");
}

#[test]
fn a_dialog_without_a_readable_question_is_said_once_it_stays() {
    let mut rig = Rig::running_on(TWO_SESSIONS, "alpha");
    assert!(rig.session(seen("s1", Seen::Dialog("dialog".into()))).events.is_empty());
    assert!(rig.tick().events.is_empty(), "not yet: it may be a question half drawn");
    // Read as a question after all: said as the question, once.
    let fx = rig.session(asking("s1", "Go on?"));
    assert_eq!(fx.kinds(), [Kind::SessionWaiting]);
    rig.wait(crate::sessions::model::DIALOG_SETTLE);
    assert!(rig.tick().events.is_empty());
    // One that stays unreadable is said after DIALOG_SETTLE.
    assert!(rig.session(seen("s2", Seen::Dialog("dialog".into()))).events.is_empty());
    rig.wait(crate::sessions::model::DIALOG_SETTLE);
    assert_eq!(rig.tick().kinds(), [Kind::SessionWaiting]);
    assert!(rig.tick().events.is_empty());
}

// ---- the paid fallback: an api_key account ----

/// Three subscriptions (ACCOUNTS), two sessions, and an `api_key` account
/// "paid" capped at 1 USD a day, opus priced at 15/75/18.75/1.5 USD per
/// million tokens.
fn paid_extra(dir: &Path) -> String {
    let key = dir.join("key");
    std::fs::write(&key, "sk-ant-api03-TESTunitkey0000000000-KEYUNI-AA\n").unwrap();
    format!(
        "{TWO_SESSIONS}\n[[accounts]]\nname = \"paid\"\nkind = \"api_key\"\nconfig_dir = \"/tmp/cf-unit/paid\"\n\
         api_key_file = {:?}\nmax_spend_usd_per_day = 1.0\n\
         [quota.prices.\"claude-opus-5-5\"]\ninput = 15.0\noutput = 75.0\ncache_write = 18.75\ncache_read = 1.5\n",
        key.display().to_string()
    )
}

fn paid_rig(dir: &Path) -> Rig {
    let mut rig = Rig::in_dir(dir, &paid_extra(dir), Restored::default());
    rig.feed(Input::Start);
    for s in ["s1", "s2"] {
        rig.session(adopted(s, "alpha"));
    }
    rig.dispatch(dispatcher::Report::Recovered);
    for a in ["alpha", "beta", "gamma"] {
        rig.poll(a, 10.0);
    }
    for s in ["s1", "s2"] {
        rig.session(seen(s, Seen::Idle));
    }
    rig
}

/// A poll with the weekly window full, resetting in two days.
fn poll_out(rig: &mut Rig, account: &str) -> Effects {
    let at = rig.now.wall;
    let windows = Windows::from_named([
        ("five_hour", 40.0, Some(at + Duration::from_secs(3600))),
        ("seven_day", 100.0, Some(at + Duration::from_secs(2 * 86_400))),
    ]);
    rig.feed(Input::Quota(QuotaReport::Polled {
        asked_at: at,
        account: account.into(),
        at,
        outcome: Ok(windows),
        next_poll_at: at,
    }))
}

fn usage(session: &str, id: &str, input: u64, output: u64) -> sessions::Report {
    sessions::Report::Usage {
        session: session.into(),
        account: "paid".into(),
        message_id: id.into(),
        model: "claude-opus-5-5".into(),
        tokens: crate::claude::transcript::TokenUsage { input, output, cache_write: 0, cache_read: 0 },
    }
}

fn spend_of(fx: &Effects) -> Option<(f64, f64)> {
    let status = fx.status.as_ref()?;
    let s = status.accounts.iter().find(|a| a.name == "paid")?.spend.as_ref()?;
    Some((s.spent_usd, s.cap_usd))
}

#[test]
fn the_paid_key_is_used_only_when_every_subscription_is_out_capped_per_utc_day_and_left_for_a_subscription() {
    let dir = tempfile::tempdir().unwrap();
    let mut rig = paid_rig(dir.path());
    assert_eq!(rig.active(), Some("alpha"));

    // Two subscriptions out: the third takes over, not the key.
    poll_out(&mut rig, "beta");
    let fx = poll_out(&mut rig, "alpha");
    let plan = plan_of(&fx).expect("a swap").clone();
    assert_eq!((plan.to.as_str(), plan.reason), ("gamma", SwapCause::HardLimit));
    rig.feed(Input::Role(RoleReport::Swap(moved(&plan, rig.now.wall))));

    // The last one out: now the key.
    rig.wait(Duration::from_secs(60));
    let fx = poll_out(&mut rig, "gamma");
    let plan = plan_of(&fx).expect("a swap to the key").clone();
    assert_eq!((plan.from.as_str(), plan.to.as_str(), plan.reason), ("gamma", "paid", SwapCause::HardLimit));
    assert!(!fx.kinds().contains(&Kind::AllAccountsExhausted));
    let fx = rig.feed(Input::Role(RoleReport::Swap(moved(&plan, rig.now.wall))));
    assert_eq!(session_orders(&fx), ["track s1 on paid", "track s2 on paid"]);
    let status = fx.status.unwrap();
    let paid = status.accounts.iter().find(|a| a.name == "paid").unwrap();
    assert_eq!((paid.kind.as_str(), paid.state.as_str(), paid.eligible), ("api_key", "active", true));
    assert_eq!(spend_of(&rig.tick()), Some((0.0, 1.0)));
    for s in ["s1", "s2"] {
        rig.session(seen(s, Seen::Idle));
    }

    // A turn there: 10k in, 10k out = 0.15 + 0.75 USD, counted once per message.
    let fx = rig.session(usage("s1", "msg_1", 10_000, 10_000));
    let (spent, cap) = spend_of(&fx).unwrap();
    assert!((spent - 0.9).abs() < 1e-9 && cap == 1.0, "{spent}");
    let saved = fx.files.iter().find_map(|f| match f {
        StateWrite::Spend { file, .. } => Some(file.clone()),
        _ => None,
    });
    let saved = saved.expect("spend.json is written");
    assert!((saved.accounts["paid"].usd - 0.9).abs() < 1e-9);
    let tokens: Vec<(String, u64)> = fx
        .metrics
        .iter()
        .filter(|m| m.name == "claude_failover_api_key_tokens_total")
        .map(|m| (m.labels[1].1.clone(), m.by))
        .collect();
    assert_eq!(tokens, [("input".to_string(), 10_000), ("output".to_string(), 10_000)]);
    let fx = rig.session(usage("s1", "msg_1", 10_000, 10_000));
    assert!(fx.files.is_empty() && fx.events.is_empty(), "the same message's next line is not counted again");
    let fx = rig.session(usage("s1", "msg_2", 0, 1_000));
    assert!(fx.events.is_empty(), "0.975 USD: under the cap");
    assert!(spend_of(&fx).is_some_and(|(s, _)| (s - 0.975).abs() < 1e-9));

    // The cap reached: out until the next UTC midnight; no way out, dispatch waits.
    let fx = rig.session(usage("s2", "msg_3", 0, 1_000));
    assert_eq!(fx.kinds(), [Kind::SpendCapReached, Kind::AllAccountsExhausted]);
    let midnight = crate::quota::decide::next_utc_midnight(rig.now.wall);
    assert_eq!(fx.events[0].details["until"], crate::time::rfc3339(midnight));
    assert_eq!(fx.events[1].details["reason"], "spend_cap");
    let status = fx.status.unwrap();
    let paid = status.accounts.iter().find(|a| a.name == "paid").unwrap();
    assert_eq!((paid.state.as_str(), paid.eligible), ("exhausted", false));
    assert_eq!(paid.exhausted_until, Some(crate::time::rfc3339(midnight)));
    let fx = rig.dispatch(dispatcher::Report::Waiting { project: "web".into(), tasks: 1 });
    assert!(offers(&fx).is_empty(), "no new task on a capped key");

    // A restart keeps the day's spend.
    let again = Rig::in_dir(
        dir.path(),
        &paid_extra(dir.path()),
        Restored { spend: saved_after(&mut rig), ..Restored::default() },
    );
    let kept = again.c.status(rig.now.wall).accounts.into_iter().find(|a| a.name == "paid").unwrap();
    assert!(!kept.eligible && kept.spend.is_some_and(|s| (s.spent_usd - 1.05).abs() < 1e-9));

    // The next UTC day: the key may spend again.
    rig.now = Now { at: rig.now.at + midnight.duration_since(rig.now.wall).unwrap(), wall: midnight };
    rig.wait(Duration::from_secs(1));
    let fx = rig.tick();
    assert_eq!(fx.kinds(), [Kind::AccountRecovered]);
    assert_eq!(spend_of(&fx), Some((0.0, 1.0)));
    assert_eq!(offers(&fx), ["s1", "s2"], "the waiting task is offered again");
    rig.dispatch(dispatcher::Report::NoTask { session: "s1".into() });
    rig.dispatch(dispatcher::Report::NoTask { session: "s2".into() });

    // A subscription returns (a fresh reading): the sessions go back at once.
    let fx = rig.poll("beta", 5.0);
    let plan = plan_of(&fx).expect("back to the subscription").clone();
    assert_eq!((plan.from.as_str(), plan.to.as_str(), plan.reason), ("paid", "beta", SwapCause::BackToSubscription));
    assert_eq!(fx.events.last().unwrap().details["reason"], "back_to_subscription");
}

/// What `spend.json` would hold now.
fn saved_after(rig: &mut Rig) -> crate::quota::spend_file::SpendFile {
    crate::quota::spend_file::SpendFile::snapshot(&rig.c.quotas.accounts)
}

/// `[fleet]`: the coordinator's fleet decisions, fed the fleet role's
/// reports (`RoleReport::Fleet`) as etcd would make it send them.
mod fleet_decisions {
    use super::*;
    use crate::fleet::{AccountNews, Active, ActiveRecord, Change, Command as Fleet, Hold, Reading, Report};
    use std::collections::BTreeSet;

    fn fleet_config(host: &str, policy: &str) -> String {
        format!("{TWO_SESSIONS}\n[fleet]\nendpoints = [\"http://127.0.0.1:9\"]\nhost = {host:?}\npolicy = {policy:?}\n")
    }

    fn report(rig: &mut Rig, report: Report) -> Effects {
        rig.feed(Input::Role(RoleReport::Fleet(report)))
    }

    fn changed(rig: &mut Rig, change: Change) -> Effects {
        report(rig, Report::Changed(change))
    }

    fn active(account: &str, by: &str, reason: &str, revision: i64) -> Active {
        let record =
            ActiveRecord { account: account.into(), from: String::new(), reason: reason.into(), by: by.into(), at: 0 };
        Active { record, revision }
    }

    fn joined(revision: i64, state: Vec<Change>) -> Report {
        Report::Joined { revision, state }
    }

    /// etcd stopped answering; this host's lease may live `lease_left` s more.
    fn unreachable(error: &str, lease_left: u64) -> Report {
        Report::Unreachable { error: error.into(), lease_left: Some(Duration::from_secs(lease_left)) }
    }

    fn interrupts(fx: &Effects) -> Vec<String> {
        fx.orders
            .iter()
            .filter_map(|o| match o {
                Order::Sessions(Sessions::Interrupt { session }) => Some(session.clone()),
                _ => None,
            })
            .collect()
    }

    fn continues(fx: &Effects) -> Vec<(String, String, &'static str)> {
        fx.orders
            .iter()
            .filter_map(|o| match o {
                Order::Dispatcher(Dispatch::Continue { at, task, after }) => {
                    Some((at.session.clone(), task.clone(), *after))
                }
                _ => None,
            })
            .collect()
    }

    fn fleet_orders(fx: &Effects) -> Vec<Fleet> {
        fx.orders
            .iter()
            .filter_map(|o| match o {
                Order::Fleet(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    /// The proposals (`shared`): (account, reason, base revision).
    fn proposals(fx: &Effects) -> Vec<(String, String, i64)> {
        fleet_orders(fx)
            .into_iter()
            .filter_map(|c| match c {
                Fleet::Propose { record, base } => Some((record.account, record.reason, base)),
                _ => None,
            })
            .collect()
    }

    /// The claims (`exclusive`): "from → to".
    fn claims(fx: &Effects) -> Vec<String> {
        fleet_orders(fx)
            .into_iter()
            .filter_map(|c| match c {
                Fleet::Claim { from, to } => Some(format!("{} → {to}", from.unwrap_or_default())),
                _ => None,
            })
            .collect()
    }

    fn polls_told(fx: &Effects) -> Vec<Option<BTreeSet<String>>> {
        fx.orders
            .iter()
            .filter_map(|o| match o {
                Order::Quota(crate::quota::QuotaCommand::PollOnly(only)) => Some(only.clone()),
                _ => None,
            })
            .collect()
    }

    fn set(names: &[&str]) -> Option<BTreeSet<String>> {
        Some(names.iter().map(|n| n.to_string()).collect())
    }

    /// Where the swap this turn started goes, and why.
    fn swap_to(fx: &Effects) -> Option<(String, SwapCause)> {
        plan_of(fx).map(|p| (p.to.clone(), p.reason))
    }

    /// The swap now running ends with every session moved.
    fn finish(rig: &mut Rig) -> Effects {
        let plan = rig.c.swap.running.clone().expect("a swap is running");
        let at = rig.now.wall;
        rig.feed(Input::Role(RoleReport::Swap(moved(&plan, at))))
    }

    fn account_state(rig: &Rig, account: &str) -> (String, bool) {
        let status = rig.c.status(rig.now.wall);
        let a = status.accounts.into_iter().find(|a| a.name == account).unwrap();
        (a.state, a.eligible)
    }

    fn news(account: &str, host: &str) -> AccountNews {
        AccountNews { account: account.into(), host: host.into(), reading: None, hold: None, revoked_since_ms: None }
    }

    fn hold_until(since: SystemTime, until: SystemTime) -> Hold {
        Hold { until_ms: crate::fleet::millis(until), precise: true, since_ms: crate::fleet::millis(since) }
    }

    fn reading_at(at: SystemTime, five_hour: f64) -> Reading {
        let ms = crate::fleet::millis(at);
        let windows = [("five_hour".to_string(), (five_hour, None)), ("seven_day".to_string(), (10.0, None))];
        Reading { asked_at_ms: ms, at_ms: ms, windows: windows.into_iter().collect() }
    }

    /// A rig of `host` on alpha, joined to a fleet whose state is `state`.
    fn joined_on_alpha(host: &str, policy: &str, state: Vec<Change>) -> Rig {
        let mut rig = Rig::running_on(&fleet_config(host, policy), "alpha");
        let fx = report(&mut rig, joined(7, state));
        assert_eq!(fx.kinds(), [Kind::FleetJoined]);
        assert_eq!(fx.events[0].details["rejoin"], false);
        assert!(plan_of(&fx).is_none());
        rig
    }

    #[test]
    fn shared_a_swap_is_proposed_runs_once_per_revision_and_the_loser_follows_the_winner() {
        let fleet_on_alpha = || vec![Change::Active(Some(active("alpha", "h2", "consolidate", 5)))];
        let mut rig = joined_on_alpha("h1", "shared", fleet_on_alpha());
        let fx = rig.poll("alpha", 95.0);
        assert!(plan_of(&fx).is_none(), "nothing moves before the fleet agreed");
        assert_eq!(proposals(&fx), [("beta".into(), "threshold".into(), 5)], "on the revision last seen");
        assert!(fx.status.is_some_and(|s| s.swap.in_progress), "/status shows the swap being proposed");
        let fx = rig.tick();
        assert!(proposals(&fx).is_empty() && plan_of(&fx).is_none(), "one proposal out at a time");

        // The proposal won at revision 8: the swap runs, once, even when the
        // watch then brings the same revision (and a stale older one).
        let fx = report(&mut rig, Report::Proposed { won: true, active: Some(active("beta", "h1", "threshold", 8)) });
        assert_eq!(swap_to(&fx), Some(("beta".into(), SwapCause::Threshold)));
        for stale in [8, 6] {
            let fx = changed(&mut rig, Change::Active(Some(active("beta", "h1", "threshold", stale))));
            assert!(plan_of(&fx).is_none() && proposals(&fx).is_empty(), "revision {stale} applied twice");
        }
        finish(&mut rig);
        for _ in 0..3 {
            rig.wait(Duration::from_secs(30));
            let fx = rig.tick();
            assert!(plan_of(&fx).is_none() && proposals(&fx).is_empty());
        }
        assert_eq!(rig.c.status(rig.now.wall).fleet.unwrap().active.unwrap().revision, 8);

        // Another host decided first: the loser follows the winner's
        // account (gamma), not its own choice, once.
        let mut rig = joined_on_alpha("h1", "shared", fleet_on_alpha());
        let fx = rig.poll("alpha", 95.0);
        assert_eq!(proposals(&fx), [("beta".into(), "threshold".into(), 5)]);
        let fx = report(&mut rig, Report::Proposed { won: false, active: Some(active("gamma", "h3", "threshold", 8)) });
        assert_eq!(swap_to(&fx), Some(("gamma".into(), SwapCause::Threshold)), "follows the winner");
        assert!(proposals(&fx).is_empty(), "following needs no proposal");
        let fx = changed(&mut rig, Change::Active(Some(active("gamma", "h3", "threshold", 8))));
        assert!(plan_of(&fx).is_none(), "the same decision is not applied twice");
        finish(&mut rig);
        assert_eq!(rig.active(), Some("gamma"));

        // A later decision of another host is followed too, dwell or not.
        let fx = changed(&mut rig, Change::Active(Some(active("alpha", "h3", "manual", 9))));
        assert_eq!(swap_to(&fx), Some(("alpha".into(), SwapCause::Manual)));
    }

    #[test]
    fn shared_a_decision_that_comes_during_a_swap_is_followed_after_it() {
        let mut rig = joined_on_alpha("h1", "shared", vec![Change::Active(Some(active("alpha", "h1", "manual", 5)))]);
        rig.poll("alpha", 95.0);
        let fx = report(&mut rig, Report::Proposed { won: true, active: Some(active("beta", "h1", "threshold", 8)) });
        assert_eq!(swap_to(&fx).map(|s| s.0), Some("beta".into()));
        let fx = changed(&mut rig, Change::Active(Some(active("gamma", "h2", "hard_limit", 9))));
        assert!(plan_of(&fx).is_none(), "one swap at a time");
        let fx = finish(&mut rig);
        assert_eq!(swap_to(&fx), Some(("gamma".into(), SwapCause::HardLimit)), "then the fleet's newer decision");
        let fx = finish(&mut rig);
        assert!(plan_of(&fx).is_none() && proposals(&fx).is_empty());
    }

    #[test]
    fn exclusive_never_moves_onto_an_account_another_host_holds_nor_while_etcd_is_away() {
        let mut rig = Rig::running_on(&fleet_config("h1", "exclusive"), "alpha");
        let fx = report(&mut rig, joined(3, vec![Change::Hold { account: "beta".into(), host: Some("h2".into()) }]));
        assert_eq!(claims(&fx), [" → alpha"], "it holds what it works on");
        let fx = report(&mut rig, Report::Claimed { to: "alpha".into(), won: true, holder: Some("h1".into()) });
        assert!(plan_of(&fx).is_none());

        // alpha crosses the threshold: beta is h2's, so gamma is asked for.
        let fx = rig.poll("alpha", 95.0);
        assert!(plan_of(&fx).is_none(), "nothing moves before the claim is won");
        assert_eq!(claims(&fx), ["alpha → gamma"]);
        // h3 took gamma first: no move, and no claim on beta either.
        let fx = report(&mut rig, Report::Claimed { to: "gamma".into(), won: false, holder: Some("h3".into()) });
        assert!(plan_of(&fx).is_none() && claims(&fx).is_empty(), "{:?}", claims(&fx));
        for _ in 0..3 {
            rig.wait(Duration::from_secs(30));
            let fx = rig.tick();
            assert!(plan_of(&fx).is_none() && claims(&fx).is_empty(), "{:?}", claims(&fx));
        }
        assert_eq!(rig.active(), Some("alpha"));

        // h2 lets beta go: it is claimed, and only then moved to.
        let fx = changed(&mut rig, Change::Hold { account: "beta".into(), host: None });
        assert!(plan_of(&fx).is_none());
        assert_eq!(claims(&fx), ["alpha → beta"]);
        let fx = report(&mut rig, Report::Claimed { to: "beta".into(), won: true, holder: Some("h1".into()) });
        assert_eq!(swap_to(&fx).map(|s| s.0), Some("beta".into()));
        finish(&mut rig);
        let fleet = rig.c.status(rig.now.wall).fleet.unwrap();
        assert_eq!(fleet.holds.get("beta").map(String::as_str), Some("h1"));
        assert_eq!(fleet.holds.get("alpha"), None, "the claim let alpha go");

        // etcd goes away; beta meets a hard limit and alpha is free and
        // fresh: still no move, no claim, however long it lasts (and past
        // its lease this host stops working on beta too).
        let fx = report(&mut rig, unreachable("connection refused", 10));
        assert_eq!(fx.kinds(), [Kind::FleetUnreachable]);
        rig.poll("alpha", 10.0);
        let fx = rig.poll("beta", 100.0);
        assert!(plan_of(&fx).is_none() && claims(&fx).is_empty());
        for _ in 0..4 {
            rig.wait(Duration::from_secs(300));
            let fx = rig.tick();
            assert!(plan_of(&fx).is_none() && claims(&fx).is_empty(), "moved while etcd was away");
        }
        let fx = rig.feed(Input::Control(Control::Failover { to: Some("alpha".into()) }));
        assert!(plan_of(&fx).is_none() && claims(&fx).is_empty(), "not even by request");
        assert_eq!(rig.active(), Some("beta"));
        assert_eq!(rig.c.status(rig.now.wall).fleet.unwrap().state, "fenced");

        // etcd answers again: beta (still this host's) is claimed again,
        // then the move off the limit goes through a claim of alpha.
        let fx = report(&mut rig, joined(20, vec![Change::Hold { account: "beta".into(), host: Some("h1".into()) }]));
        assert_eq!(fx.events[0].details["rejoin"], true);
        assert_eq!(claims(&fx), [" → beta"]);
        assert!(plan_of(&fx).is_none());
        let fx = report(&mut rig, Report::Claimed { to: "beta".into(), won: true, holder: Some("h1".into()) });
        assert_eq!(fx.kinds(), [Kind::FleetUnfenced]);
        assert_eq!(claims(&fx), ["beta → alpha"]);
        let fx = report(&mut rig, Report::Claimed { to: "alpha".into(), won: true, holder: Some("h1".into()) });
        assert_eq!(swap_to(&fx).map(|s| s.0), Some("alpha".into()));
    }

    #[test]
    fn exclusive_cut_off_past_its_lease_a_host_stops_its_turns_then_goes_on_once_it_holds_an_account() {
        let mut rig = Rig::running_on(&fleet_config("h1", "exclusive"), "alpha");
        report(&mut rig, joined(3, Vec::new()));
        report(&mut rig, Report::Claimed { to: "alpha".into(), won: true, holder: Some("h1".into()) });
        working(&mut rig, "s1", "t1.md");

        // Cut off with 6 s left on its lease: it works on for 4 s (the
        // margin is a fifth of the 10 s TTL).
        let fx = report(&mut rig, unreachable("timed out", 6));
        assert!(interrupts(&fx).is_empty());
        assert_eq!(rig.c.wake_at(rig.now.at), Some(rig.now.at + Duration::from_secs(4)), "the loop wakes for it");
        rig.wait(Duration::from_millis(3900));
        let fx = rig.tick();
        assert!(interrupts(&fx).is_empty() && fx.events.is_empty(), "not before the lease may run out");
        rig.wait(Duration::from_millis(200));
        let fx = rig.tick();
        assert_eq!(fx.kinds(), [Kind::FleetFenced]);
        assert_eq!(fx.events[0].details["why"], "lease");
        assert_eq!(fx.events[0].details["sessions"], serde_json::json!(["s1"]));
        assert_eq!(interrupts(&fx), ["s1"], "the running turn is stopped");
        assert!(rig.tick().events.is_empty(), "fenced once");
        let fleet = rig.c.status(rig.now.wall).fleet.unwrap();
        assert_eq!((fleet.state.as_str(), fleet.holds.get("alpha")), ("fenced", None));

        // Fenced: the stopped turn is not finished, nothing is dispatched,
        // and the stopped task is not continued, however long it lasts.
        rig.session(seen("s1", Seen::Idle));
        let fx = rig.dispatch(dispatcher::Report::Waiting { project: "web".into(), tasks: 2 });
        assert!(offers(&fx).is_empty());
        for _ in 0..3 {
            rig.wait(Duration::from_secs(60));
            let fx = rig.tick();
            assert!(offers(&fx).is_empty() && continues(&fx).is_empty() && dispatcher_orders(&fx).is_empty());
        }
        // A dead session is not launched again meanwhile either.
        let fx = rig.session(seen("s2", Seen::Missing));
        let wait = fx.events[0].details["relaunch_in_secs"].as_u64().expect("a backoff");
        rig.wait(Duration::from_secs(wait + 1));
        assert!(session_orders(&rig.tick()).is_empty(), "no launch while fenced");
        // A turn that begins while fenced (Claude Code's own retry, an
        // answer typed by a person) is stopped too, once.
        assert_eq!(interrupts(&rig.session(seen("s1", Seen::Busy))), ["s1"]);
        assert!(interrupts(&rig.session(seen("s1", Seen::Busy))).is_empty());
        rig.session(seen("s1", Seen::Idle));

        // etcd answers: alpha is still this host's. The fence lifts, s2 is
        // launched, and t1.md goes on where it stopped (once).
        let fx = report(&mut rig, joined(20, vec![Change::Hold { account: "alpha".into(), host: Some("h1".into()) }]));
        assert_eq!(claims(&fx), [" → alpha"]);
        assert!(offers(&fx).is_empty(), "still fenced until the claim wins");
        let fx = report(&mut rig, Report::Claimed { to: "alpha".into(), won: true, holder: Some("h1".into()) });
        assert_eq!(fx.kinds(), [Kind::FleetUnfenced]);
        assert_eq!(fx.events[0].details["account"], "alpha");
        assert_eq!(session_orders(&fx), ["launch s2 on alpha"]);
        let mut continued = continues(&fx);
        for _ in 0..10 {
            rig.wait(Duration::from_secs(1));
            continued.extend(continues(&rig.tick()));
        }
        assert_eq!(
            continued,
            [("s1".into(), "t1.md".into(), "a pause while this host could not vouch for its account")]
        );
        assert_eq!(rig.c.status(rig.now.wall).fleet.unwrap().state, "connected");
    }

    #[test]
    fn exclusive_renewals_that_come_late_fence_and_a_renewal_of_the_same_lease_lifts_it() {
        let mut rig = Rig::running_on(&fleet_config("h1", "exclusive"), "alpha");
        report(&mut rig, joined(3, Vec::new()));
        report(&mut rig, Report::Claimed { to: "alpha".into(), won: true, holder: Some("h1".into()) });
        let alive = |rig: &mut Rig, secs: u64, renewed: bool| {
            let until = rig.now.at + Duration::from_secs(secs);
            report(rig, Report::LeaseAlive { until, renewed })
        };
        alive(&mut rig, 10, true);
        working(&mut rig, "s1", "t1.md");
        // The fleet thread is stuck (no renewal, no word of an outage): the
        // coordinator fences by itself 2 s before the lease may run out.
        rig.wait(Duration::from_millis(7900));
        assert!(rig.tick().events.is_empty());
        rig.wait(Duration::from_millis(200));
        let fx = rig.tick();
        assert_eq!(fx.kinds(), [Kind::FleetFenced]);
        assert_eq!(interrupts(&fx), ["s1"]);
        // The turn's start is read from the transcript only now: it stays
        // stopped, and never settles as it stands.
        rig.session(sessions::Report::TurnStarted { session: "s1".into() });
        rig.session(seen("s1", Seen::Idle));
        rig.wait(Duration::from_secs(30));
        let fx = rig.tick();
        assert!(dispatcher_orders(&fx).is_empty(), "{:?}", dispatcher_orders(&fx));
        // A new lease (a rejoin) vouches for nothing: still fenced.
        let fx = alive(&mut rig, 10, false);
        assert!(fx.events.is_empty());
        // s2 dies meanwhile: no launch while fenced.
        let fx = rig.session(seen("s2", Seen::Missing));
        let wait = fx.events[0].details["relaunch_in_secs"].as_u64().expect("a backoff");
        rig.wait(Duration::from_secs(wait + 1));
        assert!(session_orders(&rig.tick()).is_empty(), "no launch while fenced");
        // The renewal comes after all, of the lease the holds are on: the
        // holds never lapsed; the fence lifts, s2 is launched again and the
        // task goes on, once.
        let fx = alive(&mut rig, 10, true);
        assert_eq!(fx.kinds(), [Kind::FleetUnfenced]);
        assert_eq!(session_orders(&fx), ["launch s2 on alpha"]);
        let mut continued = continues(&fx);
        for _ in 0..12 {
            rig.wait(Duration::from_secs(1));
            continued.extend(continues(&rig.tick()));
            alive(&mut rig, 10, true);
        }
        assert_eq!(continued.len(), 1, "{continued:?}");
        assert_eq!(rig.c.status(rig.now.wall).fleet.unwrap().holds.get("alpha").map(String::as_str), Some("h1"));
    }

    #[test]
    fn exclusive_a_fenced_host_whose_account_was_taken_moves_its_stopped_task_to_a_free_one() {
        let mut rig = Rig::running_on(&fleet_config("h1", "exclusive"), "alpha");
        report(&mut rig, joined(3, Vec::new()));
        report(&mut rig, Report::Claimed { to: "alpha".into(), won: true, holder: Some("h1".into()) });
        working(&mut rig, "s1", "t1.md");
        report(&mut rig, unreachable("timed out", 0));
        assert_eq!(interrupts(&rig.tick()), ["s1"]);
        rig.session(seen("s1", Seen::Idle));
        // h2 took alpha; gamma is free: the claim of gamma lifts the fence
        // and the swap carries the stopped task there.
        let state = vec![
            Change::Hold { account: "alpha".into(), host: Some("h2".into()) },
            Change::Hold { account: "beta".into(), host: Some("h3".into()) },
        ];
        report(&mut rig, joined(40, state));
        let fx = report(&mut rig, Report::Claimed { to: "alpha".into(), won: false, holder: Some("h2".into()) });
        assert_eq!(claims(&fx), ["alpha → gamma"]);
        assert!(fx.events.is_empty(), "fenced already");
        let fx = report(&mut rig, Report::Claimed { to: "gamma".into(), won: true, holder: Some("h1".into()) });
        assert_eq!(fx.kinds(), [Kind::FleetUnfenced, Kind::FailoverStarted]);
        let plan = plan_of(&fx).expect("a swap to gamma").clone();
        assert_eq!(plan.to, "gamma");
        let carried: Vec<_> = plan.sessions.iter().map(|m| (m.session.as_str(), m.task.as_deref())).collect();
        assert!(carried.contains(&("s1", Some("t1.md"))), "{carried:?}");
        let fx = finish(&mut rig);
        assert!(continues(&fx).is_empty(), "the swap continued it");
        rig.wait(Duration::from_secs(30));
        assert!(continues(&rig.tick()).is_empty(), "and only the swap");
    }

    #[test]
    fn exclusive_a_host_whose_account_was_taken_while_it_was_away_moves_to_a_free_one() {
        let mut rig = Rig::running_on(&fleet_config("h1", "exclusive"), "alpha");
        report(&mut rig, joined(3, Vec::new()));
        report(&mut rig, Report::Claimed { to: "alpha".into(), won: true, holder: Some("h1".into()) });
        report(&mut rig, unreachable("timed out", 10));
        // Its lease expired meanwhile and h2 took alpha; beta is h3's.
        let state = vec![
            Change::Hold { account: "alpha".into(), host: Some("h2".into()) },
            Change::Hold { account: "beta".into(), host: Some("h3".into()) },
        ];
        let fx = report(&mut rig, joined(40, state));
        assert_eq!(claims(&fx), [" → alpha"]);
        let fx = report(&mut rig, Report::Claimed { to: "alpha".into(), won: false, holder: Some("h2".into()) });
        assert_eq!(claims(&fx), ["alpha → gamma"], "the one account nobody holds");
        let fx = report(&mut rig, Report::Claimed { to: "gamma".into(), won: true, holder: Some("h1".into()) });
        assert_eq!(swap_to(&fx).map(|s| s.0), Some("gamma".into()));
    }

    #[test]
    fn exclusive_a_host_without_a_free_account_waits_then_takes_one_and_only_one() {
        let mut rig = Rig::new(&fleet_config("h1", "exclusive"), Restored::default());
        rig.feed(Input::Start);
        for s in ["s1", "s2"] {
            let fx = rig.session(sessions::Report::Absent { session: s.into() });
            assert!(session_orders(&fx).is_empty(), "no launch before this host holds an account");
        }
        rig.dispatch(dispatcher::Report::Recovered);
        let taken = |a: &str, h: &str| Change::Hold { account: a.into(), host: Some(h.into()) };
        let fx = report(&mut rig, joined(3, vec![taken("alpha", "h2"), taken("beta", "h2"), taken("gamma", "h3")]));
        assert_eq!(claims(&fx), [" → alpha"]);
        let fx = report(&mut rig, Report::Claimed { to: "alpha".into(), won: false, holder: Some("h2".into()) });
        assert!(claims(&fx).is_empty() && session_orders(&fx).is_empty(), "every account is held: it waits");
        assert_eq!(rig.active(), None);

        // Two accounts let go at once: one claim, so one account held.
        let fx = changed(&mut rig, Change::Hold { account: "beta".into(), host: None });
        assert_eq!(claims(&fx), [" → beta"]);
        let fx = changed(&mut rig, Change::Hold { account: "gamma".into(), host: None });
        assert!(claims(&fx).is_empty(), "a claim is out already: {:?}", claims(&fx));
        // beta went to h3 first: the other free one is tried.
        let fx = report(&mut rig, Report::Claimed { to: "beta".into(), won: false, holder: Some("h3".into()) });
        assert_eq!(claims(&fx), [" → gamma"]);
        let fx = report(&mut rig, Report::Claimed { to: "gamma".into(), won: true, holder: Some("h1".into()) });
        assert_eq!(rig.active(), Some("gamma"));
        assert!(plan_of(&fx).is_none(), "nothing to move");
        assert_eq!(session_orders(&fx), ["launch s1 on gamma", "launch s2 on gamma"]);
    }

    #[test]
    fn exclusive_a_startup_restart_waits_until_this_host_holds_the_account_again() {
        let mut rig = Rig::running_on(&fleet_config("h1", "exclusive"), "alpha");
        report(&mut rig, joined(3, Vec::new()));
        report(&mut rig, Report::Claimed { to: "alpha".into(), won: true, holder: Some("h1".into()) });
        // s1 dies and is launched again on alpha, which this host holds.
        let fx = rig.session(seen("s1", Seen::Missing));
        let wait = fx.events[0].details["relaunch_in_secs"].as_u64().expect("a backoff");
        rig.wait(Duration::from_secs(wait + 1));
        assert_eq!(session_orders(&rig.tick()), ["launch s1 on alpha"]);
        rig.session(sessions::Report::Launched {
            session: "s1".into(),
            account: "alpha".into(),
            claude_session_id: "id-s1".into(),
        });
        // Cut off meanwhile, this host's lease expired and h2 took alpha;
        // no account is free, so its sessions stop (fenced) where they are.
        report(&mut rig, unreachable("timed out", 10));
        let taken = |a: &str, h: &str| Change::Hold { account: a.into(), host: Some(h.into()) };
        report(&mut rig, joined(30, vec![taken("alpha", "h2"), taken("beta", "h2"), taken("gamma", "h3")]));
        let fx = report(&mut rig, Report::Claimed { to: "alpha".into(), won: false, holder: Some("h2".into()) });
        assert!(claims(&fx).is_empty() && plan_of(&fx).is_none());
        assert_eq!(fx.kinds(), [Kind::FleetFenced]);
        assert_eq!(fx.events[0].details["why"], "held_elsewhere");

        // s1 is not at its prompt in time: no restart onto h2's account,
        // however often the tick comes, and none by request either.
        rig.wait(Duration::from_secs(61));
        for _ in 0..3 {
            let fx = rig.tick();
            assert!(session_orders(&fx).is_empty(), "{:?}", session_orders(&fx));
            rig.wait(Duration::from_secs(1));
        }
        let fx = rig.feed(Input::Control(Control::RestartSession("s1".into())));
        let refused = fx.reply.expect("answered").expect_err("refused");
        assert!(matches!(&refused, ControlError::Conflict(m) if m.contains("another host holds alpha")), "{refused:?}");

        // h2 lets alpha go: this host takes it back, then restarts s1.
        let fx = changed(&mut rig, Change::Hold { account: "alpha".into(), host: None });
        assert_eq!(claims(&fx), [" → alpha"]);
        let fx = report(&mut rig, Report::Claimed { to: "alpha".into(), won: true, holder: Some("h1".into()) });
        assert_eq!(session_orders(&fx), ["restart s1 on alpha"]);
        assert!(plan_of(&fx).is_none());
    }

    #[test]
    fn news_from_another_host_is_folded_into_this_hosts_quota_state() {
        let mut rig = joined_on_alpha("h1", "shared", vec![Change::Active(Some(active("alpha", "h1", "manual", 5)))]);
        let now = rig.now.wall;
        let later = now + Duration::from_secs(3 * 3600);

        // A hard limit h2 confirmed on beta: held here too, said once.
        let limited = AccountNews { hold: Some(hold_until(now, later)), ..news("beta", "h2") };
        let fx = changed(&mut rig, Change::News(limited.clone()));
        assert_eq!(fx.kinds(), [Kind::FleetNews]);
        assert_eq!(fx.events[0].details["host"], "h2");
        assert_eq!(account_state(&rig, "beta"), ("exhausted".into(), false));
        assert!(plan_of(&fx).is_none() && proposals(&fx).is_empty(), "beta is not this host's account");
        assert!(changed(&mut rig, Change::News(limited)).events.is_empty(), "said once");

        // One on alpha, the account this host works on: it moves before
        // its own sessions meet the limit (past beta, held).
        let fx =
            changed(&mut rig, Change::News(AccountNews { hold: Some(hold_until(now, later)), ..news("alpha", "h2") }));
        assert_eq!(fx.kinds(), [Kind::FleetNews]);
        assert_eq!(proposals(&fx), [("gamma".into(), "hard_limit".into(), 5)]);

        // A login refused on h2 is news, not a reason to move: each host
        // has its own login.
        let revoked = AccountNews { revoked_since_ms: Some(crate::fleet::millis(now)), ..news("gamma", "h2") };
        let fx = changed(&mut rig, Change::News(revoked));
        assert_eq!(fx.kinds(), [Kind::FleetNews]);
        assert_eq!(fx.events[0].details["login_revoked"], true);
        assert!(account_state(&rig, "gamma").1, "gamma's login here is not h2's");

        // A fresh reading h2 polled after the limit ends beta's hold here;
        // an older one does not.
        rig.wait(Duration::from_secs(60));
        let old = AccountNews { reading: Some(reading_at(now - Duration::from_secs(60), 10.0)), ..news("beta", "h2") };
        changed(&mut rig, Change::News(old));
        assert_eq!(account_state(&rig, "beta").0, "exhausted", "a reading from before the limit");
        let fresh = AccountNews { reading: Some(reading_at(rig.now.wall, 10.0)), ..news("beta", "h2") };
        changed(&mut rig, Change::News(fresh));
        assert_eq!(account_state(&rig, "beta"), ("standby".into(), true), "recovered");

        // This host's own news coming back through the watch is no news.
        let own = AccountNews { hold: Some(hold_until(rig.now.wall, later)), ..news("beta", "h1") };
        assert!(changed(&mut rig, Change::News(own)).events.is_empty());
        assert_eq!(account_state(&rig, "beta").0, "standby");
    }

    #[test]
    fn a_host_whose_clock_runs_ahead_does_not_hide_the_news_that_follows() {
        let mut rig = joined_on_alpha("h1", "shared", vec![Change::Active(Some(active("alpha", "h1", "manual", 5)))]);
        // h2's clock is an hour ahead: its reading of beta says so.
        let ahead = rig.now.wall + Duration::from_secs(3600);
        changed(&mut rig, Change::News(AccountNews { reading: Some(reading_at(ahead, 30.0)), ..news("beta", "h2") }));
        assert_eq!(account_state(&rig, "beta"), ("standby".into(), true));
        // A minute later h3 (on time) reads beta full: that is the news.
        rig.wait(Duration::from_secs(60));
        let full = AccountNews { reading: Some(reading_at(rig.now.wall, 100.0)), ..news("beta", "h3") };
        changed(&mut rig, Change::News(full));
        assert_eq!(account_state(&rig, "beta"), ("exhausted".into(), false), "h2's clock hid h3's reading");
    }

    #[test]
    fn another_hosts_reading_does_not_bring_back_a_login_refused_here() {
        let mut rig = joined_on_alpha("h1", "shared", vec![Change::Active(Some(active("alpha", "h1", "manual", 5)))]);
        rig.wait(Duration::from_secs(1));
        let fx = rig.poll_failed("gamma", PollError::Unauthorized);
        assert_eq!(fx.kinds(), [Kind::LoginRevoked]);
        let published: Vec<_> = fleet_orders(&fx)
            .into_iter()
            .filter_map(|c| match c {
                Fleet::News(n) => Some(n),
                _ => None,
            })
            .collect();
        assert!(published.iter().any(|n| n.account == "gamma" && n.revoked_since_ms.is_some()), "{published:?}");
        rig.wait(Duration::from_secs(60));
        let fresh = AccountNews { reading: Some(reading_at(rig.now.wall, 10.0)), ..news("gamma", "h2") };
        changed(&mut rig, Change::News(fresh));
        assert_eq!(account_state(&rig, "gamma"), ("token_expired".into(), false), "h2's login works, not ours");
    }

    #[test]
    fn a_host_whose_login_of_an_account_fails_lets_its_poll_go_and_still_polls_it_itself() {
        let mut rig = Rig::running_on(&fleet_config("h1", "shared"), "alpha");
        let pollers = vec![
            Change::Poller { account: "alpha".into(), host: Some("h1".into()) },
            Change::Poller { account: "beta".into(), host: Some("h1".into()) },
        ];
        let fx = report(&mut rig, joined(3, pollers));
        assert_eq!(polls_told(&fx), [set(&["alpha", "beta"])]);
        let logins_out = |fx: &Effects| -> Vec<Vec<String>> {
            fleet_orders(fx)
                .into_iter()
                .filter_map(|c| match c {
                    Fleet::LoginsOut(out) => Some(out.into_iter().collect()),
                    _ => None,
                })
                .collect()
        };
        // beta's login here is refused: its claim goes, the poll stays.
        let fx = rig.poll_failed("beta", PollError::Unauthorized);
        assert_eq!(logins_out(&fx), [vec!["beta".to_string()]]);
        let fx = changed(&mut rig, Change::Poller { account: "beta".into(), host: Some("h2".into()) });
        assert!(polls_told(&fx).is_empty(), "beta is still polled here: that poll tells when the login works again");
        assert!(logins_out(&fx).is_empty(), "told once");
        // h2's readings of beta come as news; this host's login stays refused.
        let news = AccountNews { reading: Some(reading_at(rig.now.wall, 30.0)), ..news("beta", "h2") };
        changed(&mut rig, Change::News(news));
        assert!(!account_state(&rig, "beta").1, "beta is not this host's to use");
        // A person logs in again: the next poll works, and the claim may come back.
        rig.wait(Duration::from_secs(5));
        let fx = rig.poll("beta", 30.0);
        assert_eq!(logins_out(&fx), [Vec::<String>::new()]);
        assert_eq!(polls_told(&fx), [set(&["alpha"])], "beta is h2's to poll for the fleet");
        let fx = changed(&mut rig, Change::Poller { account: "beta".into(), host: None });
        assert!(polls_told(&fx).is_empty(), "h2 let it go: not this host's until it takes it");
    }

    #[test]
    fn only_the_accounts_whose_poll_this_host_claimed_are_polled_and_all_while_etcd_is_away() {
        let mut rig = Rig::running_on(&fleet_config("h1", "shared"), "alpha");
        let pollers = |alpha: &str, beta: &str| {
            vec![
                Change::Poller { account: "alpha".into(), host: Some(alpha.into()) },
                Change::Poller { account: "beta".into(), host: Some(beta.into()) },
            ]
        };
        let fx = report(&mut rig, joined(3, pollers("h1", "h2")));
        assert_eq!(polls_told(&fx), [set(&["alpha"])]);
        let fx = changed(&mut rig, Change::Poller { account: "gamma".into(), host: Some("h1".into()) });
        assert_eq!(polls_told(&fx), [set(&["alpha", "gamma"])]);
        let fx = changed(&mut rig, Change::Poller { account: "gamma".into(), host: Some("h1".into()) });
        assert!(polls_told(&fx).is_empty(), "told only when it changes");

        // A reading this host polled is published for the others.
        let fx = rig.poll("alpha", 20.0);
        let published = fleet_orders(&fx)
            .into_iter()
            .any(|c| matches!(c, Fleet::News(n) if n.account == "alpha" && n.host == "h1" && n.reading.is_some()));
        assert!(published);

        let fx = report(&mut rig, unreachable("no quorum", 10));
        assert_eq!(polls_told(&fx), [None], "every account, itself");
        assert_eq!(fx.metrics[0].name, "claude_failover_fleet_unreachable_total");
        let fx = report(&mut rig, joined(9, pollers("h2", "h2")));
        assert_eq!(polls_told(&fx), [set(&[])], "h2 took every claim meanwhile");
        let fx = changed(&mut rig, Change::Poller { account: "beta".into(), host: None });
        assert!(polls_told(&fx).is_empty(), "a claim let go is not this host's until it takes it");
    }

    #[test]
    fn shared_after_an_outage_the_hosts_rejoin_on_one_account_without_a_second_swap() {
        let fleet_on_alpha = || vec![Change::Active(Some(active("alpha", "h2", "consolidate", 5)))];
        // h1 meets a hard limit on alpha while etcd is away: it moves alone.
        let mut h1 = joined_on_alpha("h1", "shared", fleet_on_alpha());
        report(&mut h1, unreachable("connection refused", 10));
        let fx = h1.poll("alpha", 100.0);
        assert_eq!(swap_to(&fx), Some(("beta".into(), SwapCause::HardLimit)), "alone, without etcd");
        assert!(proposals(&fx).is_empty());
        finish(&mut h1);
        // etcd is back: h1 offers its account on the revision it last saw.
        let fx = report(&mut h1, joined(30, fleet_on_alpha()));
        assert_eq!(fx.events[0].details["rejoin"], true);
        assert!(plan_of(&fx).is_none());
        assert_eq!(proposals(&fx), [("beta".into(), "consolidate".into(), 5)]);
        let fx = report(&mut h1, Report::Proposed { won: true, active: Some(active("beta", "h1", "consolidate", 31)) });
        assert!(plan_of(&fx).is_none(), "already there");
        let fx = changed(&mut h1, Change::Active(Some(active("beta", "h1", "consolidate", 31))));
        assert!(plan_of(&fx).is_none() && proposals(&fx).is_empty());

        // h2 moved alone to beta too and rejoins after h1: nothing to do.
        let mut h2 = joined_on_alpha("h2", "shared", fleet_on_alpha());
        report(&mut h2, unreachable("connection refused", 10));
        h2.poll("alpha", 100.0);
        finish(&mut h2);
        let fx = report(&mut h2, joined(32, vec![Change::Active(Some(active("beta", "h1", "consolidate", 31)))]));
        assert!(plan_of(&fx).is_none() && proposals(&fx).is_empty());

        // h3 moved alone to gamma (by request) and offers it, but h1 was
        // first: it follows beta, once, and stays.
        let mut h3 = joined_on_alpha("h3", "shared", fleet_on_alpha());
        report(&mut h3, unreachable("connection refused", 10));
        let fx = h3.feed(Input::Control(Control::Failover { to: Some("gamma".into()) }));
        assert_eq!(swap_to(&fx), Some(("gamma".into(), SwapCause::Manual)));
        finish(&mut h3);
        let fx = report(&mut h3, joined(30, fleet_on_alpha()));
        assert_eq!(proposals(&fx), [("gamma".into(), "consolidate".into(), 5)]);
        let lost = Report::Proposed { won: false, active: Some(active("beta", "h1", "consolidate", 31)) };
        let fx = report(&mut h3, lost);
        assert_eq!(swap_to(&fx).map(|s| s.0), Some("beta".into()));
        finish(&mut h3);
        let fx = changed(&mut h3, Change::Active(Some(active("beta", "h1", "consolidate", 31))));
        assert!(plan_of(&fx).is_none() && proposals(&fx).is_empty());
        for _ in 0..3 {
            h3.wait(Duration::from_secs(60));
            let fx = h3.tick();
            assert!(plan_of(&fx).is_none() && proposals(&fx).is_empty(), "no flapping");
        }
        assert_eq!(h3.active(), Some("beta"));
    }
}
