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
        // Likewise "Please run /login": `--resume` replays it; a live dead
        // login is known from the transcript and the StopFailure hook.
        PaneState::LoginNeeded if !matches!(file_status, Some(SessionStatus::Idle | SessionStatus::Busy)) => {
            return Seen::LoginNeeded
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claude::pane::LimitKind;

    fn file(status: Option<SessionStatus>, waiting_for: Option<&str>) -> SessionFile {
        SessionFile {
            pid: Some(1),
            session_id: Some("id".into()),
            cwd: None,
            status,
            waiting_for: waiting_for.map(str::to_string),
            updated_at: None,
            version: None,
        }
    }

    /// The file (None: no file) with its status and `waitingFor`, the screen, the verdict.
    type Row = (Option<Option<SessionStatus>>, Option<&'static str>, PaneState, Seen);

    #[test]
    fn the_screen_wins_for_dialogs_and_logins_the_file_for_idle_and_busy() {
        let limit = PaneState::RateLimited { kind: LimitKind::FiveHour, resets_text: None, auto_continue: false };
        let idle = Some(SessionStatus::Idle);
        let busy = Some(SessionStatus::Busy);
        let waiting = Some(SessionStatus::Waiting);
        let dialog = |what: &str| Seen::Dialog(what.into());
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            (Some(idle.clone()), None, PaneState::TrustDialog, Seen::TrustDialog),
            (None, None, PaneState::LoginNeeded, Seen::LoginNeeded),
            (Some(waiting.clone()), None, PaneState::LoginNeeded, Seen::LoginNeeded),
            // A dead login's text above an idle prompt: replayed, or known already.
            (Some(idle.clone()), None, PaneState::LoginNeeded, Seen::Idle),
            (Some(busy.clone()), None, PaneState::PermissionPrompt, dialog("permission prompt")),
            (None, None, PaneState::OtherDialog, dialog("dialog")),
            // A limit replayed by --resume above an idle or busy prompt.
            (Some(idle.clone()), None, limit.clone(), Seen::Idle),
            (Some(busy.clone()), None, limit.clone(), Seen::Busy),
            (None, None, limit.clone(), Seen::RateLimited),
            (Some(waiting.clone()), None, limit.clone(), Seen::RateLimited),
            // The file states idle/busy directly, whatever the screen shows.
            (Some(busy.clone()), None, PaneState::Idle, Seen::Busy),
            (Some(idle.clone()), None, PaneState::Busy, Seen::Idle),
            (Some(waiting.clone()), Some("tool permission"), PaneState::Unknown, dialog("tool permission")),
            (Some(waiting.clone()), None, PaneState::Unknown, dialog("dialog")),
            // No file (or one that says nothing): the screen decides.
            (None, None, PaneState::Busy, Seen::Busy),
            (None, None, PaneState::ServerRetrying, Seen::Busy),
            (Some(None), None, PaneState::Idle, Seen::Idle),
            (Some(Some(SessionStatus::Other("x".into()))), None, PaneState::Starting, Seen::Starting),
            (None, None, PaneState::Unknown, Seen::Starting),
        ];
        for (status, waiting_for, screen, want) in table {
            let f = status.map(|s| file(s, waiting_for));
            assert_eq!(combine(f.as_ref(), &screen), want, "file {f:?}, screen {screen:?}");
        }
    }
}
