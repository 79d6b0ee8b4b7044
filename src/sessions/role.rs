//! The sessions role ("sessions" thread): the daemon's hands and eyes on the
//! tmux sessions. It launches, restarts and stops `claude` processes on the
//! coordinator's orders, and boils every managed session's signals (Claude
//! Code's session file, the pane) down to one `Seen` report whenever one of
//! them changes: inotify tells of the files, a tmux control client per
//! session (`observe`) of the pane; a session no client follows is looked at
//! once a second.
//! It decides nothing: backoff, trust answers and dispatch are the
//! coordinator's.

use super::launch;
use super::model::{Seen, TurnEnd};
use super::observe::{self, Followers};
use super::seen::combine;
use super::watch::{Changed, FileWatch};
use super::{Command, Report};
use crate::claude::pane::{self, PaneState};
use crate::claude::question::{self, Choice, Question};
use crate::claude::session_file::{self, SessionFile, SessionStatus};
use crate::claude::transcript::{RecordKind, TranscriptReader};
use crate::config::Config;
use crate::heartbeat::Beat;
use crate::report::Reporter;
use crate::tmux::control::Notice;
use crate::tmux::{Tmux, TmuxError};
use crossbeam_channel::{select, Receiver};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a session no control client follows is looked at, whatever its
/// files say.
const OBSERVE_EVERY: Duration = Duration::from_secs(1);
/// After a session's file changed, how long more writes are let in before
/// it is looked at: Claude Code writes a turn's records in bursts.
const SETTLE_WRITES: Duration = Duration::from_millis(15);
/// Every this many looks, the screen is read even when nothing else asks.
const SCREEN_EVERY: u64 = 5;
/// How long answering the trust dialog may take, and when keys that did not
/// close it are sent again.
const TRUST_ANSWER_WITHIN: Duration = Duration::from_secs(5);
const TRUST_ANSWER_RETRY: Duration = Duration::from_millis(1500);

/// One session this role watches.
#[derive(Debug)]
struct Managed {
    /// The account it runs on, whose spend its answers are.
    account: String,
    config_dir: PathBuf,
    claude_session_id: String,
    /// Follows the conversation from where it stood when we took the session
    /// on, so every limit record read is new.
    transcript: Option<TranscriptReader>,
    /// The pane as last listed (or as launched): lets a changed file be
    /// looked at without listing every pane first.
    pane: Option<crate::tmux::PaneInfo>,
    /// The last verdict: while it is idle or busy and Claude Code's session
    /// file agrees, the screen need not be read every tick.
    last: Option<Seen>,
    /// When the screen was last read, and when it is to be read next because
    /// the pane drew something.
    screen_read: Option<Instant>,
    screen_at: Option<Instant>,
}

impl Managed {
    fn new(config: &Config, session: &str, account: &str, id: &str) -> Option<Managed> {
        let config_dir = config.account(account)?.config_dir.clone();
        let transcript = launch::transcript_path(config, session, account, id).map(|p| {
            let len = std::fs::metadata(&p).map_or(0, |m| m.len());
            TranscriptReader::at(p, len)
        });
        Some(Managed {
            account: account.into(),
            config_dir,
            claude_session_id: id.into(),
            transcript,
            pane: None,
            last: None,
            screen_read: None,
            screen_at: None,
        })
    }

    /// Whether a file written in `dir` is one this session's state is read from.
    fn reads(&self, dir: &Path, name: &OsStr) -> bool {
        let name = name.to_string_lossy();
        if let Some(t) = self.transcript.as_ref().map(TranscriptReader::path) {
            if t.parent() == Some(dir) && t.file_name().is_some_and(|f| f.to_string_lossy() == name) {
                return true;
            }
        }
        if dir != self.config_dir.join("sessions") {
            return false;
        }
        match &self.pane {
            Some(p) => name == format!("{}.json", p.pid),
            None => false,
        }
    }
}

/// The conversation id each session was last launched with, kept in
/// `<state_dir>/sessions.json` so a restarted daemon resumes the same ones.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Ids {
    sessions: BTreeMap<String, IdRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IdRecord {
    claude_session_id: String,
    account: String,
}

pub struct Role {
    config: Arc<Config>,
    tmux: Tmux,
    out: Reporter<Report>,
    managed: BTreeMap<String, Managed>,
    ids: Ids,
    /// Observation rounds so far (for `SCREEN_EVERY`).
    ticks: u64,
    watch: Option<FileWatch>,
    /// Sessions whose files changed, looked at once `flush_at` comes.
    dirty: BTreeSet<String>,
    flush_at: Option<Instant>,
    /// The control clients telling of each session's pane.
    followers: Followers,
    /// When every session is next listed (`observe_all`).
    look_at: Option<Instant>,
}

fn ids_path(config: &Config) -> PathBuf {
    crate::state_dir::sessions_file(&config.state_dir)
}

impl Role {
    pub fn new(config: Arc<Config>, out: Reporter<Report>) -> Role {
        let tmux = Tmux::new(&config.tmux.socket_name);
        let ids = match std::fs::read(ids_path(&config)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                log::error!("{}: unreadable ({e}); starting new conversations", ids_path(&config).display());
                Ids::default()
            }),
            Err(_) => Ids::default(),
        };
        Role {
            config,
            tmux: tmux.clone(),
            out,
            managed: BTreeMap::new(),
            ids,
            ticks: 0,
            watch: None,
            dirty: BTreeSet::new(),
            flush_at: None,
            followers: Followers::new(tmux.clone()),
            look_at: None,
        }
    }

    pub fn run(mut self, commands: Receiver<Command>, beat: Beat) {
        let asks = beat.asks();
        let notices = self.followers.notices();
        let (spool_tx, spool_rx) = crossbeam_channel::unbounded();
        let spool = crate::state_dir::spool_dir(&self.config.state_dir);
        if let Err(e) = std::fs::create_dir_all(&spool) {
            log::error!("{}: cannot create the hook spool: {e}", spool.display());
        }
        let watcher = match crate::queue::InboxWatcher::start(vec![("spool".into(), spool.clone())], spool_tx) {
            Ok(w) => Some(w),
            Err(e) => {
                log::error!("{e}: hook signals will not be read");
                None
            }
        };
        self.drain_spool(&spool);
        let (changed_tx, changed_rx) = crossbeam_channel::unbounded();
        self.watch = match FileWatch::start(&self.config.state_dir, changed_tx) {
            Ok(w) => Some(w),
            Err(e) => {
                log::error!("cannot watch session files ({e}); sessions are looked at once a second");
                None
            }
        };
        loop {
            beat.beat();
            let screens = self.managed.values().filter_map(|m| m.screen_at).min();
            let flush = match self.flush_at.into_iter().chain(screens).min() {
                Some(at) => crossbeam_channel::at(at),
                None => crossbeam_channel::never(),
            };
            let look = self.look_at.map_or_else(crossbeam_channel::never, crossbeam_channel::at);
            select! {
                recv(changed_rx) -> c => if let Ok(c) = c { self.changed(c) },
                recv(flush) -> _ => {
                    if self.flush_at.is_some_and(|t| t <= Instant::now()) {
                        self.observe_dirty();
                    }
                    self.observe_screens();
                },
                recv(notices) -> n => if let Ok(n) = n { self.noticed(n) },
                recv(asks) -> _ => {},
                recv(commands) -> cmd => match cmd {
                    Ok(cmd) => self.handle(cmd, &beat),
                    Err(_) => break,
                },
                recv(spool_rx) -> ev => match ev {
                    Ok(crate::queue::WatchEvent::Arrived { name, .. }) => self.spooled(&spool.join(name)),
                    Ok(crate::queue::WatchEvent::Rescan { .. }) => self.drain_spool(&spool),
                    Err(_) => {}
                },
                recv(look) -> _ => self.observe_all(),
            }
        }
        if let Some(w) = watcher {
            w.stop();
        }
        if let Some(w) = self.watch.take() {
            w.stop();
        }
    }

    /// A watched file was written: the session(s) reading it are looked at
    /// shortly, once the burst of writes is over.
    fn changed(&mut self, changed: Changed) {
        let before = self.dirty.len();
        match changed {
            Changed::All => self.dirty.extend(self.managed.keys().cloned()),
            Changed::File { dir, name } => {
                let mut matched = false;
                for (session, m) in &self.managed {
                    if m.reads(&dir, &name) {
                        self.dirty.insert(session.clone());
                        matched = true;
                    }
                }
                if !matched {
                    // A session file of a process not listed yet (adopted, or
                    // moved by a swap): it names its conversation.
                    self.learn_pid(&dir, &name);
                }
            }
        }
        if self.dirty.len() > before && self.flush_at.is_none() {
            self.flush_at = Some(Instant::now() + SETTLE_WRITES);
        }
    }

    /// Takes the pid of a session file in `dir` whose conversation is one we
    /// manage and whose pane we have not listed yet; the pane comes from tmux.
    fn learn_pid(&mut self, dir: &Path, name: &OsStr) {
        let Some(pid) = name.to_str().and_then(|n| n.strip_suffix(".json")).and_then(|p| p.parse::<u32>().ok()) else {
            return;
        };
        let Some(id) = SessionFile::read(&dir.join(name)).ok().and_then(|f| f.session_id) else { return };
        let Some(session) = self
            .managed
            .iter()
            .find(|(_, m)| m.claude_session_id == id && dir == m.config_dir.join("sessions"))
            .map(|(s, _)| s.clone())
        else {
            return;
        };
        let pane = self.tmux.list_panes(&session).ok().and_then(|p| p.into_iter().find(|p| !p.dead && p.pid == pid));
        if let (Some(pane), Some(m)) = (pane, self.managed.get_mut(&session)) {
            m.pane = Some(pane);
            self.dirty.insert(session);
        }
    }

    /// What a session's control client heard: output gets its screen read
    /// soon; windows coming or going, or the client ending, get every
    /// session listed at once.
    fn noticed(&mut self, notice: Notice) {
        let now = Instant::now();
        match notice {
            Notice::Output { session } => {
                self.followers.output_seen(&session);
                let Some(m) = self.managed.get_mut(&session) else { return };
                if m.screen_at.is_none() {
                    let busy = matches!(m.last, Some(Seen::Busy));
                    m.screen_at = Some(observe::screen_due(now, m.screen_read, busy));
                }
            }
            Notice::Layout { .. } => self.look_soon(now),
            Notice::Ended { session, follower } => {
                self.followers.ended(&session, follower, now);
                self.look_soon(now);
            }
        }
    }

    /// Every session is listed once the burst of news is over.
    fn look_soon(&mut self, now: Instant) {
        let soon = now + SETTLE_WRITES;
        self.look_at = Some(self.look_at.map_or(soon, |t| t.min(soon)));
    }

    /// Reads the screens whose panes drew something, from the pane last listed.
    fn observe_screens(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .managed
            .iter()
            .filter(|(_, m)| m.screen_at.is_some_and(|t| t <= now))
            .map(|(s, _)| s.clone())
            .collect();
        for name in due {
            let Some(m) = self.managed.get_mut(&name) else { continue };
            m.screen_at = None;
            let Some(pane) = m.pane.clone() else {
                self.look_soon(now);
                continue;
            };
            let seen = self.observe(&name, &pane, true);
            self.report(Report::Seen { session: name, seen });
        }
    }

    /// Looks at the sessions whose files changed, from the pane last listed.
    fn observe_dirty(&mut self) {
        self.flush_at = None;
        for name in std::mem::take(&mut self.dirty) {
            self.read_transcript(&name);
            let Some(pane) = self.managed.get(&name).and_then(|m| m.pane.clone()) else { continue };
            let seen = self.observe(&name, &pane, false);
            self.report(Report::Seen { session: name, seen });
        }
    }

    /// Watches the folders a session's state is written in. Claude Code makes
    /// them as it first writes there (its session file at start, the
    /// transcript at the first prompt), too late for a watch to see that
    /// write, so they are made here first, as Claude Code makes them; one
    /// that cannot be made is tried again at the next look. Folders watched
    /// already cost a lookup, no system call.
    fn watch_files(&mut self, session: &str) {
        use std::os::unix::fs::DirBuilderExt;
        let (Some(watch), Some(m)) = (self.watch.as_mut(), self.managed.get(session)) else { return };
        let sessions = m.config_dir.join("sessions");
        if !watch.watching(&sessions) && m.config_dir.is_dir() {
            let _ = std::fs::DirBuilder::new().mode(0o700).create(&sessions);
            let _ = watch.add(&sessions);
        }
        if let Some(dir) = m.transcript.as_ref().and_then(|t| t.path().parent()) {
            if !watch.watching(dir) && m.config_dir.is_dir() {
                let _ = std::fs::create_dir_all(dir);
                let _ = watch.add(dir);
            }
        }
    }

    /// Every file in the spool (at start, and after a watch overflow).
    fn drain_spool(&mut self, spool: &Path) {
        let Ok(entries) = std::fs::read_dir(spool) else { return };
        for entry in entries.flatten() {
            self.spooled(&entry.path());
        }
    }

    /// One spooled hook document: read, removed, reported when it matters.
    fn spooled(&mut self, path: &Path) {
        let Some((claude_session_id, signal)) = super::spool::take(path) else { return };
        let Some(session) =
            self.ids.sessions.iter().find(|(_, r)| r.claude_session_id == claude_session_id).map(|(n, _)| n.clone())
        else {
            return log::debug!("hook for conversation {claude_session_id}, which no configured session runs");
        };
        match signal {
            super::spool::Signal::Sample(limits) => self.report(Report::Sample { session, limits }),
            super::spool::Signal::RateLimitFailure => self.report(Report::RateLimitFailure { session }),
            super::spool::Signal::TurnFailed(end) => self.report(Report::TurnEnded { session, end }),
        }
    }

    fn report(&self, report: Report) {
        self.out.send(report);
    }

    fn handle(&mut self, cmd: Command, beat: &Beat) {
        match cmd {
            Command::Adopt => self.adopt(),
            Command::Launch { session, account } => self.launch(&session, &account),
            Command::Restart { session, account } => {
                self.stop(&session, beat);
                self.launch(&session, &account);
            }
            Command::AnswerTrust { session } => self.answer_trust(&session, beat),
            Command::TakeOverLimit { session } => self.take_over_limit(&session),
            Command::Interrupt { session } => {
                log::warn!("{session}: stopping its turn (the fleet's fence)");
                if let Err(e) = self.tmux.send_keys(&session, &["Escape"]) {
                    log::warn!("{session}: cannot stop its turn: {e}");
                }
            }
            Command::Answer { session, question, choice } => self.answer(&session, &question, &choice, beat),
            Command::Track { session, account, claude_session_id } => {
                let Some(m) = Managed::new(&self.config, &session, &account, &claude_session_id) else { return };
                self.managed.insert(session.clone(), m);
                self.watch_files(&session);
                self.took_on(&session);
                self.ids.sessions.insert(session, IdRecord { claude_session_id, account });
                self.save_ids();
            }
            Command::Configure(config) => {
                self.managed.retain(|name, _| config.session(name).is_some());
                self.followers.retain(|name| config.session(name).is_some());
                self.config = config;
            }
        }
    }

    /// Finds configured sessions already running and takes them over as they are.
    fn adopt(&mut self) {
        for s in self.config.sessions.clone() {
            let pid = match self.tmux.list_panes(&s.name) {
                Ok(panes) => panes.into_iter().find(|p| !p.dead).map(|p| p.pid),
                Err(e) if e.is_missing() => None,
                Err(e) => {
                    log::error!("{}: cannot look for a running session: {e}", s.name);
                    None
                }
            };
            let Some(pid) = pid else {
                self.report(Report::Absent { session: s.name.clone() });
                continue;
            };
            let (account, config_dir) = self.account_of(pid, &s.name);
            let id = cmdline_session_id(pid)
                .or_else(|| self.ids.sessions.get(&s.name).map(|r| r.claude_session_id.clone()))
                .or_else(|| {
                    SessionFile::read(&session_file::path_for(&config_dir, pid)).ok().and_then(|f| f.session_id)
                });
            let id = id.unwrap_or_default();
            // What runs is the truth: a later relaunch must resume this
            // conversation even when sessions.json was lost or is stale.
            let known = self.ids.sessions.get(&s.name);
            if !id.is_empty() && known.is_none_or(|r| r.claude_session_id != id || r.account != account) {
                let record = IdRecord { claude_session_id: id.clone(), account: account.clone() };
                self.ids.sessions.insert(s.name.clone(), record);
                self.save_ids();
            }
            if let Some(m) = Managed::new(&self.config, &s.name, &account, &id) {
                self.managed.insert(s.name.clone(), m);
                self.watch_files(&s.name);
                self.took_on(&s.name);
            }
            self.report(Report::Adopted { session: s.name.clone(), account, claude_session_id: id });
        }
    }

    /// The account a running process belongs to, from its CLAUDE_CONFIG_DIR;
    /// the last one we launched it on, or the first account, when unknown.
    fn account_of(&self, pid: u32, session: &str) -> (String, PathBuf) {
        let dir = process_env(pid, "CLAUDE_CONFIG_DIR").map(PathBuf::from);
        if let Some(a) = dir.as_ref().and_then(|d| self.config.accounts.iter().find(|a| &a.config_dir == d)) {
            return (a.name.clone(), a.config_dir.clone());
        }
        let fallback = self
            .ids
            .sessions
            .get(session)
            .and_then(|r| self.config.account(&r.account))
            .or(self.config.first_account());
        match fallback {
            Some(a) => {
                log::warn!("{session}: cannot tell its account from the process; assuming {}", a.name);
                (a.name.clone(), a.config_dir.clone())
            }
            None => (String::new(), PathBuf::new()),
        }
    }

    fn launch(&mut self, session: &str, account: &str) {
        match self.try_launch(session, account) {
            Ok(id) => self.report(Report::Launched {
                session: session.into(),
                account: account.into(),
                claude_session_id: id,
            }),
            Err(error) => {
                self.managed.remove(session);
                self.followers.unfollow(session);
                self.report(Report::LaunchFailed { session: session.into(), account: account.into(), error });
            }
        }
    }

    fn try_launch(&mut self, session: &str, account: &str) -> Result<String, launch::StartError> {
        let id = match self.ids.sessions.get(session) {
            Some(r) => r.claude_session_id.clone(),
            None => launch::new_session_id().map_err(|error| launch::StartError::ConversationId {
                session: session.into(),
                account: account.into(),
                error,
            })?,
        };
        let (_, spawned) = launch::start(&self.tmux, &self.config, session, account, &id)?;
        if let Some(mut m) = Managed::new(&self.config, session, account, &id) {
            let crate::tmux::Spawned { pane_id, pid } = spawned;
            m.pane = Some(crate::tmux::PaneInfo { pane_id, pid, current_command: String::new(), dead: false });
            self.managed.insert(session.into(), m);
            self.watch_files(session);
            self.took_on(session);
        }
        self.ids.sessions.insert(session.into(), IdRecord { claude_session_id: id.clone(), account: account.into() });
        self.save_ids();
        Ok(id)
    }

    fn save_ids(&self) {
        let path = ids_path(&self.config);
        let bytes = serde_json::to_vec_pretty(&self.ids).unwrap_or_default();
        if let Err(e) = crate::atomic::write(&path, &bytes) {
            log::error!("{}: cannot save conversation ids: {e}", path.display());
        }
    }

    /// Chooses "Yes, I trust this folder" from where the cursor stands, and
    /// makes sure it landed: the coordinator asks once per appearance of the
    /// dialog, so a half-drawn dialog or a lost key must not leave the session
    /// waiting for good. Keys are recomputed from the screen before each try.
    /// Leaves a limit on screen to the daemon: Escape cancels Claude Code's
    /// own retry at the reset, "Stop and wait" closes its what-to-do dialog
    /// (the keys are read off the screen first: an Escape on a busy turn
    /// would interrupt it).
    fn take_over_limit(&self, session: &str) {
        match self.tmux.capture_pane(session).map(|s| pane::limit_takeover_keys(&s)) {
            Ok(Some(keys)) => {
                log::info!("{session}: cancelling Claude Code's automatic continue; the daemon resumes the task");
                if let Err(e) = self.tmux.send_keys(session, &keys) {
                    log::warn!("{session}: cannot take the limit over: {e}");
                }
            }
            Ok(None) => log::debug!("{session}: no limit on screen to take over"),
            Err(e) => log::warn!("{session}: cannot read the screen: {e}"),
        }
    }

    fn answer_trust(&self, session: &str, beat: &Beat) {
        self.answer_dialog(session, "the trust dialog", beat, |screen| {
            (pane::classify(screen) == PaneState::TrustDialog).then(|| pane::trust_answer_keys(screen))
        });
    }

    /// Answers the dialog `what` on `session`'s screen: `read` gives, from a
    /// screen, None once the dialog is gone, else the keys that answer it
    /// from where its cursor stands (None: not recognised, nothing typed).
    /// The keys go in again, read off the screen as it is then, every
    /// [`TRUST_ANSWER_RETRY`] while the dialog stays (one drawn a moment ago
    /// may not take keys yet), for up to [`TRUST_ANSWER_WITHIN`].
    fn answer_dialog(
        &self,
        session: &str,
        what: &str,
        beat: &Beat,
        read: impl Fn(&str) -> Option<Option<Vec<&'static str>>>,
    ) {
        let deadline = Instant::now() + TRUST_ANSWER_WITHIN;
        let mut last_sent: Option<Instant> = None;
        loop {
            beat.beat();
            let screen = match self.tmux.capture_pane(session) {
                Ok(s) => s,
                Err(e) => return log::warn!("{session}: cannot read {what}: {e}"),
            };
            let Some(keys) = read(&screen) else {
                if last_sent.is_none() {
                    log::info!("{session}: {what} is gone before it was answered; nothing typed");
                }
                return;
            };
            if let Some(keys) = keys.filter(|_| last_sent.is_none_or(|t| t.elapsed() >= TRUST_ANSWER_RETRY)) {
                if last_sent.is_some() {
                    log::info!("{session}: {what} is still open after its answer; typing it again");
                }
                if let Err(e) = self.tmux.send_keys(session, &keys) {
                    return log::warn!("{session}: answering {what} failed: {e}");
                }
                last_sent = Some(Instant::now());
            }
            if Instant::now() >= deadline {
                return log::warn!(
                    "{session}: {what} is still open {} s after answering it (or not recognised); leaving it",
                    TRUST_ANSWER_WITHIN.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types a person's answer to `question`, only if that same question is
    /// still on screen: an option is chosen with the arrow keys from where
    /// the cursor stands; text cancels the dialog (Esc) and, once the input
    /// box is back, goes in as the next prompt.
    fn answer(&self, session: &str, question: &Question, choice: &Choice, beat: &Beat) {
        let text = match choice {
            Choice::Option(index) => return self.answer_option(session, question, *index, beat),
            Choice::Text(text) => text,
        };
        let screen = match self.tmux.capture_pane(session) {
            Ok(s) => s,
            Err(e) => return log::warn!("{session}: cannot read the question to answer it: {e}"),
        };
        if !question::parse(&screen).is_some_and(|q| q.same_as(question)) {
            return log::warn!("{session}: the question changed before its answer could be typed; nothing typed");
        }
        self.answer_with_text(session, text, beat);
    }

    /// Moves the cursor to option `index` and presses Enter, while the same
    /// question is on screen (see [`Self::answer_dialog`]).
    fn answer_option(&self, session: &str, question: &Question, index: usize, beat: &Beat) {
        self.answer_dialog(session, "the question", beat, |screen| {
            question::parse(screen).filter(|q| q.same_as(question)).map(|q| q.keys_for(index))
        });
    }

    fn answer_with_text(&self, session: &str, text: &str, beat: &Beat) {
        if let Err(e) = self.tmux.send_keys(session, &["Escape"]) {
            return log::warn!("{session}: cancelling the question failed: {e}");
        }
        let deadline = Instant::now() + TRUST_ANSWER_WITHIN;
        loop {
            beat.beat();
            let screen = self.tmux.capture_pane(session).unwrap_or_default();
            if pane::input_text(&screen).is_some_and(|t| t.is_empty()) && question::parse(&screen).is_none() {
                break;
            }
            if Instant::now() >= deadline {
                return log::warn!("{session}: no empty input box after cancelling the question; text not sent");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Err(e) = self.tmux.paste(session, text) {
            return log::warn!("{session}: pasting the answer failed: {e}");
        }
        // As for a task: Enter on its own once the input box shows the
        // paste, or it is taken as part of the paste (docs/claude-code.md).
        let shown_by = Instant::now() + Duration::from_millis(800);
        while Instant::now() < shown_by {
            let screen = self.tmux.capture_pane(session).unwrap_or_default();
            if pane::input_text(&screen).is_some_and(|t| !t.is_empty()) {
                std::thread::sleep(Duration::from_millis(40));
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Err(e) = self.tmux.send_keys(session, &["Enter"]) {
            log::warn!("{session}: sending the answer failed: {e}");
        }
    }

    /// Asks claude to exit (Escape, `/exit`), waits up to `stop_timeout_secs`,
    /// then kills the tmux session.
    fn stop(&mut self, session: &str, beat: &Beat) {
        self.managed.remove(session);
        self.followers.unfollow(session);
        launch::stop(&self.tmux, session, Duration::from_secs(self.config.claude.stop_timeout_secs), beat);
    }

    /// One `list-panes -a` for every session, then per session its session
    /// file and transcript (cheap reads); the screen only when those cannot
    /// tell (no file yet, a dialog, a limit, starting) or, for a session no
    /// control client follows, every `SCREEN_EVERY` looks, to catch what
    /// only the screen shows (a followed one's screen is read when it draws).
    fn observe_all(&mut self) {
        self.look_at = None;
        if self.managed.is_empty() {
            return;
        }
        self.ticks = self.ticks.wrapping_add(1);
        let panes = match self.tmux.list_all_panes() {
            Ok(p) => p,
            Err(e) => {
                self.look_at = Some(Instant::now() + OBSERVE_EVERY);
                return log::warn!("cannot list tmux panes: {e}");
            }
        };
        let names: Vec<String> = self.managed.keys().cloned().collect();
        let periodic = self.ticks.is_multiple_of(SCREEN_EVERY);
        for name in names {
            self.watch_files(&name);
            self.read_transcript(&name);
            let pane = panes.iter().find(|(s, p)| *s == name && !p.dead).map(|(_, p)| p);
            let seen = match pane {
                Some(pane) => {
                    if let Some(m) = self.managed.get_mut(&name) {
                        m.pane = Some(pane.clone());
                    }
                    self.followers.follow(&name, Instant::now());
                    let unfollowed = !self.followers.follows(&name);
                    self.observe(&name, pane, periodic && unfollowed)
                }
                None => {
                    self.managed.remove(&name);
                    self.dirty.remove(&name);
                    self.followers.unfollow(&name);
                    Seen::Missing
                }
            };
            self.report(Report::Seen { session: name, seen });
        }
        self.schedule_look();
    }

    /// The next listing of every session: soon for a session no control
    /// client follows, seldom when tmux tells of every change.
    fn schedule_look(&mut self) {
        if self.managed.is_empty() {
            return;
        }
        let all_followed = self.managed.keys().all(|s| self.followers.follows(s));
        let every = if all_followed { observe::LIST_ANYWAY_EVERY } else { OBSERVE_EVERY };
        let next = Instant::now() + every;
        self.look_at = Some(self.look_at.map_or(next, |t| t.min(next)));
    }

    /// A session was taken on (launched, adopted, moved): its control client
    /// starts now, so its first screens are seen, and it is listed soon.
    fn took_on(&mut self, session: &str) {
        let now = Instant::now();
        self.followers.unfollow(session);
        self.followers.follow(session, now);
        let next = now + OBSERVE_EVERY;
        self.look_at = Some(self.look_at.map_or(next, |t| t.min(next)));
    }

    /// Reports how turns began and ended (quota limits, API errors, normal
    /// ends) in the records the conversation gained since last time.
    fn read_transcript(&mut self, name: &str) {
        let Some(managed) = self.managed.get_mut(name) else { return };
        let account = managed.account.clone();
        let Some(reader) = managed.transcript.as_mut() else { return };
        let records = match reader.read_new() {
            Ok(r) => r,
            Err(e) => return log::debug!("{name}: {e}"),
        };
        let session = || name.to_string();
        for r in records {
            let report = match r.kind {
                RecordKind::QuotaLimit { resets_at, structured, rate_limit_type, .. } => {
                    let record_time = if structured { r.at } else { None };
                    log::debug!("{name}: limit record read");
                    Report::Limit { session: session(), resets_at, record_time, window: rate_limit_type }
                }
                RecordKind::AuthFailure { .. } => Report::TurnEnded { session: session(), end: TurnEnd::LoginRevoked },
                RecordKind::ApiError { error, status, text } => {
                    Report::TurnEnded { session: session(), end: TurnEnd::ApiError { error, status, text } }
                }
                RecordKind::TurnEnded => Report::TurnEnded { session: session(), end: TurnEnd::Normal },
                RecordKind::UserTurn { .. } => Report::TurnStarted { session: session() },
                RecordKind::Usage { message_id, model, tokens } => {
                    Report::Usage { session: session(), account: account.clone(), message_id, model, tokens }
                }
                RecordKind::AssistantText { .. } | RecordKind::ToolUse { .. } => continue,
            };
            self.report(report);
        }
    }

    fn observe(&mut self, name: &str, pane: &crate::tmux::PaneInfo, periodic: bool) -> Seen {
        let Some(managed) = self.managed.get_mut(name) else { return Seen::Missing };
        let file = SessionFile::read(&session_file::path_for(&managed.config_dir, pane.pid)).ok();
        let file_says = file.as_ref().and_then(|f| f.status.clone());
        let settled = matches!(managed.last, Some(Seen::Idle | Seen::Busy));
        let look = periodic || !settled || !matches!(file_says, Some(SessionStatus::Idle | SessionStatus::Busy));
        if look {
            managed.screen_read = Some(Instant::now());
        }
        let text = if look {
            match self.tmux.capture_pane(&pane.pane_id) {
                Ok(text) => Some(text),
                Err(TmuxError::NoSession { .. }) | Err(TmuxError::NoServer { .. }) => return Seen::Missing,
                Err(e) => {
                    log::warn!("{name}: capture failed: {e}");
                    None
                }
            }
        } else {
            None
        };
        let screen = text.as_deref().map_or(PaneState::Unknown, pane::classify);
        let seen = match combine(file.as_ref(), &screen) {
            // A question a person must answer (not the trust or limit dialogs,
            // which `combine` names apart): its options come off the screen.
            Seen::Dialog(what) if matches!(screen, PaneState::PermissionPrompt | PaneState::OtherDialog) => {
                match text.as_deref().and_then(question::parse) {
                    Some(question) => Seen::Asking { what, question: Box::new(question) },
                    None => Seen::Dialog(what),
                }
            }
            seen => seen,
        };
        managed.last = Some(seen.clone());
        if matches!(screen, PaneState::RateLimited { .. }) {
            let takeover = text.as_deref().and_then(pane::limit_takeover_keys).is_some();
            self.report(Report::ScreenLimit { session: name.into(), takeover });
        }
        seen
    }
}

/// A variable from a running process's environment (/proc/PID/environ).
fn process_env(pid: u32, name: &str) -> Option<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    bytes.split(|b| *b == 0).find_map(|kv| {
        let kv = std::str::from_utf8(kv).ok()?;
        kv.strip_prefix(name)?.strip_prefix('=').map(str::to_string)
    })
}

/// The conversation id on a running claude's command line.
fn cmdline_session_id(pid: u32) -> Option<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&str> = bytes.split(|b| *b == 0).filter_map(|a| std::str::from_utf8(a).ok()).collect();
    args.windows(2).find(|w| w[0] == "--resume" || w[0] == "--session-id").map(|w| w[1].to_string())
}
