//! The whole daemon rig for runs with real Claude Code: a temp folder, the
//! fake API, a private tmux server, account folders that need no login
//! (credentials, onboarding, trusted projects), project folders, a config
//! naming all of them, and readers of `/status`, `/events`, the queue
//! folders and the panes. The daemon itself is a [`Daemon`] the test holds
//! ([`Rig::start`]), so it can kill and restart it.
//!
//! Layout under the temp folder (canonical path `root`): `accounts/<name>`,
//! `projects/<name>`, `state/`, `shared/`, `config.toml`, `daemon.log`.

use super::accounts::{self, Account};
use super::config::ConfigBuilder;
use super::fake_api::FakeApi;
use super::tmux::TmuxServer;
use super::{wait_until, Daemon};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The project of a [`Rig::failover`] rig.
pub const PROJECT: &str = "proj";

/// A failover rig's shape; `Options::default()` is two accounts (alpha,
/// beta), two sessions and fast polling.
#[derive(Debug, Clone)]
pub struct Options {
    pub accounts: Vec<String>,
    pub sessions: usize,
    pub poll_interval_secs: u64,
    pub request_timeout_secs: u64,
    pub min_dwell_secs: u64,
    pub settle_secs: u64,
    pub failback: bool,
    /// More `(table, key, value)` settings, set after the ones above.
    pub more: Vec<(&'static str, &'static str, toml::Value)>,
    /// An `api_key` account after the subscriptions (see
    /// [`RigBuilder::api_key_account`]).
    pub api_key: Option<ApiKeyAccount>,
}

/// An `[[accounts]]` entry of kind `api_key`: its name, its key (written to
/// `<root>/keys/<name>`) and its daily cap in USD.
#[derive(Debug, Clone)]
pub struct ApiKeyAccount {
    pub name: String,
    pub key: String,
    pub max_spend_usd_per_day: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            accounts: vec!["alpha".into(), "beta".into()],
            sessions: 2,
            poll_interval_secs: 1,
            request_timeout_secs: 2,
            min_dwell_secs: 0,
            settle_secs: 1,
            failback: true,
            more: Vec::new(),
            api_key: None,
        }
    }
}

/// What a [`Rig`] is made of, set piece by piece; [`RigBuilder::build`] lays it out.
#[derive(Debug, Clone)]
pub struct RigBuilder {
    projects: Vec<String>,
    /// None: every project trusted by every account.
    trusted: Option<Vec<String>>,
    sessions: Vec<(String, String)>,
    accounts: Vec<String>,
    claude: Option<PathBuf>,
    args: Vec<String>,
    settings: Vec<(String, String, toml::Value)>,
    extra: String,
    setup: bool,
    api_keys: Vec<ApiKeyAccount>,
}

impl RigBuilder {
    /// Every account (default alpha, beta), in this order.
    pub fn accounts(mut self, names: &[&str]) -> RigBuilder {
        self.accounts = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Only these projects are trusted (the others show the trust dialog).
    pub fn trust(mut self, projects: &[&str]) -> RigBuilder {
        self.trusted = Some(projects.iter().map(|s| s.to_string()).collect());
        self
    }

    /// Another program (and arguments) as Claude Code.
    pub fn claude(mut self, binary: &Path, args: &[&str]) -> RigBuilder {
        self.claude = Some(binary.into());
        self.args = args.iter().map(|s| s.to_string()).collect();
        self
    }

    /// A config key (see [`ConfigBuilder::set`]).
    pub fn set(mut self, table: &str, key: &str, value: impl Into<toml::Value>) -> RigBuilder {
        self.settings.push((table.into(), key.into(), value.into()));
        self
    }

    /// An `api_key` account after the others: its folder has Claude Code's
    /// onboarding done and the projects trusted, and no login.
    pub fn api_key_account(mut self, account: ApiKeyAccount) -> RigBuilder {
        self.api_keys.push(account);
        self
    }

    /// More TOML tables (e.g. a `[dispatch]` table).
    pub fn extra(mut self, text: &str) -> RigBuilder {
        self.extra.push_str(text);
        self
    }

    /// Runs `claude-failover setup` (shared transcript tree, hooks) once laid out.
    pub fn setup(mut self) -> RigBuilder {
        self.setup = true;
        self
    }

    pub fn build(self) -> Rig {
        let dir = super::temp_dir();
        let root = dir.path().canonicalize().expect("temp dir");
        let api = FakeApi::start();
        let tmux = TmuxServer::new();
        let port = super::free_port();
        let projects: Vec<(String, PathBuf)> =
            self.projects.iter().map(|p| (p.clone(), root.join("projects").join(p))).collect();
        for (_, p) in &projects {
            std::fs::create_dir_all(p).expect("project dir");
        }
        let trusted: Vec<&Path> = projects
            .iter()
            .filter(|(n, _)| self.trusted.as_ref().is_none_or(|t| t.contains(n)))
            .map(|(_, p)| p.as_path())
            .collect();
        let accounts: Vec<Account> =
            self.accounts.iter().map(|a| accounts::create(&root.join("accounts"), a, &trusted)).collect();
        let claude = self.claude.unwrap_or_else(super::claude_binary);
        let mut config = ConfigBuilder::base(&root, tmux.socket_name(), port)
            .set("claude", "binary", claude.display().to_string())
            .set("claude", "startup_timeout_secs", 120)
            .fake_api(&api.url());
        if !self.args.is_empty() {
            config = config.set("claude", "args", self.args.clone());
        }
        for (table, key, value) in self.settings {
            config = config.set(&table, &key, value);
        }
        config = config.extra(&self.extra);
        for a in &accounts {
            config = config.account(&a.name, &a.dir);
        }
        for k in &self.api_keys {
            let dir = root.join("accounts").join(&k.name);
            accounts::write(&dir, "", &trusted);
            let _ = std::fs::remove_file(dir.join(".credentials.json"));
            let key_file = root.join("keys").join(&k.name);
            super::write(&key_file, &format!("{}\n", k.key));
            config = config.entry(
                "accounts",
                &[
                    ("name", k.name.as_str().into()),
                    ("config_dir", dir.display().to_string().into()),
                    ("kind", "api_key".into()),
                    ("api_key_file", key_file.display().to_string().into()),
                    ("max_spend_usd_per_day", k.max_spend_usd_per_day.into()),
                ],
            );
        }
        for (name, path) in &projects {
            config = config.project(name, path);
        }
        for (session, project) in &self.sessions {
            config = config.session(session, project);
        }
        let rig =
            Rig { tmux, api, port, config: config.render(), root, projects, accounts, sessions: self.sessions, dir };
        if self.setup {
            std::fs::write(rig.config_path(), &rig.config).expect("config");
            let out = Command::new(super::daemon_binary())
                .args(["setup", "--config"])
                .arg(rig.config_path())
                .env("RUST_LOG", "warn")
                .output()
                .expect("run setup");
            assert!(out.status.success(), "setup failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        rig
    }
}

/// Fields drop in order after [`Rig`]'s own drop: the tmux server (and its
/// Claude Code processes) first, the temp folder last.
pub struct Rig {
    pub tmux: TmuxServer,
    pub api: FakeApi,
    pub port: u16,
    /// The config text [`Rig::start`] writes.
    pub config: String,
    /// The temp folder's canonical path.
    pub root: PathBuf,
    /// (name, path) of every project.
    pub projects: Vec<(String, PathBuf)>,
    pub accounts: Vec<Account>,
    /// (session, project) of every session.
    pub sessions: Vec<(String, String)>,
    pub dir: tempfile::TempDir,
}

impl Rig {
    /// `projects`: names; `sessions`: (session, project). Accounts alpha and
    /// beta trusting every project, Claude Code's startup timeout 120 s.
    pub fn builder(projects: &[&str], sessions: &[(&str, &str)]) -> RigBuilder {
        RigBuilder {
            projects: projects.iter().map(|s| s.to_string()).collect(),
            trusted: None,
            sessions: sessions.iter().map(|(s, p)| (s.to_string(), p.to_string())).collect(),
            accounts: vec!["alpha".into(), "beta".into()],
            claude: None,
            args: Vec::new(),
            settings: Vec::new(),
            extra: String::new(),
            setup: false,
            api_keys: Vec::new(),
        }
    }

    /// [`Rig::builder`] with `extra` TOML tables, built.
    pub fn new(projects: &[&str], sessions: &[(&str, &str)], extra: &str) -> Rig {
        Rig::builder(projects, sessions).extra(extra).build()
    }

    /// The rig of a failover rig (see [`Failover`]).
    fn failover(options: &Options) -> Rig {
        let sessions: Vec<String> = (1..=options.sessions).map(|i| format!("s{i}")).collect();
        let pairs: Vec<(&str, &str)> = sessions.iter().map(|s| (s.as_str(), PROJECT)).collect();
        let accounts: Vec<&str> = options.accounts.iter().map(String::as_str).collect();
        let mut builder = Rig::builder(&[PROJECT], &pairs)
            .accounts(&accounts)
            .set("claude", "startup_timeout_secs", 60)
            .set("claude", "stop_timeout_secs", 10)
            .set("quota", "poll_interval_secs", options.poll_interval_secs as i64)
            .set("quota", "request_timeout_secs", options.request_timeout_secs as i64)
            .set("quota", "min_dwell_secs", options.min_dwell_secs as i64)
            .set("quota", "failback", options.failback)
            .set("dispatch", "settle_secs", options.settle_secs as i64)
            .set("dispatch", "submit_confirm_secs", 5)
            .setup();
        for (table, key, value) in &options.more {
            builder = builder.set(table, key, value.clone());
        }
        if let Some(k) = &options.api_key {
            builder = builder.api_key_account(k.clone());
        }
        builder.build()
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// Starts the daemon (config and log in the rig's folder) and waits for its `/healthz`.
    pub fn start(&self) -> Daemon {
        Daemon::start(&self.root, &self.config, self.port, &[])
    }

    /// Starts it with more environment (e.g. `RUST_LOG`).
    pub fn start_with(&self, env: &[(&str, &str)]) -> Daemon {
        Daemon::start(&self.root, &self.config, self.port, env)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.root.join("daemon.log")).unwrap_or_default()
    }

    pub fn account_dir(&self, account: &str) -> PathBuf {
        self.root.join("accounts").join(account)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    pub fn session_names(&self) -> Vec<String> {
        self.sessions.iter().map(|(s, _)| s.clone()).collect()
    }

    pub fn project(&self, name: &str) -> &Path {
        &self.projects.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no project {name}")).1
    }

    /// `<project>/.agent-queue/<folder>`.
    pub fn folder(&self, project: &str, folder: &str) -> PathBuf {
        self.project(project).join(".agent-queue").join(folder)
    }

    /// Drops a task the careful way: written under a dot-name, renamed in.
    pub fn drop_task(&self, project: &str, name: &str, text: &str) {
        let inbox = self.folder(project, "inbox");
        std::fs::create_dir_all(&inbox).expect("inbox");
        let tmp = inbox.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("task");
        std::fs::rename(&tmp, inbox.join(name)).expect("rename the task in");
    }

    /// The task files (`*.md`, no side files) in a queue folder, sorted.
    pub fn tasks(&self, project: &str, folder: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.folder(project, folder))
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.retain(|n| n.ends_with(".md") && !n.starts_with('.'));
        names.sort();
        names
    }

    /// `done/NAME.result.json` (or `.error.json` in failed/), parsed; panics if absent.
    pub fn side_json(&self, project: &str, folder: &str, file: &str) -> Value {
        let path = self.folder(project, folder).join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", path.display()))
    }

    /// The `result.json` of a finished task, once it is in done/.
    pub fn result(&self, project: &str, name: &str) -> Option<Value> {
        let file = format!("{}.result.json", stem(name));
        let text = std::fs::read_to_string(self.folder(project, "done").join(file)).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn http(&self, method: &str, path: &str, body: Option<&str>) -> std::io::Result<(u16, String)> {
        super::http::request(self.port, method, path, body, &[("Content-Type", "application/json")])
    }

    pub fn status(&self) -> Option<Value> {
        super::http::get_json(self.port, "/status")
    }

    /// Every event in the `/events` ring (none if it does not answer).
    pub fn events(&self) -> Vec<Value> {
        super::http::events(self.port)
    }

    pub fn count_events(&self, kind: &str) -> usize {
        self.events().iter().filter(|e| e["kind"] == kind).count()
    }

    /// `(name, account, state, claude_session_id)` of every session.
    pub fn session_rows(&self) -> Option<Vec<(String, String, String, String)>> {
        let status = self.status()?;
        let list = status.get("sessions")?.as_array()?;
        Some(
            list.iter()
                .map(|s| {
                    let f = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                    (f("name"), f("account"), f("state"), f("claude_session_id"))
                })
                .collect(),
        )
    }

    /// Every configured session idle on `account`, no swap running: their
    /// conversation ids by session name.
    pub fn all_idle_on(&self, account: &str) -> Option<Vec<(String, String)>> {
        let status = self.status()?;
        if status["swap"]["in_progress"] != false || status["active_account"] != account {
            return None;
        }
        let sessions = self.session_rows()?;
        let ok = sessions.len() == self.sessions.len()
            && sessions.iter().all(|(_, a, state, id)| a == account && state == "idle" && !id.is_empty());
        ok.then(|| sessions.into_iter().map(|(n, _, _, id)| (n, id)).collect())
    }

    pub fn wait_all_idle_on(&self, account: &str, timeout: Duration) -> Vec<(String, String)> {
        wait_until(timeout, &format!("every session idle on {account}"), || self.all_idle_on(account))
    }

    /// One account's entry in `/status` `accounts`.
    pub fn account_status(&self, account: &str) -> Option<Value> {
        let status = self.status()?;
        status["accounts"].as_array()?.iter().find(|a| a["name"] == account).cloned()
    }

    /// Usage calls the fake API answered for `account` so far.
    pub fn usage_calls(&self, account: &str) -> u64 {
        self.api.usage_calls(&accounts::token(account))
    }

    /// Waits until the daemon polled `account` `n` more times: proof that it
    /// looked, without a bare sleep.
    pub fn wait_polls(&self, account: &str, n: u64, timeout: Duration) {
        let start = self.usage_calls(account);
        wait_until(timeout, &format!("{n} more usage polls of {account}"), || {
            (self.usage_calls(account) >= start + n).then_some(())
        });
    }
}

/// A [`Rig`] shaped for failover runs: one project ([`PROJECT`]) with
/// sessions `s1..sN`, quota polling and dispatch tuned by [`Options`],
/// `setup` run; it holds its daemon, and its helpers speak of that one
/// project. Everything else is the rig's (through `Deref`).
pub struct Failover {
    daemon: Option<Daemon>,
    pub options: Options,
    pub rig: Rig,
}

impl std::ops::Deref for Failover {
    type Target = Rig;
    fn deref(&self) -> &Rig {
        &self.rig
    }
}

impl Failover {
    pub fn new(options: Options) -> Failover {
        Failover { rig: Rig::failover(&options), options, daemon: None }
    }

    /// The project's folder.
    pub fn project(&self) -> &Path {
        self.rig.project(PROJECT)
    }

    /// Starts the daemon (see [`Rig::start`]); it runs until killed, stopped or dropped.
    pub fn start_daemon(&mut self) {
        assert!(self.daemon.is_none(), "the daemon runs already");
        self.daemon = Some(self.rig.start());
    }

    /// SIGKILL: no chance to tidy anything.
    pub fn kill_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.kill();
        }
    }

    /// SIGTERM and wait for the clean exit (tmux sessions stay).
    pub fn stop_daemon(&mut self) -> Option<i32> {
        self.daemon.take()?.stop()
    }

    /// The daemon process is still running (it did not crash).
    pub fn daemon_alive(&mut self) -> bool {
        self.daemon.as_mut().is_some_and(Daemon::alive)
    }

    /// `(name, account, state, claude_session_id)` of every session.
    pub fn sessions(&self) -> Option<Vec<(String, String, String, String)>> {
        self.rig.session_rows()
    }

    pub fn queue_dir(&self, folder: &str) -> PathBuf {
        self.rig.folder(PROJECT, folder)
    }

    /// Drops a task into the project's inbox.
    pub fn drop_task(&self, name: &str, text: &str) {
        self.rig.drop_task(PROJECT, name, text)
    }

    /// The `result.json` of a finished task, once it is in done/.
    pub fn result(&self, name: &str) -> Option<Value> {
        self.rig.result(PROJECT, name)
    }

    /// Names of the `*.md` tasks in a queue folder.
    pub fn tasks_in(&self, folder: &str) -> Vec<String> {
        self.rig.tasks(PROJECT, folder)
    }

    pub fn tmux(&self, args: &[&str]) -> String {
        self.rig.tmux.run(args)
    }

    /// `(session, pane pid)` of every tmux session on the rig's server.
    pub fn panes(&self) -> Vec<(String, u32)> {
        self.rig.tmux.panes()
    }

    pub fn screen(&self, session: &str) -> String {
        self.rig.tmux.screen(session)
    }

    /// The CLAUDE_CONFIG_DIR a pane's process runs with.
    pub fn pane_config_dir(pid: u32) -> Option<String> {
        super::tmux::config_dir_of(pid)
    }
}

/// `/status` of a rig's daemon as JSON.
pub fn status(daemon: &Daemon) -> Option<Value> {
    daemon.status()
}

/// Waits until every named session is idle per `/status`.
pub fn wait_idle(daemon: &Daemon, sessions: &[&str], timeout: Duration) {
    wait_until(timeout, &format!("sessions {sessions:?} to be idle"), || {
        let st = daemon.status()?;
        let all = st["sessions"].as_array()?;
        sessions.iter().all(|name| all.iter().any(|s| s["name"] == *name && s["state"] == "idle")).then_some(())
    });
}

/// The side-file stem of a task name: `fix.md` → `fix`, `notes.txt` → `notes.txt`.
pub fn stem(name: &str) -> &str {
    name.strip_suffix(".md").unwrap_or(name)
}

impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log_text();
            // ureq logs every request at debug whatever RUST_LOG says.
            let tail: Vec<&str> =
                log.lines().filter(|l| !l.contains(" ureq") && !l.contains("usage polled")).rev().take(150).collect();
            eprintln!("--- daemon log (last lines) ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            for (session, _) in self.tmux.panes() {
                eprintln!("--- screen of {session} ---\n{}", self.tmux.screen(&session));
            }
        }
        if std::env::var_os("CF_KEEP_RIG").is_some() {
            let kept = self.dir.path().to_path_buf();
            std::mem::forget(std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir")));
            eprintln!("rig kept at {}", kept.display());
        }
    }
}
