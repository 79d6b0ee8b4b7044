//! `claude-failover mcp` driven over its pipes: one JSON-RPC message per
//! line in, each answer read back with a deadline. Raw on purpose, like
//! [`super::http`]: the tests look at exactly what the server writes, and a
//! reader thread keeps a server that stays silent from hanging a test.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// How long an answer may take (a tool call waits up to 5 s for the daemon).
pub const ANSWER_WITHIN: Duration = Duration::from_secs(15);

pub struct McpServer {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    next_id: u64,
}

impl McpServer {
    /// `claude-failover mcp --config <config>`, stderr to `<config>.mcp.log`.
    pub fn start(config: &Path) -> McpServer {
        let log = config.with_extension("mcp.log");
        let mut child = Command::new(super::daemon_binary())
            .args(["mcp", "--config"])
            .arg(config)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("mcp log"))
            .spawn()
            .expect("start claude-failover mcp");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        McpServer { stdin: child.stdin.take(), child, lines, next_id: 1 }
    }

    /// Writes `bytes` and a newline as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(bytes).and_then(|()| stdin.write_all(b"\n")).and_then(|()| stdin.flush()).expect("write");
    }

    pub fn send(&mut self, message: &Value) {
        self.send_raw(message.to_string().as_bytes());
    }

    /// The next line the server writes, as JSON; panics after [`ANSWER_WITHIN`].
    pub fn recv(&mut self) -> Value {
        match self.lines.recv_timeout(ANSWER_WITHIN) {
            Ok(line) => serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON on stdout ({e}): {line}")),
            Err(RecvTimeoutError::Timeout) => panic!("no answer within {ANSWER_WITHIN:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the server closed stdout"),
        }
    }

    /// Whether the server wrote nothing more for `quiet` (after a notification).
    pub fn silent_for(&mut self, quiet: Duration) -> bool {
        matches!(self.lines.recv_timeout(quiet), Err(RecvTimeoutError::Timeout))
    }

    /// A request with a fresh numeric id; its whole answer (id checked).
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let answer = self.recv();
        assert_eq!(answer["id"], id, "answer to another request: {answer}");
        answer
    }

    /// `initialize` at `version` then `notifications/initialized`; the result.
    pub fn initialize(&mut self, version: &str) -> Value {
        let answer = self.request(
            "initialize",
            json!({"protocolVersion": version, "capabilities": {},
                   "clientInfo": {"name": "kit-test", "version": "1.0"}}),
        );
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        answer["result"].clone()
    }

    /// `tools/call`: the result object (an error answer panics).
    pub fn call(&mut self, tool: &str, arguments: Value) -> Value {
        let answer = self.request("tools/call", json!({"name": tool, "arguments": arguments}));
        assert!(answer.get("error").is_none(), "{tool}: {answer}");
        answer["result"].clone()
    }

    /// The names `tools/list` gives.
    pub fn tool_names(&mut self) -> Vec<String> {
        let answer = self.request("tools/list", json!({}));
        answer["result"]["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .map(|t| t["name"].as_str().expect("name").to_string())
            .collect()
    }

    /// Closes stdin and waits for the exit status.
    pub fn close(&mut self) -> Option<i32> {
        drop(self.stdin.take());
        super::wait_until(Duration::from_secs(10), "the MCP server to exit", || self.child.try_wait().unwrap()).code()
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
