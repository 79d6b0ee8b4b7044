//! `claude-failover mcp`: a Model Context Protocol server on stdin/stdout
//! (docs/mcp.md). One JSON-RPC 2.0 message per line; stdout carries nothing
//! but answers, logs go to stderr. It is a thin client of the running daemon's
//! control plane: every tool is one HTTP request (`client::send`) with the
//! `[mcp]` token, so the daemon, not this process, decides what the token may
//! do. It holds no state of the pool and never blocks the daemon: each request
//! has the client's 5 s limits.
//!
//! Synchronous like the daemon: read a line, answer it, read the next. A
//! line longer than [`max_line`] is skipped to its end unread, so no input
//! can grow the process; any input gets a JSON-RPC answer or, for a
//! notification, none, and end of input ends the server.

mod schema;
mod tools;

pub use tools::claude_names;

use crate::config::Config;
use serde_json::{json, Map, Value};
use std::io::{BufRead, Write};
use std::path::Path;

/// The revisions this server speaks, newest first. A client asking for
/// another gets the newest (the lifecycle rule of the spec).
pub const PROTOCOL_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The name clients show and prefix tools with (`mcp__claude-failover__status`).
pub const SERVER_NAME: &str = "claude-failover";

// JSON-RPC error codes.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INTERNAL_ERROR: i64 = -32603;
/// MCP's "resource not found".
const RESOURCE_NOT_FOUND: i64 = -32002;

const INSTRUCTIONS: &str = "claude-failover keeps a pool of Claude Code sessions working across several \
subscription accounts. Call `status` for the accounts' quota headroom (utilization and reset times), the \
sessions, the task queues and any account swap; `recent_events` for what happened lately. Where the \
operator allows it, `enqueue_task` queues a task for another session of a project, and `failover`, \
`pause_dispatch`, `resume_dispatch` and `restart_session` steer the pool.";

/// The longest line read: room for an `enqueue_task` of `max_task_bytes`
/// with every byte escaped, and never less than 4 MiB.
pub fn max_line(config: &Config) -> usize {
    let task = usize::try_from(config.dispatch.max_task_bytes).unwrap_or(usize::MAX);
    task.saturating_mul(6).saturating_add(64 * 1024).max(4 << 20)
}

/// `claude-failover mcp`: serves stdin/stdout until stdin closes. 0 then; 78
/// when the config is invalid (printed on stderr).
pub fn main(config_path: &Path) -> i32 {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(err) => {
            eprintln!("claude-failover mcp: invalid configuration:\n{err}");
            return crate::runtime::EXIT_CONFIG;
        }
    };
    for note in config.notes() {
        eprintln!("claude-failover mcp: note: {note}");
    }
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    match Server::new(config).serve(&mut stdin.lock(), &mut stdout.lock()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("claude-failover mcp: stdout failed: {e}");
            1
        }
    }
}

/// What the server knows of its client, for the daemon's `mcp_call` events.
#[derive(Debug, Default)]
struct Peer {
    /// `clientInfo` of `initialize` as `name/version`.
    client: Option<String>,
    /// The pool session this server runs in, looked up at the first write.
    session: Option<Option<String>>,
}

pub struct Server {
    config: Config,
    peer: Peer,
}

/// One line of input.
enum Line {
    Text(Vec<u8>),
    /// Longer than the limit; skipped to its end.
    TooLong,
    End,
}

impl Server {
    pub fn new(config: Config) -> Server {
        Server { config, peer: Peer::default() }
    }

    /// Answers every line of `input` on `output` until `input` ends.
    pub fn serve(&mut self, input: &mut impl BufRead, output: &mut impl Write) -> std::io::Result<()> {
        let limit = max_line(&self.config);
        loop {
            let answer = match read_line(input, limit) {
                Ok(Line::End) => return Ok(()),
                Ok(Line::TooLong) => Some(error(Value::Null, INVALID_REQUEST, &format!("message over {limit} bytes"))),
                Ok(Line::Text(bytes)) => self.handle_line(&bytes),
                Err(e) => {
                    // A read error on stdin: the client is gone.
                    log::debug!("mcp: reading stdin failed: {e}");
                    return Ok(());
                }
            };
            if let Some(answer) = answer {
                let mut text = answer.to_string();
                text.push('\n');
                output.write_all(text.as_bytes())?;
                output.flush()?;
            }
        }
    }

    /// The answer to one line, `None` for a notification, a response or a blank line.
    fn handle_line(&mut self, bytes: &[u8]) -> Option<Value> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        let message: Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) => return Some(error(Value::Null, PARSE_ERROR, &format!("not JSON: {e}"))),
        };
        let Value::Object(message) = message else {
            let why = if message.is_array() { "batches (JSON arrays) are not supported" } else { "not a JSON object" };
            return Some(error(Value::Null, INVALID_REQUEST, why));
        };
        let id = match message.get("id") {
            None => None,
            Some(id @ (Value::String(_) | Value::Number(_))) => Some(id.clone()),
            Some(_) => return Some(error(Value::Null, INVALID_REQUEST, "id must be a string or a number")),
        };
        let Some(method) = message.get("method") else {
            // A response to a request of ours: we send none, so there is nothing to match.
            if id.is_some() && (message.contains_key("result") || message.contains_key("error")) {
                return None;
            }
            return Some(error(id.unwrap_or(Value::Null), INVALID_REQUEST, "no method"));
        };
        let Some(method) = method.as_str() else {
            return Some(error(id.unwrap_or(Value::Null), INVALID_REQUEST, "method must be a string"));
        };
        if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Some(error(id.unwrap_or(Value::Null), INVALID_REQUEST, "jsonrpc must be \"2.0\""));
        }
        let params = match message.get("params") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(p)) => p.clone(),
            Some(_) => return Some(error(id.unwrap_or(Value::Null), INVALID_PARAMS, "params must be an object")),
        };
        let Some(id) = id else {
            // Notifications (initialized, cancelled, ...) get no answer.
            log::debug!("mcp: notification {method}");
            return None;
        };
        Some(match self.request(method, &params) {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err((code, message)) => error(id, code, &message),
        })
    }

    fn request(&mut self, method: &str, params: &Map<String, Value>) -> Result<Value, (i64, String)> {
        match method {
            "initialize" => Ok(self.initialize(params)),
            "ping" => Ok(json!({})),
            "tools/list" => Ok(json!({"tools": tools::list(&self.config)})),
            "tools/call" => {
                let name = params.get("name").and_then(Value::as_str).ok_or((INVALID_PARAMS, "no tool name".into()))?;
                let arguments = match params.get("arguments") {
                    None | Some(Value::Null) => Map::new(),
                    Some(Value::Object(a)) => a.clone(),
                    Some(_) => return Err((INVALID_PARAMS, "arguments must be an object".into())),
                };
                let session = self.session().map(str::to_string);
                let caller = tools::Caller { client: self.peer.client.as_deref(), session: session.as_deref() };
                tools::call(&self.config, name, &arguments, &caller).map_err(|why| (INVALID_PARAMS, why))
            }
            "resources/list" => Ok(json!({"resources": tools::resources()})),
            "resources/templates/list" => Ok(json!({"resourceTemplates": []})),
            "resources/read" => {
                let uri = params.get("uri").and_then(Value::as_str).ok_or((INVALID_PARAMS, "no uri".into()))?;
                match tools::read_resource(&self.config, uri) {
                    Ok(Some(contents)) => Ok(json!({"contents": [contents]})),
                    Ok(None) => Err((RESOURCE_NOT_FOUND, format!("no resource {uri}"))),
                    Err(why) => Err((INTERNAL_ERROR, why)),
                }
            }
            _ => Err((METHOD_NOT_FOUND, format!("method not found: {method}"))),
        }
    }

    fn initialize(&mut self, params: &Map<String, Value>) -> Value {
        let asked = params.get("protocolVersion").and_then(Value::as_str).unwrap_or("");
        let version = PROTOCOL_VERSIONS.iter().find(|v| **v == asked).unwrap_or(&PROTOCOL_VERSIONS[0]);
        if let Some(info) = params.get("clientInfo") {
            let name = info.get("name").and_then(Value::as_str).unwrap_or("?");
            let client = match info.get("version").and_then(Value::as_str) {
                Some(v) => format!("{name}/{v}"),
                None => name.to_string(),
            };
            self.peer.client = Some(client);
        }
        json!({
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": false}, "resources": {"listChanged": false}},
            "serverInfo": {"name": SERVER_NAME, "title": "claude-failover", "version": env!("CARGO_PKG_VERSION")},
            "instructions": INSTRUCTIONS,
        })
    }

    /// The pool session this server runs in (its Claude Code is a process in
    /// that session's tmux pane), looked up once.
    fn session(&mut self) -> Option<&str> {
        if self.peer.session.is_none() {
            self.peer.session = Some(pool_session(&self.config));
        }
        self.peer.session.as_ref().and_then(|s| s.as_deref())
    }
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// Reads one line of at most `limit` bytes (without its newline).
fn read_line(input: &mut impl BufRead, limit: usize) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buf = match input.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            // End of input: a last line without a newline still counts.
            return Ok(match (too_long, line.is_empty()) {
                (true, _) => Line::TooLong,
                (false, true) => Line::End,
                (false, false) => Line::Text(line),
            });
        }
        let (chunk, found) = match buf.iter().position(|b| *b == b'\n') {
            Some(at) => (&buf[..at], Some(at)),
            None => (buf, None),
        };
        if !too_long {
            if line.len() + chunk.len() > limit {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = found.map_or(buf.len(), |at| at + 1);
        input.consume(used);
        if found.is_some() {
            return Ok(if too_long { Line::TooLong } else { Line::Text(line) });
        }
    }
}

/// The configured session whose tmux pane this process descends from.
fn pool_session(config: &Config) -> Option<String> {
    let ancestors = ancestors(std::process::id());
    let tmux = crate::tmux::Tmux::new(&config.tmux.socket_name).with_timeout(std::time::Duration::from_secs(2));
    let panes = tmux.list_all_panes().ok()?;
    panes
        .into_iter()
        .find(|(session, pane)| ancestors.contains(&pane.pid) && config.session(session).is_some())
        .map(|(session, _)| session)
}

/// `pid` and its parents up to init, from /proc.
fn ancestors(pid: u32) -> Vec<u32> {
    let mut chain = vec![pid];
    let mut at = pid;
    while chain.len() < 64 {
        let Some(parent) = parent_of(at) else { break };
        if parent <= 1 {
            break;
        }
        chain.push(parent);
        at = parent;
    }
    chain
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields after it
    // start past the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], limit: usize) -> Vec<String> {
        let mut reader = std::io::BufReader::with_capacity(8, input);
        let mut out = Vec::new();
        loop {
            match read_line(&mut reader, limit).unwrap() {
                Line::End => return out,
                Line::TooLong => out.push("<too long>".into()),
                Line::Text(t) => out.push(String::from_utf8(t).unwrap()),
            }
        }
    }

    #[test]
    fn lines_are_capped_and_skipped_to_their_end() {
        assert_eq!(lines(b"ab\ncdefghijklmn\nxy", 5), ["ab", "<too long>", "xy"]);
        assert_eq!(lines(b"abcdefgh", 5), ["<too long>"]);
        assert_eq!(lines(b"\n\nab\n", 5), ["", "", "ab"]);
        assert!(lines(b"", 5).is_empty());
    }

    #[test]
    fn this_process_descends_from_itself_and_its_parent() {
        let chain = ancestors(std::process::id());
        assert_eq!(chain[0], std::process::id());
        assert_eq!(chain.get(1).copied(), parent_of(std::process::id()));
    }
}
