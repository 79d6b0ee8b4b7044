//! The one verdict on a session from what Claude Code shows: its own session
//! file and the screen. Pure: used by the sessions role's watching and by the
//! switcher's wait for a moved session's prompt, so it sits below both.

use super::model::Seen;
use crate::claude::pane::PaneState;
use crate::claude::session_file::{SessionFile, SessionStatus};

/// One verdict from Claude Code's own session file and the screen. The
/// screen wins for what the file cannot say (dialogs, limits, a dead login);
/// the file wins for idle/busy, which it states directly.
pub fn combine(file: Option<&SessionFile>, screen: &PaneState) -> Seen {
    let file_status = file.and_then(|f| f.status.as_ref());
    match screen {
        PaneState::TrustDialog => return Seen::TrustDialog,
        // Limit text above an idle prompt is what `--resume` replays: when
        // Claude Code says it is idle or busy, believe it. (The screen's limit
        // still goes to the quota side as a sighting to be confirmed.)
        PaneState::RateLimited { .. } if !matches!(file_status, Some(SessionStatus::Idle | SessionStatus::Busy)) => {
            return Seen::RateLimited
        }
        PaneState::LoginNeeded => return Seen::LoginNeeded,
        PaneState::PermissionPrompt => return Seen::Dialog("permission prompt".into()),
        PaneState::OtherDialog => return Seen::Dialog("dialog".into()),
        _ => {}
    }
    match file_status {
        Some(SessionStatus::Busy) => return Seen::Busy,
        Some(SessionStatus::Idle) => return Seen::Idle,
        Some(SessionStatus::Waiting) => {
            let what = file.and_then(|f| f.waiting_for.clone()).unwrap_or_else(|| "dialog".into());
            return Seen::Dialog(what);
        }
        _ => {}
    }
    match screen {
        PaneState::Busy | PaneState::ServerRetrying => Seen::Busy,
        PaneState::Idle => Seen::Idle,
        _ => Seen::Starting,
    }
}
