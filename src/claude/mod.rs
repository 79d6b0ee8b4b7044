//! Everything that knows Claude Code's formats: the project-key rule, credentials,
//! the usage answer, transcripts, pane text, session files, hook input and the
//! settings.json entries claude-failover installs.
//! Pure parsing and path rules: nothing here runs Claude Code, polls or decides.
//! Claude Code changes often, so every parser is tolerant and says what and where
//! when it gives up; none panics on outside input.

pub mod api_key;
pub mod credentials;
pub mod hook;
pub mod mcp_servers;
pub mod pane;
pub mod question;
pub mod session_file;
pub mod settings;
pub mod transcript;
pub mod usage;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest project key Claude Code keeps whole (its `jae = 200`).
const MAX_KEY_LEN: usize = 200;

/// The folder name under `projects/` that Claude Code gives to `cwd`: every UTF-16
/// code unit outside `[A-Za-z0-9]` becomes `-` (so a character outside the BMP
/// gives two), no collapsing. A key longer than 200 is cut to 200 and suffixed with
/// `-` and the base-36 absolute value of the Java-style 32-bit string hash of the
/// original path (`h = h*31 + unit`), as the 2.1.332 binary does it
/// (`Math.abs(hash(e)).toString(36)`).
pub fn project_key(cwd: &Path) -> String {
    let path = cwd.to_string_lossy();
    let mut key = String::with_capacity(path.len());
    for c in path.chars() {
        if c.is_ascii_alphanumeric() {
            key.push(c);
        } else {
            for _ in 0..c.len_utf16() {
                key.push('-');
            }
        }
    }
    if key.len() <= MAX_KEY_LEN {
        return key;
    }
    key.truncate(MAX_KEY_LEN);
    let hash = path.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)));
    format!("{key}-{}", base36(u64::from(hash.unsigned_abs())))
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// `<config_dir>/projects`, where Claude Code keeps an account's transcripts
/// (`setup` makes it a link to the shared tree).
pub fn projects_dir(config_dir: &Path) -> PathBuf {
    config_dir.join("projects")
}

/// `<projects_dir>/<project_key(cwd)>/<session_id>.jsonl`: under the shared
/// tree, or under an account's [`projects_dir`].
pub fn transcript_path(shared_projects_dir: &Path, cwd: &Path, session_id: &str) -> PathBuf {
    shared_projects_dir.join(project_key(cwd)).join(format!("{session_id}.jsonl"))
}

/// A time as Claude Code and the API write it in JSON
/// (`2026-11-25T16:55:51.947Z`, `2026-01-02T19:59:59.600956+00:00`),
/// surrounding blanks allowed: RFC 3339 as `crate::time` reads it.
pub(crate) fn parse_time(s: &str) -> Option<SystemTime> {
    crate::time::parse_rfc3339(s.trim())
}

/// Unix seconds (or milliseconds, told apart by size) as a `SystemTime`.
pub(crate) fn unix_time(n: f64) -> Option<SystemTime> {
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    // Seconds until the year 5138; anything larger is milliseconds.
    let secs = if n > 1e11 { n / 1000.0 } else { n };
    Some(UNIX_EPOCH + Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_replaces_every_non_alphanumeric_without_collapsing() {
        assert_eq!(project_key(Path::new("/tmp/cf-dbg/project")), "-tmp-cf-dbg-project");
        assert_eq!(project_key(Path::new("/a/.b_c d")), "-a--b-c-d");
        assert_eq!(project_key(Path::new("/é/😀")), "-----");
    }

    #[test]
    fn long_key_is_cut_and_hashed_like_claude_code() {
        let cwd = format!("/{}", "x".repeat(250));
        let key = project_key(Path::new(&cwd));
        // Expected from Claude Code's own rule, evaluated in JavaScript:
        // let t=0; for (c of s) t=(t<<5)-t+c.charCodeAt(0)|0; Math.abs(t).toString(36)
        assert_eq!(key, format!("-{}-v734pd", "x".repeat(199)));
        let cwd = format!("/é/😀{}", "y".repeat(200));
        assert_eq!(project_key(Path::new(&cwd)), format!("-----{}-6jy48", "y".repeat(195)));
    }

    #[test]
    fn transcript_path_joins_key_and_session() {
        let p = transcript_path(Path::new("/shared"), Path::new("/w/p"), "abc");
        assert_eq!(p, PathBuf::from("/shared/-w-p/abc.jsonl"));
    }

    #[test]
    fn times_in_the_forms_claude_code_writes() {
        let t = |s| parse_time(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_millis());
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(t(" 1970-01-01T00:00:01Z\n"), Some(1000));
        assert_eq!(t("2026-11-25T16:55:51.947Z"), Some(1_795_625_751_947));
        assert_eq!(t("2026-11-25T17:55:51.947+01:00"), Some(1_795_625_751_947));
        assert_eq!(t("2026-01-02T19:59:59.600956+00:00"), Some(1_767_383_999_600));
        for bad in ["", "yesterday", "2026-13-01T00:00:00Z", "2026-11-25T16:55:51", "2026-11-25T16:55:51+0100"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }
}
