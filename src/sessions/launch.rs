//! How a session is started: the argv and environment for `claude` in its
//! tmux session. Pure: builds the command, runs nothing.

use crate::config::Config;
use std::path::PathBuf;

/// Variables that would override the account's credentials file.
pub const CREDENTIAL_OVERRIDES: &[&str] = &["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"];

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
    let mut command = vec![config.claude.binary.clone()];
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
