//! Reads `sessions/<pid>.json`, Claude Code's own statement (2.1.x) of whether an
//! interactive process is idle, busy or waiting on a dialog. Read-only; unknown
//! fields are ignored and a missing field is None, never an error.

use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionStatus {
    Idle,
    Busy,
    /// A dialog or question holds the session (`waitingFor` says which).
    Waiting,
    Other(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct SessionFile {
    pub pid: Option<u32>,
    pub session_id: Option<String>,
    pub cwd: Option<PathBuf>,
    pub status: Option<SessionStatus>,
    pub waiting_for: Option<String>,
    pub updated_at: Option<SystemTime>,
    pub version: Option<String>,
}

#[derive(Debug)]
pub enum SessionFileError {
    Unreadable {
        path: PathBuf,
        reason: String,
    },
    NotJson {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    NotAnObject {
        path: PathBuf,
    },
}

impl fmt::Display for SessionFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionFileError::Unreadable { path, reason } => {
                write!(f, "{}: cannot read: {reason}", path.display())
            }
            SessionFileError::NotJson { path, line, column } => write!(
                f,
                "{}: not valid JSON (line {line}, column {column}; Claude Code may be rewriting it)",
                path.display()
            ),
            SessionFileError::NotAnObject { path } => {
                write!(f, "{}: not a JSON object", path.display())
            }
        }
    }
}

impl std::error::Error for SessionFileError {}

/// `<config_dir>/sessions/<pid>.json`.
pub fn path_for(config_dir: &Path, pid: u32) -> PathBuf {
    config_dir.join("sessions").join(format!("{pid}.json"))
}

impl SessionFile {
    pub fn read(path: &Path) -> Result<SessionFile, SessionFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| SessionFileError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        SessionFile::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<SessionFile, SessionFileError> {
        let v: Value = serde_json::from_str(text).map_err(|e| SessionFileError::NotJson {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
        })?;
        if !v.is_object() {
            return Err(SessionFileError::NotAnObject {
                path: path.to_path_buf(),
            });
        }
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let status = s("status").map(|st| match st.as_str() {
            "idle" => SessionStatus::Idle,
            "busy" => SessionStatus::Busy,
            "waiting" => SessionStatus::Waiting,
            _ => SessionStatus::Other(st),
        });
        Ok(SessionFile {
            pid: v
                .get("pid")
                .and_then(Value::as_u64)
                .and_then(|p| u32::try_from(p).ok()),
            session_id: s("sessionId"),
            cwd: s("cwd").map(PathBuf::from),
            status,
            waiting_for: s("waitingFor"),
            updated_at: v
                .get("updatedAt")
                .and_then(Value::as_f64)
                .and_then(super::unix_time),
            version: s("version"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerates_odd_input() {
        let p = Path::new("/c/sessions/1.json");
        let f = SessionFile::parse(r#"{"pid":-1,"status":"thinking","updatedAt":"x"}"#, p).unwrap();
        assert_eq!(f.pid, None);
        assert_eq!(f.status, Some(SessionStatus::Other("thinking".into())));
        assert_eq!(f.updated_at, None);
        let e = SessionFile::parse("{\"pid\":1", p).unwrap_err().to_string();
        assert!(e.contains("/c/sessions/1.json"), "{e}");
        assert!(SessionFile::parse("3", p).is_err());
        assert_eq!(
            path_for(Path::new("/c"), 42),
            PathBuf::from("/c/sessions/42.json")
        );
    }
}
