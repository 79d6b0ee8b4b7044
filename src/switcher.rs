//! The account switcher ("switcher" thread): carries out one swap at a time,
//! as the coordinator plans it, and reports each session's outcome.
//!
//! A swap: write the journal (`<state_dir>/swap.json`) and the new active
//! account (`<state_dir>/active.json`); then, for every session in parallel,
//! checkpoint it, stop its claude (gracefully, then kill), launch it on the new
//! account resuming the same conversation, wait for its prompt, and send a
//! session that had a task a continuation prompt naming it; last, remove the
//! journal. A daemon killed in the middle finds the journal on restart and
//! the coordinator finishes the swap. Deciding whether and where to swap is
//! not done here.

use crate::checkpoint::{self, Subject};
use crate::claude::pane::{self, PaneState};
use crate::claude::session_file::{self, SessionFile, SessionStatus};
use crate::config::Config;
use crate::coordinator::Event;
use crate::heartbeat::Beat;
use crate::sessions::launch::{self, Place};
use crate::sessions::model::Seen;
use crate::status::SwapRecord;
use crate::tmux::Tmux;
use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// One planned swap; also the journal's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub from: String,
    pub to: String,
    pub reason: String,
    pub started_at: String,
    pub sessions: Vec<Mover>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mover {
    pub session: String,
    pub claude_session_id: String,
    /// The task it held (its lease stays in active/): continued after the move.
    pub task: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Moved {
        session: String,
        pid: u32,
        continued: bool,
        /// From the swap's start to the session at its prompt on the new account.
        ready_after: Duration,
        /// From the swap's start to its continuation prompt taken.
        resumed_after: Option<Duration>,
    },
    Failed {
        session: String,
        error: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub plan: Plan,
    pub outcomes: Vec<Outcome>,
    pub finished_at: SystemTime,
}

impl Finished {
    /// The finished swap's record (`/status` `swap.last`, `active.json`).
    pub fn record(&self) -> SwapRecord {
        SwapRecord {
            finished_at: Some(crate::time::rfc3339(self.finished_at)),
            sessions_moved: self.outcomes.iter().filter(|o| matches!(o, Outcome::Moved { .. })).count(),
            ..self.plan.record()
        }
    }
}

/// `<state_dir>/active.json`: the account the sessions run on and the swap
/// that put them there. Kept so that a restart neither forgets where the
/// sessions are nor starts `min_dwell_secs` over, nor fails back behind an
/// operator's `POST /failover`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Active {
    pub account: String,
    /// Written by the switcher with `finished_at` unset when a swap starts,
    /// whole when it ends (before its journal is removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_swap: Option<SwapRecord>,
}

impl Plan {
    /// The swap's record before it has finished (`active.json` while it runs).
    pub fn record(&self) -> SwapRecord {
        SwapRecord {
            from: self.from.clone(),
            to: self.to.clone(),
            reason: self.reason.clone(),
            started_at: self.started_at.clone(),
            finished_at: None,
            sessions_moved: 0,
        }
    }
}

pub fn journal_path(state_dir: &Path) -> PathBuf {
    state_dir.join("swap.json")
}

fn active_path(state_dir: &Path) -> PathBuf {
    state_dir.join("active.json")
}

/// The swap a killed daemon left unfinished, if any.
pub fn read_journal(state_dir: &Path) -> Option<Plan> {
    let bytes = std::fs::read(journal_path(state_dir)).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(plan) => Some(plan),
        Err(e) => {
            log::error!("{}: unreadable swap journal ({e}); ignoring it", journal_path(state_dir).display());
            None
        }
    }
}

/// The account the last swap moved to, and that swap, kept across restarts.
pub fn read_active(state_dir: &Path) -> Option<Active> {
    let path = active_path(state_dir);
    let bytes = std::fs::read(&path).ok()?;
    match serde_json::from_slice::<Active>(&bytes) {
        Ok(active) => Some(active),
        Err(e) => {
            log::error!("{}: unreadable ({e}); starting on the first eligible account", path.display());
            None
        }
    }
}

pub fn write_active(state_dir: &Path, active: &Active) {
    let bytes = serde_json::to_vec(active).unwrap_or_default();
    if let Err(e) = crate::atomic::write(&active_path(state_dir), &bytes) {
        log::error!("{}: cannot save the active account: {e}", active_path(state_dir).display());
    }
}

pub fn run(config: Arc<Config>, commands: Receiver<Plan>, out: Sender<Event>, beat: Beat) {
    let tmux = Tmux::new(&config.tmux.socket_name);
    let asks = beat.asks();
    loop {
        beat.beat();
        crossbeam_channel::select! {
            recv(commands) -> plan => match plan {
                Ok(plan) => {
                    let finished = swap(&config, &tmux, plan, &beat);
                    if out.send(Event::Swap(finished)).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            },
            recv(asks) -> _ => {}
        }
    }
}

fn swap(config: &Config, tmux: &Tmux, plan: Plan, beat: &Beat) -> Finished {
    let journal = journal_path(&config.state_dir);
    match serde_json::to_vec_pretty(&plan) {
        Ok(bytes) => {
            if let Err(e) = crate::atomic::write(&journal, &bytes) {
                log::error!("{}: cannot write the swap journal: {e}", journal.display());
            }
        }
        Err(e) => log::error!("cannot encode the swap journal: {e}"),
    }
    write_active(&config.state_dir, &Active { account: plan.to.clone(), last_swap: Some(plan.record()) });
    let began = Instant::now();
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = plan
            .sessions
            .iter()
            .map(|m| {
                let beat = beat.clone();
                let plan = &plan;
                std::thread::Builder::new()
                    .name("switcher-move".into())
                    .spawn_scoped(scope, move || move_session(config, tmux, plan, m, began, &beat))
            })
            .collect();
        handles
            .into_iter()
            .zip(&plan.sessions)
            .map(|(h, m)| match h.map_err(|e| e.to_string()).and_then(|h| h.join().map_err(|_| "panicked".into())) {
                Ok(outcome) => outcome,
                Err(e) => Outcome::Failed { session: m.session.clone(), error: format!("mover thread: {e}") },
            })
            .collect()
    });
    let finished = Finished { plan, outcomes, finished_at: SystemTime::now() };
    // The whole record before the journal goes: a kill in between then
    // finishes the swap again rather than leave it unfinished in active.json.
    let active = Active { account: finished.plan.to.clone(), last_swap: Some(finished.record()) };
    write_active(&config.state_dir, &active);
    if let Err(e) = std::fs::remove_file(&journal) {
        log::error!("{}: cannot remove the swap journal: {e}", journal.display());
    }
    finished
}

fn move_session(config: &Config, tmux: &Tmux, plan: &Plan, m: &Mover, began: Instant, beat: &Beat) -> Outcome {
    let failed = |error: String| Outcome::Failed { session: m.session.clone(), error };
    let subject = Subject {
        session: m.session.clone(),
        account: plan.from.clone(),
        claude_session_id: m.claude_session_id.clone(),
        task: m.task.clone(),
    };
    let ms = || began.elapsed().as_millis();
    checkpoint::snapshot_now(config, &subject, "swap");
    let timeout = Duration::from_secs(config.claude.stop_timeout_secs);
    // A claude at rest is stopped while its successor starts: their
    // conversation gains nothing from the old one any more, and the stop
    // then costs the swap nothing. One in a turn (or anything unclear) is
    // stopped first, so its last records are in before the resume reads
    // them. Side by side pays only while the starts leave a core free: on 2
    // cores one session moved in 0.51 s instead of ~0.69 s, but five moved
    // slower (2.6–2.9 s against 2.0–2.4 s), their exits competing with the
    // starts for the CPU.
    let side_by_side = plan.sessions.len() < std::thread::available_parallelism().map_or(1, |n| n.get());
    let at_rest = if side_by_side { at_rest(config, tmux, &m.session, &plan.from) } else { None };
    let beside = at_rest.as_ref().and_then(|old| {
        let spawned = launch::start_in(tmux, config, &m.session, &plan.to, &m.claude_session_id, Place::Beside);
        match spawned {
            Ok((_, spawned)) => {
                stop_pane(tmux, &m.session, old, timeout, beat);
                Some(spawned)
            }
            Err(e) => {
                log::warn!("swap: {}: cannot start beside the old claude ({e}); stopping it first", m.session);
                None
            }
        }
    });
    let spawned = match beside {
        Some(spawned) => spawned,
        None => {
            stop(tmux, &m.session, timeout, beat);
            match launch::start(tmux, config, &m.session, &plan.to, &m.claude_session_id) {
                Ok((_, spawned)) => spawned,
                Err(e) => return failed(format!("launch on {}: {e}", plan.to)),
            }
        }
    };
    log::info!(
        "swap: {} stopped on {} and launched on {} after {} ms{}",
        m.session,
        plan.from,
        plan.to,
        ms(),
        if at_rest.is_some() { " (side by side)" } else { "" }
    );
    let deadline = Instant::now() + Duration::from_secs(config.claude.startup_timeout_secs);
    if let Err(e) = wait_idle(config, tmux, &spawned.pane_id, &plan.to, spawned.pid, deadline, beat) {
        return failed(e);
    }
    let ready_after = began.elapsed();
    log::info!("swap: {} at its prompt on {} after {} ms", m.session, plan.to, ms());
    let mut resumed_after = None;
    if let Some(task) = &m.task {
        let Some(transcript) = launch::transcript_path(config, &m.session, &plan.to, &m.claude_session_id) else {
            return failed("no transcript path".into());
        };
        let confirm = Duration::from_secs(config.dispatch.submit_confirm_secs);
        match crate::dispatcher::delivery::deliver(
            tmux,
            &spawned.pane_id,
            &launch::continuation_prompt(task, "a usage limit (the session has moved to another account)"),
            &transcript,
            confirm,
            &|| beat.beat(),
        ) {
            Ok(_) => resumed_after = Some(began.elapsed()),
            Err(e) => return failed(format!("continuation prompt for {task}: {e}")),
        }
        log::info!("swap: {} continues {task} after {} ms", m.session, ms());
    }
    Outcome::Moved {
        session: m.session.clone(),
        pid: spawned.pid,
        continued: resumed_after.is_some(),
        ready_after,
        resumed_after,
    }
}

/// The session's one claude, when Claude Code's own session file says it
/// is idle (the last turn over, a limit's included).
fn at_rest(config: &Config, tmux: &Tmux, session: &str, account: &str) -> Option<crate::tmux::PaneInfo> {
    let config_dir = &config.account(account)?.config_dir;
    let mut live = tmux.list_panes(session).ok()?.into_iter().filter(|p| !p.dead);
    let (pane, None) = (live.next()?, live.next()) else { return None };
    let file = SessionFile::read(&session_file::path_for(config_dir, pane.pid)).ok()?;
    (file.status == Some(SessionStatus::Idle)).then_some(pane)
}

/// Ends a session's claude for the move, as fast as it will go: Escape
/// (cancels a limit's automatic continue or a dialog), then pairs of Ctrl-C
/// [`STOP_PRESS_GAP`] apart, a pair every [`STOP_PRESS_EVERY`]: the first
/// press arms Claude Code's "press Ctrl-C again to exit", the next exits.
/// Keys sent together lose the second press, and a fixed long pause only
/// adds to the swap (a limited session took 3.8 s to stop with an old fixed
/// sequence, idle ones 0.75 s). Every claude in the tmux session is stopped
/// (two run there only when a daemon died in the middle of a side-by-side
/// move); the tmux session is killed after `timeout`. The conversation is
/// safe either way: Claude Code appends each record as it happens.
fn stop(tmux: &Tmux, session: &str, timeout: Duration, beat: &Beat) {
    let deadline = Instant::now() + timeout;
    let panes = match tmux.list_panes(session) {
        Ok(panes) => panes,
        Err(e) if e.is_missing() => return,
        Err(_) => Vec::new(),
    };
    let mut exited = true;
    for pane in panes.iter().filter(|p| !p.dead) {
        exited &= press_until_exit(tmux, &pane.pane_id, pane.pid, deadline, beat);
    }
    if exited {
        // tmux closes the session as it reaps the process.
        wait_session_gone(tmux, session, deadline);
        if !matches!(tmux.has_session(session), Ok(true)) {
            return;
        }
    }
    log::warn!("{session}: did not exit within {} s; killing it", timeout.as_secs());
    if let Err(e) = tmux.kill_session(session) {
        if !e.is_missing() {
            log::error!("{session}: kill failed: {e}");
        }
    }
}

/// [`stop`] for the one claude a side-by-side move replaces: its pane only.
fn stop_pane(tmux: &Tmux, session: &str, pane: &crate::tmux::PaneInfo, timeout: Duration, beat: &Beat) {
    if press_until_exit(tmux, &pane.pane_id, pane.pid, Instant::now() + timeout, beat) {
        return;
    }
    log::warn!("{session}: did not exit within {} s; killing it", timeout.as_secs());
    if let Err(e) = tmux.kill_pane(&pane.pane_id) {
        if !e.is_missing() {
            log::error!("{session}: kill failed: {e}");
        }
    }
}

/// The keys of [`stop`] to one pane until its process `pid` has exited
/// (true) or `deadline` passed.
fn press_until_exit(tmux: &Tmux, pane_id: &str, pid: u32, deadline: Instant, beat: &Beat) -> bool {
    let _ = tmux.send_keys(pane_id, &["Escape"]);
    let escaped = Instant::now();
    let mut presses: u32 = 0;
    while Instant::now() < deadline {
        beat.beat();
        // Watching /proc costs nothing; asking tmux spawns a process, and
        // ten sessions moving at once would spend the CPU their relaunch needs.
        if !process_alive(pid) {
            return true;
        }
        // Pairs of presses, one pair every STOP_PRESS_EVERY: a pair lost
        // (keys merged into one read, a process slow to take them) is made
        // good by the next.
        let press_at = escaped + AFTER_ESCAPE + STOP_PRESS_EVERY * (presses / 2) + STOP_PRESS_GAP * (presses % 2);
        if Instant::now() >= press_at {
            let _ = tmux.send_keys(pane_id, &["C-c"]);
            presses += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// The process runs (a zombie waiting for tmux to reap it does not).
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses: `pid (comm) S ...`.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// After the process exited: the tmux session name must be free before the
/// relaunch takes it.
fn wait_session_gone(tmux: &Tmux, session: &str, deadline: Instant) {
    while Instant::now() < deadline {
        if !matches!(tmux.has_session(session), Ok(true)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = tmux.kill_session(session);
}

/// How often `wait_idle` looks at the screen while the file does not say idle.
const SCREEN_EVERY: Duration = Duration::from_millis(400);
/// Between Escape and the first Ctrl-C: 2.1.332 ignores keys for a moment
/// after an Escape that cancels a limit's automatic continue (presses 60 ms
/// later were lost, 80 ms later taken).
const AFTER_ESCAPE: Duration = Duration::from_millis(100);
/// Between the two Ctrl-C of a pair: apart enough to arrive as separate
/// keys (an idle or limited 2.1.332 then exits ~0.16 s after the Escape).
const STOP_PRESS_GAP: Duration = Duration::from_millis(30);
/// Between pairs, well inside the window in which a second press exits.
const STOP_PRESS_EVERY: Duration = Duration::from_millis(200);

/// Waits for the relaunched session's prompt, answering the trust dialog
/// when `auto_trust` allows; any other dialog or a limit is a failure to
/// report, not something to click through.
fn wait_idle(
    config: &Config,
    tmux: &Tmux,
    session: &str,
    account: &str,
    pid: u32,
    deadline: Instant,
    beat: &Beat,
) -> Result<(), String> {
    let config_dir = config.account(account).map(|a| a.config_dir.clone()).unwrap_or_default();
    let mut last = Seen::Starting;
    let mut next_look = Instant::now();
    while Instant::now() < deadline {
        beat.beat();
        std::thread::sleep(Duration::from_millis(50));
        // The session file is a cheap read; a capture spawns tmux, so the
        // screen is looked at when the file says idle (to rule out a dialog
        // or a dead login) and otherwise every SCREEN_EVERY.
        let file = SessionFile::read(&session_file::path_for(&config_dir, pid)).ok();
        let idle_file = file.as_ref().and_then(|f| f.status.as_ref()) == Some(&SessionStatus::Idle);
        if !idle_file && Instant::now() < next_look {
            continue;
        }
        next_look = Instant::now() + SCREEN_EVERY;
        let screen = match tmux.capture_pane(session) {
            Ok(text) => text,
            Err(e) if e.is_missing() => return Err(format!("the session exited on {account}")),
            Err(e) => return Err(e.to_string()),
        };
        let shown = pane::classify(&screen);
        last = match shown {
            // `--resume` replays the conversation, the limit that ended it on
            // the old account included; this process has sent nothing yet,
            // so Claude Code's own "idle" is the truth.
            PaneState::RateLimited { .. } if idle_file => Seen::Idle,
            _ => crate::sessions::role::combine(file.as_ref(), &shown),
        };
        match &last {
            Seen::Idle => return Ok(()),
            Seen::TrustDialog if config.claude.auto_trust => {
                if let Some(keys) = pane::trust_answer_keys(&screen) {
                    let _ = tmux.send_keys(session, &keys);
                }
            }
            Seen::LoginNeeded => return Err(format!("{account} needs a login (/login)")),
            _ => {}
        }
    }
    Err(format!("not at its prompt on {account} within {} s (last seen {last:?})", config.claude.startup_timeout_secs))
}
