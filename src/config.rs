//! The configuration file (SPEC §3): typed schema with the documented defaults.
//!
//! Owns parsing, path resolution and validation; it never touches tmux, the
//! network or the queue folders. Every problem found is reported at once, each
//! naming the file, the key and why.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

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

    /// Compares with a presented token in time independent of where they
    /// differ, so a client cannot guess the token byte by byte.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
        diff == 0 && a.len() == b.len()
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
        TmuxConfig { socket_name: String::new(), width: 200, height: 50 }
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
        JanitorConfig { interval_secs: 600, archive_done_after_secs: 604_800, prune_checkpoints_after_secs: 1_209_600 }
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
        HttpConfig { listen: "127.0.0.1:8787".into(), token_file: String::new(), token: None }
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
        NotifyConfig { min_interval_secs: 30, telegram: None, webhook: None }
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
    /// Dotted key path, e.g. `quota.five_hour_threshold` or `sessions[2].project`;
    /// `(file)` when the file cannot be read, `(syntax)` when it is not TOML.
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

impl ConfigError {
    /// The first problem about `key`, if any (handy in tests and logs).
    pub fn problem(&self, key: &str) -> Option<&Problem> {
        self.problems.iter().find(|p| p.key == key)
    }
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

/// `--config` beats `CLAUDE_FAILOVER_CONFIG` beats [`DEFAULT_PATH`].
pub fn config_path(cli: Option<&Path>) -> PathBuf {
    if let Some(p) = cli {
        return p.to_path_buf();
    }
    match std::env::var_os("CLAUDE_FAILOVER_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_PATH),
    }
}

impl Config {
    /// Reads, resolves relative paths against the file's folder, loads token
    /// files, and validates. Returns every problem at once.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = absolute(path);
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![Problem {
                file: file.clone(),
                key: "(file)".into(),
                message: format!("cannot read the configuration file: {e}"),
            }],
        })?;
        Config::from_toml(&text, &file)
    }

    /// Like [`Config::load`] for text already in memory; `file` names it in
    /// problems and its folder anchors relative paths. Token files are still
    /// read from disk.
    pub fn from_toml(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let file = absolute(file);
        let fail = |problems: Vec<(String, String)>| ConfigError {
            problems: problems.into_iter().map(|(key, message)| Problem { file: file.clone(), key, message }).collect(),
        };
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| fail(vec![syntax_problem(text, &e)]))?;

        let mut shape = Vec::new();
        check_table(&mut table, ROOT, "", &mut shape);
        let mut config: Config = match toml::Value::Table(table).try_into() {
            Ok(c) => c,
            Err(e) => {
                // The shape check should have caught whatever serde rejects;
                // if it did not, still report everything it found.
                shape.push(("(schema)".into(), e.message().to_string()));
                return Err(fail(shape));
            }
        };
        config.source = file.clone();
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        config.resolve_paths(&base);

        let mut check = Check::default();
        config.read_secrets(&mut check);
        config.validate(&mut check);
        // A key already reported as missing or mistyped got a placeholder;
        // complaints about that placeholder would only be noise.
        let reported: Vec<String> = shape.iter().map(|(k, _)| k.clone()).collect();
        let mut problems = shape;
        problems.extend(check.0.into_iter().filter(|(key, _)| !reported.iter().any(|r| covers(r, key))));
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(fail(problems))
        }
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

    fn resolve_paths(&mut self, base: &Path) {
        self.state_dir = resolve(base, &self.state_dir);
        self.claude.shared_projects_dir = resolve(base, &self.claude.shared_projects_dir);
        // A bare name is looked up in PATH; only something path-like is a path.
        if self.claude.binary.contains('/') {
            self.claude.binary = resolve(base, Path::new(&self.claude.binary)).to_string_lossy().into_owned();
        }
        if !self.http.token_file.is_empty() {
            self.http.token_file = resolve(base, Path::new(&self.http.token_file)).to_string_lossy().into_owned();
        }
        if let Some(t) = &mut self.notify.telegram {
            t.bot_token_file = resolve(base, &t.bot_token_file);
        }
        for a in &mut self.accounts {
            a.config_dir = resolve(base, &a.config_dir);
        }
        for p in &mut self.projects {
            p.path = resolve(base, &p.path);
        }
    }

    fn read_secrets(&mut self, check: &mut Check) {
        if !self.http.token_file.is_empty() {
            self.http.token = read_secret(Path::new(&self.http.token_file), "http.token_file", check);
        }
        if let Some(t) = &mut self.notify.telegram {
            t.bot_token = read_secret(&t.bot_token_file, "notify.telegram.bot_token_file", check);
        }
    }

    fn validate(&self, check: &mut Check) {
        if self.state_dir.as_os_str().is_empty() {
            check.add("state_dir", "must not be empty");
        }
        self.validate_claude(check);
        self.validate_numbers(check);

        if let Some(bad) = bad_socket_name(&self.tmux.socket_name) {
            check.add("tmux.socket_name", bad);
        }
        check_url(check, "quota.usage_url", &self.quota.usage_url);
        self.validate_http(check);
        if let Some(t) = &self.notify.telegram {
            if t.chat_id.trim().is_empty() {
                check.add("notify.telegram.chat_id", "must not be empty");
            }
            check_url(check, "notify.telegram.api_base", &t.api_base);
        }
        if let Some(w) = &self.notify.webhook {
            check_url(check, "notify.webhook.url", &w.url);
        }

        if self.accounts.is_empty() {
            check.add("accounts", "no accounts configured: add at least one [[accounts]] with name and config_dir");
        }
        let names: Vec<&str> = self.accounts.iter().map(|a| a.name.as_str()).collect();
        check_names(check, "accounts", &names);
        let names: Vec<&str> = self.projects.iter().map(|p| p.name.as_str()).collect();
        check_names(check, "projects", &names);
        let names: Vec<&str> = self.sessions.iter().map(|s| s.name.as_str()).collect();
        check_names(check, "sessions", &names);

        for (i, a) in self.accounts.iter().enumerate() {
            let key = format!("accounts[{i}].config_dir");
            if a.config_dir.as_os_str().is_empty() {
                check.add(&key, "must not be empty");
                continue;
            }
            if let Some(j) = self.accounts[..i].iter().position(|b| same_path(&b.config_dir, &a.config_dir)) {
                check.add(
                    &key,
                    format!(
                        "{} is also the config_dir of accounts[{j}] ({:?}): each account needs its own folder",
                        a.config_dir.display(),
                        self.accounts[j].name
                    ),
                );
            }
            // setup turns <config_dir>/projects into a symlink to the shared
            // tree; the tree cannot be that symlink itself.
            if same_path(&a.config_dir.join("projects"), &self.claude.shared_projects_dir) {
                check.add(
                    "claude.shared_projects_dir",
                    format!(
                        "is {}, the projects/ folder of account {:?}: the shared tree must live \
                         outside every account (setup links each account's projects/ to it)",
                        self.claude.shared_projects_dir.display(),
                        a.name
                    ),
                );
            }
        }
        self.validate_projects(check);
        for (i, s) in self.sessions.iter().enumerate() {
            if self.project(&s.project).is_none() {
                let known: Vec<&str> = self.projects.iter().map(|p| p.name.as_str()).collect();
                let known = if known.is_empty() {
                    "no [[projects]] are configured".to_string()
                } else {
                    format!("configured projects: {}", known.join(", "))
                };
                check.add(&format!("sessions[{i}].project"), format!("unknown project {:?} ({known})", s.project));
            }
        }
    }

    fn validate_claude(&self, check: &mut Check) {
        let c = &self.claude;
        if c.binary.trim().is_empty() {
            check.add("claude.binary", "must not be empty");
        }
        if c.shared_projects_dir.as_os_str().is_empty() {
            check.add("claude.shared_projects_dir", "must not be empty");
        }
        for (i, arg) in c.args.iter().enumerate() {
            let key = format!("claude.args[{i}]");
            let flag = arg.split('=').next().unwrap_or(arg);
            if DAEMON_ARGS.contains(&flag) {
                check.add(&key, format!("{flag} is chosen by the daemon for every launch; remove it"));
            } else if arg.contains('\0') {
                check.add(&key, "must not contain a NUL character");
            }
        }
        for (name, value) in &c.env {
            let key = format!("claude.env.{}", quote_key(name));
            if !is_env_name(name) {
                check.add(
                    &key,
                    "not a valid environment variable name (letters, digits and '_', not starting with a digit)",
                );
            } else if DAEMON_ENV.contains(&name.as_str()) {
                check.add(&key, format!("{name} is controlled by the daemon (it selects the account); remove it"));
            } else if value.contains('\0') {
                check.add(&key, "value must not contain a NUL character");
            }
        }
    }

    fn validate_numbers(&self, check: &mut Check) {
        let nonzero: [(&str, u64); 10] = [
            ("claude.startup_timeout_secs", self.claude.startup_timeout_secs),
            ("claude.stop_timeout_secs", self.claude.stop_timeout_secs),
            ("tmux.width", self.tmux.width.into()),
            ("tmux.height", self.tmux.height.into()),
            ("quota.poll_interval_secs", self.quota.poll_interval_secs),
            ("quota.request_timeout_secs", self.quota.request_timeout_secs),
            ("dispatch.submit_confirm_secs", self.dispatch.submit_confirm_secs),
            ("dispatch.max_attempts", self.dispatch.max_attempts.into()),
            ("dispatch.max_task_bytes", self.dispatch.max_task_bytes),
            ("janitor.interval_secs", self.janitor.interval_secs),
        ];
        for (key, value) in nonzero {
            if value == 0 {
                check.add(key, "must be greater than 0");
            }
        }
        // tmux refuses windows this small to be useful and Claude Code's
        // prompt wraps into nonsense below it.
        if self.tmux.width != 0 && self.tmux.width < 40 {
            check.add("tmux.width", "must be at least 40 columns");
        }
        if self.tmux.height != 0 && self.tmux.height < 10 {
            check.add("tmux.height", "must be at least 10 rows");
        }
        for (key, value) in [
            ("quota.five_hour_threshold", self.quota.five_hour_threshold),
            ("quota.weekly_threshold", self.quota.weekly_threshold),
        ] {
            if !(0.0..=100.0).contains(&value) {
                check.add(key, format!("must be a percentage from 0 to 100, found {value}"));
            }
        }
    }

    fn validate_http(&self, check: &mut Check) {
        match Listen::parse(&self.http.listen) {
            Err(why) => check.add("http.listen", why),
            Ok(listen) => {
                if !listen.is_local() && self.http.token_file.is_empty() {
                    check.add(
                        "http.listen",
                        format!(
                            "{listen} is reachable from other machines and http.token_file is empty: \
                             that would open the control plane to the network without auth; \
                             set http.token_file or listen on 127.0.0.1, ::1 or unix:/path"
                        ),
                    );
                }
            }
        }
    }

    fn validate_projects(&self, check: &mut Check) {
        let mut roots: Vec<(usize, PathBuf)> = Vec::new();
        for (i, p) in self.projects.iter().enumerate() {
            if p.path.as_os_str().is_empty() {
                check.add(&format!("projects[{i}].path"), "must not be empty");
                continue;
            }
            let key = format!("projects[{i}].queue_dir");
            if let Some(why) = bad_queue_dir(&p.queue_dir) {
                check.add(&key, why);
                continue;
            }
            let root = normalize(&p.queue_root());
            if let Some((j, _)) = roots.iter().find(|(_, r)| *r == root) {
                check.add(
                    &key,
                    format!(
                        "queue folder {} is also the queue of projects[{j}] ({:?}): each project needs its own",
                        root.display(),
                        self.projects[*j].name
                    ),
                );
            }
            roots.push((i, root));
        }
    }
}

/// Flags the daemon passes itself; a second copy from `claude.args` would
/// start the wrong conversation or none.
const DAEMON_ARGS: &[&str] = &["--resume", "-r", "--continue", "-c", "--session-id", "--print", "-p", "--fork-session"];

/// Variables that pick the account: setting them would bypass failover.
const DAEMON_ENV: &[&str] =
    &["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "CLAUDE_CONFIG_DIR"];

macro_rules! durations {
    ($ty:ty { $($method:ident => $field:ident),* $(,)? }) => {
        impl $ty {
            $(
                #[doc = concat!("`", stringify!($field), "` as a Duration.")]
                pub fn $method(&self) -> Duration {
                    Duration::from_secs(self.$field)
                }
            )*
        }
    };
}

durations!(ClaudeConfig { startup_timeout => startup_timeout_secs, stop_timeout => stop_timeout_secs });
durations!(QuotaConfig {
    poll_interval => poll_interval_secs,
    request_timeout => request_timeout_secs,
    min_dwell => min_dwell_secs,
});
durations!(DispatchConfig { settle => settle_secs, submit_confirm => submit_confirm_secs });
durations!(JanitorConfig {
    interval => interval_secs,
    archive_done_after => archive_done_after_secs,
    prune_checkpoints_after => prune_checkpoints_after_secs,
});
durations!(NotifyConfig { min_interval => min_interval_secs });

impl HttpConfig {
    /// The parsed `listen` value. Validation guarantees it parses; a config
    /// built by hand with a bad value falls back to the default address.
    pub fn listen_addr(&self) -> Listen {
        Listen::parse(&self.listen).unwrap_or_else(|_| Listen::Tcp(std::net::SocketAddr::from(([127, 0, 0, 1], 8787))))
    }
}

impl Listen {
    /// `HOST:PORT` with an IP address (`[::1]:8787` for IPv6) or `unix:/absolute/path`.
    pub fn parse(s: &str) -> Result<Listen, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(format!(
                    "{s:?}: a unix socket needs an absolute path, e.g. unix:/run/claude-failover/control.sock"
                ));
            }
            return Ok(Listen::Unix(path));
        }
        s.parse().map(Listen::Tcp).map_err(|_| {
            format!(
                "{s:?} is not an address: expected IP:PORT (e.g. 127.0.0.1:8787 or [::1]:8787) \
                 or unix:/absolute/path"
            )
        })
    }

    /// Reachable only from this machine: a unix socket or a loopback address.
    pub fn is_local(&self) -> bool {
        match self {
            Listen::Unix(_) => true,
            Listen::Tcp(a) => match a.ip() {
                IpAddr::V4(ip) => ip.is_loopback(),
                IpAddr::V6(ip) => ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
            },
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

// ---- the shape check: every unknown key and wrong type, not just the first ----

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
    /// A non-negative integer up to this value.
    Uint(u64),
    Float,
    StrList,
    StrMap,
    Table(&'static [Field]),
    TableList(&'static [Field]),
}

struct Field {
    key: &'static str,
    kind: Kind,
    required: bool,
}

const fn opt(key: &'static str, kind: Kind) -> Field {
    Field { key, kind, required: false }
}

const fn req(key: &'static str, kind: Kind) -> Field {
    Field { key, kind, required: true }
}

const SECS: Kind = Kind::Uint(i64::MAX as u64);

const ROOT: &[Field] = &[
    opt("state_dir", Kind::Str),
    opt("claude", Kind::Table(CLAUDE)),
    opt("tmux", Kind::Table(TMUX)),
    opt("quota", Kind::Table(QUOTA)),
    opt("dispatch", Kind::Table(DISPATCH)),
    opt("janitor", Kind::Table(JANITOR)),
    opt("http", Kind::Table(HTTP)),
    opt("notify", Kind::Table(NOTIFY)),
    opt("accounts", Kind::TableList(ACCOUNT)),
    opt("projects", Kind::TableList(PROJECT)),
    opt("sessions", Kind::TableList(SESSION)),
];
const CLAUDE: &[Field] = &[
    opt("binary", Kind::Str),
    opt("args", Kind::StrList),
    opt("env", Kind::StrMap),
    opt("shared_projects_dir", Kind::Str),
    opt("auto_trust", Kind::Bool),
    opt("startup_timeout_secs", SECS),
    opt("stop_timeout_secs", SECS),
];
const TMUX: &[Field] = &[
    opt("socket_name", Kind::Str),
    opt("width", Kind::Uint(u16::MAX as u64)),
    opt("height", Kind::Uint(u16::MAX as u64)),
];
const QUOTA: &[Field] = &[
    opt("usage_url", Kind::Str),
    opt("poll_interval_secs", SECS),
    opt("request_timeout_secs", SECS),
    opt("five_hour_threshold", Kind::Float),
    opt("weekly_threshold", Kind::Float),
    opt("failback", Kind::Bool),
    opt("min_dwell_secs", SECS),
];
const DISPATCH: &[Field] = &[
    opt("enabled", Kind::Bool),
    opt("settle_secs", SECS),
    opt("submit_confirm_secs", SECS),
    opt("max_attempts", Kind::Uint(u32::MAX as u64)),
    opt("max_task_bytes", Kind::Uint(i64::MAX as u64)),
];
const JANITOR: &[Field] =
    &[opt("interval_secs", SECS), opt("archive_done_after_secs", SECS), opt("prune_checkpoints_after_secs", SECS)];
const HTTP: &[Field] = &[opt("listen", Kind::Str), opt("token_file", Kind::Str)];
const NOTIFY: &[Field] =
    &[opt("min_interval_secs", SECS), opt("telegram", Kind::Table(TELEGRAM)), opt("webhook", Kind::Table(WEBHOOK))];
const TELEGRAM: &[Field] = &[opt("bot_token_file", Kind::Str), req("chat_id", Kind::Str), opt("api_base", Kind::Str)];
const WEBHOOK: &[Field] = &[req("url", Kind::Str)];
const ACCOUNT: &[Field] = &[req("name", Kind::Str), req("config_dir", Kind::Str)];
const PROJECT: &[Field] = &[req("name", Kind::Str), req("path", Kind::Str), opt("queue_dir", Kind::Str)];
const SESSION: &[Field] = &[req("name", Kind::Str), req("project", Kind::Str), opt("dispatch", Kind::Bool)];

/// Removes unknown and mistyped keys (reporting each) and fills missing
/// required keys with placeholders, so serde can then build the rest.
fn check_table(table: &mut toml::Table, fields: &[Field], at: &str, out: &mut Vec<(String, String)>) {
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        let path = join_key(at, &key);
        let Some(field) = fields.iter().find(|f| f.key == key) else {
            out.push((path, unknown_key(&key, fields)));
            table.remove(&key);
            continue;
        };
        let keep = match table.get_mut(&key) {
            Some(value) => check_value(value, field.kind, &path, out),
            None => true,
        };
        if !keep && field.required {
            // Already reported; the placeholder keeps "missing" from being said too.
            table.insert(key, placeholder(field.kind));
        } else if !keep {
            table.remove(&key);
        }
    }
    for field in fields.iter().filter(|f| f.required) {
        if !table.contains_key(field.key) {
            out.push((join_key(at, field.key), "missing: this key is required".into()));
            table.insert(field.key.into(), placeholder(field.kind));
        }
    }
}

/// Checks one value; false means it is unusable and was reported.
fn check_value(value: &mut toml::Value, kind: Kind, path: &str, out: &mut Vec<(String, String)>) -> bool {
    use toml::Value as V;
    let mut wrong = |expected: &str, value: &V| {
        out.push((path.to_string(), format!("expected {expected}, found {}", describe(value))));
        false
    };
    match (kind, &mut *value) {
        (Kind::Str, V::String(_)) | (Kind::Bool, V::Boolean(_)) => true,
        (Kind::Float, V::Float(_)) => true,
        (Kind::Float, V::Integer(i)) => {
            *value = V::Float(*i as f64);
            true
        }
        (Kind::Uint(max), V::Integer(i)) => {
            if *i < 0 || *i as u64 > max {
                out.push((path.to_string(), format!("must be a whole number from 0 to {max}, found {i}")));
                false
            } else {
                true
            }
        }
        (Kind::StrList, V::Array(items)) => {
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                if !item.is_str() {
                    out.push((format!("{path}[{i}]"), format!("expected a string, found {}", describe(item))));
                    ok = false;
                }
            }
            ok
        }
        (Kind::StrMap, V::Table(map)) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if let Some(item) = map.get(&key).filter(|v| !v.is_str()) {
                    out.push((join_key(path, &key), format!("expected a string, found {}", describe(item))));
                    map.remove(&key);
                }
            }
            true
        }
        (Kind::Table(fields), V::Table(t)) => {
            check_table(t, fields, path, out);
            true
        }
        (Kind::TableList(fields), V::Array(items)) => {
            for (i, item) in items.iter_mut().enumerate() {
                let at = format!("{path}[{i}]");
                match item {
                    V::Table(t) => check_table(t, fields, &at, out),
                    other => {
                        out.push((at, format!("expected a table, found {}", describe(other))));
                        // Keep the index of every later entry stable.
                        *other = placeholder(Kind::Table(fields));
                    }
                }
            }
            true
        }
        (Kind::TableList(_), V::Table(_)) => {
            let name = path.rsplit('.').next().unwrap_or(path);
            wrong(&format!("an array of tables (write [[{name}]], not [{name}])"), value)
        }
        (kind, _) => {
            let expected = match kind {
                Kind::Str => "a string",
                Kind::Bool => "true or false",
                Kind::Uint(_) => "a whole number",
                Kind::Float => "a number",
                Kind::StrList => "an array of strings",
                Kind::StrMap => "a table of strings",
                Kind::Table(_) => "a table",
                Kind::TableList(_) => "an array of tables",
            };
            wrong(expected, value)
        }
    }
}

fn placeholder(kind: Kind) -> toml::Value {
    match kind {
        Kind::Table(fields) | Kind::TableList(fields) => {
            let mut t = toml::Table::new();
            for f in fields.iter().filter(|f| f.required) {
                t.insert(f.key.into(), placeholder(f.kind));
            }
            toml::Value::Table(t)
        }
        _ => toml::Value::String(String::new()),
    }
}

fn describe(value: &toml::Value) -> String {
    use toml::Value as V;
    match value {
        V::String(_) => "a string".into(),
        V::Integer(i) => format!("the integer {i}"),
        V::Float(x) => format!("the number {x}"),
        V::Boolean(b) => format!("{b}"),
        V::Datetime(_) => "a date-time".into(),
        V::Array(_) => "an array".into(),
        V::Table(_) => "a table".into(),
    }
}

fn unknown_key(key: &str, fields: &[Field]) -> String {
    let close = fields
        .iter()
        .map(|f| (edit_distance(key, f.key), f.key))
        .filter(|(d, name)| {
            *d <= (key.len() / 4).max(1) || (key.len() >= 4 && (name.starts_with(key) || key.starts_with(name)))
        })
        .min_by_key(|(d, _)| *d);
    if let Some((_, name)) = close {
        return format!("unknown key (did you mean {name:?}?)");
    }
    let mut homes = Vec::new();
    sections_with(key, ROOT, "", &mut homes);
    match homes.first() {
        Some(home) => format!("unknown key here (it belongs in {home})"),
        None => "unknown key".into(),
    }
}

/// The sections (`[quota]`, `[[accounts]]`) that have a key by this name.
fn sections_with(key: &str, fields: &[Field], at: &str, out: &mut Vec<String>) {
    for f in fields {
        let path = join_key(at, f.key);
        match f.kind {
            Kind::Table(sub) => {
                if sub.iter().any(|s| s.key == key) {
                    out.push(format!("[{path}]"));
                }
                sections_with(key, sub, &path, out);
            }
            Kind::TableList(sub) if sub.iter().any(|s| s.key == key) => {
                out.push(format!("[[{path}]]"));
            }
            _ => {}
        }
    }
}

/// Edits (insert, delete, substitute, swap two neighbours) from `a` to `b`:
/// optimal string alignment distance, so "qouta" is one edit from "quota".
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

fn join_key(at: &str, key: &str) -> String {
    if at.is_empty() {
        quote_key(key)
    } else {
        format!("{at}.{}", quote_key(key))
    }
}

/// A key as TOML would need it written: bare when it can be.
fn quote_key(key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        return key.to_string();
    }
    let mut out = String::from("\"");
    for c in key.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// True when `reported` is `key` or one of its parents.
fn covers(reported: &str, key: &str) -> bool {
    key.strip_prefix(reported).is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

fn syntax_problem(text: &str, e: &toml::de::Error) -> (String, String) {
    let message = syntax_reason(e.message().trim_end());
    let Some(span) = e.span() else {
        return ("(syntax)".into(), format!("not valid TOML: {message}"));
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ("(syntax)".into(), format!("line {line}, column {column}: {message}"))
}

/// toml's own words for a syntax error, under the headline this program has
/// always given for the constructs a user most often leaves open: toml 1.x
/// says "unclosed table, expected `]`" where the messages users and scripts
/// know say "invalid table header".
fn syntax_reason(toml_message: &str) -> String {
    const HEADLINES: &[(&str, &str)] = &[
        ("unclosed table", "invalid table header"),
        ("unclosed array table", "invalid table header"),
        ("unclosed array", "invalid array"),
        ("unclosed inline table", "invalid inline table"),
    ];
    let head = toml_message.split(", expected").next().unwrap_or(toml_message);
    match HEADLINES.iter().find(|(said, _)| *said == head) {
        Some((_, headline)) => format!("{headline}: {toml_message}"),
        None => toml_message.to_string(),
    }
}

// ---- validation helpers ----

#[derive(Default)]
struct Check(Vec<(String, String)>);

impl Check {
    fn add(&mut self, key: &str, message: impl Into<String>) {
        self.0.push((key.to_string(), message.into()));
    }
}

/// Reads a token; problems name the key and the path, never the content.
fn read_secret(path: &Path, key: &str, check: &mut Check) -> Option<Secret> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            check.add(key, format!("cannot read {}: {e}", path.display()));
            return None;
        }
    };
    let Ok(text) = String::from_utf8(bytes) else {
        check.add(key, format!("{} is not UTF-8 text", path.display()));
        return None;
    };
    let token = text.trim();
    if token.is_empty() {
        check.add(key, format!("{} is empty", path.display()));
        return None;
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        check.add(key, format!("{} holds more than one line or word; it must hold only the token", path.display()));
        return None;
    }
    Some(Secret::new(token.to_string()))
}

fn check_names(check: &mut Check, list: &str, names: &[&str]) {
    for (i, name) in names.iter().enumerate() {
        let key = format!("{list}[{i}].name");
        if let Some(why) = bad_name(name) {
            check.add(&key, why);
        } else if let Some(j) = names[..i].iter().position(|n| n == name) {
            check.add(&key, format!("duplicate name {name:?} (also {list}[{j}])"));
        }
    }
}

/// Names become tmux session names and file names: keep them plain.
fn bad_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.chars().count() > 64 {
        return Some(format!("{name:?} is longer than 64 characters"));
    }
    if name.starts_with('-') {
        return Some(format!("{name:?} must not start with '-' (tools would read it as an option)"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_alphanumeric() || *c == '-' || *c == '_')) {
        return Some(format!(
            "{name:?} contains {c:?}: use only letters, digits, '-' and '_' \
             (it is used as a tmux session name and a file name)"
        ));
    }
    None
}

fn bad_socket_name(name: &str) -> Option<String> {
    if name.chars().any(|c| c == '/' || c.is_whitespace() || c.is_control()) {
        return Some(format!(
            "{name:?} must be a plain name (tmux -L NAME), without '/', spaces or control characters"
        ));
    }
    None
}

fn bad_queue_dir(dir: &Path) -> Option<String> {
    if dir.is_absolute() {
        return Some(format!("{} is absolute: queue_dir is relative to the project's path", dir.display()));
    }
    if dir.components().any(|c| matches!(c, Component::ParentDir)) {
        return Some(format!("{} leaves the project folder: '..' is not allowed in queue_dir", dir.display()));
    }
    if !dir.components().any(|c| matches!(c, Component::Normal(_))) {
        return Some("must name a folder inside the project, e.g. \".agent-queue\"".into());
    }
    None
}

fn check_url(check: &mut Check, key: &str, url: &str) {
    let why = match ureq::http::Uri::try_from(url) {
        Err(_) => Some(format!("{url:?} is not a URL")),
        Ok(uri) => match (uri.scheme_str(), uri.host()) {
            (Some("http") | Some("https"), Some(h)) if !h.is_empty() => None,
            (Some("http") | Some("https"), _) => Some(format!("{url:?} has no host")),
            _ => Some(format!("{url:?} must start with http:// or https://")),
        },
    };
    if let Some(why) = why {
        check.add(key, why);
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The file as the operator named it, made absolute. Symlinks are not
/// followed: a linked /etc/claude-failover/config.toml anchors relative paths
/// in /etc/claude-failover, where the operator sees it.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).map(|p| p.components().collect()).unwrap_or_else(|_| path.to_path_buf())
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.as_os_str().is_empty() || p.is_absolute() {
        return p.to_path_buf();
    }
    // Collecting components drops "./" and interior "." without touching "..".
    base.join(p).components().collect()
}

/// Lexical: "a/./b/../c" is "a/c". Used only to compare configured folders.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn same_path(a: &Path, b: &Path) -> bool {
    normalize(a) == normalize(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("listen", "listen"), 0);
        assert_eq!(edit_distance("five_hour_treshold", "five_hour_threshold"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("qouta", "quota"), 1);
    }

    #[test]
    fn covers_matches_the_key_and_its_children_only() {
        assert!(covers("accounts[1]", "accounts[1].name"));
        assert!(covers("accounts", "accounts"));
        assert!(covers("accounts", "accounts[0].name"));
        assert!(!covers("accounts[1]", "accounts[10].name"));
        assert!(!covers("http.token", "http.token_file"));
    }

    #[test]
    fn keys_are_quoted_as_toml_writes_them() {
        assert_eq!(quote_key("A_1-b"), "A_1-b");
        assert_eq!(quote_key("a.b"), "\"a.b\"");
        assert_eq!(quote_key("a\"b\\"), "\"a\\\"b\\\\\"");
        assert_eq!(quote_key("\u{7}"), "\"\\u0007\"");
        assert_eq!(quote_key(""), "\"\"");
    }

    #[test]
    fn listen_parses_and_classifies() {
        let cases = [
            ("127.0.0.1:8787", true),
            ("127.1.2.3:1", true),
            ("[::1]:8787", true),
            ("[::ffff:127.0.0.1]:80", true),
            ("0.0.0.0:8787", false),
            ("[::]:8787", false),
            ("192.168.1.5:80", false),
            ("unix:/run/cf.sock", true),
        ];
        for (s, local) in cases {
            let l = Listen::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(l.is_local(), local, "{s}");
        }
        for bad in ["localhost:8787", "127.0.0.1", "unix:run/x.sock", "", "8787"] {
            assert!(Listen::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_match_only_themselves() {
        let s = Secret::new("abc123".into());
        assert!(s.matches("abc123"));
        for other in ["", "abc12", "abc1234", "abc124", "ABC123"] {
            assert!(!s.matches(other), "{other}");
        }
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }

    /// Whatever shape the TOML has, the shape check leaves serde nothing to
    /// reject: every problem carries a real key, never "(schema)".
    #[test]
    fn odd_shapes_are_caught_before_serde() {
        let odd = [
            "claude = []",
            "[[claude]]\nbinary = 1",
            "accounts = \"x\"",
            "accounts = [1, {name = \"a\"}, []]",
            "sessions = [{}]",
            "[notify]\ntelegram = []\nwebhook = 1",
            "[notify.telegram]\nchat_id = 1\napi_base = 2",
            "[claude]\nenv = []\nargs = {}",
            "[claude.env]\nA = {}",
            "state_dir = 1979-05-27T07:32:00Z",
            "[quota]\nfive_hour_threshold = \"90\"\npoll_interval_secs = 1.5",
            "[dispatch]\nmax_attempts = 4294967296",
            "[tmux]\nwidth = true",
            "[[projects]]\nname = []\npath = {}\nqueue_dir = 1",
            "[[accounts]]\n[[accounts]]\n[[sessions]]",
        ];
        for text in odd {
            let err = Config::from_toml(text, Path::new("/nowhere/c.toml")).unwrap_err();
            assert!(err.problems.iter().all(|p| p.key != "(schema)" && !p.key.is_empty()), "{text:?}:\n{err}");
        }
    }

    #[test]
    fn names_are_plain() {
        assert!(bad_name("ccl-auto_11").is_none());
        for bad in ["", "a.b", "a:b", "a/b", "a b", "a\tb", "-x", "a\u{7}"] {
            assert!(bad_name(bad).is_some(), "{bad:?}");
        }
    }
}
