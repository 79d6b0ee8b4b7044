//! The coordinator's thin loop: waits for the next input, reads the clock
//! once, hands both to `Coordinator::handle`, and carries out the effects it
//! returns (sends, events, metrics, files, sd_notify). Nothing is decided here.

use super::effects::{Effects, Exit, Notify, Order, StateWrite};
use super::{Coordinator, Input, Inputs, Now, ReloadHook, Supervisor};
use crate::control::Shared;
use crate::dispatcher;
use crate::heartbeat::Beat;
use crate::quota::QuotaCommand;
use crate::sessions;
use crate::switcher::Plan;
use crossbeam_channel::{select, Sender};

/// Where the coordinator's orders go.
pub struct Outputs {
    pub sessions: Sender<sessions::Command>,
    pub dispatcher: Sender<dispatcher::Command>,
    pub quota: Sender<QuotaCommand>,
    pub switcher: Sender<Plan>,
    /// The fleet role, with `[fleet]`.
    pub fleet: Option<Sender<crate::fleet::Command>>,
    /// Roles outside the coordinator's orders that take a reloaded config.
    pub on_reload: Vec<ReloadHook>,
}

/// The hands that carry effects out.
pub struct Hands<S: Supervisor> {
    pub shared: Shared,
    pub supervisor: S,
    pub outputs: Outputs,
}

impl<S: Supervisor> Hands<S> {
    pub fn carry_out(&self, fx: Effects) -> Option<Exit> {
        // Readings first: a history save in the same turn holds them.
        for r in fx.readings {
            self.shared.history.record(&r.account, r.reading);
        }
        for file in fx.files {
            match file {
                StateWrite::Quota { state_dir, file, at } => {
                    if let Err(e) = crate::quota::persist::save(&state_dir, &file, at) {
                        log::error!("{e}");
                    }
                }
                StateWrite::History { state_dir } => {
                    // Only this thread writes the history: readers wait no longer than the write.
                    if let Err(e) = crate::quota::history::save(&state_dir, &self.shared.history.read()) {
                        log::error!("{e}");
                    }
                }
                StateWrite::Spend { state_dir, file } => {
                    if let Err(e) = crate::quota::spend_file::save(&state_dir, &file) {
                        log::error!("{e}");
                    }
                }
            }
        }
        for m in &fx.metrics {
            let labels: Vec<(&str, &str)> = m.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            self.shared.metrics.add(m.name, &labels, m.by);
        }
        for e in fx.events {
            self.shared.events.emit(e.kind, &e.subject, e.message, e.details);
        }
        for order in fx.orders {
            self.send(order);
        }
        if let Some(config) = &fx.reconfigured {
            for hook in &self.outputs.on_reload {
                hook(config);
            }
        }
        if let Some(status) = fx.status {
            *self.shared.status.write() = status;
        }
        for n in fx.notify {
            match n {
                Notify::Ready => self.supervisor.ready(),
                Notify::Status(line) => self.supervisor.status(&line),
                Notify::Watchdog => self.supervisor.watchdog(),
                Notify::Reloading => self.supervisor.reloading(),
                Notify::Stopping => self.supervisor.stopping(),
            }
        }
        fx.exit
    }

    fn send(&self, order: Order) {
        let gone = match order {
            Order::Sessions(c) => {
                self.outputs.sessions.send(c).is_err().then_some("the sessions role is gone; cannot order it")
            }
            Order::Dispatcher(c) => {
                self.outputs.dispatcher.send(c).is_err().then_some("the dispatcher role is gone; cannot order it")
            }
            Order::Quota(c) => self.outputs.quota.send(c).is_err().then_some("the quota role is gone"),
            Order::Fleet(c) => match &self.outputs.fleet {
                Some(fleet) => fleet.send(c).is_err().then_some("the fleet role is gone"),
                None => None,
            },
            Order::Switcher(p) => {
                self.outputs.switcher.send(p).is_err().then_some("the switcher role is gone; the swap cannot run")
            }
        };
        if let Some(gone) = gone {
            log::error!("{gone}");
        }
    }
}

/// Runs the coordinator until a stop signal or until every input closes.
pub fn run<S: Supervisor>(mut coordinator: Coordinator, hands: Hands<S>, inputs: Inputs, beat: Beat) -> Exit {
    let ticks = crossbeam_channel::tick(coordinator.tick_interval());
    let mut signals = Some(inputs.signals);
    let mut control = Some(inputs.control);
    let mut reports = Some(inputs.reports);
    let mut quota = Some(inputs.quota);
    let heartbeats = hands.shared.heartbeats.clone();
    hands.carry_out(coordinator.handle(Input::Start, Now::read()));
    loop {
        beat.beat();
        let never_signal = crossbeam_channel::never();
        let never_control = crossbeam_channel::never();
        let never_report = crossbeam_channel::never();
        let never_quota = crossbeam_channel::never();
        let mut reply_to = None;
        let wake =
            coordinator.wake_at(std::time::Instant::now()).map_or_else(crossbeam_channel::never, crossbeam_channel::at);
        let input = select! {
            recv(signals.as_ref().unwrap_or(&never_signal)) -> msg => match msg {
                Ok(signal) => Some(Input::Signal(signal)),
                Err(_) => { signals = None; None }
            },
            recv(control.as_ref().unwrap_or(&never_control)) -> msg => match msg {
                Ok(req) => { reply_to = Some(req.reply); Some(Input::Control(req.control)) }
                Err(_) => { control = None; None }
            },
            recv(reports.as_ref().unwrap_or(&never_report)) -> msg => match msg {
                Ok(report) => Some(Input::Role(report)),
                Err(_) => { reports = None; None }
            },
            recv(quota.as_ref().unwrap_or(&never_quota)) -> msg => match msg {
                Ok(report) => Some(Input::Quota(report)),
                Err(_) => { quota = None; None }
            },
            recv(ticks) -> _ => Some(Input::Tick { stale: Vec::new() }),
            recv(wake) -> _ => Some(Input::Tick { stale: Vec::new() }),
        };
        if let Some(mut input) = input {
            let now = Now::read();
            if let Input::Tick { stale } = &mut input {
                *stale = heartbeats.stale(now.at, heartbeats.stale_after());
            }
            let mut fx = coordinator.handle(input, now);
            let reply = fx.reply.take();
            let exit = hands.carry_out(fx);
            if let (Some(to), Some(reply)) = (reply_to, reply) {
                let _ = to.send(reply);
            }
            if let Some(exit) = exit {
                return exit;
            }
        }
        if signals.is_none() && control.is_none() && reports.is_none() {
            if let Some(exit) = hands.carry_out(coordinator.handle(Input::Closed, Now::read())) {
                return exit;
            }
        }
    }
}
