//! The tools and resources of docs/mcp.md: their schemas and hints, and each
//! call as one request to the daemon's control plane. A refusal or a daemon
//! that does not answer is a tool result with `isError` and a sentence saying
//! what to do, for the model to read; only a call that names no tool or whose
//! arguments do not fit the schema is a protocol error.

use super::schema;
use crate::client::{self, Call, ClientError};
use crate::config::{Config, Tier};
use serde_json::{json, Map, Value};

/// Who is calling, for the daemon's `mcp_call` events.
pub struct Caller<'a> {
    /// `clientInfo` as `name/version`.
    pub client: Option<&'a str>,
    /// The pool session the client runs in.
    pub session: Option<&'a str>,
}

/// The default and largest `recent_events` limit.
const EVENTS_DEFAULT: i64 = 20;
const EVENTS_MAX: i64 = 200;
/// The default `session_output` lines.
const OUTPUT_DEFAULT: i64 = 50;

struct Tool {
    name: &'static str,
    title: &'static str,
    description: &'static str,
    tier: Tier,
    input: Value,
    output: Value,
}

fn no_arguments() -> Value {
    json!({"type": "object", "additionalProperties": false})
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

fn name_arg(what: &str) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 255, "description": what})
}

fn table() -> Vec<Tool> {
    let max_lines = crate::http::MAX_OUTPUT_LINES as i64;
    vec![
        Tool {
            name: "status",
            title: "Pool status",
            description: "The pool now: each account's quota use (five_hour and seven_day utilization in percent, \
                          with reset times) and whether it can take work, the active account, every session's \
                          state and task, each project's queue counts, and any account swap in progress.",
            tier: Tier::Read,
            input: no_arguments(),
            output: json!({"type": "object", "required": ["accounts", "sessions", "queues", "swap"],
                "properties": {"active_account": {"anyOf": [{"type": "string"}, {"type": "null"}]}, "dispatch_paused": {"type": "boolean"},
                    "accounts": {"type": "array"}, "sessions": {"type": "array"}, "queues": {"type": "array"},
                    "swap": {"type": "object"}}}),
        },
        Tool {
            name: "recent_events",
            title: "Recent events",
            description: "The pool's latest events (swaps, limits, sessions dying or restarting, tasks dispatched, \
                          done or failed), oldest first; pass since = the last seq you saw to get only newer ones.",
            tier: Tier::Read,
            input: object(
                json!({
                    "since": {"type": "integer", "minimum": 0, "description": "only events with a seq above this"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": EVENTS_MAX,
                              "description": format!("at most this many, the newest (default {EVENTS_DEFAULT})")},
                }),
                &[],
            ),
            output: json!({"type": "object", "required": ["events", "last_seq"],
                "properties": {"events": {"type": "array"}, "last_seq": {"type": "integer"}}}),
        },
        Tool {
            name: "task_status",
            title: "Task status",
            description: "Where one queued task is (inbox, active, done, failed or the archive) with its lease \
                          (who works on it), result (the last assistant message) or error (why it failed).",
            tier: Tier::Read,
            input: object(
                json!({"project": name_arg("the project's name, as in status"),
                       "task": name_arg("the task file's name, e.g. fix-login.md")}),
                &["project", "task"],
            ),
            output: json!({"type": "object", "required": ["project", "task", "folder"],
                "properties": {"project": {"type": "string"}, "task": {"type": "string"},
                    "folder": {"type": "string"}, "attempts": {"type": "integer"}, "lease": {"type": "object"},
                    "result": {"type": "object"}, "error": {"type": "object"}}}),
        },
        Tool {
            name: "session_output",
            title: "Session screen",
            description: "The last lines of one pool session's terminal screen (its Claude Code), to see what it \
                          is doing or what it waits for.",
            tier: Tier::Read,
            input: object(
                json!({"session": name_arg("the session's name, as in status"),
                       "lines": {"type": "integer", "minimum": 1, "maximum": max_lines,
                                 "description": format!("how many lines (default {OUTPUT_DEFAULT})")}}),
                &["session"],
            ),
            output: json!({"type": "object", "required": ["session", "lines"],
                "properties": {"session": {"type": "string"}, "lines": {"type": "array", "items": {"type": "string"}}}}),
        },
        Tool {
            name: "enqueue_task",
            title: "Queue a task",
            description: "Queue a task (markdown text) for a session of a project: it goes into the project's \
                          inbox like a file a person drops there and is handed to the next idle session; \
                          follow it with task_status.",
            tier: Tier::Queue,
            input: object(
                json!({
                    "project": name_arg("the project's name, as in status"),
                    "text": {"type": "string", "minLength": 1, "description": "the task, as the prompt to send"},
                    "name": {"type": "string", "minLength": 4, "maxLength": 200,
                             "description": "the task file's name, ending in .md (default: made from the time \
                                             and the first line)"},
                    "priority": {"type": "integer", "description": "higher goes first (default 0)"},
                    "session": name_arg("only this session of the project may take it"),
                }),
                &["project", "text"],
            ),
            output: json!({"type": "object", "required": ["project", "task", "folder"],
                "properties": {"project": {"type": "string"}, "task": {"type": "string"}, "folder": {"type": "string"}}}),
        },
        Tool {
            name: "failover",
            title: "Swap accounts now",
            description: "Move every session to another account now (the best eligible one, or `to`), e.g. \
                          before a quota runs out; running turns are let finish first.",
            tier: Tier::Control,
            input: object(json!({"to": name_arg("the account to move to (default: the best other one)")}), &[]),
            output: json!({"type": "object", "properties": {"accepted": {"type": "boolean"},
                "from": {"type": "string"}, "to": {"type": "string"}}}),
        },
        Tool {
            name: "pause_dispatch",
            title: "Pause dispatch",
            description: "Stop handing queued tasks to sessions (tasks in progress go on) until resume_dispatch.",
            tier: Tier::Control,
            input: no_arguments(),
            output: json!({"type": "object", "required": ["paused"], "properties": {"paused": {"type": "boolean"}}}),
        },
        Tool {
            name: "resume_dispatch",
            title: "Resume dispatch",
            description: "Hand queued tasks to idle sessions again after pause_dispatch.",
            tier: Tier::Control,
            input: no_arguments(),
            output: json!({"type": "object", "required": ["paused"], "properties": {"paused": {"type": "boolean"}}}),
        },
        Tool {
            name: "restart_session",
            title: "Restart a session",
            description: "Stop one pool session's Claude Code and start it again on the active account, resuming \
                          its conversation (for a session that is stuck).",
            tier: Tier::Control,
            input: object(json!({"session": name_arg("the session's name, as in status")}), &["session"]),
            output: json!({"type": "object", "properties": {"accepted": {"type": "boolean"},
                "session": {"type": "string"}, "account": {"type": "string"}}}),
        },
    ]
}

/// The tools of the tiers offered, as Claude Code names them
/// (`mcp__claude-failover__status`): what `setup` allows in each account's
/// settings so an unattended session calls them without asking.
pub fn claude_names(config: &Config) -> Vec<String> {
    let offered = config.mcp_tiers();
    table()
        .into_iter()
        .filter(|t| offered.contains(&t.tier))
        .map(|t| format!("mcp__{}__{}", super::SERVER_NAME, t.name))
        .collect()
}

/// `tools/list`: the tools of the tiers offered.
pub fn list(config: &Config) -> Vec<Value> {
    let offered = config.mcp_tiers();
    table()
        .into_iter()
        .filter(|t| offered.contains(&t.tier))
        .map(|t| {
            let read_only = t.tier == Tier::Read;
            json!({
                "name": t.name,
                "title": t.title,
                "description": t.description,
                "inputSchema": t.input,
                "outputSchema": t.output,
                "annotations": {
                    "title": t.title,
                    "readOnlyHint": read_only,
                    "destructiveHint": matches!(t.name, "failover" | "restart_session"),
                    "idempotentHint": read_only || matches!(t.name, "pause_dispatch" | "resume_dispatch"),
                    "openWorldHint": false,
                },
            })
        })
        .collect()
}

/// `tools/call`: the result, or why the call itself is malformed (-32602).
pub fn call(config: &Config, name: &str, args: &Map<String, Value>, caller: &Caller<'_>) -> Result<Value, String> {
    let tools = table();
    let Some(tool) = tools.iter().find(|t| t.name == name) else {
        let names: Vec<&str> = tools.iter().map(|t| t.name).collect();
        return Err(format!("unknown tool {name:?} (tools: {})", names.join(", ")));
    };
    let offered = config.mcp_tiers();
    if !offered.contains(&tool.tier) {
        let has: Vec<&str> = offered.iter().map(|t| t.as_str()).collect();
        return Err(format!(
            "tool {name} is not offered: it needs the \"{}\" tier and this server offers [{}] (config [mcp] allow)",
            tool.tier,
            has.join(", ")
        ));
    }
    schema::check(&tool.input, args)?;
    let text = |key: &str| args.get(key).and_then(Value::as_str);
    let int = |key: &str| args.get(key).and_then(Value::as_i64);
    let request = match name {
        "status" => Request::get("/status".into()),
        "recent_events" => Request::get(format!("/events?since={}", int("since").unwrap_or(0))),
        "task_status" => Request::get(format!(
            "/projects/{}/tasks/{}",
            encode(text("project").unwrap_or_default()),
            encode(text("task").unwrap_or_default())
        )),
        "session_output" => Request::get(format!(
            "/sessions/{}/output?lines={}",
            encode(text("session").unwrap_or_default()),
            int("lines").unwrap_or(OUTPUT_DEFAULT)
        )),
        "enqueue_task" => {
            let mut query = Vec::new();
            if let Some(n) = text("name") {
                query.push(format!("name={}", encode(n)));
            }
            if let Some(p) = int("priority") {
                query.push(format!("priority={p}"));
            }
            if let Some(s) = text("session") {
                query.push(format!("session={}", encode(s)));
            }
            let project = encode(text("project").unwrap_or_default());
            let mut path = format!("/projects/{project}/tasks");
            if !query.is_empty() {
                path = format!("{path}?{}", query.join("&"));
            }
            Request::post(path, text("text").unwrap_or_default().to_string(), "text/markdown; charset=utf-8")
        }
        "failover" => {
            let body = match text("to") {
                Some(to) => json!({ "to": to }).to_string(),
                None => "{}".into(),
            };
            Request::post("/failover".into(), body, "application/json")
        }
        "pause_dispatch" => Request::post("/dispatch/pause".into(), "{}".into(), "application/json"),
        "resume_dispatch" => Request::post("/dispatch/resume".into(), "{}".into(), "application/json"),
        "restart_session" => Request::post(
            format!("/sessions/{}/restart", encode(text("session").unwrap_or_default())),
            "{}".into(),
            "application/json",
        ),
        _ => return Err(format!("tool {name} has no request (a bug)")),
    };
    let answer = send(config, &request, Some(name), caller);
    Ok(match answer {
        Ok(mut value) => {
            if name == "recent_events" {
                value = newest(value, int("limit").unwrap_or(EVENTS_DEFAULT));
            }
            let text = value.to_string();
            json!({"content": [{"type": "text", "text": text}], "structuredContent": value, "isError": false})
        }
        Err(why) => json!({"content": [{"type": "text", "text": why}], "isError": true}),
    })
}

/// The newest `limit` events of an `/events` answer, and the last seq.
fn newest(mut answer: Value, limit: i64) -> Value {
    let mut events = match answer.get_mut("events").map(Value::take) {
        Some(Value::Array(events)) => events,
        _ => Vec::new(),
    };
    let last_seq = events.last().and_then(|e| e.get("seq")).and_then(Value::as_u64).unwrap_or(0);
    let keep = usize::try_from(limit).unwrap_or(0);
    let events = events.split_off(events.len().saturating_sub(keep));
    json!({"events": events, "last_seq": last_seq})
}

/// `resources/list`.
pub fn resources() -> Value {
    json!([
        {"uri": "claude-failover://status", "name": "status", "title": "Pool status",
         "description": "The daemon's status document (GET /status): accounts, sessions, queues, swap.",
         "mimeType": "application/json"},
        {"uri": "claude-failover://events", "name": "events", "title": "Recent events",
         "description": "The daemon's recent events (GET /events), oldest first.",
         "mimeType": "application/json"},
    ])
}

/// `resources/read`: the contents, `None` for an unknown URI, or why the
/// daemon could not give it.
pub fn read_resource(config: &Config, uri: &str) -> Result<Option<Value>, String> {
    let path = match uri {
        "claude-failover://status" => "/status",
        "claude-failover://events" => "/events",
        _ => return Ok(None),
    };
    if !config.mcp_tiers().contains(&Tier::Read) {
        return Err("resources need the \"read\" tier, which [mcp] allow does not give".into());
    }
    let caller = Caller { client: None, session: None };
    let value = send(config, &Request::get(path.into()), None, &caller)?;
    Ok(Some(json!({"uri": uri, "mimeType": "application/json", "text": value.to_string()})))
}

struct Request {
    method: &'static str,
    path: String,
    body: Option<String>,
    content_type: &'static str,
}

impl Request {
    fn get(path: String) -> Request {
        Request { method: "GET", path, body: None, content_type: "application/json" }
    }

    fn post(path: String, body: String, content_type: &'static str) -> Request {
        Request { method: "POST", path, body: Some(body), content_type }
    }
}

/// Sends `request` with the MCP token; the JSON answer of a 2xx, or a
/// sentence for the model.
fn send(config: &Config, request: &Request, tool: Option<&str>, caller: &Caller<'_>) -> Result<Value, String> {
    // With no operator token the control plane takes none; with one, the MCP
    // server's own token (none configured gets the 401 explained below).
    let token = config.http.token.as_ref().and(config.mcp.token.as_ref());
    let mut headers = Vec::new();
    if let Some(tool) = tool {
        headers.push(("X-Claude-Failover-Tool", header_value(tool)));
    }
    if let Some(client) = caller.client {
        headers.push(("X-Claude-Failover-Client", header_value(client)));
    }
    if let Some(session) = caller.session {
        headers.push(("X-Claude-Failover-Session", header_value(session)));
    }
    let call = Call {
        method: request.method,
        path: &request.path,
        body: request.body.as_deref(),
        content_type: request.content_type,
        token,
        headers: &headers,
    };
    let (status, body) = client::send(config, &call).map_err(|e| match e {
        ClientError::Unavailable { listen, why } => format!(
            "The claude-failover daemon is not answering at {listen} ({why}). It may be stopped: start it \
             (e.g. `systemctl start claude-failover`) and call this tool again."
        ),
        other => format!("The claude-failover daemon could not be asked: {other}. Try again later."),
    })?;
    let said = || {
        serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| body.trim().to_string())
    };
    match status {
        200..=299 => serde_json::from_str(&body).map_err(|e| format!("The daemon's answer is not JSON ({e}).")),
        401 => Err(if token.is_none() && config.http.token.is_some() {
            "The daemon refused this MCP server (401): the control plane needs a token and [mcp] token_file \
             is not set. An operator must set mcp.token_file to a file holding a token of its own and restart \
             the daemon."
                .into()
        } else {
            "The daemon refused this MCP server's token (401). [mcp] token_file must hold the token the daemon \
             loaded at its start: an operator should check the file and restart the daemon."
                .into()
        }),
        403 => Err(format!("Not allowed: {}.", said())),
        404 => Err(format!("{}. Call status to see the configured projects and sessions.", said())),
        409 => Err(format!("{}. Check status and try again once that has changed.", said())),
        413 => Err(format!(
            "Too large: {}. The task must fit dispatch.max_task_bytes ({} bytes): shorten it.",
            said(),
            config.dispatch.max_task_bytes
        )),
        400 => Err(format!("Refused: {}. Correct the arguments and call again.", said())),
        503 => Err(format!("The daemon is busy: {}. Try again in a few seconds.", said())),
        code => Err(format!("The daemon answered {code}: {}.", said())),
    }
}

/// Printable ASCII for a header value (a client name may hold anything).
fn header_value(text: &str) -> String {
    text.chars().take(120).map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect()
}

/// Percent-encodes all but the unreserved characters (a path segment or a
/// query value).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_a_valid_schema_and_hints() {
        for tool in table() {
            assert_eq!(tool.input["type"], "object", "{}", tool.name);
            assert_eq!(tool.input["additionalProperties"], false, "{}", tool.name);
            assert_eq!(tool.output["type"], "object", "{}", tool.name);
            assert!(tool.description.len() < 400 && !tool.description.contains('\n'), "{}", tool.name);
        }
    }

    #[test]
    fn encoding_and_event_limits() {
        assert_eq!(encode("a b/ç.md"), "a%20b%2F%C3%A7.md");
        let events = json!({"events": [{"seq": 1}, {"seq": 2}, {"seq": 3}]});
        assert_eq!(newest(events, 2), json!({"events": [{"seq": 2}, {"seq": 3}], "last_seq": 3}));
        assert_eq!(header_value("cl\u{e9}\nx"), "cl??x");
    }
}
