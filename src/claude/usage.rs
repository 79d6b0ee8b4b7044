//! Parses the answer of `GET /api/oauth/usage` into quota windows. Tolerant: any
//! window may be null, missing or new, utilization may be an integer or a float,
//! and newer answers add a `limits` array. The HTTP call itself lives elsewhere.

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
        self.windows
            .iter()
            .max_by(|a, b| a.utilization.total_cmp(&b.utilization))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum UsageError {
    NotJson { line: usize, column: usize },
    NotAnObject,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::NotJson { line, column } => {
                write!(f, "usage answer is not JSON (line {line}, column {column})")
            }
            UsageError::NotAnObject => write!(f, "usage answer is JSON but not an object"),
        }
    }
}

impl std::error::Error for UsageError {}

pub fn parse(body: &str) -> Result<Usage, UsageError> {
    let v: Value = serde_json::from_str(body).map_err(|e| UsageError::NotJson {
        line: e.line(),
        column: e.column(),
    })?;
    let top = v.as_object().ok_or(UsageError::NotAnObject)?;
    let mut usage = Usage::default();
    for (name, value) in top {
        if let Some(w) = value.as_object().and_then(|o| window(name, o)) {
            usage.windows.push(w);
        }
    }
    if let Some(limits) = top.get("limits").and_then(Value::as_array) {
        for item in limits.iter().filter_map(Value::as_object) {
            let name = ["name", "window", "type", "id", "rate_limit_type"]
                .iter()
                .find_map(|k| item.get(*k).and_then(Value::as_str));
            let Some(w) = name.and_then(|n| window(n, item)) else {
                continue;
            };
            if usage.window(&w.name).is_none() {
                usage.windows.push(w);
            }
        }
    }
    Ok(usage)
}

/// A window object: needs a numeric utilization (`utilization`, or the
/// statusline's `used_percentage`); `resets_at` as RFC 3339 or unix time.
fn window(name: &str, o: &Map<String, Value>) -> Option<QuotaWindow> {
    let utilization = ["utilization", "used_percentage", "percent_used"]
        .iter()
        .find_map(|k| o.get(*k).and_then(number))?;
    let resets_at = o.get("resets_at").and_then(|r| match r {
        Value::String(s) => super::parse_rfc3339(s)
            .or_else(|| s.trim().parse::<f64>().ok().and_then(super::unix_time)),
        Value::Number(n) => n.as_f64().and_then(super::unix_time),
        _ => None,
    });
    Some(QuotaWindow {
        name: name.to_string(),
        utilization,
        resets_at,
    })
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
        assert_eq!(
            five.resets_at,
            Some(UNIX_EPOCH + Duration::from_micros(1_767_383_999_600_956))
        );
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
        assert_eq!(
            new.resets_at,
            Some(UNIX_EPOCH + Duration::from_secs(1_795_627_867))
        );
        assert_eq!(u.window("monthly").unwrap().utilization, 70.0);
        assert_eq!(u.windows.len(), 3);
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        assert!(matches!(parse("<html>"), Err(UsageError::NotJson { .. })));
        assert_eq!(parse("[1]"), Err(UsageError::NotAnObject));
        assert_eq!(parse("{}").unwrap().windows, vec![]);
        assert_eq!(
            parse(r#"{"five_hour":{"utilization":null}}"#)
                .unwrap()
                .windows,
            vec![]
        );
    }
}
