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
use crate::sessions::launch;
use crate::sessions::model::Seen;
use crate::tmux::Tmux;
use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
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
    Moved { session: String, pid: u32, continued: bool },
    Failed { session: String, error: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub plan: Plan,
    pub outcomes: Vec<Outcome>,
    pub finished_at: SystemTime,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Active {
    account: String,
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

/// The account the last swap moved to, kept across restarts.
pub fn read_active(state_dir: &Path) -> Option<String> {
    let bytes = std::fs::read(active_path(state_dir)).ok()?;
    serde_json::from_slice::<Active>(&bytes).ok().map(|a| a.account)
}

/// Saves the active account (also used when no swap runs, e.g. at first start).
pub fn write_active(state_dir: &Path, account: &str) {
    let bytes = serde_json::to_vec(&Active { account: account.into() }).unwrap_or_default();
    if let Err(e) = crate::atomic::write(&active_path(state_dir), &bytes) {
        log::error!("{}: cannot save the active account: {e}", active_path(state_dir).display());
    }
}

pub fn run(config: Arc<Config>, commands: Receiver<Plan>, out: Sender<Event>, beat: Beat) {
    let tmux = Tmux::new(&config.tmux.socket_name);
    loop {
        beat.beat();
        match commands.recv_timeout(Duration::from_secs(1)) {
            Ok(plan) => {
                let finished = swap(&config, &tmux, plan, &beat);
                if out.send(Event::Swap(finished)).is_err() {
                    return;
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
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
    write_active(&config.state_dir, &plan.to);
    let first = AtomicUsize::new(plan.sessions.iter().filter(|m| m.task.is_some()).count());
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = plan
            .sessions
            .iter()
            .map(|m| {
                let beat = beat.clone();
                let (plan, first) = (&plan, &first);
                std::thread::Builder::new()
                    .name("switcher-move".into())
                    .spawn_scoped(scope, move || move_session(config, tmux, plan, m, first, &beat))
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
    if let Err(e) = std::fs::remove_file(&journal) {
        log::error!("{}: cannot remove the swap journal: {e}", journal.display());
    }
    Finished { plan, outcomes, finished_at: SystemTime::now() }
}

/// Counts down the sessions with a task still on their way to the new
/// prompt, whichever way their move ends.
struct FirstDone<'a>(Option<&'a AtomicUsize>);

impl Drop for FirstDone<'_> {
    fn drop(&mut self) {
        if let Some(n) = self.0.take() {
            n.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Sessions with a task relaunch first: each still has a continuation to
/// send, which is mostly waiting, and Claude Code starts are CPU-bound on a
/// small machine. The others, stopped already, launch once the task holders
/// are at their prompt (or after [`FIRST_WAIT_MAX`]), so the continuations
/// overlap their starts instead of queueing behind them (10 sessions: the
/// limited one was the last at its prompt, 5.6 s in, then 1.2 s more).
fn wait_for_task_holders(first: &AtomicUsize, beat: &Beat) {
    let until = Instant::now() + FIRST_WAIT_MAX;
    while first.load(Ordering::SeqCst) > 0 && Instant::now() < until {
        beat.beat();
        std::thread::sleep(Duration::from_millis(25));
    }
}

const FIRST_WAIT_MAX: Duration = Duration::from_secs(10);

fn move_session(config: &Config, tmux: &Tmux, plan: &Plan, m: &Mover, first: &AtomicUsize, beat: &Beat) -> Outcome {
    let failed = |error: String| Outcome::Failed { session: m.session.clone(), error };
    let holder = FirstDone(m.task.is_some().then_some(first));
    let subject = Subject {
        session: m.session.clone(),
        account: plan.from.clone(),
        claude_session_id: m.claude_session_id.clone(),
        task: m.task.clone(),
    };
    let began = Instant::now();
    let ms = || began.elapsed().as_millis();
    checkpoint::snapshot_now(config, &subject, "swap");
    stop(tmux, &m.session, Duration::from_secs(config.claude.stop_timeout_secs), beat);
    log::info!("swap: {} stopped on {} after {} ms", m.session, plan.from, ms());
    if holder.0.is_none() {
        wait_for_task_holders(first, beat);
    }
    let pid = match launch::start(tmux, config, &m.session, &plan.to, &m.claude_session_id) {
        Ok((_, spawned)) => spawned.pid,
        Err(e) => return failed(format!("launch on {}: {e}", plan.to)),
    };
    let deadline = Instant::now() + Duration::from_secs(config.claude.startup_timeout_secs);
    if let Err(e) = wait_idle(config, tmux, &m.session, &plan.to, pid, deadline, beat) {
        return failed(e);
    }
    log::info!("swap: {} at its prompt on {} after {} ms", m.session, plan.to, ms());
    drop(holder);
    let mut continued = false;
    if let Some(task) = &m.task {
        let Some(transcript) = launch::transcript_path(config, &m.session, &plan.to, &m.claude_session_id) else {
            return failed("no transcript path".into());
        };
        let confirm = Duration::from_secs(config.dispatch.submit_confirm_secs);
        match crate::dispatcher::delivery::deliver(
            tmux,
            &m.session,
            &launch::continuation_prompt(task, "a usage limit (the session has moved to another account)"),
            &transcript,
            confirm,
            &|| beat.beat(),
        ) {
            Ok(_) => continued = true,
            Err(e) => return failed(format!("continuation prompt for {task}: {e}")),
        }
        log::info!("swap: {} continues {task} after {} ms", m.session, ms());
    }
    Outcome::Moved { session: m.session.clone(), pid, continued }
}

/// Ends a session's claude for the move, as fast as it will go: Escape
/// (cancels a limit's automatic continue or a dialog), then one Ctrl-C every
/// [`STOP_PRESS_EVERY`]: the first arms Claude Code's "press Ctrl-C again to
/// exit", the next one exits. Keys sent together lose the second press, and a
/// fixed long pause only adds to the swap (a limited session took 3.8 s to
/// stop with the old fixed sequence, idle ones 0.75 s). Kills the tmux
/// session after `timeout`. The conversation is safe either way: Claude
/// Code appends each record to the transcript as it happens.
fn stop(tmux: &Tmux, session: &str, timeout: Duration, beat: &Beat) {
    let pid = match tmux.list_panes(session) {
        Ok(panes) => panes.into_iter().find(|p| !p.dead).map(|p| p.pid),
        Err(e) if e.is_missing() => return,
        Err(_) => None,
    };
    let deadline = Instant::now() + timeout;
    let _ = tmux.send_keys(session, &["Escape"]);
    let mut next_press = Instant::now() + STOP_FIRST_PRESS;
    while Instant::now() < deadline {
        beat.beat();
        // Watching /proc costs nothing; asking tmux spawns a process, and
        // ten sessions moving at once would spend the CPU their relaunch needs.
        let exited = match pid {
            Some(pid) => !process_alive(pid),
            None => !matches!(tmux.has_session(session), Ok(true)),
        };
        if exited {
            // tmux closes the session as it reaps the process.
            wait_session_gone(tmux, session, deadline);
            return;
        }
        if Instant::now() >= next_press {
            let _ = tmux.send_keys(session, &["C-c"]);
            next_press = Instant::now() + STOP_PRESS_EVERY;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    log::warn!("{session}: did not exit within {} s; killing it", timeout.as_secs());
    if let Err(e) = tmux.kill_session(session) {
        if !e.is_missing() {
            log::error!("{session}: kill failed: {e}");
        }
    }
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
/// Lets Escape land before the first Ctrl-C.
const STOP_FIRST_PRESS: Duration = Duration::from_millis(50);
/// Between Ctrl-C presses: apart enough to count as two, well inside the
/// window in which the second one exits.
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
