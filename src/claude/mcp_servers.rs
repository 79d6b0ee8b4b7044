//! The user-scope MCP servers of an account: `mcpServers` in
//! `<config_dir>/.claude.json`, where `claude mcp add -s user` puts them
//! (checked with 2.1.332: `{"type": "stdio", "command", "args", "env"}`).
//! Every Claude Code started with that `CLAUDE_CONFIG_DIR` starts them, so a
//! session moved to another account by a swap finds the same server there.

use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// `<config_dir>/.claude.json`.
pub fn user_config_path(config_dir: &Path) -> PathBuf {
    config_dir.join(".claude.json")
}

/// What [`register`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    Added,
    /// An entry of that name ran another command; it was replaced.
    Updated,
    Unchanged,
}

/// Makes `mcpServers[name]` a stdio server running `command` with `args`,
/// keeping every other key and server. Refuses a document that is not an
/// object or whose `mcpServers` is not one.
pub fn register(state: &mut Value, name: &str, command: &str, args: &[String]) -> Result<Registration, String> {
    let Value::Object(root) = state else {
        return Err("not a JSON object".into());
    };
    let servers = root.entry("mcpServers").or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(servers) = servers else {
        return Err("mcpServers is not a JSON object".into());
    };
    let wanted = json!({"type": "stdio", "command": command, "args": args, "env": {}});
    let same = |old: &Value| old.get("command") == wanted.get("command") && old.get("args") == wanted.get("args");
    let outcome = match servers.get(name) {
        Some(old) if same(old) => return Ok(Registration::Unchanged),
        Some(_) => Registration::Updated,
        None => Registration::Added,
    };
    servers.insert(name.to_string(), wanted);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_once_and_keeps_the_rest() {
        let mut state = json!({"userID": "u", "mcpServers": {"other": {"command": "x"}}});
        let args = vec!["mcp".to_string(), "--config".into(), "/etc/c.toml".into()];
        assert_eq!(register(&mut state, "cf", "/bin/cf", &args), Ok(Registration::Added));
        assert_eq!(register(&mut state, "cf", "/bin/cf", &args), Ok(Registration::Unchanged));
        assert_eq!(register(&mut state, "cf", "/usr/bin/cf", &args), Ok(Registration::Updated));
        assert_eq!(state["userID"], "u");
        assert_eq!(state["mcpServers"]["other"]["command"], "x");
        assert_eq!(state["mcpServers"]["cf"]["args"][2], "/etc/c.toml");
        assert!(register(&mut json!([]), "cf", "x", &args).is_err());
        assert!(register(&mut json!({"mcpServers": 1}), "cf", "x", &args).is_err());
    }
}
