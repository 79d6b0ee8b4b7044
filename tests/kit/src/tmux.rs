//! A private tmux server per test: a unique socket name, killed (and its
//! socket removed) when the guard drops, so tests never touch a user's tmux.
//! (Tests drive it through the daemon's own `claude_failover::tmux::Tmux::new(
//! server.socket_name())`; the kit does not depend on the daemon's crate.)

use std::process::Command;

pub struct TmuxServer {
    socket_name: String,
}

impl TmuxServer {
    pub fn new() -> TmuxServer {
        TmuxServer { socket_name: super::unique_name("cf-tmux") }
    }

    pub fn socket_name(&self) -> &str {
        &self.socket_name
    }

    /// `tmux -L <socket> <args>`: its stdout (empty if it failed).
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").arg("-L").arg(&self.socket_name).args(args).output().expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `(session, pane pid)` of every pane on the server.
    pub fn panes(&self) -> Vec<(String, u32)> {
        self.run(&["list-panes", "-a", "-F", "#{session_name} #{pane_pid}"])
            .lines()
            .filter_map(|l| {
                let (s, p) = l.split_once(' ')?;
                Some((s.to_string(), p.parse().ok()?))
            })
            .collect()
    }

    /// The visible screen of a session's pane.
    pub fn screen(&self, session: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", session])
    }
}

impl Default for TmuxServer {
    fn default() -> Self {
        TmuxServer::new()
    }
}

impl Drop for TmuxServer {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket_name, "kill-server"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        // tmux leaves the socket file behind; it lives in $TMUX_TMPDIR or /tmp,
        // under tmux-<uid>, and only the server ever created it.
        let base = std::env::var("TMUX_TMPDIR").unwrap_or_else(|_| "/tmp".into());
        if let Ok(entries) = std::fs::read_dir(&base) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with("tmux-") {
                    let _ = std::fs::remove_file(entry.path().join(&self.socket_name));
                }
            }
        }
    }
}

/// The CLAUDE_CONFIG_DIR a process (a pane's claude) runs with.
pub fn config_dir_of(pid: u32) -> Option<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    bytes
        .split(|b| *b == 0)
        .find_map(|kv| std::str::from_utf8(kv).ok()?.strip_prefix("CLAUDE_CONFIG_DIR=").map(str::to_string))
}
