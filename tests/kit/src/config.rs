//! The one way tests and benches write a daemon config: keys set by table, in
//! the order set, rendered as the TOML a person would write (top-level keys,
//! then each `[table]`, then `extra`, then the `[[accounts]]`, `[[projects]]`
//! and `[[sessions]]` entries). The order is kept so that a test may still
//! edit the text (`replace`) the way it would edit a file.

use std::path::Path;

/// A config under construction; [`ConfigBuilder::render`] gives its text.
#[derive(Clone, Debug, Default)]
pub struct ConfigBuilder {
    /// `("", keys)` is the top level; others are `[name]` tables.
    tables: Vec<(String, Vec<(String, String)>)>,
    extra: String,
    /// `[[name]]` entries in the order added.
    entries: Vec<(String, Vec<(String, String)>)>,
}

/// The environment Claude Code runs with against the fake API at `api`.
pub fn claude_env(api: &str) -> [(&'static str, String); 4] {
    [
        ("ANTHROPIC_BASE_URL", api.to_string()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".into()),
        ("DISABLE_TELEMETRY", "1".into()),
        ("DISABLE_AUTOUPDATER", "1".into()),
    ]
}

impl ConfigBuilder {
    pub fn new() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// What every run needs: `state_dir = <dir>/state`, the shared transcript
    /// tree in `<dir>/shared`, a tmux socket, HTTP on `127.0.0.1:<port>`.
    pub fn base(dir: &Path, socket: &str, port: u16) -> ConfigBuilder {
        ConfigBuilder::new()
            .set("", "state_dir", dir.join("state").display().to_string())
            .set("claude", "shared_projects_dir", format!("{}/shared", dir.display()))
            .set("tmux", "socket_name", socket)
            .set("http", "listen", format!("127.0.0.1:{port}"))
    }

    /// Sets `key` of `[table]` (`""`: the top level) to `value`, in place if set
    /// before. `table` may be dotted (`claude.env`).
    pub fn set(mut self, table: &str, key: &str, value: impl Into<toml::Value>) -> ConfigBuilder {
        let value = value.into().to_string();
        let keys = match self.tables.iter().position(|(t, _)| t == table) {
            Some(i) => &mut self.tables[i].1,
            None => {
                self.tables.push((table.to_string(), Vec::new()));
                &mut self.tables.last_mut().expect("just pushed").1
            }
        };
        match keys.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => keys.push((key.to_string(), value)),
        }
        self
    }

    /// `[claude.env]` for Claude Code against the fake API at `api`, and the
    /// usage endpoint there too.
    pub fn fake_api(mut self, api: &str) -> ConfigBuilder {
        for (k, v) in claude_env(api) {
            self = self.set("claude.env", k, v);
        }
        self.set("quota", "usage_url", format!("{api}/api/oauth/usage"))
    }

    /// Raw TOML put after the tables (so it may add keys to the last one)
    /// and before the accounts, projects and sessions.
    pub fn extra(mut self, text: &str) -> ConfigBuilder {
        if !text.is_empty() {
            self.extra.push_str(text);
            if !text.ends_with('\n') {
                self.extra.push('\n');
            }
        }
        self
    }

    pub fn account(self, name: &str, config_dir: &Path) -> ConfigBuilder {
        self.entry("accounts", &[("name", name.into()), ("config_dir", config_dir.display().to_string().into())])
    }

    pub fn project(self, name: &str, path: &Path) -> ConfigBuilder {
        self.entry("projects", &[("name", name.into()), ("path", path.display().to_string().into())])
    }

    pub fn session(self, name: &str, project: &str) -> ConfigBuilder {
        self.entry("sessions", &[("name", name.into()), ("project", project.into())])
    }

    /// One `[[array]]` entry with its keys.
    pub fn entry(mut self, array: &str, keys: &[(&str, toml::Value)]) -> ConfigBuilder {
        let keys = keys.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.entries.push((array.to_string(), keys));
        self
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        // Top-level keys first, wherever they were set: after a header they
        // would belong to that table.
        let top = self.tables.iter().filter(|(t, _)| t.is_empty());
        for (table, keys) in top.chain(self.tables.iter().filter(|(t, _)| !t.is_empty())) {
            if !table.is_empty() {
                text.push_str(&format!("[{table}]\n"));
            }
            for (k, v) in keys {
                text.push_str(&format!("{k} = {v}\n"));
            }
        }
        text.push_str(&self.extra);
        // The arrays in a fixed order: accounts, projects, sessions, the rest.
        let rank = |a: &str| ["accounts", "projects", "sessions"].iter().position(|x| *x == a).unwrap_or(3);
        let mut entries: Vec<&(String, Vec<(String, String)>)> = self.entries.iter().collect();
        entries.sort_by_key(|(a, _)| rank(a));
        for (array, keys) in entries {
            text.push_str(&format!("[[{array}]]\n"));
            for (k, v) in keys {
                text.push_str(&format!("{k} = {v}\n"));
            }
        }
        text
    }
}
