//! The hook spool: `claude-failover hook` drops each document Claude Code
//! hands it (statusline, hooks) into `<state_dir>/spool/`; the sessions role
//! watches that folder with inotify, reads and removes each file, and turns
//! what matters into reports. This file holds the reading and the meaning;
//! the role does the watching.

use super::model::TurnEnd;
use crate::claude::hook::{self, HookInput, RateLimit};
use std::path::Path;

/// What a spooled document says that the daemon acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// The statusline's `rate_limits`: the account's windows, at no cost.
    Sample(Vec<RateLimit>),
    /// `StopFailure` with `error: rate_limit`: a turn failed on a 429, which
    /// may be a quota limit or a plain rate limit — never proof alone.
    RateLimitFailure,
    /// `StopFailure` with any other error: the turn failed (live, so it is
    /// news; the transcript's record says the same a moment later).
    TurnFailed(TurnEnd),
}

/// The conversation a document belongs to, and what it says (None when it
/// says nothing the daemon acts on).
pub fn read(text: &str) -> Option<(String, Signal)> {
    let input: HookInput = hook::parse(text).ok()?;
    let session_id = input.session_id.clone()?;
    if input.is_statusline() {
        return (!input.rate_limits.is_empty()).then_some((session_id, Signal::Sample(input.rate_limits)));
    }
    if input.event.as_deref() != Some("StopFailure") {
        return None;
    }
    let signal = match input.error.as_deref()? {
        "rate_limit" => Signal::RateLimitFailure,
        "authentication_failed" => Signal::TurnFailed(TurnEnd::LoginRevoked),
        other => Signal::TurnFailed(TurnEnd::ApiError { error: other.to_string(), status: None, text: String::new() }),
    };
    Some((session_id, signal))
}

/// Reads and removes one spool file; None for files gone, unreadable, or
/// saying nothing of use.
pub fn take(path: &Path) -> Option<(String, Signal)> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with('.') {
        return None;
    }
    let text = std::fs::read_to_string(path).ok();
    if let Err(e) = std::fs::remove_file(path) {
        log::debug!("{}: {e}", path.display());
    }
    read(&text?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statusline_limits_and_limit_failures_are_read_and_the_rest_ignored() {
        let statusline =
            r#"{"session_id":"abc","rate_limits":{"five_hour":{"used_percentage":91.5,"resets_at":1795622400}}}"#;
        match read(statusline) {
            Some((id, Signal::Sample(limits))) => {
                assert_eq!(id, "abc");
                assert_eq!(limits[0].window, "five_hour");
                assert_eq!(limits[0].used_percentage, 91.5);
            }
            other => panic!("{other:?}"),
        }
        let failure = r#"{"hook_event_name":"StopFailure","session_id":"abc","error":"rate_limit"}"#;
        assert_eq!(read(failure), Some(("abc".into(), Signal::RateLimitFailure)));
        let auth = r#"{"hook_event_name":"StopFailure","session_id":"abc","error":"authentication_failed"}"#;
        assert_eq!(read(auth), Some(("abc".into(), Signal::TurnFailed(TurnEnd::LoginRevoked))));
        let overload = r#"{"hook_event_name":"StopFailure","session_id":"abc","error":"server_error"}"#;
        assert!(
            matches!(read(overload), Some((_, Signal::TurnFailed(TurnEnd::ApiError { error, .. }))) if error == "server_error")
        );
        for nothing in [
            r#"{"hook_event_name":"Stop","session_id":"abc"}"#,
            r#"{"hook_event_name":"StopFailure","session_id":"abc"}"#,
            r#"{"session_id":"abc"}"#,
            r#"{"rate_limits":{"five_hour":{"used_percentage":1}}}"#,
            "not json",
        ] {
            assert_eq!(read(nothing), None, "{nothing}");
        }
    }
}
