//! Claude Code and an API key (checked with 2.1.332): started with
//! `ANTHROPIC_API_KEY` it asks once per key "Detected a custom API key in
//! your environment — Do you want to use this API key?", with the cursor on
//! `No (recommended)` (Escape means No too). The answer is kept in
//! `<config_dir>/.claude.json` as `customApiKeyResponses.approved` /
//! `rejected`, by the key's last 20 characters (`key.trim().slice(-20)`; the
//! whole key does not count). Pre-seeding `approved` with that tail means
//! the question never comes, so no session waits on a dialog the daemon
//! would answer wrongly by pressing Enter.
//!
//! The key itself is never written anywhere nor put in an error message.

use serde_json::{Map, Value};
use std::path::Path;

/// The part of a key Claude Code remembers its answer by.
pub fn key_tail(key: &str) -> String {
    let key = key.trim();
    let start = key.char_indices().rev().nth(19).map_or(0, |(i, _)| i);
    key[start..].to_string()
}

/// Reads the key from its file: one word, trimmed. Errors name the file,
/// never the content.
pub fn read_key(path: &Path) -> Result<String, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read the key file {}: {e}", path.display()))?;
    let key = text.trim();
    if key.is_empty() {
        return Err(format!("the key file {} is empty", path.display()));
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("the key file {} holds more than the key (one line, one word)", path.display()));
    }
    Ok(key.to_string())
}

/// Marks `key` as approved in a `.claude.json` document (and no longer
/// rejected). True when the document changed. Refuses a document that is
/// not an object, or whose `customApiKeyResponses` is not one.
pub fn approve(state: &mut Value, key: &str) -> Result<bool, String> {
    let tail = key_tail(key);
    let Value::Object(root) = state else {
        return Err("not a JSON object".into());
    };
    let responses = root.entry("customApiKeyResponses").or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(responses) = responses else {
        return Err("customApiKeyResponses is not a JSON object".into());
    };
    let mut changed = false;
    if let Some(Value::Array(rejected)) = responses.get_mut("rejected") {
        let before = rejected.len();
        rejected.retain(|v| v.as_str() != Some(tail.as_str()));
        changed |= rejected.len() != before;
    }
    let approved = responses.entry("approved").or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(approved) = approved else {
        return Err("customApiKeyResponses.approved is not a JSON array".into());
    };
    if !approved.iter().any(|v| v.as_str() == Some(tail.as_str())) {
        approved.push(Value::String(tail));
        changed = true;
    }
    Ok(changed)
}

/// [`approve`] in `<config_dir>/.claude.json` (made if missing), written
/// atomically and only when it changes: Claude Code of running sessions
/// writes that file too.
pub fn approve_in(config_dir: &Path, key: &str) -> Result<(), String> {
    let path = super::mcp_servers::user_config_path(config_dir);
    let mut state = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{}: not JSON: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Object(Map::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if !approve(&mut state, key).map_err(|e| format!("{}: {e}", path.display()))? {
        return Ok(());
    }
    let bytes = serde_json::to_vec_pretty(&state).map_err(|e| e.to_string())?;
    crate::atomic::write_keeping_owner(&path, &bytes, config_dir)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_tail_is_the_last_twenty_characters_of_the_trimmed_key() {
        let key = "sk-ant-api03-TESTzyxwvutsrqponmlkjihgfedcba9876543210-KEYTWO-BB";
        assert_eq!(key_tail(key), "9876543210-KEYTWO-BB");
        assert_eq!(key_tail(&format!("  {key}\n")), "9876543210-KEYTWO-BB");
        assert_eq!(key_tail("short"), "short");
    }

    #[test]
    fn approving_adds_the_tail_once_and_lifts_a_rejection() {
        let key = "sk-ant-api03-TESTabcdefghijklmnopqrstuvwxyz0123456789-KEYONE-AA";
        let mut state = json!({"theme": "dark", "customApiKeyResponses": {"approved": [], "rejected": ["0123456789-KEYONE-AA", "other"]}});
        assert_eq!(approve(&mut state, key), Ok(true));
        assert_eq!(approve(&mut state, key), Ok(false));
        assert_eq!(state["customApiKeyResponses"]["approved"], json!(["0123456789-KEYONE-AA"]));
        assert_eq!(state["customApiKeyResponses"]["rejected"], json!(["other"]));
        assert_eq!(state["theme"], "dark");
        let mut fresh = json!({});
        assert_eq!(approve(&mut fresh, key), Ok(true));
        assert_eq!(fresh, json!({"customApiKeyResponses": {"approved": ["0123456789-KEYONE-AA"]}}));
        assert!(approve(&mut json!([]), key).is_err());
        assert!(approve(&mut json!({"customApiKeyResponses": {"approved": 1}}), key).is_err());
    }

    #[test]
    fn the_file_is_made_or_updated_and_errors_never_show_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = "sk-ant-api03-SECRETSECRETSECRET-0000000000-KEYFIL-FF";
        approve_in(dir.path(), key).unwrap();
        let state: Value = serde_json::from_slice(&std::fs::read(dir.path().join(".claude.json")).unwrap()).unwrap();
        assert_eq!(state["customApiKeyResponses"]["approved"], json!(["0000000000-KEYFIL-FF"]));
        let file = dir.path().join("key");
        std::fs::write(&file, format!("{key}\n")).unwrap();
        assert_eq!(read_key(&file).unwrap(), key);
        std::fs::write(&file, format!("{key} {key}")).unwrap();
        let err = read_key(&file).unwrap_err();
        assert!(!err.contains("SECRET"), "{err}");
        assert!(read_key(&dir.path().join("none")).is_err());
    }
}
