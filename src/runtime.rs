//! Starting and stopping the daemon: loads the config, starts one named thread
//! per role around the coordinator, and joins them all on the way out.
//!
//! Shutdown order: the coordinator returns (after STOPPING=1), then every role
//! handle is shut down (its channel closed, its thread joined). tmux sessions
//! are never touched here: a daemon restart must not kill anyone's work.

use crate::config::Config;
use crate::control::Shared;
use crate::coordinator::{Coordinator, Exit, Hands, Inputs, Now, Outputs, Restored, RoleReport, Supervisor};
use crate::events::{Events, Kind};
use crate::heartbeat::{Beat, Heartbeats};
use crate::metrics::Metrics;
use crate::report::Reporter;
use crossbeam_channel::{select, Receiver, Sender};
use parking_lot::RwLock;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// EX_CONFIG from sysexits.h.
pub const EXIT_CONFIG: i32 = 78;

/// A role thread with a stop channel: dropping the sender ends it.
pub struct RoleHandle {
    name: &'static str,
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl RoleHandle {
    pub fn spawn(
        name: &'static str,
        beat: Beat,
        body: impl FnOnce(Receiver<()>, Beat) + Send + 'static,
    ) -> std::io::Result<RoleHandle> {
        let (stop, stopped) = crossbeam_channel::bounded(0);
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || body(stopped, beat))?;
        Ok(RoleHandle { name, stop, thread })
    }

    pub fn shutdown(self) {
        drop(self.stop);
        if self.thread.join().is_err() {
            log::error!("role {} had panicked", self.name);
        }
    }
}

/// A role's command channel that also closes when its stop channel does:
/// the coordinator keeps the command sender until it returns, so the stop
/// channel is what ends the role at shutdown.
fn until_stopped<T: Send + 'static>(commands: Receiver<T>, stopped: Receiver<()>) -> Receiver<T> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let forward = move || loop {
        select! {
            recv(commands) -> msg => match msg {
                Ok(m) => if tx.send(m).is_err() { return },
                Err(_) => return,
            },
            recv(stopped) -> _ => return,
        }
    };
    if let Err(e) = std::thread::Builder::new().name("role-stop".into()).spawn(forward) {
        log::error!("cannot start a forwarding thread: {e}");
    }
    rx
}

/// `claude-failover run`: returns the process exit status.
pub fn run(config_path: &Path, supervisor: impl Supervisor) -> i32 {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(err) => {
            eprintln!("claude-failover: invalid configuration:\n{err}");
            return EXIT_CONFIG;
        }
    };
    crate::logging::use_config_format(&config.log.format);
    if let Err(e) = std::fs::create_dir_all(&config.state_dir) {
        log::error!("cannot create state_dir {}: {e}", config.state_dir.display());
        return 1;
    }
    match start(config, supervisor) {
        Ok(Exit::Stopped(why)) => {
            log::info!("stopped cleanly ({why})");
            0
        }
        Err(e) => {
            log::error!("{e}");
            1
        }
    }
}

fn start(config: Config, supervisor: impl Supervisor) -> Result<Exit, String> {
    let config = Arc::new(config);
    let heartbeats = Heartbeats::from_env(&config.state_dir);
    let (notice_tx, notice_rx) = crossbeam_channel::unbounded();
    let shared = Shared {
        status: Arc::new(RwLock::new(Default::default())),
        events: Events::new(Some(notice_tx)),
        metrics: Metrics::new(),
        heartbeats: heartbeats.clone(),
        history: crate::quota::history::History::new(crate::quota::history::load_or_log(
            &config.state_dir,
            config.quota.poll_interval(),
            crate::time::unix_now(),
        )),
    };
    let coordinator_beat = heartbeats.register("coordinator");
    let (signal_tx, signal_rx) = crossbeam_channel::unbounded();
    let (control_tx, control_rx) = crossbeam_channel::unbounded();
    let (event_tx, event_rx) = crossbeam_channel::unbounded();
    let (sessions_tx, sessions_rx) = crossbeam_channel::unbounded();
    let (dispatcher_tx, dispatcher_rx) = crossbeam_channel::unbounded();

    fn failed(role: &'static str) -> impl Fn(std::io::Error) -> String {
        move |e| format!("cannot start the {role} thread: {e}")
    }
    let signals = crate::signals::spawn(config.source.clone(), signal_tx, heartbeats.register("signals"))
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let notifier =
        crate::notifier::spawn(&config.notify, notice_rx, shared.metrics.clone(), heartbeats.register("notifier"))
            .map_err(failed("notifier"))?;
    let janitor = Arc::new(
        crate::janitor::spawn(Arc::clone(&config), shared.metrics.clone(), heartbeats.register("janitor"))
            .map_err(failed("janitor"))?,
    );
    let telegram = match notifier.telegram_outbox() {
        Some(outbox) => crate::telegram::spawn(
            Arc::clone(&config),
            shared.clone(),
            control_tx.clone(),
            outbox,
            heartbeats.register("telegram"),
        )
        .map_err(failed("telegram"))?,
        None => None,
    };
    let http = crate::http::spawn(
        &config,
        &crate::state_dir::run_dir(&config.state_dir),
        shared.clone(),
        control_tx,
        heartbeats.register("http"),
    )
    .map_err(|e| e.to_string())?;
    let sessions_role = crate::sessions::role::Role::new(
        Arc::clone(&config),
        Reporter::into_channel(event_tx.clone(), RoleReport::Session),
    );
    let sessions = RoleHandle::spawn("sessions", heartbeats.register("sessions"), move |stopped, beat| {
        sessions_role.run(until_stopped(sessions_rx, stopped), beat)
    })
    .map_err(failed("sessions"))?;
    let dispatcher_role = crate::dispatcher::Role::new(
        Arc::clone(&config),
        shared.clone(),
        Reporter::into_channel(event_tx.clone(), RoleReport::Dispatch),
    );
    let dispatcher = RoleHandle::spawn("dispatcher", heartbeats.register("dispatcher"), move |stopped, beat| {
        dispatcher_role.run(until_stopped(dispatcher_rx, stopped), beat)
    })
    .map_err(failed("dispatcher"))?;
    let (switcher_tx, switcher_rx) = crossbeam_channel::unbounded();
    let (switcher_config, switcher_events) =
        (Arc::clone(&config), Reporter::into_channel(event_tx.clone(), RoleReport::Swap));
    let switcher = RoleHandle::spawn("switcher", heartbeats.register("switcher"), move |stopped, beat| {
        crate::switcher::run(switcher_config, until_stopped(switcher_rx, stopped), switcher_events, beat)
    })
    .map_err(failed("switcher"))?;
    let fleet_events = event_tx.clone();
    drop(event_tx);
    let (checkpoint_config, checkpoint_shared) = (Arc::clone(&config), shared.clone());
    let checkpoint = RoleHandle::spawn("checkpoint", heartbeats.register("checkpoint"), move |stopped, beat| {
        crate::checkpoint::run(checkpoint_config, checkpoint_shared, stopped, beat)
    })
    .map_err(failed("checkpoint"))?;
    let fleet = match &config.fleet {
        Some(_) => Some(
            crate::fleet::spawn(
                &config,
                Reporter::into_channel(fleet_events, RoleReport::Fleet),
                heartbeats.register("fleet"),
            )
            .map_err(failed("fleet"))?,
        ),
        None => {
            drop(fleet_events);
            None
        }
    };
    let (quota_tx, quota_rx) = crossbeam_channel::unbounded();
    let quota =
        crate::quota::spawn(Arc::clone(&config), quota_tx, heartbeats.register("quota")).map_err(failed("quota"))?;

    let janitor_for_reload = Arc::clone(&janitor);
    let http_for_reload = http.reconfigurer();
    let outputs = Outputs {
        sessions: sessions_tx,
        dispatcher: dispatcher_tx,
        quota: quota.sender(),
        switcher: switcher_tx,
        fleet: fleet.as_ref().map(|f| f.sender()),
        on_reload: vec![
            Box::new(move |c: &Arc<Config>| janitor_for_reload.reconfigure(Arc::clone(c))),
            Box::new(http_for_reload),
        ],
    };
    let restored = Restored {
        active: crate::switcher::read_active(&config.state_dir),
        journal: crate::switcher::read_journal(&config.state_dir),
        quota: crate::quota::persist::load_or_log(&config.state_dir),
        spend: crate::quota::spend_file::load_or_log(&config.state_dir),
    };
    if let Some(j) = &restored.journal {
        log::warn!("found an unfinished swap {} → {} ({}); it will be finished", j.from, j.to, j.reason);
    }
    let coordinator = Coordinator::new(Arc::clone(&config), restored, supervisor.watchdog_interval(), Now::read());
    shared.events.emit(
        Kind::DaemonStarted,
        "daemon",
        format!("claude-failover {} started with {}", env!("CARGO_PKG_VERSION"), config.source.display()),
        json!({"accounts": config.accounts.len(), "sessions": config.sessions.len()}),
    );
    let inputs = Inputs { signals: signal_rx, control: control_rx, reports: event_rx, quota: quota_rx };
    let hands = Hands { shared: shared.clone(), supervisor, outputs };
    let exit = crate::coordinator::run(coordinator, hands, inputs, coordinator_beat);
    // A swap waiting for a prompt gives up now (its journal stays for the
    // next start) rather than hold the stop up for a startup timeout.
    heartbeats.stop_all();
    http.shutdown();
    if let Some(telegram) = telegram {
        telegram.shutdown();
    }
    signals.shutdown();
    sessions.shutdown();
    dispatcher.shutdown();
    switcher.shutdown();
    checkpoint.shutdown();
    quota.shutdown();
    if let Some(fleet) = fleet {
        fleet.shutdown();
    }
    if let Ok(janitor) = Arc::try_unwrap(janitor) {
        janitor.join();
    }
    // Last: the notifier drains what the others emitted on the way out.
    drop(shared);
    notifier.join();
    Ok(exit)
}

/// A supervisor for running outside systemd: says nothing.
pub struct NoSupervisor;

impl Supervisor for NoSupervisor {
    fn ready(&self) {}
    fn status(&self, _line: &str) {}
    fn watchdog(&self) {}
    fn reloading(&self) {}
    fn stopping(&self) {}
    fn watchdog_interval(&self) -> Option<Duration> {
        None
    }
}
