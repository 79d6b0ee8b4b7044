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
use crate::heartbeat::Beat;
use crate::report::Reporter;
use crate::sessions::launch::{self, Place};
use crate::sessions::model::Seen;
use crate::status::{SwapCause, SwapRecord};
use crate::tmux::Tmux;
use crossbeam_channel::Receiver;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// One planned swap; also the journal's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub from: String,
    pub to: String,
    pub reason: SwapCause,
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

#[derive(Debug)]
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
        error: MoveError,
    },
}

/// Why one session could not be moved to the swap's new account.
#[derive(Debug)]
pub enum MoveError {
    /// Its claude could not be started on `account`.
    Launch { account: String, error: Box<launch::StartError> },
    /// The new claude exited before its prompt came.
    Exited { account: String },
    /// The screen of the new claude could not be read.
    Screen { account: String, error: crate::tmux::TmuxError },
    /// The account shows Claude Code's login screen.
    LoginNeeded { account: String },
    /// No prompt within `startup_timeout_secs`; `last` is what was seen.
    NotReady { account: String, within_secs: u64, last: Seen },
    /// The config cannot say where the conversation is written.
    NoTranscript { account: String },
    /// The prompt telling it to continue `task` was not taken.
    Continuation { task: String, error: crate::dispatcher::delivery::DeliveryError },
    /// The thread that moves it could not start, or panicked.
    Thread { why: String },
    /// The daemon stopped in the middle: the next start finishes the move.
    Stopping,
}

impl std::fmt::Display for MoveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MoveError::Launch { account, error } => write!(f, "launch on {account}: {error}"),
            MoveError::Exited { account } => write!(f, "the session exited on {account}"),
            MoveError::Screen { error, .. } => write!(f, "{error}"),
            MoveError::LoginNeeded { account } => write!(f, "{account} needs a login (/login)"),
            MoveError::NotReady { account, within_secs, last } => {
                write!(f, "not at its prompt on {account} within {within_secs} s (last seen {last:?})")
            }
            MoveError::NoTranscript { .. } => f.write_str("no transcript path"),
            MoveError::Continuation { task, error } => write!(f, "continuation prompt for {task}: {error}"),
            MoveError::Stopping => f.write_str("the daemon stopped in the middle of the move"),
            MoveError::Thread { why } => write!(f, "mover thread: {why}"),
        }
    }
}

impl std::error::Error for MoveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MoveError::Launch { error, .. } => Some(error.as_ref()),
            MoveError::Screen { error, .. } => Some(error),
            MoveError::Continuation { error, .. } => Some(error),
            _ => None,
        }
    }
}

#[derive(Debug)]
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
            reason: self.reason,
            started_at: self.started_at.clone(),
            finished_at: None,
            sessions_moved: 0,
        }
    }
}

pub fn journal_path(state_dir: &Path) -> PathBuf {
    crate::state_dir::swap_journal(state_dir)
}

fn active_path(state_dir: &Path) -> PathBuf {
    crate::state_dir::active_file(state_dir)
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

pub fn run(config: Arc<Config>, commands: Receiver<Plan>, out: Reporter<Finished>, beat: Beat) {
    let tmux = Tmux::new(&config.tmux.socket_name);
    let asks = beat.asks();
    loop {
        beat.beat();
        crossbeam_channel::select! {
            recv(commands) -> plan => match plan {
                Ok(plan) => {
                    let finished = swap(&config, &tmux, plan, &beat);
                    if !out.send(finished) {
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
                Err(why) => Outcome::Failed { session: m.session.clone(), error: MoveError::Thread { why } },
            })
            .collect()
    });
    let finished = Finished { plan, outcomes, finished_at: SystemTime::now() };
    if beat.stopping() {
        // Cut short by a stop: the journal stays, and the next start moves
        // every session it names again.
        log::warn!(
            "swap {} → {} cut short by the daemon stopping; the next start finishes it",
            finished.plan.from,
            finished.plan.to
        );
        return finished;
    }
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
    let failed = |error: MoveError| Outcome::Failed { session: m.session.clone(), error };
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
                Err(error) => return failed(MoveError::Launch { account: plan.to.clone(), error: Box::new(error) }),
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
            return failed(MoveError::NoTranscript { account: plan.to.clone() });
        };
        let confirm = Duration::from_secs(config.dispatch.submit_confirm_secs);
        match crate::dispatcher::delivery::deliver(
            tmux,
            &spawned.pane_id,
            &launch::continuation_prompt(task, interrupted_by(plan.reason)),
            &transcript,
            confirm,
            &|| beat.beat(),
        ) {
            Ok(_) => resumed_after = Some(began.elapsed()),
            Err(error) => return failed(MoveError::Continuation { task: task.clone(), error }),
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
) -> Result<(), MoveError> {
    let config_dir = config.account(account).map(|a| a.config_dir.clone()).unwrap_or_default();
    let mut last = Seen::Starting;
    let mut next_look = Instant::now();
    while Instant::now() < deadline {
        beat.beat();
        if beat.stopping() {
            return Err(MoveError::Stopping);
        }
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
            Err(e) if e.is_missing() => return Err(MoveError::Exited { account: account.into() }),
            Err(error) => return Err(MoveError::Screen { account: account.into(), error }),
        };
        let shown = pane::classify(&screen);
        last = match shown {
            // `--resume` replays the conversation, the limit that ended it on
            // the old account included; this process has sent nothing yet,
            // so Claude Code's own "idle" is the truth.
            PaneState::RateLimited { .. } | PaneState::LoginNeeded if idle_file => Seen::Idle,
            _ => crate::sessions::seen::combine(file.as_ref(), &shown),
        };
        match &last {
            Seen::Idle => return Ok(()),
            Seen::TrustDialog if config.claude.auto_trust => {
                if let Some(keys) = pane::trust_answer_keys(&screen) {
                    let _ = tmux.send_keys(session, &keys);
                }
            }
            Seen::LoginNeeded => return Err(MoveError::LoginNeeded { account: account.into() }),
            _ => {}
        }
    }
    Err(MoveError::NotReady { account: account.into(), within_secs: config.claude.startup_timeout_secs, last })
}

/// What the continuation prompt of a moved task says stopped it.
fn interrupted_by(reason: SwapCause) -> &'static str {
    match reason {
        SwapCause::HardLimit => "a usage limit (the session has moved to another account)",
        SwapCause::LoginRevoked => "a login that stopped working (the session has moved to another account)",
        SwapCause::SpendCap => "the API key's daily spending cap (the session has moved to another account)",
        SwapCause::Threshold | SwapCause::Projected => "a move to another account before this one's quota ran out",
        SwapCause::Failback | SwapCause::Manual | SwapCause::Consolidate | SwapCause::BackToSubscription => {
            "a move of the session to another account"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_task_is_told_what_stopped_it() {
        let prompt = |reason| launch::continuation_prompt("a.md", interrupted_by(reason));
        assert!(prompt(SwapCause::HardLimit).contains("interrupted by a usage limit"));
        assert!(prompt(SwapCause::LoginRevoked).contains("a login that stopped working"));
        for reason in [SwapCause::Manual, SwapCause::Consolidate, SwapCause::Threshold, SwapCause::Failback] {
            let text = prompt(reason);
            assert!(!text.contains("usage limit") && text.contains("another account"), "{reason:?}: {text}");
            assert!(text.contains("Continue that task") && text.contains("a.md"), "{text}");
        }
    }

    fn plan() -> Plan {
        Plan {
            from: "alpha".into(),
            to: "beta".into(),
            reason: SwapCause::Threshold,
            started_at: "2025-06-01T10:00:00Z".into(),
            sessions: vec![
                Mover { session: "s1".into(), claude_session_id: "id-1".into(), task: Some("t.md".into()) },
                Mover { session: "s2".into(), claude_session_id: "id-2".into(), task: None },
            ],
        }
    }

    #[test]
    fn a_finished_swap_records_its_end_and_the_sessions_it_moved() {
        let moved = Outcome::Moved {
            session: "s1".into(),
            pid: 7,
            continued: true,
            ready_after: Duration::from_millis(600),
            resumed_after: Some(Duration::from_millis(900)),
        };
        let failed = Outcome::Failed { session: "s2".into(), error: MoveError::LoginNeeded { account: "beta".into() } };
        let at = crate::time::parse_rfc3339("2025-06-01T10:00:05Z").unwrap();
        let record = Finished { plan: plan(), outcomes: vec![moved, failed], finished_at: at }.record();
        assert_eq!(record.sessions_moved, 1);
        assert_eq!(record.finished_at.as_deref(), Some("2025-06-01T10:00:05Z"));
        assert_eq!((record.from.as_str(), record.to.as_str(), record.reason), ("alpha", "beta", SwapCause::Threshold));
        let running = plan().record();
        assert_eq!((running.finished_at, running.sessions_moved), (None, 0), "a running swap has no end yet");
    }

    #[test]
    fn the_journal_and_active_json_read_back_and_a_broken_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_journal(dir.path()), None);
        std::fs::write(journal_path(dir.path()), serde_json::to_vec(&plan()).unwrap()).unwrap();
        assert_eq!(read_journal(dir.path()), Some(plan()));
        std::fs::write(journal_path(dir.path()), b"{\"from\":").unwrap();
        assert_eq!(read_journal(dir.path()), None, "a torn journal is logged and ignored");

        let active = Active { account: "beta".into(), last_swap: Some(plan().record()) };
        write_active(dir.path(), &active);
        assert_eq!(read_active(dir.path()), Some(active));
        std::fs::write(active_path(dir.path()), b"[]").unwrap();
        assert_eq!(read_active(dir.path()), None);
    }

    #[test]
    fn move_errors_say_what_the_strings_said() {
        let tmux = crate::tmux::TmuxError::NoServer { command: "capture-pane".into() };
        let table: Vec<(MoveError, &str)> = vec![
            (MoveError::Exited { account: "beta".into() }, "the session exited on beta"),
            (MoveError::LoginNeeded { account: "beta".into() }, "beta needs a login (/login)"),
            (
                MoveError::NotReady { account: "beta".into(), within_secs: 60, last: Seen::Starting },
                "not at its prompt on beta within 60 s (last seen Starting)",
            ),
            (MoveError::NoTranscript { account: "beta".into() }, "no transcript path"),
            (MoveError::Thread { why: "panicked".into() }, "mover thread: panicked"),
            (MoveError::Screen { account: "beta".into(), error: tmux }, "tmux capture-pane: no server running"),
        ];
        for (error, text) in table {
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn a_process_is_alive_until_it_is_gone_or_a_zombie() {
        assert!(process_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Exited, not reaped yet: a zombie, which counts as gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!process_alive(pid), "an exited child still looks alive");
        child.wait().unwrap();
        assert!(!process_alive(pid));
    }
}
