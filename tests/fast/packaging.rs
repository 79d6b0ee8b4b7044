//! The systemd design the package ships, checked without systemd: the tmux server
//! lives in its own unit (claude-failover-tmux@), the daemon units only want it and
//! tell the daemon, through CLAUDE_FAILOVER_TMUX_SERVER=external, never to start a
//! server itself. The .deb, lintian, dpkg and chroot checks are in packaging/check.sh.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kit::{daemon_binary, repo_root, temp_dir, unique_name, wait_until, write};

/// `(section, key, value)` for every assignment in a packaged unit file.
fn unit(name: &str) -> Vec<(String, String, String)> {
    let path = repo_root().join("packaging").join(name);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut section = String::new();
    let mut entries = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            entries.push((section.clone(), k.to_string(), v.to_string()));
        }
    }
    entries
}

fn values(entries: &[(String, String, String)], section: &str, key: &str) -> Vec<String> {
    entries.iter().filter(|(s, k, _)| s == section && k == key).map(|(_, _, v)| v.clone()).collect()
}

fn one(entries: &[(String, String, String)], section: &str, key: &str) -> String {
    let v = values(entries, section, key);
    assert_eq!(v.len(), 1, "[{section}] {key}= expected once, found {v:?}");
    v[0].clone()
}

#[test]
fn daemon_units_want_the_tmux_unit_and_never_start_a_server() {
    for (name, tmux_unit) in [
        ("claude-failover.service", "claude-failover-tmux@root.service"),
        ("claude-failover@.service", "claude-failover-tmux@%i.service"),
    ] {
        let u = unit(name);
        let wants = values(&u, "Unit", "Wants").join(" ");
        let after = values(&u, "Unit", "After").join(" ");
        assert!(wants.split(' ').any(|w| w == tmux_unit), "{name}: Wants= lacks {tmux_unit}");
        assert!(after.split(' ').any(|w| w == tmux_unit), "{name}: After= lacks {tmux_unit}");
        // Requires/BindsTo/PartOf would make stopping the daemon stop the sessions.
        for key in ["Requires", "BindsTo", "PartOf", "Requisite"] {
            assert!(values(&u, "Unit", key).is_empty(), "{name}: {key}= ties the tmux unit to the daemon");
        }
        let env = values(&u, "Service", "Environment");
        assert!(
            env.iter().any(|e| e == "CLAUDE_FAILOVER_TMUX_SERVER=external"),
            "{name}: the daemon must be told the tmux server is external"
        );
        assert_eq!(one(&u, "Service", "Type"), "notify", "{name}");
        assert_eq!(one(&u, "Service", "NotifyAccess"), "main", "{name}");
        assert_eq!(one(&u, "Service", "WatchdogSec"), "30", "{name}");
        assert_eq!(one(&u, "Service", "Restart"), "on-failure", "{name}");
        assert_eq!(one(&u, "Service", "ExecReload"), "/bin/kill -HUP $MAINPID", "{name}");
        assert_eq!(one(&u, "Service", "RestartPreventExitStatus"), "78", "{name}");
        // The tmux socket in /tmp/tmux-UID/ must be the one the tmux unit made.
        assert_eq!(one(&u, "Service", "PrivateTmp"), "no", "{name}");
    }
    let template = unit("claude-failover@.service");
    assert_eq!(one(&template, "Service", "User"), "%i");

    let tmux = unit("claude-failover-tmux@.service");
    assert_eq!(one(&tmux, "Service", "User"), "%i");
    // `tmux kill-server` exits 0; the daemon still needs a server afterwards.
    assert_eq!(one(&tmux, "Service", "Restart"), "always");
    for key in ["PrivateTmp", "ProtectHome", "ProtectSystem", "NoNewPrivileges", "MemoryDenyWriteExecute"] {
        assert!(values(&tmux, "Service", key).is_empty(), "the panes' unit must not set {key}=");
    }
}

/// The tmux unit's ExecStart, with its socket variable replaced by `socket`.
fn tmux_unit_command(socket: &str) -> Vec<String> {
    let u = unit("claude-failover-tmux@.service");
    one(&u, "Service", "ExecStart")
        .split_whitespace()
        .map(|w| w.replace("${CLAUDE_FAILOVER_TMUX_SOCKET}", socket))
        .collect()
}

/// A tmux server started as the tmux unit starts it, in a private TMUX_TMPDIR.
struct TmuxServer {
    child: Child,
    socket: String,
    tmpdir: PathBuf,
}

impl TmuxServer {
    fn start(tmpdir: &Path, socket: &str) -> TmuxServer {
        let cmd = tmux_unit_command(socket);
        let child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .env("TMUX_TMPDIR", tmpdir)
            .stdin(Stdio::null())
            .spawn()
            .expect("start tmux as the unit does");
        let server = TmuxServer { child, socket: socket.to_string(), tmpdir: tmpdir.to_path_buf() };
        wait_until(Duration::from_secs(10), "the tmux server to answer", || {
            server.tmux(&["list-sessions"]).status.success().then_some(())
        });
        server
    }

    /// A tmux client that must not start a server (what the daemon runs when
    /// CLAUDE_FAILOVER_TMUX_SERVER=external).
    fn tmux(&self, args: &[&str]) -> std::process::Output {
        tmux_no_start(&self.tmpdir, &self.socket, args)
    }
}

impl Drop for TmuxServer {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tmux_no_start(tmpdir: &Path, socket: &str, args: &[&str]) -> std::process::Output {
    Command::new("tmux")
        .arg("-N")
        .args(["-L", socket])
        .args(args)
        .env("TMUX_TMPDIR", tmpdir)
        .stdin(Stdio::null())
        .output()
        .expect("run tmux")
}

fn socket_path(tmpdir: &Path, socket: &str) -> PathBuf {
    let uid = fs::metadata("/proc/self").expect("/proc/self").uid();
    tmpdir.join(format!("tmux-{uid}")).join(socket)
}

fn parent_pid(pid: u32) -> u32 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // The command name is in parentheses and may hold spaces: fields follow the last ')'.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    rest.split(' ').nth(1).expect("ppid").parse().expect("ppid number")
}

#[test]
fn tmux_unit_runs_a_server_that_holds_sessions_no_client_owns() {
    let dir = temp_dir();
    let socket = unique_name("cf-pkg");

    // With -N a client never starts a server: the daemon's side of the contract.
    let out = tmux_no_start(dir.path(), &socket, &["new-session", "-d", "-s", "work", "sleep 300"]);
    assert!(!out.status.success(), "tmux -N started a server");
    assert!(!socket_path(dir.path(), &socket).exists(), "tmux -N created a socket");

    let mut server = TmuxServer::start(dir.path(), &socket);
    let out = server.tmux(&["new-session", "-d", "-s", "work", "sleep 300"]);
    assert!(out.status.success(), "new-session: {}", String::from_utf8_lossy(&out.stderr));

    // The pane is the server's child, not the client's: under systemd it sits in
    // the tmux unit's cgroup, whatever happens to the daemon that asked for it.
    let out = server.tmux(&["list-panes", "-t", "work", "-F", "#{pane_pid}"]);
    let pane: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("pane pid");
    assert_eq!(parent_pid(pane), server.child.id(), "the pane's parent is not the unit's tmux server");

    // With no session left the server stays (`-D` turns exit-empty off) and answers.
    assert!(server.tmux(&["kill-session", "-t", "work"]).status.success());
    assert!(server.tmux(&["list-sessions"]).status.success(), "the server left with its last session");
    assert!(server.child.try_wait().expect("try_wait").is_none(), "the server exited with its last session");

    // kill-server ends it with status 0: hence Restart=always on the unit.
    assert!(server.tmux(&["kill-server"]).status.success());
    let status =
        wait_until(Duration::from_secs(10), "the tmux server to exit", || server.child.try_wait().expect("try_wait"));
    assert!(status.success(), "tmux exited {status} after kill-server");
}

/// The daemon's side, end to end: with CLAUDE_FAILOVER_TMUX_SERVER=external and no
/// server, it starts none, keeps running and reports the session dead; once the
/// unit's server is up it launches the session there, and a SIGKILL of the daemon
/// (a watchdog kill) leaves that session running.
#[test]
fn daemon_in_external_tmux_mode_never_starts_a_server() {
    let dir = temp_dir();
    let root = dir.path();
    let socket = unique_name("cf-pkg-daemon");
    let tmpdir = root.join("tmux");
    fs::create_dir_all(&tmpdir).expect("tmux dir");

    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let closed_port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let fake_claude = root.join("fake-claude");
    write(&fake_claude, "#!/bin/sh\nexec sleep 300\n");
    fs::set_permissions(&fake_claude, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let account = root.join("account-a");
    write(
        &account.join(".credentials.json"),
        r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-TEST-A","refreshToken":"sk-ant-ort01-TEST-A","expiresAt":4102444800000,"scopes":["user:inference","user:profile"],"subscriptionType":"max"}}"#,
    );
    fs::create_dir_all(root.join("project")).expect("project dir");
    let config = root.join("config.toml");
    write(
        &config,
        &format!(
            r#"state_dir = "{root}/state"

[claude]
binary = "{claude}"
shared_projects_dir = "{root}/shared-projects"
startup_timeout_secs = 60

[tmux]
socket_name = "{socket}"

[quota]
usage_url = "http://127.0.0.1:{closed_port}/api/oauth/usage"

[http]
listen = "127.0.0.1:{port}"

[[accounts]]
name = "alpha"
config_dir = "{account}"

[[projects]]
name = "proj"
path = "{root}/project"

[[sessions]]
name = "{socket}-s1"
project = "proj"
dispatch = false
"#,
            root = root.display(),
            claude = fake_claude.display(),
            account = account.display(),
        ),
    );

    let stderr = fs::File::create(root.join("daemon.log")).expect("log file");
    let mut daemon = Command::new(daemon_binary())
        .args(["run", "--config"])
        .arg(&config)
        .env("CLAUDE_FAILOVER_TMUX_SERVER", "external")
        .env("TMUX_TMPDIR", &tmpdir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start the daemon");
    let session = format!("{socket}-s1");
    let status_url = format!("http://127.0.0.1:{port}/status");
    let session_state = |daemon: &mut Child| -> Option<String> {
        if let Some(status) = daemon.try_wait().expect("try_wait") {
            let log = fs::read_to_string(root.join("daemon.log")).unwrap_or_default();
            panic!("the daemon exited ({status}) with no tmux server; it must keep running:\n{log}");
        }
        let body = ureq::get(&status_url).call().ok()?.body_mut().read_to_string().ok()?;
        let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
        doc["sessions"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == session.as_str())
            .and_then(|s| s["state"].as_str().map(str::to_string))
    };

    wait_until(Duration::from_secs(30), "the daemon to report the session dead", || {
        (session_state(&mut daemon).as_deref() == Some("dead")).then_some(())
    });
    assert!(
        !socket_path(&tmpdir, &socket).exists(),
        "the daemon started a tmux server although CLAUDE_FAILOVER_TMUX_SERVER=external"
    );

    let server = TmuxServer::start(&tmpdir, &socket);
    wait_until(Duration::from_secs(60), "the daemon to launch its session in the unit's server", || {
        server.tmux(&["has-session", "-t", &session]).status.success().then_some(())
    });

    daemon.kill().expect("SIGKILL the daemon");
    daemon.wait().expect("reap the daemon");
    assert!(server.tmux(&["has-session", "-t", &session]).status.success(), "the session died with the daemon");
}
