//! Account folders (what CLAUDE_CONFIG_DIR is set to) that need no login: a
//! `.credentials.json` with test tokens and a `.claude.json` that has done
//! onboarding and trusts the folders named (none: the trust dialog shows).
//! One token spelling: [`token`].

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The access token of account `name`, the one the fake API knows it by:
/// `sk-ant-oat01-TEST-<NAME>`.
pub fn token(name: &str) -> String {
    format!("sk-ant-oat01-TEST-{}", name.to_uppercase())
}

/// The refresh token that goes with an access token (`oat01` → `ort01`).
pub fn refresh_token(token: &str) -> String {
    token.replacen("-oat01-", "-ort01-", 1)
}

/// One account folder and its access token.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub dir: PathBuf,
    pub token: String,
}

/// Lays out `<root>/<name>` with [`token`]`(name)`, trusting `trusted` folders.
pub fn create(root: &Path, name: &str, trusted: &[&Path]) -> Account {
    let dir = root.join(name);
    let token = token(name);
    write(&dir, &token, trusted);
    Account { name: name.into(), dir, token }
}

/// Writes an account folder's `.credentials.json` (`token` and its
/// [`refresh_token`], valid for 8 hours) and `.claude.json` (onboarding
/// done, `trusted` folders trusted).
pub fn write(dir: &Path, token: &str, trusted: &[&Path]) {
    write_credentials(dir, token);
    let projects: serde_json::Map<String, serde_json::Value> = trusted
        .iter()
        .map(|p| (p.to_string_lossy().into_owned(), serde_json::json!({"hasTrustDialogAccepted": true})))
        .collect();
    let state = serde_json::json!({"hasCompletedOnboarding": true, "theme": "dark", "projects": projects});
    super::write(&dir.join(".claude.json"), &state.to_string());
}

/// Writes only `.credentials.json`: `token` valid for 8 hours, as `/login`
/// leaves it (atomically, by rename, as Claude Code writes it).
pub fn write_credentials(dir: &Path, token: &str) {
    let expires = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() + 8 * 3_600_000;
    let credentials = serde_json::json!({"claudeAiOauth": {
        "accessToken": token,
        "refreshToken": refresh_token(token),
        "expiresAt": expires as u64,
        "scopes": ["user:inference", "user:profile"],
        "subscriptionType": "max",
    }});
    let tmp = dir.join(".credentials.json.new");
    super::write(&tmp, &credentials.to_string());
    std::fs::rename(&tmp, dir.join(".credentials.json")).expect("rename credentials");
}

/// Whether the account's `.claude.json` records `project` as trusted (Claude
/// Code writes this when its trust dialog is answered "yes").
pub fn trusts(account: &Account, project: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(account.dir.join(".claude.json")) else { return false };
    let Ok(state) = serde_json::from_str::<serde_json::Value>(&text) else { return false };
    state["projects"][project.to_string_lossy().as_ref()]["hasTrustDialogAccepted"] == true
}
