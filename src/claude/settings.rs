//! Claude Code's `<config_dir>/settings.json` as far as claude-failover edits
//! it: the hook events it asks for (docs/claude-code.md#hooks-and-status-line), the `statusLine` entry, and how
//! to recognise its own hook command among the user's. Pure: it edits a parsed
//! document; reading, backing up and writing the file is `setup`'s.

use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// The settings file of the account whose folder is `config_dir`.
pub fn settings_path(config_dir: &Path) -> PathBuf {
    config_dir.join("settings.json")
}

/// The hook events whose JSON the daemon wants (docs/claude-code.md#hooks-and-status-line).
pub const HOOK_EVENTS: [&str; 6] =
    ["SessionStart", "Stop", "StopFailure", "UserPromptSubmit", "Notification", "SessionEnd"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusLineAction {
    Installed,
    /// The user's own command now runs through the hook with `--then`.
    Wrapped {
        original: String,
    },
    /// Ours, but with another binary or spool path: corrected.
    Updated,
    Unchanged,
    /// Not done because of an error reported separately.
    Skipped,
}

/// What [`merge_settings`] changed.
#[derive(Debug)]
pub struct SettingsEdit {
    pub hooks_added: Vec<String>,
    pub hooks_updated: Vec<String>,
    pub status_line: StatusLineAction,
}

/// The pure part of the settings change: adds our hooks and statusLine to a
/// parsed settings.json, keeping everything else. Err says why the document's
/// shape prevents it.
pub fn merge_settings(settings: &mut Value, hook_command: &str) -> Result<SettingsEdit, String> {
    let root = settings.as_object_mut().ok_or("the top level is not a JSON object")?;
    let mut edit =
        SettingsEdit { hooks_added: Vec::new(), hooks_updated: Vec::new(), status_line: StatusLineAction::Unchanged };

    let hooks = root
        .entry("hooks")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or("\"hooks\" is not an object")?;
    for event in HOOK_EVENTS {
        let groups = hooks
            .entry(event)
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .ok_or(format!("\"hooks.{event}\" is not a list"))?;
        let mut found = false;
        let mut updated = false;
        for group in groups.iter_mut() {
            let Some(entries) = group.get_mut("hooks").and_then(Value::as_array_mut) else {
                continue;
            };
            for entry in entries.iter_mut() {
                let Some(command) = entry.get("command").and_then(Value::as_str) else {
                    continue;
                };
                if ours(command).is_some() {
                    found = true;
                    if command != hook_command {
                        entry["command"] = Value::String(hook_command.to_string());
                        updated = true;
                    }
                }
            }
        }
        if !found {
            groups.push(json!({"hooks": [{"type": "command", "command": hook_command}]}));
            edit.hooks_added.push(event.to_string());
        } else if updated {
            edit.hooks_updated.push(event.to_string());
        }
    }

    let status = root.entry("statusLine").or_insert_with(|| Value::Object(Map::new()));
    let status = status.as_object_mut().ok_or("\"statusLine\" is not an object")?;
    let current = status.get("command").and_then(Value::as_str).filter(|c| !c.trim().is_empty()).map(str::to_string);
    let (wanted, action) = match current.as_deref() {
        None => (hook_command.to_string(), StatusLineAction::Installed),
        Some(command) => match ours(command) {
            Some(wrapped) => {
                let wanted = match &wrapped {
                    Some(then) => format!("{hook_command} --then {}", shell_quote(then)),
                    None => hook_command.to_string(),
                };
                let action = if wanted == command { StatusLineAction::Unchanged } else { StatusLineAction::Updated };
                (wanted, action)
            }
            None => (
                format!("{hook_command} --then {}", shell_quote(command)),
                StatusLineAction::Wrapped { original: command.to_string() },
            ),
        },
    };
    status.insert("type".into(), Value::String("command".into()));
    status.insert("command".into(), Value::String(wanted));
    edit.status_line = action;
    Ok(edit)
}

/// What [`merge_mcp_allow`] changed: tool names added to and taken out of
/// `permissions.allow`.
#[derive(Debug, Default, PartialEq)]
pub struct AllowEdit {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// Makes the rules of `permissions.allow` that name a tool of the MCP
/// server `server` (`mcp__<server>__<tool>`) exactly `tools`: the missing
/// ones added, the others taken out; every other rule kept as it was.
pub fn merge_mcp_allow(settings: &mut Value, server: &str, tools: &[String]) -> Result<AllowEdit, String> {
    let root = settings.as_object_mut().ok_or("the top level is not a JSON object")?;
    let permissions = root
        .entry("permissions")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or("\"permissions\" is not an object")?;
    let allow = permissions
        .entry("allow")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or("\"permissions.allow\" is not a list")?;
    let prefix = format!("mcp__{server}__");
    let mut edit = AllowEdit::default();
    allow.retain(|rule| match rule.as_str() {
        Some(name) if name.starts_with(&prefix) && !tools.iter().any(|t| t == name) => {
            edit.removed.push(name.to_string());
            false
        }
        _ => true,
    });
    for tool in tools {
        if !allow.iter().any(|rule| rule.as_str() == Some(tool.as_str())) {
            allow.push(Value::String(tool.clone()));
            edit.added.push(tool.clone());
        }
    }
    Ok(edit)
}

/// If `command` is a `claude-failover hook ...` command (any path, any spool),
/// returns Some(the `--then` command it wraps, if any).
fn ours(command: &str) -> Option<Option<String>> {
    let words = shell_split(command)?;
    let program = Path::new(words.first()?).file_name()?.to_string_lossy();
    if !program.starts_with("claude-failover") || words.get(1).map(String::as_str) != Some("hook") {
        return None;
    }
    let then = words.iter().position(|w| w == "--then").and_then(|i| words.get(i + 1)).cloned();
    Some(then)
}

/// Quotes `word` for `sh` when it needs it.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "_./-=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Splits a simple `sh` command line into words (quotes and backslashes as sh
/// reads them). None when it uses anything beyond plain words (`;`, `|`, `$`,
/// redirections...), which this module never writes.
fn shell_split(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('$' | '`' | '"' | '\\') => word.push(c),
                            '\n' => {}
                            c => {
                                word.push('\\');
                                word.push(c);
                            }
                        },
                        '$' | '`' => return None,
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next()? {
                    '\n' => {}
                    c => word.push(c),
                }
            }
            ';' | '&' | '|' | '<' | '>' | '(' | ')' | '$' | '`' | '*' | '?' | '[' | '#' | '~' => return None,
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CMD: &str = "/usr/bin/claude-failover hook --spool /var/lib/cf/spool";

    #[test]
    fn mcp_tool_rules_follow_the_tiers_and_leave_every_other_rule_alone() {
        let names = |list: &[&str]| list.iter().map(|n| format!("mcp__claude-failover__{n}")).collect::<Vec<_>>();
        let mut settings = json!({"permissions": {"allow": ["Bash(ls:*)", "mcp__claude-failover", "mcp__other__x"],
                                                  "deny": ["Read(./.env)"]}, "model": "opus"});
        let edit = merge_mcp_allow(&mut settings, "claude-failover", &names(&["status", "enqueue_task"])).unwrap();
        assert_eq!(edit.added, names(&["status", "enqueue_task"]));
        assert!(edit.removed.is_empty());
        // Again: nothing to do. Then a tier taken out: its rule goes.
        let again = merge_mcp_allow(&mut settings, "claude-failover", &names(&["status", "enqueue_task"])).unwrap();
        assert_eq!(again, AllowEdit::default());
        let fewer = merge_mcp_allow(&mut settings, "claude-failover", &names(&["status"])).unwrap();
        assert_eq!((fewer.added, fewer.removed), (vec![], names(&["enqueue_task"])));
        assert_eq!(
            settings,
            json!({"permissions": {"allow": ["Bash(ls:*)", "mcp__claude-failover", "mcp__other__x",
                                             "mcp__claude-failover__status"],
                                   "deny": ["Read(./.env)"]}, "model": "opus"})
        );
        let mut empty = json!({});
        merge_mcp_allow(&mut empty, "claude-failover", &names(&["status"])).unwrap();
        assert_eq!(empty, json!({"permissions": {"allow": ["mcp__claude-failover__status"]}}));
        assert!(merge_mcp_allow(&mut json!({"permissions": []}), "claude-failover", &[]).is_err());
        assert!(merge_mcp_allow(&mut json!({"permissions": {"allow": {}}}), "claude-failover", &[]).is_err());
    }

    #[test]
    fn quoting_round_trips_through_the_splitter() {
        for word in ["plain", "with space", "it's", "$HOME `x` \"q\"", "", "a\\b", "~/x;y"] {
            let line = format!("cmd {}", shell_quote(word));
            assert_eq!(shell_split(&line), Some(vec!["cmd".to_string(), word.to_string()]), "{line}");
        }
        assert_eq!(shell_split("echo hi; rm x"), None);
        assert_eq!(shell_split("a \"b c\" d\\ e"), Some(vec!["a".into(), "b c".into(), "d e".into()]));
    }

    #[test]
    fn our_commands_are_recognised_wherever_the_binary_lives() {
        assert_eq!(ours(CMD), Some(None));
        assert_eq!(
            ours("'/opt/x y/claude-failover' hook --spool /s --then 'echo '\\''hi'\\'''"),
            Some(Some("echo 'hi'".to_string()))
        );
        assert_eq!(ours("/usr/bin/other hook --spool /s"), None);
        assert_eq!(ours("claude-failover status"), None);
        assert_eq!(ours("bash ~/.claude/statusline.sh"), None);
    }

    #[test]
    fn settings_keep_user_keys_and_hooks_and_a_second_merge_changes_nothing() {
        let mut settings = json!({
            "model": "opus",
            "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}],
                      "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "audit"}]}]},
            "statusLine": {"type": "command", "command": "bash ~/.claude/status.sh | head -1", "padding": 0}
        });
        let edit = merge_settings(&mut settings, CMD).unwrap();
        assert_eq!(edit.hooks_added.len(), 6);
        assert!(matches!(edit.status_line, StatusLineAction::Wrapped { .. }));
        assert_eq!(settings["model"], "opus");
        assert_eq!(settings["hooks"]["PreToolUse"][0]["hooks"][0]["command"], "audit");
        assert_eq!(settings["hooks"]["Stop"][0]["hooks"][0]["command"], "notify-send done");
        assert_eq!(settings["hooks"]["Stop"][1]["hooks"][0]["command"], CMD);
        assert_eq!(settings["statusLine"]["padding"], 0);
        let status = settings["statusLine"]["command"].as_str().unwrap().to_string();
        assert_eq!(status, format!("{CMD} --then 'bash ~/.claude/status.sh | head -1'"));

        let once = settings.clone();
        let edit = merge_settings(&mut settings, CMD).unwrap();
        assert!(edit.hooks_added.is_empty() && edit.hooks_updated.is_empty());
        assert_eq!(edit.status_line, StatusLineAction::Unchanged);
        assert_eq!(settings, once);

        // The binary moved: entries are corrected in place, the wrap is kept.
        let moved = "/opt/cf/claude-failover hook --spool /var/lib/cf/spool";
        let edit = merge_settings(&mut settings, moved).unwrap();
        assert_eq!(edit.hooks_updated.len(), 6);
        assert_eq!(edit.status_line, StatusLineAction::Updated);
        assert_eq!(settings["hooks"]["Stop"].as_array().unwrap().len(), 2);
        assert_eq!(settings["statusLine"]["command"], format!("{moved} --then 'bash ~/.claude/status.sh | head -1'"));
    }

    #[test]
    fn settings_of_an_unexpected_shape_are_refused() {
        assert!(merge_settings(&mut json!([1]), CMD).is_err());
        assert!(merge_settings(&mut json!({"hooks": []}), CMD).is_err());
        assert!(merge_settings(&mut json!({"hooks": {"Stop": {}}}), CMD).is_err());
        assert!(merge_settings(&mut json!({"statusLine": "x"}), CMD).is_err());
    }
}
