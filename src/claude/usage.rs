//! Parses the answer of `GET /api/oauth/usage` into quota windows. Tolerant of
//! what the endpoint is known to vary: any window may be null, missing or new,
//! utilization may be an integer, a float or a numeric string, and newer answers
//! add a `limits` array. Strict about what would mislead a swap decision: a
//! window (`five_hour`, `seven_day`, `seven_day_*`) that is there but not a
//! window, a utilization outside 0–100, a reset time that is not a time, or an
//! answer with no window at all is an error naming the window and the value.
//! The HTTP call itself lives elsewhere.

use serde_json::{Map, Value};
use std::fmt;
use std::time::SystemTime;

/// One quota window: `five_hour`, `seven_day`, `seven_day_opus`, ...
#[derive(Clone, Debug, PartialEq)]
pub struct QuotaWindow {
    pub name: String,
    /// Percent used, 0–100.
    pub utilization: f64,
    pub resets_at: Option<SystemTime>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Usage {
    /// Every window the answer reported with a utilization, in answer order; a
    /// window named both at the top level and in `limits` appears once.
    pub windows: Vec<QuotaWindow>,
}

impl Usage {
    pub fn window(&self, name: &str) -> Option<&QuotaWindow> {
        self.windows.iter().find(|w| w.name == name)
    }

    /// The fullest window, the one that decides whether the account can work.
    pub fn fullest(&self) -> Option<&QuotaWindow> {
        self.windows.iter().max_by(|a, b| a.utilization.total_cmp(&b.utilization))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum UsageError {
    /// `why` is serde's reason ("EOF while parsing a string", "recursion limit exceeded").
    NotJson {
        line: usize,
        column: usize,
        why: String,
    },
    NotAnObject,
    /// Neither `five_hour` nor `seven_day` nor a `limits` array: an error
    /// document, or not the usage endpoint at all.
    NoWindows,
    /// A window (or `limits`) that is there but malformed.
    BadWindow {
        window: String,
        why: String,
    },
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::NotJson { line, column, why } => {
                write!(f, "usage answer is not JSON (line {line}, column {column}: {why})")
            }
            UsageError::NotAnObject => write!(f, "usage answer is JSON but not an object"),
            UsageError::NoWindows => {
                write!(f, "usage answer has no quota windows (no five_hour, seven_day or limits)")
            }
            UsageError::BadWindow { window, why } => write!(f, "usage answer, {window}: {why}"),
        }
    }
}

impl std::error::Error for UsageError {}

/// Longest value quoted back in an error: answers can be anything.
const QUOTE_MAX: usize = 40;

pub fn parse(body: &str) -> Result<Usage, UsageError> {
    let v: Value = serde_json::from_str(body).map_err(|e| UsageError::NotJson {
        line: e.line(),
        column: e.column(),
        why: reason_of(&e),
    })?;
    let top = v.as_object().ok_or(UsageError::NotAnObject)?;
    let limits = match top.get("limits") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(items),
        Some(other) => return Err(bad("limits", format!("expected an array, found {}", quote(other)))),
    };
    if !top.contains_key("five_hour") && !top.contains_key("seven_day") && limits.is_none() {
        return Err(UsageError::NoWindows);
    }
    let mut usage = Usage::default();
    for (name, value) in top {
        if !is_window_name(name) {
            // extra_usage and keys not known yet: not windows.
            if let Some(w) = value.as_object().map(|o| window(name, o, false)).transpose()?.flatten() {
                usage.windows.push(w);
            }
            continue;
        }
        match value {
            Value::Null => {}
            Value::Object(o) => usage.windows.extend(window(name, o, true)?),
            other => return Err(bad(name, format!("expected an object or null, found {}", quote(other)))),
        }
    }
    for item in limits.into_iter().flatten().filter_map(Value::as_object) {
        let name = ["name", "window", "type", "id", "rate_limit_type"]
            .iter()
            .find_map(|k| item.get(*k).and_then(Value::as_str));
        let Some(name) = name else { continue };
        let Some(w) = window(&format!("limits[{name}]"), item, false)? else {
            continue;
        };
        if usage.window(name).is_none() {
            usage.windows.push(QuotaWindow { name: name.to_string(), ..w });
        }
    }
    Ok(usage)
}

/// `five_hour`, `seven_day` and every `seven_day_*`: the windows quota decisions read.
fn is_window_name(name: &str) -> bool {
    name == "five_hour" || name == "seven_day" || name.starts_with("seven_day_")
}

fn bad(window: &str, why: String) -> UsageError {
    UsageError::BadWindow { window: window.to_string(), why }
}

/// A window object: a numeric utilization (`utilization`, or the statusline's
/// `used_percentage`) from 0 to 100; `resets_at` as RFC 3339 or unix time.
/// A null utilization is a window with nothing to say (None); a missing one is
/// an error only for a known window (`required`).
fn window(name: &str, o: &Map<String, Value>, required: bool) -> Result<Option<QuotaWindow>, UsageError> {
    let found = ["utilization", "used_percentage", "percent_used"].iter().find_map(|k| o.get(*k));
    let utilization = match found {
        Some(Value::Null) => return Ok(None),
        None if required => return Err(bad(name, "no utilization".into())),
        None => return Ok(None),
        Some(v) => {
            let n = number(v).ok_or_else(|| bad(name, format!("utilization {} is not a number", quote(v))))?;
            if !(0.0..=100.0).contains(&n) {
                return Err(bad(name, format!("utilization {} is outside 0-100", quote(v))));
            }
            n
        }
    };
    let resets_at = match o.get("resets_at") {
        None | Some(Value::Null) => None,
        Some(r) => {
            let parsed = match r {
                Value::String(s) => {
                    super::parse_time(s).or_else(|| s.trim().parse::<f64>().ok().and_then(super::unix_time))
                }
                Value::Number(n) => n.as_f64().and_then(super::unix_time),
                _ => None,
            };
            Some(parsed.ok_or_else(|| bad(name, format!("resets_at {} is not a time", quote(r))))?)
        }
    };
    Ok(Some(QuotaWindow { name: name.to_string(), utilization, resets_at }))
}

/// A value as JSON, cut short: enough to recognise, never a whole document.
fn quote(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() <= QUOTE_MAX {
        return text;
    }
    let cut: String = text.chars().take(QUOTE_MAX).collect();
    format!("{cut}...")
}

/// serde_json's message without its " at line L column C" tail (said apart).
fn reason_of(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite()),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn documented_answer() {
        let u = parse(
            r#"{"five_hour":{"utilization":24.0,"resets_at":"2026-01-02T19:59:59.600956+00:00"},
                "seven_day":{"utilization":36,"resets_at":null},
                "seven_day_sonnet":{"utilization":1.0,"resets_at":"2026-01-05T00:00:00Z"},
                "seven_day_opus":null,"extra_usage":{"is_enabled":false}}"#,
        )
        .unwrap();
        let names: Vec<&str> = u.windows.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["five_hour", "seven_day", "seven_day_sonnet"]);
        let five = u.window("five_hour").unwrap();
        assert_eq!(five.utilization, 24.0);
        assert_eq!(five.resets_at, Some(UNIX_EPOCH + Duration::from_micros(1_767_383_999_600_956)));
        assert_eq!(u.window("seven_day").unwrap().resets_at, None);
        assert!(u.window("seven_day_opus").is_none());
        assert_eq!(u.fullest().unwrap().name, "seven_day");
    }

    #[test]
    fn limits_array_and_unknown_windows() {
        let u = parse(
            r#"{"five_hour":{"utilization":10},"seven_day_new":{"utilization":"55.5","resets_at":1795627867},
                "limits":[{"name":"five_hour","utilization":99},{"type":"monthly","utilization":70,"resets_at":"2026-12-01T00:00:00Z"},
                          {"name":"broken"},"junk",{"utilization":5}]}"#,
        )
        .unwrap();
        assert_eq!(u.window("five_hour").unwrap().utilization, 10.0);
        let new = u.window("seven_day_new").unwrap();
        assert_eq!(new.utilization, 55.5);
        assert_eq!(new.resets_at, Some(UNIX_EPOCH + Duration::from_secs(1_795_627_867)));
        assert_eq!(u.window("monthly").unwrap().utilization, 70.0);
        assert_eq!(u.windows.len(), 3);
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        assert!(matches!(parse("<html>"), Err(UsageError::NotJson { .. })));
        assert_eq!(parse("[1]"), Err(UsageError::NotAnObject));
        assert_eq!(parse("{}"), Err(UsageError::NoWindows));
        assert_eq!(parse(r#"{"five_hour":{"utilization":null}}"#).unwrap().windows, vec![]);
        assert_eq!(parse(r#"{"five_hour":null,"seven_day":null}"#).unwrap().windows, vec![]);
        let e = parse(r#"{"five_hour":{"utilization":101}}"#).unwrap_err().to_string();
        assert!(e.contains("five_hour") && e.contains("101"), "{e}");
    }
}
