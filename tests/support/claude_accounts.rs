//! A whole daemon rig for end-to-end runs with the real Claude Code: account
//! folders that need no login (credentials + onboarding + trusted projects),
//! project folders, a config naming the fake API and a private tmux server,
//! and small readers of the queue folders.

use super::daemon::{free_port, Daemon};
use super::fake_api::FakeApi;
use super::tmux::TmuxServer;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Writes `<dir>/.credentials.json` with `token` and `<dir>/.claude.json`
/// trusting every folder of `projects`.
pub fn write_account(dir: &Path, token: &str, projects: &[PathBuf]) {
    let trusted: Vec<&Path> = projects.iter().map(PathBuf::as_path).collect();
    super::accounts::write(dir, token, &format!("{token}-refresh"), &trusted);
}

pub const ALPHA_TOKEN: &str = "sk-ant-oat01-TEST-E2E-ALPHA";
pub const BETA_TOKEN: &str = "sk-ant-oat01-TEST-E2E-BETA";

/// Temp folder, fake API, private tmux server and a config for the daemon.
/// Fields drop in order: the API and tmux server go last.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub api: FakeApi,
    pub tmux: TmuxServer,
    pub port: u16,
    pub config: String,
    /// (name, path) of every project.
    pub projects: Vec<(String, PathBuf)>,
}

impl Rig {
    /// `projects`: names; `sessions`: (session, project); `extra`: more
    /// TOML tables (e.g. a `[dispatch]` table).
    pub fn new(projects: &[&str], sessions: &[(&str, &str)], extra: &str) -> Rig {
        Rig::with_binary(projects, sessions, extra, &super::claude_binary(), &[])
    }

    pub fn with_binary(projects: &[&str], sessions: &[(&str, &str)], extra: &str, binary: &Path, args: &[&str]) -> Rig {
        let dir = super::temp_dir();
        let api = FakeApi::start();
        let tmux = TmuxServer::new();
        let port = free_port();
        let root = dir.path().canonicalize().unwrap();
        let projects: Vec<(String, PathBuf)> =
            projects.iter().map(|p| (p.to_string(), root.join("projects").join(p))).collect();
        let paths: Vec<PathBuf> = projects.iter().map(|(_, p)| p.clone()).collect();
        for p in &paths {
            std::fs::create_dir_all(p).unwrap();
        }
        write_account(&root.join("accounts/alpha"), ALPHA_TOKEN, &paths);
        write_account(&root.join("accounts/beta"), BETA_TOKEN, &paths);
        let mut config = format!(
            r#"state_dir = "{root}/state"
[claude]
binary = {binary:?}
args = {args:?}
shared_projects_dir = "{root}/shared"
startup_timeout_secs = 120
[claude.env]
ANTHROPIC_BASE_URL = "{api}"
CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = "1"
DISABLE_TELEMETRY = "1"
DISABLE_AUTOUPDATER = "1"
[tmux]
socket_name = "{socket}"
[http]
listen = "127.0.0.1:{port}"
[quota]
usage_url = "{api}/api/oauth/usage"
{extra}
[[accounts]]
name = "alpha"
config_dir = "{root}/accounts/alpha"
[[accounts]]
name = "beta"
config_dir = "{root}/accounts/beta"
"#,
            root = root.display(),
            binary = binary.display().to_string(),
            api = api.url(),
            socket = tmux.socket_name(),
        );
        for (name, path) in &projects {
            config.push_str(&format!("[[projects]]\nname = \"{name}\"\npath = \"{}\"\n", path.display()));
        }
        for (session, project) in sessions {
            config.push_str(&format!("[[sessions]]\nname = \"{session}\"\nproject = \"{project}\"\n"));
        }
        Rig { dir, api, tmux, port, config, projects }
    }

    pub fn start(&self) -> Daemon {
        Daemon::start(self.dir.path(), &self.config, self.port, &[])
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
        std::fs::create_dir_all(&inbox).unwrap();
        let tmp = inbox.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, inbox.join(name)).unwrap();
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

    /// `done/NAME.result.json` (or `.error.json` in failed/), parsed.
    pub fn side_json(&self, project: &str, folder: &str, file: &str) -> serde_json::Value {
        let path = self.folder(project, folder).join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", path.display()))
    }
}

/// The side-file stem of a task name: `fix.md` → `fix`, `notes.txt` → `notes.txt`.
pub fn stem(name: &str) -> &str {
    name.strip_suffix(".md").unwrap_or(name)
}

/// `/status` as JSON.
pub fn status(daemon: &Daemon) -> Option<serde_json::Value> {
    let (code, body) = daemon.get("/status").ok()?;
    (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
}

/// Waits until every named session is idle per `/status`.
pub fn wait_idle(daemon: &Daemon, sessions: &[&str], timeout: Duration) {
    super::wait_for(timeout, &format!("sessions {sessions:?} to be idle"), || {
        let st = status(daemon)?;
        let all = st["sessions"].as_array()?;
        sessions.iter().all(|name| all.iter().any(|s| s["name"] == *name && s["state"] == "idle")).then_some(())
    });
}
