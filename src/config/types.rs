//! The schema serde builds from the file, with the documented defaults, and
//! the small value types (secrets, the listen address) the rest of the
//! program reads. No checks here beyond what the types themselves say.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    pub mcp: McpConfig,
    /// `[fleet]`: several hosts sharing the accounts through etcd; absent:
    /// this daemon alone (docs/fleet.md).
    #[serde(default)]
    pub fleet: Option<FleetConfig>,
    #[serde(default)]
    pub log: LogConfig,
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
    /// How the next account is chosen: `priority` or `resets_soonest`.
    pub prefer: String,
    /// After a wait, sessions stopped by a limit are continued spread over
    /// this many seconds, so they do not hit the API in the same instant.
    pub resume_spread_secs: u64,
    /// `[quota.prices."<model>"]`: what `api_key` accounts pay per million
    /// tokens of each model, by the model id the API answers with.
    pub prices: BTreeMap<String, Price>,
}

/// The price of one model, in USD per million tokens of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Tokens written to the prompt cache (`cache_creation_input_tokens`).
    pub cache_write: f64,
    /// Tokens read from the prompt cache (`cache_read_input_tokens`).
    pub cache_read: f64,
}

impl QuotaConfig {
    /// `prefer = "resets_soonest"`: among eligible accounts, the one whose
    /// limiting window resets first goes first.
    pub fn resets_soonest(&self) -> bool {
        self.prefer == PREFER_RESETS_SOONEST
    }

    pub fn resume_spread(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.resume_spread_secs)
    }
}

pub const PREFER_PRIORITY: &str = "priority";
pub const PREFER_RESETS_SOONEST: &str = "resets_soonest";

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
            prefer: PREFER_PRIORITY.into(),
            resume_spread_secs: 10,
            prices: BTreeMap::new(),
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
    /// Names besides the loopback ones a request's `Host` may carry
    /// (docs/http.md#browsers): what defeats DNS rebinding.
    pub allowed_hosts: Vec<String>,
    /// The token read from `token_file` at load time.
    #[serde(skip)]
    pub token: Option<Secret>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8787".into(),
            token_file: String::new(),
            allowed_hosts: Vec::new(),
            token: None,
        }
    }
}

/// `[log]`: how log lines are written (docs/config.md#log).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`; `CLAUDE_FAILOVER_LOG_FORMAT` wins over it.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: "text".into() }
    }
}

/// `[mcp]`: what `claude-failover mcp` may do (docs/mcp.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// Tier names; validation holds them to [`Tier::parse`].
    pub allow: Vec<String>,
    pub token_file: String,
    /// `setup` registers the server in every account's Claude Code.
    pub register: bool,
    /// The token read from `token_file` at load time.
    #[serde(skip)]
    pub token: Option<Secret>,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig { allow: vec!["read".into()], token_file: String::new(), register: false, token: None }
    }
}

/// A permission tier of the control plane: what a token may do. The full
/// `http.token_file` token has every tier; the MCP token has `mcp.allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// Status, events, metrics, task lookup, session output.
    Read,
    /// Adding tasks to a project's inbox.
    Queue,
    /// Failover, pause and resume dispatch, restarting a session.
    Control,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Read, Tier::Queue, Tier::Control];

    pub fn parse(name: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Read => "read",
            Tier::Queue => "queue",
            Tier::Control => "control",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl McpConfig {
    /// The tiers `allow` names (unknown names are a validation error).
    pub fn allowed(&self) -> Vec<Tier> {
        let mut tiers: Vec<Tier> = self.allow.iter().filter_map(|a| Tier::parse(a)).collect();
        tiers.sort();
        tiers.dedup();
        tiers
    }
}

impl Config {
    /// The tiers the MCP server offers: `mcp.allow`, but only `read` while the
    /// control plane has no token (`http.token_file`), since then the daemon
    /// could not hold anyone to a tier.
    pub fn mcp_tiers(&self) -> Vec<Tier> {
        let allowed = self.mcp.allowed();
        if self.http.token.is_some() {
            allowed
        } else {
            allowed.into_iter().filter(|t| *t == Tier::Read).collect()
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
        NotifyConfig { min_interval_secs: 30, telegram: None, webhook: None }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    #[serde(default = "default_bot_token_file")]
    pub bot_token_file: PathBuf,
    pub chat_id: String,
    /// More chats whose messages and button presses are heard (notices go
    /// to `chat_id` only).
    #[serde(default)]
    pub chat_ids: Vec<String>,
    /// When not empty, only these Telegram users may change anything
    /// (write commands, answers to questions).
    #[serde(default)]
    pub user_ids: Vec<i64>,
    /// The event kinds sent to Telegram; None: the notifier's default list.
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
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

/// `[fleet]`: the etcd cluster the hosts of a fleet agree through.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// etcd client URLs (`http://host:2379`), tried in order.
    pub endpoints: Vec<String>,
    /// Every key the fleet writes starts with this.
    #[serde(default = "default_fleet_prefix")]
    pub prefix: String,
    /// This daemon's name in the fleet; empty: the machine's hostname
    /// (filled in at load time).
    #[serde(default)]
    pub host: String,
    /// How long etcd keeps this host's keys (host record, held account,
    /// poll claims) after it stops renewing them.
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl_secs: u64,
    /// `shared` or `exclusive` (see [`FleetPolicy`]).
    #[serde(default = "default_fleet_policy")]
    pub policy: String,
    /// etcd's own authentication (`etcdctl auth enable`): this user, with a
    /// role that may read and write under `prefix`; empty: none.
    #[serde(default)]
    pub username: String,
    /// The user's password, alone in this file (required with `username`).
    #[serde(default)]
    pub password_file: String,
    /// `https://` endpoints: the CA certificate(s) (PEM) that signed etcd's
    /// server certificates; empty: the Mozilla roots.
    #[serde(default)]
    pub ca_file: String,
    /// A client certificate (PEM, with its chain) for etcd's
    /// `--client-cert-auth`, and its private key (`key_file`).
    #[serde(default)]
    pub cert_file: String,
    #[serde(default)]
    pub key_file: String,
    /// The password read from `password_file` at load time.
    #[serde(skip)]
    pub password: Option<Secret>,
}

impl FleetConfig {
    /// Any TLS setting given: every endpoint must then be `https://`.
    pub fn tls(&self) -> bool {
        !(self.ca_file.is_empty() && self.cert_file.is_empty() && self.key_file.is_empty())
    }
}

/// What a fleet guarantees about accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetPolicy {
    /// Every host follows one fleet-wide active account.
    Shared,
    /// Each account is used by at most one host at a time.
    Exclusive,
}

impl FleetPolicy {
    pub fn parse(s: &str) -> Option<FleetPolicy> {
        match s {
            "shared" => Some(FleetPolicy::Shared),
            "exclusive" => Some(FleetPolicy::Exclusive),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FleetPolicy::Shared => "shared",
            FleetPolicy::Exclusive => "exclusive",
        }
    }
}

impl FleetConfig {
    /// The policy; validation holds `policy` to the known names.
    pub fn policy(&self) -> FleetPolicy {
        FleetPolicy::parse(&self.policy).unwrap_or(FleetPolicy::Shared)
    }

    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.lease_ttl_secs)
    }
}

fn default_fleet_prefix() -> String {
    "/claude-failover/".into()
}
fn default_lease_ttl() -> u64 {
    10
}
fn default_fleet_policy() -> String {
    "shared".into()
}

/// The machine's hostname, for `fleet.host`'s default.
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()))
        .unwrap_or_default()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub name: String,
    pub config_dir: PathBuf,
    /// `subscription` (a Claude login, the default) or `api_key` (a paid
    /// key, used only while no subscription can work).
    #[serde(default = "subscription")]
    pub kind: String,
    /// `api_key` accounts: the file holding the key, read at each launch.
    #[serde(default)]
    pub api_key_file: String,
    /// `api_key` accounts: the most they may spend per UTC day.
    #[serde(default)]
    pub max_spend_usd_per_day: Option<f64>,
}

pub const KIND_SUBSCRIPTION: &str = "subscription";
pub const KIND_API_KEY: &str = "api_key";

fn subscription() -> String {
    KIND_SUBSCRIPTION.into()
}

impl AccountConfig {
    /// A paid API key rather than a subscription login.
    pub fn is_api_key(&self) -> bool {
        self.kind == KIND_API_KEY
    }

    /// The day's cap of an `api_key` account (validation makes it present).
    pub fn daily_cap(&self) -> Option<f64> {
        self.max_spend_usd_per_day.filter(|_| self.is_api_key())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
