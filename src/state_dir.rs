//! What the daemon keeps under `state_dir`, by name, in one place: a reader
//! sees the whole folder here, and no two modules can disagree on a name.
//! Only the names: reading and writing each file is its owner's business.

use std::path::{Path, PathBuf};

/// The last quota answers and known limits per account (`quota::persist`).
pub fn quota_file(state_dir: &Path) -> PathBuf {
    state_dir.join("quota.json")
}

/// The usage readings behind the dashboard's charts (`quota::history`).
pub fn history_file(state_dir: &Path) -> PathBuf {
    state_dir.join("history.json")
}

/// What each `api_key` account spent on its UTC day (`quota::spend_file`).
pub fn spend_file(state_dir: &Path) -> PathBuf {
    state_dir.join("spend.json")
}

/// The account the sessions run on and the last swap (the switcher).
pub fn active_file(state_dir: &Path) -> PathBuf {
    state_dir.join("active.json")
}

/// The swap under way, kept until it finished (the switcher).
pub fn swap_journal(state_dir: &Path) -> PathBuf {
    state_dir.join("swap.json")
}

/// The sessions and the conversation each runs (the sessions role).
pub fn sessions_file(state_dir: &Path) -> PathBuf {
    state_dir.join("sessions.json")
}

/// Hook documents from Claude Code wait here for the daemon (`hook`).
pub fn spool_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("spool")
}

/// Snapshots of sessions before a swap (the checkpoint role; the janitor prunes).
pub fn checkpoints_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("checkpoints")
}

/// The private folder (mode 700) holding the control plane's socket.
pub fn run_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("run")
}

/// Where heartbeats record a role that stopped beating (`heartbeat`).
pub fn faults_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("faults")
}
