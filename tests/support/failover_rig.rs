//! A whole failover rig for end-to-end tests and the failover benchmark: the
//! real `claude-failover run` over real Claude Code sessions in a private tmux
//! server, accounts whose tokens the fake API keeps quota for, one project
//! with a task queue, and helpers to read `/status`, `/events` and the panes.
//!
//! Self-contained but for `super::fake_api`, so that examples/bench_failover.rs
//! can include it by `#[path]` next to the fake API, as the tests do through
//! `support`.
#![allow(dead_code)]

use super::fake_api::FakeApi;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const PROJECT: &str = "proj";

/// The access token the fake API knows an account by.
pub fn token(account: &str) -> String {
    format!("sk-ant-oat01-TEST-{account}")
}

/// What a rig is made of; `Options::default()` is two accounts (alpha, beta),
/// two sessions and fast polling.
#[derive(Debug, Clone)]
pub struct Options {
    pub accounts: Vec<String>,
    pub sessions: usize,
    pub poll_interval_secs: u64,
    pub request_timeout_secs: u64,
    pub min_dwell_secs: u64,
    pub settle_secs: u64,
    pub failback: bool,
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
        }
    }
}

/// Polls `f` until it returns Some, or panics naming `what` after `timeout`.
pub fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub api: FakeApi,
    pub options: Options,
    pub socket: String,
    pub port: u16,
    pub project: PathBuf,
    pub config: PathBuf,
    pub daemon_bin: PathBuf,
    pub claude_bin: PathBuf,
    daemon: Option<Child>,
}

impl Rig {
    /// Writes the accounts, the project and the config, runs
    /// `claude-failover setup` (shared transcript tree, hooks); starts nothing.
    pub fn new(daemon_bin: &Path, claude_bin: &Path, options: Options) -> Rig {
        let dir = tempfile::Builder::new().prefix("cf-failover-").tempdir().expect("temp dir");
        let api = FakeApi::start();
        let project = dir.path().join("project");
        std::fs::create_dir_all(&project).expect("project dir");
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let socket = format!("cf-failover-{}-{nanos}", std::process::id());
        let port = super::fake_api::free_listen_port();
        let rig = Rig {
            config: dir.path().join("config.toml"),
            dir,
            api,
            options,
            socket,
            port,
            project,
            daemon_bin: daemon_bin.into(),
            claude_bin: claude_bin.into(),
            daemon: None,
        };
        for a in rig.options.accounts.clone() {
            rig.write_account(&a);
        }
        std::fs::write(&rig.config, rig.config_text()).expect("config");
        let out = Command::new(&rig.daemon_bin)
            .args(["setup", "--config"])
            .arg(&rig.config)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run setup");
        assert!(out.status.success(), "setup failed: {}", String::from_utf8_lossy(&out.stderr));
        rig
    }

    pub fn account_dir(&self, account: &str) -> PathBuf {
        self.dir.path().join("accounts").join(account)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn session_names(&self) -> Vec<String> {
        (1..=self.options.sessions).map(|i| format!("s{i}")).collect()
    }

    fn write_account(&self, account: &str) {
        let dir = self.account_dir(account);
        std::fs::create_dir_all(&dir).expect("account dir");
        let expires = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() + 8 * 3_600_000;
        let creds = serde_json::json!({"claudeAiOauth": {
            "accessToken": token(account), "refreshToken": format!("sk-ant-ort01-TEST-{account}"),
            "expiresAt": expires as u64, "scopes": ["user:inference", "user:profile"], "subscriptionType": "max"}});
        std::fs::write(dir.join(".credentials.json"), creds.to_string()).expect("credentials");
        let claude = serde_json::json!({"hasCompletedOnboarding": true, "theme": "dark",
            "projects": {self.project.to_string_lossy(): {"hasTrustDialogAccepted": true}}});
        std::fs::write(dir.join(".claude.json"), claude.to_string()).expect(".claude.json");
    }

    fn config_text(&self) -> String {
        let o = &self.options;
        let dir = self.dir.path().display();
        let mut text = format!(
            r#"state_dir = "{dir}/state"
[claude]
binary = "{claude}"
shared_projects_dir = "{dir}/shared"
startup_timeout_secs = 60
stop_timeout_secs = 10
env = {{ ANTHROPIC_BASE_URL = "{api}", CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = "1", DISABLE_TELEMETRY = "1", DISABLE_AUTOUPDATER = "1" }}
[tmux]
socket_name = "{socket}"
[quota]
usage_url = "{api}/api/oauth/usage"
poll_interval_secs = {poll}
request_timeout_secs = {timeout}
min_dwell_secs = {dwell}
failback = {failback}
[dispatch]
settle_secs = {settle}
submit_confirm_secs = 5
[http]
listen = "127.0.0.1:{port}"
[[projects]]
name = "{PROJECT}"
path = "{project}"
"#,
            claude = self.claude_bin.display(),
            api = self.api.url(),
            socket = self.socket,
            poll = o.poll_interval_secs,
            timeout = o.request_timeout_secs,
            dwell = o.min_dwell_secs,
            failback = o.failback,
            settle = o.settle_secs,
            port = self.port,
            project = self.project.display(),
        );
        for a in &o.accounts {
            text.push_str(&format!(
                "[[accounts]]\nname = \"{a}\"\nconfig_dir = \"{}\"\n",
                self.account_dir(a).display()
            ));
        }
        for s in self.session_names() {
            text.push_str(&format!("[[sessions]]\nname = \"{s}\"\nproject = \"{PROJECT}\"\n"));
        }
        text
    }

    /// Starts the daemon (log appended to `<dir>/daemon.log`) and waits for
    /// its `/healthz`.
    pub fn start_daemon(&mut self) {
        assert!(self.daemon.is_none(), "the daemon runs already");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .expect("daemon log");
        let child = Command::new(&self.daemon_bin)
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info,claude_failover=debug")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn the daemon");
        self.daemon = Some(child);
        wait_until(Duration::from_secs(20), "the daemon's /healthz", || {
            self.http("GET", "/healthz", None).ok().filter(|(code, _)| *code == 200).map(|_| ())
        });
    }

    /// SIGKILL: no chance to tidy anything.
    pub fn kill_daemon(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for the clean exit (tmux sessions stay).
    pub fn stop_daemon(&mut self) -> Option<i32> {
        let mut child = self.daemon.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let status = wait_until(Duration::from_secs(15), "the daemon to exit", || child.try_wait().ok().flatten());
        status.code()
    }

    /// The daemon process is still running (it did not crash).
    pub fn daemon_alive(&mut self) -> bool {
        self.daemon.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn http(&self, method: &str, path: &str, body: Option<&str>) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        let code = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Ok((code, body))
    }

    pub fn status(&self) -> Option<Value> {
        let (code, body) = self.http("GET", "/status", None).ok()?;
        (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
    }

    pub fn events(&self) -> Vec<Value> {
        let Some((200, body)) = self.http("GET", "/events?since=0", None).ok() else { return Vec::new() };
        serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.get("events").and_then(Value::as_array).cloned())
            .unwrap_or_default()
    }

    pub fn count_events(&self, kind: &str) -> usize {
        self.events().iter().filter(|e| e["kind"] == kind).count()
    }

    /// `(name, account, state, claude_session_id)` of every session.
    pub fn sessions(&self) -> Option<Vec<(String, String, String, String)>> {
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
        let sessions = self.sessions()?;
        let ok = sessions.len() == self.options.sessions
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

    pub fn queue_dir(&self, folder: &str) -> PathBuf {
        self.project.join(".agent-queue").join(folder)
    }

    /// Drops a task into the inbox (written aside, renamed in).
    pub fn drop_task(&self, name: &str, text: &str) {
        let inbox = self.queue_dir("inbox");
        std::fs::create_dir_all(&inbox).expect("inbox");
        let tmp = inbox.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("task");
        std::fs::rename(&tmp, inbox.join(name)).expect("rename the task in");
    }

    /// The `result.json` of a finished task, once it is in done/.
    pub fn result(&self, name: &str) -> Option<Value> {
        let stem = name.strip_suffix(".md").unwrap_or(name);
        let text = std::fs::read_to_string(self.queue_dir("done").join(format!("{stem}.result.json"))).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Names of the `*.md` tasks in a queue folder.
    pub fn tasks_in(&self, folder: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.queue_dir(folder))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".md") && !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    pub fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `(session, pane pid)` of every tmux session on the rig's server.
    pub fn panes(&self) -> Vec<(String, u32)> {
        self.tmux(&["list-panes", "-a", "-F", "#{session_name} #{pane_pid}"])
            .lines()
            .filter_map(|l| {
                let (s, p) = l.split_once(' ')?;
                Some((s.to_string(), p.parse().ok()?))
            })
            .collect()
    }

    pub fn screen(&self, session: &str) -> String {
        self.tmux(&["capture-pane", "-p", "-t", session])
    }

    /// The CLAUDE_CONFIG_DIR a pane's process runs with.
    pub fn pane_config_dir(pid: u32) -> Option<String> {
        let bytes = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        bytes
            .split(|b| *b == 0)
            .find_map(|kv| std::str::from_utf8(kv).ok()?.strip_prefix("CLAUDE_CONFIG_DIR=").map(str::to_string))
    }

    /// Usage calls the fake API answered for `account` so far.
    pub fn usage_calls(&self, account: &str) -> u64 {
        self.api.usage_calls(&token(account))
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
            for (session, _) in self.panes() {
                eprintln!("--- screen of {session} ---\n{}", self.screen(&session));
            }
        }
        self.kill_daemon();
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
        if std::env::var_os("CF_KEEP_RIG").is_some() {
            let kept = self.dir.path().to_path_buf();
            std::mem::forget(std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir")));
            eprintln!("rig kept at {}", kept.display());
        }
    }
}
