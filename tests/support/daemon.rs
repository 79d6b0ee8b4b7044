//! The real `claude-failover run` in a temp folder: a config written from
//! parts, stderr captured to a file, HTTP on a free loopback port, and the
//! process killed when the handle drops.

use super::{bin, wait_for};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A free loopback port for the daemon's HTTP (see `free_listen_port`).
pub fn free_port() -> u16 {
    super::fake_api::free_listen_port()
}

/// A minimal valid config: two accounts, no sessions, HTTP on `port`;
/// `extra` is appended (more sections or keys of later tables).
pub fn config_text(dir: &Path, port: u16, extra: &str) -> String {
    format!(
        r#"state_dir = "{state}"
[claude]
shared_projects_dir = "{dir}/shared"
[tmux]
socket_name = "{socket}"
[http]
listen = "127.0.0.1:{port}"
{extra}
[[accounts]]
name = "alpha"
config_dir = "{dir}/accounts/alpha"
[[accounts]]
name = "beta"
config_dir = "{dir}/accounts/beta"
"#,
        state = dir.join("state").display(),
        dir = dir.display(),
        socket = super::unique_name("cf-daemon"),
    )
}

pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `run --config <dir>/config.toml` with `env`, waits for /healthz.
    pub fn start(dir: &Path, config: &str, port: u16, env: &[(&str, &str)]) -> Daemon {
        let d = Daemon::spawn(dir, config, port, env);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while d.get("/healthz").ok().filter(|(code, _)| *code == 200).is_none() {
            if std::time::Instant::now() >= deadline {
                let last = d.get("/healthz").map_or_else(|e| e.to_string(), |(c, b)| format!("{c} {b}"));
                let sockets = Command::new("ss")
                    .args(["-tanpoe", &format!("( sport = :{port} or dport = :{port} )")])
                    .output()
                    .map_or_else(|e| format!("ss: {e}"), |o| String::from_utf8_lossy(&o.stdout).into_owned());
                panic!(
                    "timed out after 20s waiting for the daemon's /healthz (last: {last})\n\
                     --- sockets on {port} ---\n{sockets}\n--- log ---\n{}",
                    d.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    /// Starts it without waiting for anything.
    pub fn spawn(dir: &Path, config: &str, port: u16, env: &[(&str, &str)]) -> Daemon {
        let path = dir.join("config.toml");
        std::fs::write(&path, config).unwrap();
        let log = dir.join("daemon.log");
        let mut cmd = Command::new(bin());
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
            .unwrap();
        Daemon { child, port, config: path, log }
    }

    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        self.request("GET", path, None, &[])
    }

    /// A plain HTTP/1.1 request; returns status and body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> std::io::Result<(u16, String)> {
        http(self.port, method, path, body, headers)
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        wait_for(timeout, "the daemon to exit", || self.child.try_wait().unwrap()).code()
    }

    /// The events of one kind in the `/events` ring.
    pub fn events(&self, kind: &str) -> Vec<serde_json::Value> {
        let (_, body) = self.get("/events?since=0").expect("an answer from /events");
        let all: serde_json::Value = serde_json::from_str(&body).expect("/events answers JSON");
        all["events"].as_array().into_iter().flatten().filter(|e| e["kind"] == kind).cloned().collect()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let code = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((code, body))
}
