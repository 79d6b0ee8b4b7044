//! A fleet of daemons on one machine for the `[fleet]` tests: one temp
//! folder, one fake API (its quota per token, so per account), a real
//! three-member etcd cluster ([`EtcdCluster`]) and several hosts, each with
//! its own tmux server, state dir, project, sessions, HTTP port and account
//! folders (its own login of each account: the same token, as two logins of
//! one subscription would be), all in `<root>/hosts/<name>/`.

use super::accounts;
use super::config::ConfigBuilder;
use super::etcd::{EtcdCluster, Security};
use super::fake_api::FakeApi;
use super::tmux::TmuxServer;
use super::{wait_until, Daemon};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The etcd prefix of every fleet rig.
pub const PREFIX: &str = "/cf-test/";

#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub hosts: Vec<String>,
    pub accounts: Vec<String>,
    /// Sessions per host (named `<host>-s<i>`).
    pub sessions: usize,
    pub policy: String,
    pub poll_interval_secs: u64,
    pub lease_ttl_secs: u64,
    /// More `(table, key, value)` settings for every host.
    pub more: Vec<(&'static str, &'static str, toml::Value)>,
    /// How the etcd cluster is secured; every host gets what it needs to
    /// reach it (the TLS files, the user and a password file).
    pub security: Security,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            hosts: vec!["h1".into(), "h2".into()],
            accounts: vec!["alpha".into(), "beta".into()],
            sessions: 1,
            policy: "shared".into(),
            poll_interval_secs: 2,
            lease_ttl_secs: 3,
            more: Vec::new(),
            security: Security::default(),
        }
    }
}

/// One host of the fleet: its folder, tmux server, port, config and daemon.
pub struct Host {
    pub name: String,
    pub dir: PathBuf,
    pub port: u16,
    pub config: String,
    pub sessions: Vec<String>,
    pub daemon: Option<Daemon>,
    pub tmux: TmuxServer,
}

impl Host {
    pub fn start(&mut self) {
        self.start_with_env(&[]);
    }

    /// Starts the daemon with more environment (e.g. [`clock_ahead`]).
    pub fn start_with_env(&mut self, env: &[(&str, &str)]) {
        assert!(self.daemon.is_none(), "{} runs already", self.name);
        self.daemon = Some(Daemon::start(&self.dir, &self.config, self.port, env));
    }

    /// SIGKILL: its leases are left to expire.
    pub fn kill(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.kill();
        }
    }

    pub fn status(&self) -> Option<Value> {
        super::http::get_json(self.port, "/status")
    }

    pub fn fleet(&self) -> Option<Value> {
        self.status().map(|s| s["fleet"].clone()).filter(|f| !f.is_null())
    }

    pub fn active(&self) -> Option<String> {
        self.status()?["active_account"].as_str().map(str::to_string)
    }

    pub fn events(&self) -> Vec<Value> {
        super::http::events(self.port)
    }

    pub fn count_events(&self, kind: &str) -> usize {
        self.events().iter().filter(|e| e["kind"] == kind).count()
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        super::http::request(self.port, "POST", path, Some(body), &[("Content-Type", "application/json")])
            .unwrap_or((0, String::new()))
    }

    /// Every session idle on `account`, no swap running.
    pub fn all_idle_on(&self, account: &str) -> Option<()> {
        let status = self.status()?;
        if status["swap"]["in_progress"] != false || status["active_account"] != account {
            return None;
        }
        let list = status["sessions"].as_array()?;
        (list.len() == self.sessions.len() && list.iter().all(|s| s["account"] == account && s["state"] == "idle"))
            .then_some(())
    }

    pub fn wait_all_idle_on(&self, account: &str, timeout: Duration) {
        wait_until(timeout, &format!("{}: every session idle on {account}", self.name), || self.all_idle_on(account));
    }

    /// The fleet section says `state`.
    pub fn wait_fleet_state(&self, state: &str, timeout: Duration) -> Value {
        wait_until(timeout, &format!("{}: fleet state {state}", self.name), || {
            self.fleet().filter(|f| f["state"] == state)
        })
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    pub fn project(&self) -> PathBuf {
        self.dir.join("projects/proj")
    }

    /// Drops a task into this host's project inbox.
    pub fn drop_task(&self, name: &str, text: &str) {
        let inbox = self.project().join(".agent-queue/inbox");
        std::fs::create_dir_all(&inbox).expect("inbox");
        let tmp = inbox.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("task");
        std::fs::rename(&tmp, inbox.join(name)).expect("rename the task in");
    }

    pub fn result(&self, name: &str) -> Option<Value> {
        let file = format!("{}.result.json", name.strip_suffix(".md").unwrap_or(name));
        let text = std::fs::read_to_string(self.project().join(".agent-queue/done").join(file)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// The environment that makes a daemon's wall clock run `by` ahead (e.g.
/// `"+2h"`) through Debian's libfaketime (`apt-get install faketime`, as
/// `.ci/run` does); its monotonic clock is left alone.
pub fn clock_ahead(by: &'static str) -> Vec<(&'static str, &'static str)> {
    const LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    assert!(Path::new(LIB).exists(), "{LIB} is missing: apt-get install faketime (as .ci/run does)");
    vec![("LD_PRELOAD", LIB), ("FAKETIME", by), ("FAKETIME_DONT_FAKE_MONOTONIC", "1")]
}

/// Fields drop in order: hosts (daemons, tmux) first, etcd, the folder last.
pub struct FleetRig {
    pub hosts: Vec<Host>,
    pub etcd: EtcdCluster,
    pub api: FakeApi,
    pub root: PathBuf,
    pub options: FleetOptions,
    pub dir: tempfile::TempDir,
}

impl FleetRig {
    pub fn new(options: FleetOptions) -> FleetRig {
        let dir = super::temp_dir();
        let root = dir.path().canonicalize().expect("temp dir");
        let etcd = EtcdCluster::secured(&root, 3, options.security.clone());
        let api = FakeApi::start();
        let hosts = options.hosts.iter().map(|h| host(&root, h, &options, &api, &etcd)).collect();
        FleetRig { hosts, etcd, api, root, options, dir }
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts.iter().find(|h| h.name == name).unwrap_or_else(|| panic!("no host {name}"))
    }

    pub fn host_mut(&mut self, name: &str) -> &mut Host {
        self.hosts.iter_mut().find(|h| h.name == name).unwrap_or_else(|| panic!("no host {name}"))
    }

    pub fn start_all(&mut self) {
        for h in &mut self.hosts {
            h.start();
        }
    }

    /// Usage calls the fake API answered for `account`, fleet-wide.
    pub fn usage_calls(&self, account: &str) -> u64 {
        self.api.usage_calls(&accounts::token(account))
    }
}

fn host(root: &Path, name: &str, o: &FleetOptions, api: &FakeApi, etcd: &EtcdCluster) -> Host {
    let dir = root.join("hosts").join(name);
    let project = dir.join("projects/proj");
    std::fs::create_dir_all(&project).expect("project dir");
    let tmux = TmuxServer::new();
    let port = super::free_port();
    let sessions: Vec<String> = (1..=o.sessions).map(|i| format!("{name}-s{i}")).collect();
    let mut config = ConfigBuilder::base(&dir, tmux.socket_name(), port)
        .set("claude", "binary", super::claude_binary().display().to_string())
        .set("claude", "startup_timeout_secs", 60)
        .set("claude", "stop_timeout_secs", 10)
        .fake_api(&api.url())
        .set("quota", "poll_interval_secs", o.poll_interval_secs as i64)
        .set("quota", "request_timeout_secs", 2)
        .set("quota", "min_dwell_secs", 0)
        .set("quota", "failback", false)
        .set("dispatch", "settle_secs", 1)
        .set("dispatch", "submit_confirm_secs", 5)
        .set("fleet", "endpoints", etcd.endpoints())
        .set("fleet", "prefix", PREFIX)
        .set("fleet", "host", name)
        .set("fleet", "lease_ttl_secs", o.lease_ttl_secs as i64)
        .set("fleet", "policy", o.policy.as_str());
    if let Some(tls) = etcd.tls_files() {
        for (key, file) in [("ca_file", &tls.ca), ("cert_file", &tls.cert), ("key_file", &tls.key)] {
            config = config.set("fleet", key, file.display().to_string());
        }
    }
    if let Some(user) = &o.security.user {
        let file = dir.join("etcd-password");
        std::fs::write(&file, format!("{}\n", user.password)).expect("password file");
        config = config.set("fleet", "username", user.name.as_str()).set(
            "fleet",
            "password_file",
            file.display().to_string(),
        );
    }
    for (table, key, value) in &o.more {
        config = config.set(table, key, value.clone());
    }
    for a in &o.accounts {
        let account = accounts::create(&dir.join("accounts"), a, &[project.as_path()]);
        config = config.account(&account.name, &account.dir);
    }
    config = config.project("proj", &project);
    for s in &sessions {
        config = config.session(s, "proj");
    }
    let config = config.render();
    std::fs::write(dir.join("config.toml"), &config).expect("config");
    let out = Command::new(super::daemon_binary())
        .args(["setup", "--config"])
        .arg(dir.join("config.toml"))
        .env("RUST_LOG", "warn")
        .output()
        .expect("run setup");
    assert!(out.status.success(), "setup of {name} failed: {}", String::from_utf8_lossy(&out.stderr));
    Host { name: name.into(), dir, port, config, sessions, daemon: None, tmux }
}

impl Drop for FleetRig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for h in &self.hosts {
                let log = h.log_text();
                let tail: Vec<&str> = log
                    .lines()
                    .filter(|l| !l.contains(" ureq") && !l.contains("usage polled"))
                    .rev()
                    .take(80)
                    .collect();
                eprintln!("--- {} daemon log (last lines) ---", h.name);
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        if std::env::var_os("CF_KEEP_RIG").is_some() {
            let kept = self.dir.path().to_path_buf();
            std::mem::forget(std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir")));
            eprintln!("fleet rig kept at {}", kept.display());
        }
    }
}
