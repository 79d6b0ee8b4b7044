//! Arguments checked against the tool's own `inputSchema`, so the schema a
//! client sees is the one enforced. Only the part of JSON Schema the tools
//! use: an object of named properties, each a string (`minLength`,
//! `maxLength`) or an integer (`minimum`, `maximum`), `required`, and no
//! other properties.

use serde_json::{Map, Value};

/// Why `arguments` do not fit `schema`, as a sentence naming the argument.
pub fn check(schema: &Value, arguments: &Map<String, Value>) -> Result<(), String> {
    let properties = schema.get("properties").and_then(Value::as_object);
    for (name, value) in arguments {
        let Some(property) = properties.and_then(|p| p.get(name)) else {
            let known: Vec<&str> = properties.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
            return Err(if known.is_empty() {
                format!("unknown argument {name:?}: this tool takes no arguments")
            } else {
                format!("unknown argument {name:?} (arguments: {})", known.join(", "))
            });
        };
        check_value(name, property, value)?;
    }
    for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
        if let Some(name) = required.as_str() {
            if !arguments.contains_key(name) {
                return Err(format!("missing argument {name:?}"));
            }
        }
    }
    Ok(())
}

fn check_value(name: &str, property: &Value, value: &Value) -> Result<(), String> {
    let bound = |key: &str| property.get(key).and_then(Value::as_i64);
    match property.get("type").and_then(Value::as_str) {
        Some("string") => {
            let Some(text) = value.as_str() else {
                return Err(format!("argument {name:?} must be a string, not {}", kind(value)));
            };
            let chars = text.chars().count() as i64;
            if bound("minLength").is_some_and(|min| chars < min) {
                return Err(format!("argument {name:?} must not be empty"));
            }
            if let Some(max) = bound("maxLength").filter(|max| chars > *max) {
                return Err(format!("argument {name:?} is longer than {max} characters"));
            }
            Ok(())
        }
        Some("integer") => {
            let Some(n) = value.as_i64() else {
                return Err(format!("argument {name:?} must be a whole number, not {}", kind(value)));
            };
            match (bound("minimum"), bound("maximum")) {
                (Some(min), _) if n < min => Err(format!("argument {name:?} must be at least {min}")),
                (_, Some(max)) if n > max => Err(format!("argument {name:?} must be at most {max}")),
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "true or false",
        Value::Number(n) if n.is_i64() || n.is_u64() => "a number out of range",
        Value::Number(_) => "a fraction",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_fit_the_schema_or_say_why_not() {
        let schema = json!({"type": "object", "additionalProperties": false, "required": ["s"],
            "properties": {"s": {"type": "string", "minLength": 1, "maxLength": 3},
                           "n": {"type": "integer", "minimum": 1, "maximum": 200}}});
        let args = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(check(&schema, &args(json!({"s": "ab", "n": 200}))), Ok(()));
        for (bad, why) in [
            (json!({}), "missing argument \"s\""),
            (json!({"s": 1}), "must be a string, not a number"),
            (json!({"s": ""}), "must not be empty"),
            (json!({"s": "abcd"}), "longer than 3"),
            (json!({"s": "a", "n": 0}), "at least 1"),
            (json!({"s": "a", "n": 201}), "at most 200"),
            (json!({"s": "a", "n": 1.5}), "a fraction"),
            (json!({"s": "a", "n": "1"}), "not a string"),
            (json!({"s": "a", "x": 1}), "unknown argument \"x\" (arguments: n, s)"),
        ] {
            let got = check(&schema, &args(bad.clone())).unwrap_err();
            assert!(got.contains(why), "{bad}: {got}");
        }
        let none = json!({"type": "object", "additionalProperties": false});
        assert!(check(&none, &args(json!({"x": 1}))).unwrap_err().contains("takes no arguments"));
    }
}
