//! A private tmux server per test: a unique socket name, killed (and its
//! socket removed) when the guard drops, so tests never touch a user's tmux.

use claude_failover::tmux::Tmux;

pub struct TmuxServer {
    socket_name: String,
}

impl TmuxServer {
    pub fn new() -> TmuxServer {
        TmuxServer {
            socket_name: super::unique_name("cf-tmux"),
        }
    }

    pub fn socket_name(&self) -> &str {
        &self.socket_name
    }

    pub fn tmux(&self) -> Tmux {
        Tmux::new(&self.socket_name)
    }
}

impl Default for TmuxServer {
    fn default() -> Self {
        TmuxServer::new()
    }
}

impl Drop for TmuxServer {
    fn drop(&mut self) {
        let _ = self.tmux().kill_server();
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
