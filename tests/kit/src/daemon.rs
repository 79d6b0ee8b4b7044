//! The real `claude-failover run` in a folder: its config written there, its
//! stderr to `daemon.log` there, HTTP on a loopback port, and the process
//! killed when the handle drops.

use super::{daemon_binary, wait_until, ConfigBuilder};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A minimal valid config: two accounts (alpha, beta) under `<dir>/accounts`,
/// no sessions, HTTP on `port`, a tmux socket of its own; `extra` goes right
/// after `[http]` (more keys of it, or more tables).
pub fn config_text(dir: &Path, port: u16, extra: &str) -> String {
    ConfigBuilder::base(dir, &super::unique_name("cf-daemon"), port)
        .extra(extra)
        .account("alpha", &dir.join("accounts/alpha"))
        .account("beta", &dir.join("accounts/beta"))
        .render()
}

pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `run --config <dir>/config.toml` with `env` and waits for /healthz.
    pub fn start(dir: &Path, config: &str, port: u16, env: &[(&str, &str)]) -> Daemon {
        let d = Daemon::spawn(dir, config, port, env);
        d.wait_healthy(Duration::from_secs(20));
        d
    }

    /// Starts it without waiting for anything (`RUST_LOG=debug` unless `env` says).
    pub fn spawn(dir: &Path, config: &str, port: u16, env: &[(&str, &str)]) -> Daemon {
        let path = dir.join("config.toml");
        std::fs::write(&path, config).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let log = dir.join("daemon.log");
        let mut cmd = Command::new(daemon_binary());
        cmd.args(["run", "--config"]).arg(&path);
        cmd.env("RUST_LOG", "debug").env_remove("NOTIFY_SOCKET").env_remove("WATCHDOG_USEC");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", daemon_binary().display()));
        Daemon { child, port, config: path, log }
    }

    /// Waits for `/healthz` to answer 200; panics with the sockets on the port
    /// and the log if it does not within `timeout`.
    pub fn wait_healthy(&self, timeout: Duration) {
        let up = super::poll_until(timeout, super::Every::Fixed(Duration::from_millis(50)), || {
            self.get("/healthz").ok().filter(|(code, _)| *code == 200)
        });
        if up.is_none() {
            let port = self.port;
            let last = self.get("/healthz").map_or_else(|e| e.to_string(), |(c, b)| format!("{c} {b}"));
            let sockets = Command::new("ss")
                .args(["-tanpoe", &format!("( sport = :{port} or dport = :{port} )")])
                .output()
                .map_or_else(|e| format!("ss: {e}"), |o| String::from_utf8_lossy(&o.stdout).into_owned());
            panic!(
                "timed out after {timeout:?} waiting for the daemon's /healthz (last: {last})\n\
                 --- sockets on {port} ---\n{sockets}\n--- log ---\n{}",
                self.log_text()
            );
        }
    }

    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        self.request("GET", path, None, &[])
    }

    /// A plain HTTP/1.1 request (see [`super::http::request`]).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> std::io::Result<(u16, String)> {
        super::http::request(self.port, method, path, body, headers)
    }

    /// `/status` as JSON, if it answers 200.
    pub fn status(&self) -> Option<Value> {
        super::http::get_json(self.port, "/status")
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        wait_until(timeout, "the daemon to exit", || self.child.try_wait().unwrap()).code()
    }

    /// SIGTERM and the clean exit's code (tmux sessions stay).
    pub fn stop(&mut self) -> Option<i32> {
        self.signal("TERM");
        self.wait_exit(Duration::from_secs(15))
    }

    /// SIGKILL: no chance to tidy anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process is still running (it did not crash).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The events of one kind in the `/events` ring.
    pub fn events(&self, kind: &str) -> Vec<Value> {
        let (_, body) = self.get("/events?since=0").expect("an answer from /events");
        let all: Value = serde_json::from_str(&body).expect("/events answers JSON");
        all["events"].as_array().into_iter().flatten().filter(|e| e["kind"] == kind).cloned().collect()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}
