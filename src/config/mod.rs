//! The configuration file (docs/config.md): typed schema with the documented defaults.
//!
//! Owns parsing, path resolution and validation; it never touches tmux, the
//! network or the queue folders. Every problem found is reported at once, each
//! naming the file, the key and why.
//!
//! `types` holds the schema serde builds and its defaults; `fields` the same
//! schema as a table of keys, which catches every unknown key and wrong type
//! before serde sees the file (a test ties the two); `validate` checks values
//! and how they fit together; `paths` anchors relative paths and compares them.

mod fields;
mod paths;
mod tls;
mod types;
mod validate;

pub(crate) use paths::absolute;
pub use tls::fleet_tls;
pub use types::*;

use std::fmt;
use std::path::{Path, PathBuf};
use validate::Check;

pub const DEFAULT_PATH: &str = "/etc/claude-failover/config.toml";

/// One thing wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// Dotted key path, e.g. `quota.five_hour_threshold` or `sessions[2].project`;
    /// `(file)` when the file cannot be read, `(syntax)` when it is not TOML.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// The first problem about `key`, if any (handy in tests and logs).
    pub fn problem(&self, key: &str) -> Option<&Problem> {
        self.problems.iter().find(|p| p.key == key)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// `--config` beats `CLAUDE_FAILOVER_CONFIG` beats [`DEFAULT_PATH`].
pub fn config_path(cli: Option<&Path>) -> PathBuf {
    if let Some(p) = cli {
        return p.to_path_buf();
    }
    match std::env::var_os("CLAUDE_FAILOVER_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_PATH),
    }
}

impl Config {
    /// Reads, resolves relative paths against the file's folder, loads token
    /// files, and validates. Returns every problem at once.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = absolute(path);
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![Problem {
                file: file.clone(),
                key: "(file)".into(),
                message: format!("cannot read the configuration file: {e}"),
            }],
        })?;
        Config::from_toml(&text, &file)
    }

    /// Like [`Config::load`] for text already in memory; `file` names it in
    /// problems and its folder anchors relative paths. Token files are still
    /// read from disk.
    pub fn from_toml(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let file = absolute(file);
        let fail = |problems: Vec<(String, String)>| ConfigError {
            problems: problems.into_iter().map(|(key, message)| Problem { file: file.clone(), key, message }).collect(),
        };
        let mut table: toml::Table =
            text.parse().map_err(|e: toml::de::Error| fail(vec![fields::syntax_problem(text, &e)]))?;

        let mut shape = Vec::new();
        fields::check_root(&mut table, &mut shape);
        let mut config: Config = match toml::Value::Table(table).try_into() {
            Ok(c) => c,
            Err(e) => {
                // The shape check should have caught whatever serde rejects;
                // if it did not, still report everything it found.
                shape.push(("(schema)".into(), e.message().to_string()));
                return Err(fail(shape));
            }
        };
        config.source = file.clone();
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        config.resolve_paths(&base);

        let mut check = Check::default();
        config.read_secrets(&mut check);
        config.validate(&mut check);
        // A key already reported as missing or mistyped got a placeholder;
        // complaints about that placeholder would only be noise.
        let reported: Vec<String> = shape.iter().map(|(k, _)| k.clone()).collect();
        let mut problems = shape;
        problems.extend(check.0.into_iter().filter(|(key, _)| !reported.iter().any(|r| fields::covers(r, key))));
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(fail(problems))
        }
    }

    /// What is valid but does not do what the file may seem to ask: printed
    /// by `check-config` (exit 0 all the same) and logged by `mcp`.
    pub fn notes(&self) -> Vec<Problem> {
        let note = |key: &str, message: String| Problem { file: self.source.clone(), key: key.into(), message };
        let mut notes = Vec::new();
        let offered = self.mcp_tiers();
        let withheld: Vec<String> = self
            .mcp
            .allowed()
            .into_iter()
            .filter(|t| !offered.contains(t))
            .map(|t| format!("{:?}", t.as_str()))
            .collect();
        if !withheld.is_empty() {
            notes.push(note(
                "mcp.allow",
                format!(
                    "{} not offered: http.token_file is empty, so the control plane takes no tokens and the \
                     daemon could not hold the MCP server to a tier; `claude-failover mcp` offers the read tools \
                     only. Set http.token_file and mcp.token_file to offer the others",
                    withheld.join(" and ")
                ),
            ));
        }
        match (self.http.token.is_some(), self.mcp.token_file.is_empty()) {
            (true, true) => notes.push(note(
                "mcp.token_file",
                "empty while http.token_file is set: `claude-failover mcp` has no token the daemon takes, so \
                 every tool answers that the token was refused; set it to a file holding a token of its own"
                    .into(),
            )),
            (false, false) => notes.push(note(
                "mcp.token_file",
                "not used: http.token_file is empty, so the control plane takes no tokens".into(),
            )),
            _ => {}
        }
        if !self.quota.prices.is_empty() && !self.accounts.iter().any(|a| a.is_api_key()) {
            notes.push(note(
                "quota.prices",
                "not used: no account has kind = \"api_key\", and only their spend is priced".into(),
            ));
        }
        notes
    }

    pub fn account(&self, name: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|a| a.name == name)
    }

    /// The account the sessions start on: the first subscription (a paid
    /// key is only for when none can work), else the first account.
    pub fn first_account(&self) -> Option<&AccountConfig> {
        self.accounts.iter().find(|a| !a.is_api_key()).or(self.accounts.first())
    }

    pub fn project(&self, name: &str) -> Option<&ProjectConfig> {
        self.projects.iter().find(|p| p.name == name)
    }

    pub fn session(&self, name: &str) -> Option<&SessionConfig> {
        self.sessions.iter().find(|s| s.name == name)
    }
}
