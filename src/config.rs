//! The configuration file (SPEC §3): typed schema with the documented defaults.
//!
//! Owns parsing, path resolution and validation; it never touches tmux, the
//! network or the queue folders. Every problem found is reported at once, each
//! naming the file, the key and why.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/etc/claude-failover/config.toml";

/// A secret read from a file: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The file this was read from (absolute); not a key.
    #[serde(skip)]
    pub source: PathBuf,
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub claude: ClaudeConfig,
    #[serde(default)]
    pub tmux: TmuxConfig,
    #[serde(default)]
    pub quota: QuotaConfig,
    #[serde(default)]
    pub dispatch: DispatchConfig,
    #[serde(default)]
    pub janitor: JanitorConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub notify: NotifyConfig,
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
    #[serde(default)]
    pub projects: Vec<ProjectConfig>,
    #[serde(default)]
    pub sessions: Vec<SessionConfig>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/claude-failover")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaudeConfig {
    pub binary: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub shared_projects_dir: PathBuf,
    pub auto_trust: bool,
    pub startup_timeout_secs: u64,
    pub stop_timeout_secs: u64,
}

impl Default for ClaudeConfig {
    fn default() -> Self {
        ClaudeConfig {
            binary: "claude".into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            shared_projects_dir: PathBuf::from("/var/lib/claude-failover/projects"),
            auto_trust: true,
            startup_timeout_secs: 60,
            stop_timeout_secs: 20,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TmuxConfig {
    pub socket_name: String,
    pub width: u16,
    pub height: u16,
}

impl Default for TmuxConfig {
    fn default() -> Self {
        TmuxConfig {
            socket_name: String::new(),
            width: 200,
            height: 50,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    pub usage_url: String,
    pub poll_interval_secs: u64,
    pub request_timeout_secs: u64,
    pub five_hour_threshold: f64,
    pub weekly_threshold: f64,
    pub failback: bool,
    pub min_dwell_secs: u64,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            usage_url: "https://api.anthropic.com/api/oauth/usage".into(),
            poll_interval_secs: 180,
            request_timeout_secs: 15,
            five_hour_threshold: 90.0,
            weekly_threshold: 95.0,
            failback: true,
            min_dwell_secs: 600,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    pub enabled: bool,
    pub settle_secs: u64,
    pub submit_confirm_secs: u64,
    pub max_attempts: u32,
    pub max_task_bytes: u64,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            enabled: true,
            settle_secs: 5,
            submit_confirm_secs: 10,
            max_attempts: 3,
            max_task_bytes: 262_144,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JanitorConfig {
    pub interval_secs: u64,
    pub archive_done_after_secs: u64,
    pub prune_checkpoints_after_secs: u64,
}

impl Default for JanitorConfig {
    fn default() -> Self {
        JanitorConfig {
            interval_secs: 600,
            archive_done_after_secs: 604_800,
            prune_checkpoints_after_secs: 1_209_600,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: String,
    pub token_file: String,
    /// The token read from `token_file` at load time.
    #[serde(skip)]
    pub token: Option<Secret>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8787".into(),
            token_file: String::new(),
            token: None,
        }
    }
}

/// Where the control plane listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    pub min_interval_secs: u64,
    pub telegram: Option<TelegramConfig>,
    pub webhook: Option<WebhookConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            min_interval_secs: 30,
            telegram: None,
            webhook: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    #[serde(default = "default_bot_token_file")]
    pub bot_token_file: PathBuf,
    pub chat_id: String,
    #[serde(default = "default_telegram_api")]
    pub api_base: String,
    /// The bot token read from `bot_token_file` at load time.
    #[serde(skip)]
    pub bot_token: Option<Secret>,
}

fn default_bot_token_file() -> PathBuf {
    PathBuf::from("/etc/claude-failover/telegram-token")
}
fn default_telegram_api() -> String {
    "https://api.telegram.org".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub name: String,
    pub config_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    pub name: String,
    pub path: PathBuf,
    #[serde(default = "default_queue_dir")]
    pub queue_dir: PathBuf,
}

fn default_queue_dir() -> PathBuf {
    PathBuf::from(".agent-queue")
}

impl ProjectConfig {
    /// `<path>/<queue_dir>`, the folder holding inbox/, active/, done/ ...
    pub fn queue_root(&self) -> PathBuf {
        self.path.join(&self.queue_dir)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    pub name: String,
    pub project: String,
    #[serde(default = "yes")]
    pub dispatch: bool,
}

fn yes() -> bool {
    true
}

/// One thing wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// Dotted key path, e.g. `quota.five_hour_threshold` or `sessions[2].project`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads, resolves relative paths against the file's folder, loads token
    /// files, and validates. Returns every problem at once.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![Problem {
                file: file.clone(),
                key: "(file)".into(),
                message: format!("cannot read: {e}"),
            }],
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|e| ConfigError {
            problems: vec![Problem {
                file: file.clone(),
                key: "(syntax)".into(),
                message: e.message().to_string(),
            }],
        })?;
        config.source = file;
        Ok(config)
    }

    pub fn account(&self, name: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|a| a.name == name)
    }

    pub fn project(&self, name: &str) -> Option<&ProjectConfig> {
        self.projects.iter().find(|p| p.name == name)
    }

    pub fn session(&self, name: &str) -> Option<&SessionConfig> {
        self.sessions.iter().find(|s| s.name == name)
    }
}

impl HttpConfig {
    /// The parsed `listen` value; validation guarantees it parses.
    pub fn listen_addr(&self) -> Option<Listen> {
        if let Some(path) = self.listen.strip_prefix("unix:") {
            return Some(Listen::Unix(PathBuf::from(path)));
        }
        self.listen.parse().ok().map(Listen::Tcp)
    }
}
