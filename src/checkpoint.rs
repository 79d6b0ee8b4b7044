//! Checkpoints: what each session is doing, written under
//! `<state_dir>/checkpoints/` so a person (or a restarted daemon) can see
//! where every conversation stood: its id, cwd, account, active task, and the
//! last tool use and assistant text from its transcript.
//!
//! The checkpoint role ("checkpoint" thread) snapshots every running session
//! once a minute, when something changed; the account switcher snapshots each
//! session it moves, just before stopping it. Files are written atomically and
//! never rewritten; the janitor prunes old ones.

use crate::claude::transcript::{RecordKind, TranscriptReader};
use crate::config::Config;
use crate::control::Shared;
use crate::heartbeat::Beat;
use crossbeam_channel::{select, Receiver};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub const INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub session: String,
    pub project: String,
    pub cwd: PathBuf,
    pub account: String,
    pub claude_session_id: String,
    pub task: Option<String>,
    pub last_tool_use: Option<String>,
    pub last_assistant_text: Option<String>,
    /// Why it was written: "periodic" or "swap".
    pub reason: String,
    pub at: String,
}

/// Follows one transcript incrementally, remembering the latest tool use and
/// assistant text.
pub struct Follower {
    reader: TranscriptReader,
    pub last_tool_use: Option<String>,
    pub last_assistant_text: Option<String>,
}

impl Follower {
    pub fn new(transcript: &Path) -> Follower {
        Follower { reader: TranscriptReader::new(transcript), last_tool_use: None, last_assistant_text: None }
    }

    /// Reads what was appended; true when the remembered values changed.
    pub fn catch_up(&mut self) -> bool {
        let Ok(records) = self.reader.read_new() else { return false };
        let before = (self.last_tool_use.clone(), self.last_assistant_text.clone());
        for r in records {
            match r.kind {
                RecordKind::ToolUse { name } => self.last_tool_use = Some(name),
                RecordKind::AssistantText { text } => self.last_assistant_text = Some(text),
                _ => {}
            }
        }
        before != (self.last_tool_use.clone(), self.last_assistant_text.clone())
    }
}

/// What a checkpoint needs to know about a session beyond its transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub session: String,
    pub account: String,
    pub claude_session_id: String,
    pub task: Option<String>,
}

pub fn build(config: &Config, s: &Subject, follower: &Follower, reason: &str) -> Option<Checkpoint> {
    let project = config.project(&config.session(&s.session)?.project)?;
    Some(Checkpoint {
        session: s.session.clone(),
        project: project.name.clone(),
        cwd: project.path.clone(),
        account: s.account.clone(),
        claude_session_id: s.claude_session_id.clone(),
        task: s.task.clone(),
        last_tool_use: follower.last_tool_use.clone(),
        last_assistant_text: follower.last_assistant_text.clone(),
        reason: reason.into(),
        at: crate::time::rfc3339(SystemTime::now()),
    })
}

/// Writes `<state_dir>/checkpoints/<session>-<unix millis>.json` atomically.
pub fn save(state_dir: &Path, cp: &Checkpoint) -> std::io::Result<PathBuf> {
    let dir = crate::state_dir::checkpoints_dir(state_dir);
    std::fs::create_dir_all(&dir)?;
    let millis = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let path = dir.join(format!("{}-{millis}.json", cp.session));
    let bytes = serde_json::to_vec_pretty(cp).map_err(std::io::Error::other)?;
    crate::atomic::write(&path, &bytes)?;
    Ok(path)
}

/// One full snapshot of a session now (used by the switcher).
pub fn snapshot_now(config: &Config, s: &Subject, reason: &str) -> Option<PathBuf> {
    let transcript = crate::sessions::launch::transcript_path(config, &s.session, &s.account, &s.claude_session_id)?;
    let mut follower = Follower::new(&transcript);
    follower.catch_up();
    let cp = build(config, s, &follower, reason)?;
    match save(&config.state_dir, &cp) {
        Ok(p) => Some(p),
        Err(e) => {
            log::error!("{}: cannot write a checkpoint: {e}", s.session);
            None
        }
    }
}

/// The checkpoint role: every `INTERVAL`, a checkpoint for each session whose
/// context changed since its last one. Reads the published status, never
/// asks the coordinator.
pub fn run(config: Arc<Config>, shared: Shared, stopped: Receiver<()>, beat: Beat) {
    let ticks = crossbeam_channel::tick(INTERVAL);
    let asks = beat.asks();
    let mut followers: HashMap<String, (Subject, Follower, bool)> = HashMap::new();
    loop {
        beat.beat();
        select! {
            recv(stopped) -> _ => return,
            recv(ticks) -> _ => sweep(&config, &shared, &mut followers),
            recv(asks) -> _ => {}
        }
    }
}

fn sweep(config: &Config, shared: &Shared, followers: &mut HashMap<String, (Subject, Follower, bool)>) {
    let status = shared.status.read().clone();
    for s in &status.sessions {
        let (Some(account), Some(id)) = (&s.account, &s.claude_session_id) else { continue };
        let subject = Subject {
            session: s.name.clone(),
            account: account.clone(),
            claude_session_id: id.clone(),
            task: s.task.clone(),
        };
        let entry = followers.entry(s.name.clone()).or_insert_with(|| {
            let path = crate::sessions::launch::transcript_path(config, &s.name, account, id).unwrap_or_default();
            (subject.clone(), Follower::new(&path), true)
        });
        if entry.0.claude_session_id != subject.claude_session_id {
            let path = crate::sessions::launch::transcript_path(config, &s.name, account, id).unwrap_or_default();
            *entry = (subject.clone(), Follower::new(&path), true);
        }
        let changed = entry.1.catch_up() || entry.0 != subject || entry.2;
        entry.0 = subject;
        if changed {
            if let Some(cp) = build(config, &entry.0, &entry.1, "periodic") {
                match save(&config.state_dir, &cp) {
                    Ok(_) => entry.2 = false,
                    Err(e) => log::warn!("{}: cannot write a checkpoint: {e}", s.name),
                }
            }
        }
    }
    followers.retain(|name, _| status.sessions.iter().any(|s| &s.name == name));
}
