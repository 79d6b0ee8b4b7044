//! How a session is started: the argv and environment for `claude` in its
//! tmux session. Pure: builds the command, runs nothing.

use crate::config::Config;
use std::path::PathBuf;

/// Variables that would override the account's credentials file.
pub const CREDENTIAL_OVERRIDES: &[&str] = &["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"];

/// For an `api_key` account: `sh -c KEY_FROM_FILE <key file> claude ...`
/// reads the key (first line, trimmed) into `ANTHROPIC_API_KEY` and becomes
/// claude (same pid).
pub const KEY_FROM_FILE: &str = r#"read -r ANTHROPIC_API_KEY < "$0"; export ANTHROPIC_API_KEY; exec "$@""#;

/// Whether the conversation continues a transcript or starts under a chosen id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversation {
    /// `--resume <id>`: the transcript exists.
    Resume,
    /// `--session-id <id>`: new, or never had a prompt (no transcript yet).
    Start,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    pub session: String,
    pub account: String,
    pub cwd: PathBuf,
    pub claude_session_id: String,
    pub conversation: Conversation,
    /// Environment for the session only (CLAUDE_CONFIG_DIR and `[claude] env`).
    pub env: Vec<(String, String)>,
    /// Variables removed from the environment the pane inherits.
    pub unset: Vec<String>,
    /// The command: the claude binary, `[claude] args`, then the conversation flag.
    pub command: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchError {
    UnknownSession(String),
    UnknownAccount(String),
    UnknownProject { session: String, project: String },
}

impl std::fmt::Display for LaunchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LaunchError::UnknownSession(s) => write!(f, "no session named {s:?} in the config"),
            LaunchError::UnknownAccount(a) => write!(f, "no account named {a:?} in the config"),
            LaunchError::UnknownProject { session, project } => {
                write!(f, "session {session} names project {project:?}, which is not in the config")
            }
        }
    }
}

impl std::error::Error for LaunchError {}

/// Why `session`'s claude could not be started on `account`.
#[derive(Debug)]
pub enum StartError {
    /// The config does not describe this launch.
    Spec { session: String, account: String, error: LaunchError },
    /// tmux would not start it.
    Tmux { session: String, account: String, error: crate::tmux::TmuxError },
    /// No new conversation id could be made (the system's random source).
    ConversationId { session: String, account: String, error: std::io::Error },
    /// An `api_key` account's key could not be read, or Claude Code could
    /// not be told to use it (`why` never holds the key).
    ApiKey { session: String, account: String, why: String },
}

impl StartError {
    pub fn session(&self) -> &str {
        match self {
            StartError::Spec { session, .. }
            | StartError::Tmux { session, .. }
            | StartError::ConversationId { session, .. }
            | StartError::ApiKey { session, .. } => session,
        }
    }

    pub fn account(&self) -> &str {
        match self {
            StartError::Spec { account, .. }
            | StartError::Tmux { account, .. }
            | StartError::ConversationId { account, .. }
            | StartError::ApiKey { account, .. } => account,
        }
    }
}

/// Without session and account: every caller names them already.
impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Spec { error, .. } => write!(f, "{error}"),
            StartError::Tmux { error, .. } => write!(f, "{error}"),
            StartError::ConversationId { error, .. } => write!(f, "cannot make a conversation id: {error}"),
            StartError::ApiKey { why, .. } => write!(f, "api key: {why}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Spec { error, .. } => Some(error),
            StartError::Tmux { error, .. } => Some(error),
            StartError::ConversationId { error, .. } => Some(error),
            StartError::ApiKey { .. } => None,
        }
    }
}

pub fn spec(
    config: &Config,
    session: &str,
    account: &str,
    claude_session_id: &str,
    conversation: Conversation,
) -> Result<LaunchSpec, LaunchError> {
    let s = config.session(session).ok_or_else(|| LaunchError::UnknownSession(session.into()))?;
    let a = config.account(account).ok_or_else(|| LaunchError::UnknownAccount(account.into()))?;
    let p = config
        .project(&s.project)
        .ok_or_else(|| LaunchError::UnknownProject { session: session.into(), project: s.project.clone() })?;
    let mut env: Vec<(String, String)> = config.claude.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    env.push(("CLAUDE_CONFIG_DIR".into(), a.config_dir.display().to_string()));
    let mut command = Vec::new();
    if a.is_api_key() {
        // The key goes from its file into claude's environment inside the
        // pane: never through tmux's arguments, its environment or a log.
        command.extend(["sh".into(), "-c".into(), KEY_FROM_FILE.into(), a.api_key_file.clone()]);
    }
    command.push(config.claude.binary.clone());
    command.extend(config.claude.args.iter().cloned());
    command.push(
        match conversation {
            Conversation::Resume => "--resume",
            Conversation::Start => "--session-id",
        }
        .into(),
    );
    command.push(claude_session_id.into());
    Ok(LaunchSpec {
        session: session.into(),
        account: account.into(),
        cwd: p.path.clone(),
        claude_session_id: claude_session_id.into(),
        conversation,
        env,
        unset: CREDENTIAL_OVERRIDES.iter().map(|v| v.to_string()).collect(),
        command,
    })
}

/// A fresh conversation id (a random UUID from the kernel).
pub fn new_session_id() -> std::io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/uuid")?.trim().to_string())
}

/// The prompt that tells a session to carry on with a task it was taken
/// away from (`why`: what interrupted it).
pub fn continuation_prompt(task: &str, why: &str) -> String {
    format!(
        "You were interrupted by {why} while working on the task from {task}. \
         Continue that task from where you stopped and finish it."
    )
}

/// Where a session's conversation is written: `<account>/projects/<key>/<id>.jsonl`
/// (the shared tree's file once `setup` linked `projects/`).
pub fn transcript_path(config: &Config, session: &str, account: &str, id: &str) -> Option<PathBuf> {
    let acct = config.account(account)?;
    let project = config.project(&config.session(session)?.project)?;
    Some(crate::claude::transcript_path(&crate::claude::projects_dir(&acct.config_dir), &project.path, id))
}

/// Resume a conversation that has a transcript under `account`; start one
/// under the chosen id otherwise. Once `setup` has linked every account's
/// `projects/` to the shared tree, a transcript written under one account is
/// there under all. Without it, the furthest-along transcript under another
/// account (or in the shared tree) is copied in first — never moved, complete
/// lines only — when this account has none or an older copy of it, so the
/// move of a session between accounts still resumes its whole conversation.
pub fn prepare_conversation(config: &Config, session: &str, account: &str, id: &str) -> Conversation {
    let Some(target) = transcript_path(config, session, account, id) else { return Conversation::Start };
    let (Some(key_dir), Some(file)) = (target.parent().and_then(|p| p.file_name()), target.file_name()) else {
        return Conversation::Start;
    };
    let elsewhere = config
        .accounts
        .iter()
        .filter(|a| a.name != account)
        .map(|a| crate::claude::projects_dir(&a.config_dir))
        .chain(std::iter::once(config.claude.shared_projects_dir.clone()))
        .map(|projects| projects.join(key_dir).join(file))
        // The furthest along of the copies: each account's is a prefix of it.
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.len(), p)))
        .max_by_key(|(len, _)| *len);
    // Only a copy further along than this account's own is read at all: at
    // a launch with the shared tree (or nothing newer elsewhere) no
    // transcript is read.
    let here_len = std::fs::metadata(&target).ok().map(|m| m.len());
    let kept = if here_len.is_some() { Conversation::Resume } else { Conversation::Start };
    let Some((_, source)) = elsewhere.filter(|(len, _)| here_len.is_none_or(|here| *len > here)) else { return kept };
    if std::fs::canonicalize(&source).ok() == std::fs::canonicalize(&target).ok() {
        // The shared tree: one file under every account.
        return Conversation::Resume;
    }
    // Complete lines only: a copy taken while the other claude was writing
    // ends in half a record, which the resumed one would choke on.
    let Ok(there) = std::fs::read(&source).map(complete_lines) else { return kept };
    if here_len.is_some() {
        // Written on here since it was copied: kept as it is.
        let here = std::fs::read(&target).unwrap_or_default();
        if !there.starts_with(complete_lines_ref(&here)) {
            return Conversation::Resume;
        }
    }
    log::warn!(
        "{session}: {account}'s projects/ does not share transcripts (run `claude-failover setup`); \
         copying conversation {id} from {}",
        source.display()
    );
    let copied = (|| {
        std::fs::create_dir_all(target.parent().unwrap_or(std::path::Path::new("/")))?;
        crate::atomic::write(&target, &there)
    })();
    match copied {
        Ok(()) => Conversation::Resume,
        Err(e) => {
            log::error!("{session}: cannot copy the transcript into {}: {e}", target.display());
            Conversation::Start
        }
    }
}

/// `bytes` up to and including its last newline.
fn complete_lines(mut bytes: Vec<u8>) -> Vec<u8> {
    let keep = complete_lines_ref(&bytes).len();
    bytes.truncate(keep);
    bytes
}

fn complete_lines_ref(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    &bytes[..end]
}

/// Where a launch puts the new claude.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A new tmux session named after the session (none may exist).
    NewSession,
    /// A background window of the existing tmux session, beside the claude
    /// still running there (a swap stopping that one meanwhile).
    Beside,
}

/// Starts `session`'s claude on `account` in a new tmux session, continuing
/// conversation `id`.
pub fn start(
    tmux: &crate::tmux::Tmux,
    config: &Config,
    session: &str,
    account: &str,
    id: &str,
) -> Result<(Conversation, crate::tmux::Spawned), StartError> {
    start_in(tmux, config, session, account, id, Place::NewSession)
}

pub fn start_in(
    tmux: &crate::tmux::Tmux,
    config: &Config,
    session: &str,
    account: &str,
    id: &str,
    place: Place,
) -> Result<(Conversation, crate::tmux::Spawned), StartError> {
    if let Some(a) = config.account(account).filter(|a| a.is_api_key()) {
        // Read now (a rotated key is used from the next launch on) and
        // approved in Claude Code's state, so it never asks about it.
        let approved = crate::claude::api_key::read_key(std::path::Path::new(&a.api_key_file))
            .and_then(|key| crate::claude::api_key::approve_in(&a.config_dir, &key));
        if let Err(why) = approved {
            return Err(StartError::ApiKey { session: session.into(), account: account.into(), why });
        }
    }
    let conversation = prepare_conversation(config, session, account, id);
    let spec = spec(config, session, account, id, conversation).map_err(|error| StartError::Spec {
        session: session.into(),
        account: account.into(),
        error,
    })?;
    let unset: Vec<&str> = spec.unset.iter().map(String::as_str).collect();
    let new_session = || match place {
        Place::NewSession => tmux.new_session(
            session,
            &spec.cwd,
            config.tmux.width,
            config.tmux.height,
            &spec.env,
            &unset,
            &spec.command,
        ),
        Place::Beside => tmux.new_window(session, &spec.cwd, &spec.env, &unset, &spec.command),
    };
    let spawned = match new_session() {
        // A server exiting as its last session closed refuses the connection
        // once; the next call starts a fresh one.
        Err(crate::tmux::TmuxError::NoServer { .. }) => {
            std::thread::sleep(std::time::Duration::from_millis(100));
            new_session()
        }
        other => other,
    }
    .map_err(|error| StartError::Tmux { session: session.into(), account: account.into(), error })?;
    log::info!(
        "{session}: launched on {account} ({} {id}), pid {}",
        if conversation == Conversation::Resume { "resuming" } else { "starting" },
        spawned.pid
    );
    Ok((conversation, spawned))
}

/// Ends a session's claude: Escape (dismisses a dialog or a limit banner)
/// and Ctrl-C (interrupts a turn, clears the input), a pause, then Ctrl-C
/// twice (exit; sent together with the first they are lost, observed on
/// 2.1.332); waits up to `timeout` for the tmux session to go, killing it
/// after that.
pub fn stop(tmux: &crate::tmux::Tmux, session: &str, timeout: std::time::Duration, beat: &crate::heartbeat::Beat) {
    use std::time::{Duration, Instant};
    if !matches!(tmux.has_session(session), Ok(true)) {
        return;
    }
    let gone = |within: Duration| {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            beat.beat();
            if !matches!(tmux.has_session(session), Ok(true)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };
    let _ = tmux.send_keys(session, &["Escape", "C-c"]);
    if gone(Duration::from_millis(300)) {
        return;
    }
    let _ = tmux.send_keys(session, &["C-c", "C-c"]);
    if gone(timeout.min(Duration::from_secs(3))) {
        return;
    }
    let _ = tmux.send_keys(session, &["C-c", "C-c"]);
    if gone(timeout.saturating_sub(Duration::from_secs(3))) {
        return;
    }
    log::warn!("{session}: did not exit within {} s; killing it", timeout.as_secs());
    if let Err(e) = tmux.kill_session(session) {
        if !e.is_missing() {
            log::error!("{session}: kill failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two accounts without a shared `projects/`, one project, one session.
    fn config(dir: &std::path::Path) -> Config {
        let text = format!(
            "state_dir = {:?}\n[claude]\nshared_projects_dir = {:?}\n\
             [[accounts]]\nname = \"alpha\"\nconfig_dir = {:?}\n[[accounts]]\nname = \"beta\"\nconfig_dir = {:?}\n\
             [[projects]]\nname = \"p\"\npath = {:?}\n[[sessions]]\nname = \"s1\"\nproject = \"p\"\n",
            dir.join("state"),
            dir.join("shared"),
            dir.join("alpha"),
            dir.join("beta"),
            dir.join("proj"),
        );
        Config::from_toml(&text, &dir.join("config.toml")).unwrap()
    }

    #[test]
    fn a_conversation_is_copied_whole_lines_only_and_again_once_it_went_on_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let path = |account: &str| transcript_path(&c, "s1", account, "id-1").unwrap();
        let write = |account: &str, text: &str| {
            std::fs::create_dir_all(path(account).parent().unwrap()).unwrap();
            std::fs::write(path(account), text).unwrap();
        };
        let read = |account: &str| std::fs::read_to_string(path(account)).unwrap();
        assert_eq!(prepare_conversation(&c, "s1", "beta", "id-1"), Conversation::Start, "nothing anywhere");
        // alpha's claude is half-way through writing its second record.
        write("alpha", "{\"a\":1}\n{\"b\":");
        assert_eq!(prepare_conversation(&c, "s1", "beta", "id-1"), Conversation::Resume);
        assert_eq!(read("beta"), "{\"a\":1}\n", "complete lines only");
        // The conversation went on under alpha: beta's copy is brought up to date.
        write("alpha", "{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(prepare_conversation(&c, "s1", "beta", "id-1"), Conversation::Resume);
        assert_eq!(read("beta"), "{\"a\":1}\n{\"b\":2}\n");
        // It went on under beta since: beta's own is kept, and alpha gets it.
        write("beta", "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
        assert_eq!(prepare_conversation(&c, "s1", "beta", "id-1"), Conversation::Resume);
        assert_eq!(read("beta"), "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
        assert_eq!(prepare_conversation(&c, "s1", "alpha", "id-1"), Conversation::Resume);
        assert_eq!(read("alpha"), read("beta"), "moved back, the whole conversation goes along");
    }
}
