//! `claude-failover mcp` over its pipes (docs/mcp.md): the handshake of every
//! revision, the discover probe, malformed input down to a 10 MB line, end of
//! input; every tool and resource against a live daemon with a session in a
//! private tmux server; each error the model is meant to read; the tiers held
//! by the daemon over MCP and over raw HTTP; the routes and CLI commands the
//! tools stand on.

use kit::accounts;
use kit::mcp::McpServer;
use kit::tmux::TmuxServer;
use kit::{free_port, temp_dir, wait_until, ConfigBuilder, Daemon};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const OPERATOR: &str = "tok-operator-1b2c3d";
const MCP_TOKEN: &str = "tok-mcp-9e8f7a";
const PROJECT: &str = "proj";
const SESSION: &str = "s1";

/// A daemon with one project, one session running a stand-in for Claude
/// Code that prints 300 numbered lines and waits, and the two tokens.
struct Pool {
    dir: tempfile::TempDir,
    _tmux: TmuxServer,
    _api: kit::fake_api::FakeApi,
    daemon: Daemon,
    project: PathBuf,
}

fn pool(allow: &[&str], max_task_bytes: i64) -> Pool {
    let dir = temp_dir();
    let root = dir.path().to_path_buf();
    let tmux = TmuxServer::new();
    let api = kit::fake_api::FakeApi::start();
    let port = free_port();
    let project = root.join("projects").join(PROJECT);
    std::fs::create_dir_all(&project).unwrap();
    kit::write(&root.join("operator.token"), OPERATOR);
    kit::write(&root.join("mcp.token"), MCP_TOKEN);
    let fake = root.join("fake-claude");
    kit::write(&fake, "#!/bin/sh\nfor i in $(seq 1 300); do echo \"screen line $i\"; done\nexec sleep 600\n");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut config = ConfigBuilder::base(&root, tmux.socket_name(), port)
        .set("claude", "binary", fake.display().to_string())
        .set("claude", "startup_timeout_secs", 600)
        .set("http", "token_file", root.join("operator.token").display().to_string())
        .set("dispatch", "enabled", false)
        .set("dispatch", "max_task_bytes", max_task_bytes)
        .set("mcp", "allow", allow.iter().map(|a| a.to_string()).collect::<Vec<_>>())
        .set("mcp", "token_file", root.join("mcp.token").display().to_string())
        .set("quota", "usage_url", format!("{}/api/oauth/usage", api.url()));
    for name in ["alpha", "beta"] {
        let account = accounts::create(&root.join("accounts"), name, &[&project]);
        config = config.account(name, &account.dir);
    }
    config = config.project(PROJECT, &project).session(SESSION, PROJECT);
    let daemon = Daemon::start(&root, &config.render(), port, &[]);
    Pool { dir, _tmux: tmux, _api: api, daemon, project }
}

/// What a client sends its body as: a task file to the task route, JSON elsewhere.
fn content_type(path: &str) -> (&'static str, &'static str) {
    if path.split('?').next().is_some_and(|p| p.ends_with("/tasks")) {
        ("Content-Type", "text/markdown; charset=utf-8")
    } else {
        kit::http::JSON
    }
}

impl Pool {
    fn config(&self) -> PathBuf {
        self.daemon.config.clone()
    }

    /// A copy of the config with `from` replaced by `to` (another view the
    /// MCP server may have of the same daemon).
    fn config_with(&self, name: &str, from: &str, to: &str) -> PathBuf {
        let text = std::fs::read_to_string(self.config()).unwrap();
        assert!(text.contains(from), "{from:?} not in the config");
        let path = self.dir.path().join(name);
        std::fs::write(&path, text.replace(from, to)).unwrap();
        path
    }

    fn as_operator(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let auth = format!("Bearer {OPERATOR}");
        self.daemon.request(method, path, body, &[("Authorization", &auth), content_type(path)]).unwrap()
    }

    fn as_mcp(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let auth = format!("Bearer {MCP_TOKEN}");
        self.daemon.request(method, path, body, &[("Authorization", &auth), content_type(path)]).unwrap()
    }

    fn inbox(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.project.join(".agent-queue/inbox"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn mcp_calls(&self) -> Vec<Value> {
        let (_, body) = self.as_operator("GET", "/events?since=0", None);
        let all: Value = serde_json::from_str(&body).unwrap();
        all["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "mcp_call").cloned().collect()
    }
}

/// A config for servers that need no daemon: nothing listens at its address.
fn lone_config(dir: &Path) -> PathBuf {
    let port = free_port();
    let text = ConfigBuilder::base(dir, "cf-unused", port).account("alpha", &dir.join("accounts/alpha")).render();
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn error_code(answer: &Value) -> i64 {
    answer["error"]["code"].as_i64().unwrap_or_else(|| panic!("not an error: {answer}"))
}

fn text_of(result: &Value) -> String {
    result["content"][0]["text"].as_str().unwrap_or_default().to_string()
}

#[test]
fn handshake_for_each_revision_and_the_discover_probe() {
    let dir = temp_dir();
    let config = lone_config(dir.path());
    for (asked, given) in [
        ("2025-11-25", "2025-11-25"),
        ("2025-06-18", "2025-06-18"),
        ("2025-03-26", "2025-03-26"),
        ("2024-11-05", "2024-11-05"),
        ("2099-01-01", "2025-11-25"),
    ] {
        let mut server = McpServer::start(&config);
        // Claude Code's probe first: it waits ~3 s for an answer that never comes.
        server.send(&json!({"jsonrpc": "2.0", "id": "server-discover-probe-1", "method": "server/discover"}));
        let probe = server.recv();
        assert_eq!((probe["id"].as_str(), error_code(&probe)), (Some("server-discover-probe-1"), -32601), "{probe}");
        let result = server.initialize(asked);
        assert_eq!(result["protocolVersion"], given, "{asked}");
        assert_eq!(result["serverInfo"]["name"], "claude-failover");
        assert!(result["capabilities"]["tools"].is_object() && result["capabilities"]["resources"].is_object());
        assert!(result["capabilities"].get("logging").is_none(), "logging is declared but not handled");
        // The notification sent by initialize() got no answer: the next line is the ping's.
        let pong = server.request("ping", json!({}));
        assert_eq!(pong["result"], json!({}));
        // A string id comes back as the same string.
        server.send(&json!({"jsonrpc": "2.0", "id": "a-7", "method": "ping"}));
        assert_eq!(server.recv()["id"], "a-7");
        assert_eq!(server.close(), Some(0), "EOF ends the server");
    }
}

#[test]
fn malformed_lines_get_json_rpc_errors_and_the_server_lives_on() {
    let dir = temp_dir();
    let config = lone_config(dir.path());
    let mut server = McpServer::start(&config);
    server.initialize("2025-11-25");
    let cases: Vec<(Vec<u8>, i64, Value)> = vec![
        (b"this is not json".to_vec(), -32700, Value::Null),
        (b"{\"jsonrpc\":\"2.0\",\"id\":1,".to_vec(), -32700, Value::Null),
        (vec![0xff, 0xfe, b'{', b'}'], -32700, Value::Null),
        (br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#.to_vec(), -32600, Value::Null),
        (b"42".to_vec(), -32600, Value::Null),
        (br#"{"jsonrpc":"2.0","id":2}"#.to_vec(), -32600, json!(2)),
        (br#"{"jsonrpc":"2.0","id":3,"method":7}"#.to_vec(), -32600, json!(3)),
        (br#"{"jsonrpc":"1.0","id":4,"method":"ping"}"#.to_vec(), -32600, json!(4)),
        (br#"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#.to_vec(), -32600, Value::Null),
        (br#"{"jsonrpc":"2.0","id":5,"method":"ping","params":[1]}"#.to_vec(), -32602, json!(5)),
        (br#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{}}"#.to_vec(), -32602, json!(6)),
        (br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"nope"}}"#.to_vec(), -32602, json!(7)),
        (
            br#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"task_status","arguments":{"project":1,"task":"a.md"}}}"#.to_vec(),
            -32602,
            json!(8),
        ),
        (
            br#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"task_status","arguments":{"project":"p"}}}"#.to_vec(),
            -32602,
            json!(9),
        ),
        (
            br#"{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"status","arguments":{"verbose":true}}}"#.to_vec(),
            -32602,
            json!(10),
        ),
        (
            br#"{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"status","arguments":[]}}"#.to_vec(),
            -32602,
            json!(11),
        ),
        (
            br#"{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"session_output","arguments":{"session":"s","lines":201}}}"#.to_vec(),
            -32602,
            json!(12),
        ),
        // A tool of a tier this server does not offer (allow is ["read"]).
        (
            br#"{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{"name":"enqueue_task","arguments":{"project":"p","text":"x"}}}"#.to_vec(),
            -32602,
            json!(13),
        ),
        (br#"{"jsonrpc":"2.0","id":14,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}"#.to_vec(), -32002, json!(14)),
        (br#"{"jsonrpc":"2.0","id":15,"method":"prompts/list"}"#.to_vec(), -32601, json!(15)),
    ];
    for (line, code, id) in cases {
        server.send_raw(&line);
        let answer = server.recv();
        let shown = String::from_utf8_lossy(&line);
        assert_eq!(error_code(&answer), code, "{shown}: {answer}");
        assert_eq!(answer["id"], id, "{shown}: {answer}");
        assert_eq!(answer["jsonrpc"], "2.0");
    }
    // A 10 MB line is skipped unread and answered; the next request is served.
    let mut huge = br#"{"jsonrpc":"2.0","id":99,"method":"ping","params":{"pad":""#.to_vec();
    huge.resize(10 * 1024 * 1024, b'x');
    huge.extend_from_slice(br#""}}"#);
    server.send_raw(&huge);
    let answer = server.recv();
    assert_eq!(error_code(&answer), -32600, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("over"), "{answer}");
    // Notifications, blank lines and responses get no answer at all.
    server.send_raw(b"");
    server.send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}));
    server.send(&json!({"jsonrpc": "2.0", "id": 77, "result": {}}));
    assert!(server.silent_for(Duration::from_millis(300)));
    assert_eq!(server.request("ping", json!({}))["result"], json!({}));
    assert_eq!(server.close(), Some(0));
}

#[test]
fn every_tool_and_resource_against_a_live_daemon() {
    let mut p = pool(&["read", "queue", "control"], 262_144);
    let mut mcp = McpServer::start(&p.config());
    mcp.initialize("2025-11-25");
    let tools = mcp.tool_names();
    for t in [
        "status",
        "recent_events",
        "task_status",
        "session_output",
        "enqueue_task",
        "failover",
        "pause_dispatch",
        "resume_dispatch",
        "restart_session",
    ] {
        assert!(tools.contains(&t.to_string()), "{t} missing from {tools:?}");
    }
    let listed = mcp.request("tools/list", json!({}));
    for tool in listed["result"]["tools"].as_array().unwrap() {
        let read_only = tool["annotations"]["readOnlyHint"].as_bool().unwrap();
        let name = tool["name"].as_str().unwrap();
        assert_eq!(read_only, ["status", "recent_events", "task_status", "session_output"].contains(&name), "{name}");
        assert_eq!(tool["inputSchema"]["type"], "object");
    }

    // status: the live document, as structuredContent and the same JSON as text.
    let status = mcp.call("status", json!({}));
    assert_eq!(status["isError"], false, "{status}");
    assert_eq!(status["structuredContent"]["active_account"], "alpha");
    assert_eq!(serde_json::from_str::<Value>(&text_of(&status)).unwrap(), status["structuredContent"]);

    // session_output: the last lines of the session's screen, at most 200.
    let screen = wait_until(Duration::from_secs(30), "the session's screen", || {
        let r = mcp.call("session_output", json!({"session": SESSION, "lines": 200}));
        let lines = r["structuredContent"]["lines"].as_array().cloned().unwrap_or_default();
        (lines.last().and_then(Value::as_str) == Some("screen line 300")).then_some(lines)
    });
    assert_eq!(screen.len(), 200);
    assert_eq!(screen[0], "screen line 101");
    let few = mcp.call("session_output", json!({"session": SESSION, "lines": 3}));
    assert_eq!(few["structuredContent"]["lines"], json!(["screen line 298", "screen line 299", "screen line 300"]));
    let nobody = mcp.call("session_output", json!({"session": "nobody"}));
    assert_eq!(nobody["isError"], true);
    assert!(text_of(&nobody).contains("no session named \"nobody\""), "{nobody}");

    // enqueue_task: into the inbox as a file, front matter from the arguments.
    let queued = mcp.call(
        "enqueue_task",
        json!({"project": PROJECT, "text": "Write the changelog.\n", "name": "changelog.md",
               "priority": 3, "session": SESSION}),
    );
    assert_eq!(queued["isError"], false, "{queued}");
    assert_eq!(queued["structuredContent"], json!({"project": PROJECT, "task": "changelog.md", "folder": "inbox"}));
    let file = std::fs::read_to_string(p.project.join(".agent-queue/inbox/changelog.md")).unwrap();
    assert_eq!(file, "+++\npriority = 3\nsession = \"s1\"\n+++\nWrite the changelog.\n");
    let named = mcp.call("enqueue_task", json!({"project": PROJECT, "text": "Tidy the README"}));
    let generated = named["structuredContent"]["task"].as_str().unwrap().to_string();
    assert!(generated.ends_with("-tidy-the-readme.md"), "{generated}");
    assert_eq!(p.inbox(), {
        let mut v = vec!["changelog.md".to_string(), generated.clone()];
        v.sort();
        v
    });

    // Each refusal is a result the model can read, and queues nothing.
    let again = mcp.call("enqueue_task", json!({"project": PROJECT, "text": "x", "name": "changelog.md"}));
    assert!(again["isError"] == true && text_of(&again).contains("already in the queue"), "{again}");
    let unknown = mcp.call("enqueue_task", json!({"project": "nope", "text": "x"}));
    assert!(unknown["isError"] == true && text_of(&unknown).contains("no project named \"nope\""), "{unknown}");
    let pinned = mcp.call("enqueue_task", json!({"project": PROJECT, "text": "x", "session": "ghost"}));
    assert!(pinned["isError"] == true && text_of(&pinned).contains("names no session of project proj"), "{pinned}");
    let empty = mcp.call("enqueue_task", json!({"project": PROJECT, "text": " \n "}));
    assert!(empty["isError"] == true && text_of(&empty).contains("the task has no text to send"), "{empty}");
    assert_eq!(p.inbox().len(), 2);

    // task_status: where the task is.
    let found = mcp.call("task_status", json!({"project": PROJECT, "task": "changelog.md"}));
    assert_eq!(found["structuredContent"]["folder"], "inbox", "{found}");
    let missing = mcp.call("task_status", json!({"project": PROJECT, "task": "never.md"}));
    assert!(missing["isError"] == true && text_of(&missing).contains("no task named"), "{missing}");

    // The control tools.
    assert_eq!(mcp.call("pause_dispatch", json!({}))["structuredContent"]["paused"], true);
    assert_eq!(mcp.call("resume_dispatch", json!({}))["structuredContent"]["paused"], false);
    let restart = mcp.call("restart_session", json!({"session": SESSION}));
    assert_eq!(restart["structuredContent"]["accepted"], true, "{restart}");
    let ghost = mcp.call("restart_session", json!({"session": "ghost"}));
    assert_eq!(ghost["isError"], true, "{ghost}");
    let swap = mcp.call("failover", json!({"to": "beta"}));
    assert_eq!(swap["structuredContent"]["to"], "beta", "{swap}");
    // The session never reaches a prompt, so the swap is still moving it.
    let second = mcp.call("failover", json!({}));
    assert!(second["isError"] == true && text_of(&second).contains("a swap is already running"), "{second}");

    // recent_events: newest last, limited, and since= works.
    let events = mcp.call("recent_events", json!({"limit": 2}));
    let list = events["structuredContent"]["events"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    let last = events["structuredContent"]["last_seq"].as_u64().unwrap();
    assert_eq!(list[1]["seq"].as_u64(), Some(last));
    let newer = mcp.call("recent_events", json!({"since": last}));
    assert!(newer["structuredContent"]["events"].as_array().unwrap().iter().all(|e| e["seq"].as_u64() > Some(last)));

    // Every write through MCP was an mcp_call event naming tool, client and outcome.
    let calls = p.mcp_calls();
    let of = |tool: &str| calls.iter().filter(|e| e["tool"] == tool).cloned().collect::<Vec<_>>();
    assert_eq!(of("enqueue_task").len(), 6, "{calls:#?}");
    assert_eq!(of("enqueue_task").iter().filter(|e| e["ok"] == true).count(), 2);
    let refused = of("enqueue_task").into_iter().find(|e| e["status"] == 409).expect("the 409 is an event");
    assert!(refused["outcome"].as_str().unwrap().contains("already in the queue"), "{refused}");
    assert_eq!(refused["client"], "kit-test/1.0");
    assert_eq!(of("failover").len(), 2);
    assert!(calls.iter().all(|e| e["tier"] != "read"), "reads are no events: {calls:#?}");
    assert!(of("status").is_empty());

    // Resources: the status document and the events, as JSON.
    let resources = mcp.request("resources/list", json!({}));
    let uris: Vec<&str> =
        resources["result"]["resources"].as_array().unwrap().iter().map(|r| r["uri"].as_str().unwrap()).collect();
    assert_eq!(uris, ["claude-failover://status", "claude-failover://events"]);
    for uri in uris {
        let read = mcp.request("resources/read", json!({"uri": uri}));
        let contents = &read["result"]["contents"][0];
        assert_eq!((contents["uri"].as_str(), contents["mimeType"].as_str()), (Some(uri), Some("application/json")));
        serde_json::from_str::<Value>(contents["text"].as_str().unwrap()).expect("JSON text");
    }

    // A token the daemon does not know, then no daemon at all.
    let wrong = p.dir.path().join("wrong.token");
    std::fs::write(&wrong, "tok-not-the-one").unwrap();
    let other = p.config_with(
        "wrong.toml",
        &p.dir.path().join("mcp.token").display().to_string(),
        &wrong.display().to_string(),
    );
    let mut refused = McpServer::start(&other);
    refused.initialize("2025-11-25");
    let r = refused.call("status", json!({}));
    assert!(r["isError"] == true && text_of(&r).contains("refused this MCP server's token (401)"), "{r}");
    // (A stop would wait for the swap's moves; the daemon gone is what counts.)
    p.daemon.kill();
    let down = mcp.call("status", json!({}));
    assert!(down["isError"] == true && text_of(&down).contains("not answering"), "{down}");
    let read = mcp.request("resources/read", json!({"uri": "claude-failover://status"}));
    assert_eq!(error_code(&read), -32603, "{read}");
    assert_eq!(mcp.close(), Some(0));
}

#[test]
fn tiers_hold_over_mcp_and_over_http() {
    let p = pool(&["read"], 262_144);
    // The server lists the read tools only, and will not call the others.
    let mut reader = McpServer::start(&p.config());
    reader.initialize("2025-06-18");
    let mut tools = reader.tool_names();
    tools.sort();
    assert_eq!(tools, ["recent_events", "session_output", "status", "task_status"]);
    let answer = reader.request("tools/call", json!({"name": "failover", "arguments": {}}));
    assert_eq!(error_code(&answer), -32602);
    assert_eq!(reader.call("status", json!({}))["isError"], false);

    // A server whose own config claims every tier, with the same token: the
    // daemon refuses it all the same.
    let greedy = p.config_with("greedy.toml", "allow = [\"read\"]", "allow = [\"read\", \"queue\", \"control\"]");
    let mut mcp = McpServer::start(&greedy);
    mcp.initialize("2025-11-25");
    assert!(mcp.tool_names().contains(&"enqueue_task".to_string()));
    for (tool, args) in [
        ("enqueue_task", json!({"project": PROJECT, "text": "sneak"})),
        ("failover", json!({})),
        ("pause_dispatch", json!({})),
        ("restart_session", json!({"session": SESSION})),
    ] {
        let r = mcp.call(tool, args);
        assert!(r["isError"] == true && text_of(&r).contains("needs the"), "{tool}: {r}");
    }
    assert!(p.inbox().is_empty());
    let calls = p.mcp_calls();
    assert_eq!(calls.len(), 4, "{calls:#?}");
    assert!(calls.iter().all(|e| e["status"] == 403 && e["ok"] == false));

    // The same token over raw HTTP: reads yes, writes no.
    assert_eq!(p.as_mcp("GET", "/status", None).0, 200);
    assert_eq!(p.as_mcp("GET", &format!("/projects/{PROJECT}/tasks/x.md"), None).0, 404);
    assert_eq!(p.as_mcp("POST", &format!("/projects/{PROJECT}/tasks?name=x.md"), Some("sneak")).0, 403);
    assert_eq!(p.as_mcp("POST", "/failover", Some("{}")).0, 403);
    assert_eq!(p.as_mcp("POST", "/dispatch/pause", Some("{}")).0, 403);
    assert_eq!(p.as_mcp("POST", &format!("/sessions/{SESSION}/restart"), Some("{}")).0, 403);
    assert!(p.inbox().is_empty());
    assert!(p.as_operator("GET", "/status", None).1.contains("\"dispatch_paused\":false"), "the pause was refused");
    // The operator's token has every tier.
    assert_eq!(p.as_operator("POST", &format!("/projects/{PROJECT}/tasks?name=x.md"), Some("real")).0, 201);
}

#[test]
fn without_an_operator_token_only_reads_are_offered_and_check_config_says_why() {
    let dir = temp_dir();
    let port = free_port();
    let text = ConfigBuilder::base(dir.path(), "cf-unused", port)
        .set("mcp", "allow", vec!["read".to_string(), "queue".into(), "control".into()])
        .account("alpha", &dir.path().join("accounts/alpha"))
        .render();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &text).unwrap();
    let out = std::process::Command::new(kit::daemon_binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let notes = String::from_utf8_lossy(&out.stderr);
    assert!(notes.contains("mcp.allow") && notes.contains("\"queue\" and \"control\" not offered"), "{notes}");
    assert!(notes.contains("http.token_file is empty"), "{notes}");
    let mut mcp = McpServer::start(&path);
    mcp.initialize("2025-11-25");
    let mut tools = mcp.tool_names();
    tools.sort();
    assert_eq!(tools, ["recent_events", "session_output", "status", "task_status"]);

    // An MCP token equal to the operator's is refused outright.
    let token = dir.path().join("t");
    kit::write(&token, "same-token");
    let same = ConfigBuilder::base(dir.path(), "cf-unused", port)
        .set("http", "token_file", token.display().to_string())
        .set("mcp", "token_file", token.display().to_string())
        .account("alpha", &dir.path().join("accounts/alpha"))
        .render();
    std::fs::write(&path, same).unwrap();
    let out = std::process::Command::new(kit::daemon_binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mcp.token_file: holds the same token"));
}

#[test]
fn the_task_routes_and_their_cli_commands() {
    let mut p = pool(&["read"], 100_000);
    // Over the 64 KiB of the other routes, within max_task_bytes: taken.
    let big = "y".repeat(70_000);
    let (code, body) = p.as_operator("POST", &format!("/projects/{PROJECT}/tasks?name=big.md"), Some(&big));
    assert_eq!(code, 201, "{body}");
    let (code, body) = p.as_operator("POST", &format!("/projects/{PROJECT}/tasks?name=big.md"), Some("again"));
    assert_eq!(code, 409, "{body}");
    let over = "y".repeat(100_001);
    assert_eq!(p.as_operator("POST", &format!("/projects/{PROJECT}/tasks"), Some(&over)).0, 413);
    assert_eq!(p.as_operator("POST", "/projects/nope/tasks", Some("x")).0, 404);
    let (code, body) = p.as_operator("POST", &format!("/projects/{PROJECT}/tasks?name=bad.txt"), Some("x"));
    assert_eq!(code, 400, "{body}");
    let (code, body) = p.as_operator("POST", &format!("/projects/{PROJECT}/tasks?priority=x"), Some("x"));
    assert_eq!(code, 400, "{body}");
    let (code, body) = p.as_operator("GET", &format!("/projects/{PROJECT}/tasks/big.md"), None);
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["folder"], "inbox");
    let (code, _) = p.as_operator("GET", &format!("/sessions/{SESSION}/output?lines=201"), None);
    assert_eq!(code, 400);
    assert_eq!(p.as_operator("GET", "/sessions/ghost/output", None).0, 404);
    assert_eq!(p.as_operator("POST", "/sessions/s1/output", Some("{}")).0, 405);

    let config = p.config();
    let cli = |args: &[&str], stdin: &str| {
        let mut child = std::process::Command::new(kit::daemon_binary())
            .args(args)
            .arg("--config")
            .arg(&config)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let file = p.dir.path().join("notes.md");
    std::fs::write(&file, "Write the notes.\n").unwrap();
    let out = cli(&["enqueue", PROJECT, file.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"task\":\"notes.md\""));
    let out = cli(&["enqueue", PROJECT, file.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused (409)"));
    let out = cli(&["enqueue", PROJECT, "-", "--name", "piped.md"], "From stdin.\n");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(p.project.join(".agent-queue/inbox/piped.md")).unwrap(), "From stdin.\n");
    let out = cli(&["task", PROJECT, "piped.md"], "");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"folder\":\"inbox\""));
    assert_eq!(cli(&["task", PROJECT, "never.md"], "").status.code(), Some(1));
    assert_eq!(cli(&["task", PROJECT], "").status.code(), Some(64));

    p.daemon.stop();
    assert_eq!(cli(&["task", PROJECT, "piped.md"], "").status.code(), Some(69));
    assert_eq!(cli(&["enqueue", PROJECT, "-"], "x").status.code(), Some(69));
}
