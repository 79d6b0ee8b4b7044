//! Reads an account's `.credentials.json` (the `claudeAiOauth` entry Claude Code
//! keeps under CLAUDE_CONFIG_DIR). Read-only: Claude Code refreshes and rewrites
//! this file itself, and a second refresher would sign it out. Errors name the
//! file, never the token.

use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// An OAuth access token. Debug and Display hide it; `secret()` is the one way out.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(secret: impl Into<String>) -> Token {
        Token(secret.into())
    }

    /// The token itself, for an `Authorization: Bearer` header and nothing else.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(<{} chars hidden>)", self.0.len())
    }
}

#[derive(Clone, Debug)]
pub struct Credentials {
    pub access_token: Token,
    /// `expiresAt` (milliseconds in the file); None when absent or not a number.
    pub expires_at: Option<SystemTime>,
    /// `max`, `pro`, ... as Claude Code wrote it.
    pub subscription_type: Option<String>,
    pub rate_limit_tier: Option<String>,
}

impl Credentials {
    /// Reads `<config_dir>/.credentials.json`.
    pub fn read(config_dir: &Path) -> Result<Credentials, CredentialsError> {
        let path = config_dir.join(".credentials.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                CredentialsError::Missing { path: path.clone() }
            } else {
                CredentialsError::Unreadable {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            }
        })?;
        Credentials::parse(&text, &path)
    }

    /// Parses the file's text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Credentials, CredentialsError> {
        // Through Value, not a typed struct: serde's type errors quote the value,
        // which here would be the token.
        let v: Value = serde_json::from_str(text).map_err(|e| CredentialsError::NotJson {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
        })?;
        let oauth = v
            .get("claudeAiOauth")
            .filter(|o| o.is_object())
            .ok_or_else(|| CredentialsError::NoOauth {
                path: path.to_path_buf(),
            })?;
        let access_token = oauth
            .get("accessToken")
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| CredentialsError::NoAccessToken {
                path: path.to_path_buf(),
            })?;
        let string = |k: &str| oauth.get(k).and_then(Value::as_str).map(str::to_string);
        Ok(Credentials {
            access_token: Token::new(access_token.trim()),
            expires_at: oauth
                .get("expiresAt")
                .and_then(Value::as_f64)
                .and_then(super::unix_time),
            subscription_type: string("subscriptionType"),
            rate_limit_tier: string("rateLimitTier"),
        })
    }

    /// True once `expiresAt` has passed. Claude Code renews the token when it next
    /// runs; until then the token is expired, which is a state, not an error.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

#[derive(Debug)]
pub enum CredentialsError {
    Missing {
        path: PathBuf,
    },
    Unreadable {
        path: PathBuf,
        reason: String,
    },
    NotJson {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    NoOauth {
        path: PathBuf,
    },
    NoAccessToken {
        path: PathBuf,
    },
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialsError::Missing { path } => write!(
                f,
                "{}: no credentials file (log this account in with `claude` and /login)",
                path.display()
            ),
            CredentialsError::Unreadable { path, reason } => {
                write!(f, "{}: cannot read: {reason}", path.display())
            }
            CredentialsError::NotJson { path, line, column } => write!(
                f,
                "{}: not valid JSON (line {line}, column {column})",
                path.display()
            ),
            CredentialsError::NoOauth { path } => write!(
                f,
                "{}: no \"claudeAiOauth\" object (is this a subscription login?)",
                path.display()
            ),
            CredentialsError::NoAccessToken { path } => write!(
                f,
                "{}: \"claudeAiOauth\" has no \"accessToken\"",
                path.display()
            ),
        }
    }
}

impl std::error::Error for CredentialsError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const GOOD: &str = r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-SECRET","refreshToken":"sk-ant-ort01-R","expiresAt":1795654549000,"scopes":["user:inference"],"subscriptionType":"max","rateLimitTier":"default_claude_max_20x"}}"#;

    #[test]
    fn reads_token_expiry_and_plan() {
        let c = Credentials::parse(GOOD, Path::new("/a/.credentials.json")).unwrap();
        assert_eq!(c.access_token.secret(), "sk-ant-oat01-SECRET");
        assert_eq!(
            c.expires_at,
            Some(UNIX_EPOCH + Duration::from_secs(1_795_654_549))
        );
        assert_eq!(c.subscription_type.as_deref(), Some("max"));
        assert_eq!(c.rate_limit_tier.as_deref(), Some("default_claude_max_20x"));
        assert!(!c.is_expired(UNIX_EPOCH + Duration::from_secs(1_795_654_548)));
        assert!(c.is_expired(UNIX_EPOCH + Duration::from_secs(1_795_654_549)));
        assert!(!format!("{c:?}").contains("SECRET"));
    }

    #[test]
    fn errors_name_the_file_never_the_token() {
        let p = Path::new("/acct/.credentials.json");
        let cases = [
            "{not json",
            r#"{"claudeAiOauth":{"accessToken":42,"x":"sk-ant-oat01-SECRET"}}"#,
            r#"{"other":{"accessToken":"sk-ant-oat01-SECRET"}}"#,
            r#"{"claudeAiOauth":"sk-ant-oat01-SECRET"}"#,
            "[]",
            "",
        ];
        for text in cases {
            let e = Credentials::parse(text, p).unwrap_err().to_string();
            assert!(e.contains("/acct/.credentials.json"), "{e}");
            assert!(!e.contains("SECRET"), "{e}");
        }
    }

    #[test]
    fn missing_expiry_is_not_expired() {
        let c = Credentials::parse(
            r#"{"claudeAiOauth":{"accessToken":"t","expiresAt":"soon"}}"#,
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(c.expires_at, None);
        assert!(!c.is_expired(SystemTime::now()));
    }

    #[test]
    fn read_reports_a_missing_file() {
        let e = Credentials::read(Path::new("/nonexistent-cf")).unwrap_err();
        assert!(matches!(e, CredentialsError::Missing { .. }));
        assert!(e.to_string().contains("/nonexistent-cf/.credentials.json"));
    }
}
