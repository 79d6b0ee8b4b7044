//! `claude-failover mcp` under the real clients (docs/mcp.md): Claude Code
//! 2.1.332 lists it as connected, added by the README's one line and by
//! `setup`; the Python SDK (PyPI `mcp`) and the MCP Inspector CLI (npm) list
//! and call the tools (`make mcp-clients` installs both); and a real turn in
//! a pool session, where the fake Messages API answers with `tool_use` blocks
//! for `mcp__claude-failover__status` and `..._enqueue_task`, Claude Code
//! calls the server, the API receives the live status as the `tool_result`,
//! and the task the model queued is done by another session.

use kit::rig::Rig;
use kit::{free_port, temp_dir, wait_until, ConfigBuilder, Daemon};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const OPERATOR: &str = "tok-e2e-operator";
const MCP_TOKEN: &str = "tok-e2e-mcp";
/// Claude Code sessions start in about 8 s alone; more on a loaded machine.
const START: Duration = Duration::from_secs(150);

/// Token files in a folder of their own (a rig makes its folder itself).
fn token_files() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = temp_dir();
    let (operator, mcp) = (dir.path().join("operator.token"), dir.path().join("mcp.token"));
    kit::write(&operator, OPERATOR);
    kit::write(&mcp, MCP_TOKEN);
    (dir, operator, mcp)
}

/// `claude mcp list` with `config_dir` as the account: its output.
fn claude_mcp(config_dir: &Path, home: &Path, args: &[&str]) -> String {
    let out = Command::new(kit::claude_binary())
        .args(["mcp"])
        .args(args)
        .env("CLAUDE_CONFIG_DIR", config_dir)
        .env("HOME", home)
        .env("DISABLE_AUTOUPDATER", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env_remove("ANTHROPIC_API_KEY")
        .current_dir(home)
        .output()
        .expect("run claude mcp");
    // `claude mcp list` exits 0 whether or not a server connects: read the text.
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn connected(listing: &str) -> bool {
    listing.lines().any(|l| l.starts_with("claude-failover:") && l.contains("✔ Connected"))
}

#[test]
fn claude_code_connects_by_the_readme_line_and_by_setup() {
    let _turn = kit::claude_turn();
    let rig = Rig::builder(&["proj"], &[]).set("mcp", "register", true).setup().build();
    let config = rig.config_path();
    let binary = kit::daemon_binary();

    // setup's registration, in every account, seen by Claude Code itself.
    for account in ["alpha", "beta"] {
        let dir = rig.account_dir(account);
        let state: Value = serde_json::from_str(&std::fs::read_to_string(dir.join(".claude.json")).unwrap()).unwrap();
        assert_eq!(state["hasCompletedOnboarding"], true, "setup kept the other keys");
        let entry = &state["mcpServers"]["claude-failover"];
        assert_eq!(entry["args"], json!(["mcp", "--config", config.display().to_string()]));
        let listing = claude_mcp(&dir, &rig.root, &["list"]);
        assert!(connected(&listing), "{account}: {listing}");
        // The read tier (the default) is allowed unasked, nothing else.
        let settings: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("settings.json")).unwrap()).unwrap();
        let read = ["status", "recent_events", "task_status", "session_output"];
        let want: Vec<String> = read.iter().map(|t| format!("mcp__claude-failover__{t}")).collect();
        assert_eq!(settings["permissions"]["allow"], json!(want), "{account}");
    }

    // The README's line, by hand, in a fresh Claude Code folder.
    let home = temp_dir();
    let fresh = home.path().join("claude");
    let added = claude_mcp(
        &fresh,
        home.path(),
        &[
            "add",
            "-s",
            "user",
            "claude-failover",
            "--",
            binary.to_str().unwrap(),
            "mcp",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    assert!(added.contains("Added stdio MCP server claude-failover"), "{added}");
    let listing = claude_mcp(&fresh, home.path(), &["list"]);
    assert!(connected(&listing), "{listing}");

    // A server that cannot start is told apart: the check reads the text.
    let broken = claude_mcp(
        &fresh,
        home.path(),
        &["add", "-s", "user", "broken", "--", binary.to_str().unwrap(), "mcp", "--config", "/nonexistent.toml"],
    );
    assert!(broken.contains("Added"), "{broken}");
    let listing = claude_mcp(&fresh, home.path(), &["list"]);
    assert!(listing.lines().any(|l| l.starts_with("broken:") && !l.contains("✔ Connected")), "{listing}");
}

/// A daemon with a project, no sessions, both tokens and every tier.
fn daemon_with_tokens(dir: &Path, operator: &Path, mcp: &Path) -> Daemon {
    let port = free_port();
    std::fs::create_dir_all(dir.join("proj")).unwrap();
    let text = ConfigBuilder::base(dir, &kit::unique_name("cf-mcp"), port)
        .set("http", "token_file", operator.display().to_string())
        .set("mcp", "allow", vec!["read".to_string(), "queue".into(), "control".into()])
        .set("mcp", "token_file", mcp.display().to_string())
        .account("alpha", &dir.join("accounts/alpha"))
        .project("proj", &dir.join("proj"))
        .render();
    Daemon::start(dir, &text, port, &[])
}

fn inbox(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("proj/.agent-queue/inbox"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn the_python_sdk_lists_and_calls_the_tools() {
    let dir = temp_dir();
    let (_tokens, operator, mcp) = token_files();
    let daemon = daemon_with_tokens(dir.path(), &operator, &mcp);
    let script = kit::repo_root().join("tests/e2e/mcp_sdk_client.py");
    let out = Command::new(kit::mcp_python())
        .arg(&script)
        .args(["proj", "--"])
        .arg(kit::daemon_binary())
        .args(["mcp", "--config"])
        .arg(&daemon.config)
        .output()
        .expect("run the Python SDK client");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_slice(&out.stdout).expect("the client's JSON");
    assert_eq!(seen["initialize"]["serverInfo"]["name"], "claude-failover");
    assert_eq!(seen["initialize"]["protocolVersion"], "2025-11-25");
    let tools: Vec<&str> = seen["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(tools.len(), 9, "{tools:?}");
    assert_eq!(seen["status"]["isError"], false);
    assert_eq!(seen["status"]["structuredContent"]["active_account"], "alpha");
    assert_eq!(seen["enqueue"]["structuredContent"]["task"], "sdk.md", "{}", seen["enqueue"]);
    assert_eq!(seen["missing"]["isError"], true);
    assert_eq!(seen["resource"]["contents"][0]["mimeType"], "application/json");
    assert_eq!(inbox(dir.path()), ["sdk.md"]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("proj/.agent-queue/inbox/sdk.md")).unwrap(),
        "From the Python SDK.\n"
    );
}

#[test]
fn the_inspector_cli_lists_and_calls_the_tools() {
    let dir = temp_dir();
    let (_tokens, operator, mcp) = token_files();
    let daemon = daemon_with_tokens(dir.path(), &operator, &mcp);
    // The Inspector has a --config of its own: the server's comes by environment.
    let inspector = |args: &[&str]| {
        let out = Command::new(kit::mcp_inspector())
            .arg("--cli")
            .arg("-e")
            .arg(format!("CLAUDE_FAILOVER_CONFIG={}", daemon.config.display()))
            .args(args)
            .arg("--")
            .arg(kit::daemon_binary())
            .arg("mcp")
            .output()
            .expect("run the MCP Inspector");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // --strict: schema portability problems are errors (exit 6), warnings are printed.
    let (code, stdout, stderr) = inspector(&["--method", "tools/list", "--strict"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(!stderr.contains("Warning") && !stderr.contains("Error"), "portability problems: {stderr}");
    let listed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed["tools"].as_array().unwrap().len(), 9);
    let (code, stdout, stderr) = inspector(&[
        "--method",
        "tools/call",
        "--tool-name",
        "enqueue_task",
        "--tool-arg",
        "project=proj",
        "text=From the Inspector.",
        "name=inspector.md",
    ]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let called: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(called["structuredContent"]["task"], "inspector.md");
    assert_eq!(inbox(dir.path()), ["inspector.md"]);
    // A failing call is isError, which the Inspector reports with exit 5.
    let (code, stdout, _) =
        inspector(&["--method", "tools/call", "--tool-name", "session_output", "--tool-arg", "session=ghost"]);
    assert_eq!(code, Some(5), "{stdout}");
    // The discover probe of the newest protocol era, then a resource.
    let (code, stdout, stderr) =
        inspector(&["--protocol-era", "auto", "--method", "resources/read", "--uri", "claude-failover://status"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let read: Value = serde_json::from_str(&stdout).unwrap();
    let status: Value = serde_json::from_str(read["contents"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(status["active_account"], "alpha");
}

/// `GET path` with the operator's token, as JSON.
fn get(port: u16, path: &str) -> Option<Value> {
    let auth = format!("Bearer {OPERATOR}");
    let (code, body) = kit::http::request(port, "GET", path, None, &[("Authorization", &auth)]).ok()?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

#[test]
fn a_real_turn_calls_status_and_enqueue_task_and_another_session_does_the_task() {
    let _turn = kit::claude_turn();
    let (_tokens, operator, mcp) = token_files();
    // No --allowedTools: `setup` allowed the tools of the offered tiers in
    // each account's settings, so the unattended session calls them unasked.
    let rig = Rig::builder(&["proj"], &[("s1", "proj"), ("s2", "proj")])
        .set("http", "token_file", operator.display().to_string())
        .set("mcp", "allow", vec!["read".to_string(), "queue".into()])
        .set("mcp", "token_file", mcp.display().to_string())
        .set("mcp", "register", true)
        .extra("[dispatch]\nsettle_secs = 1\n")
        .setup()
        .build();
    let daemon = rig.start();
    wait_until(START, "both sessions idle", || {
        let status = get(rig.port, "/status")?;
        let sessions = status["sessions"].as_array()?;
        (sessions.len() == 2 && sessions.iter().all(|s| s["state"] == "idle")).then_some(())
    });

    // The model's two calls, in the turn the pinned task starts.
    rig.api.push_tool_call("mcp__claude-failover__status", json!({}));
    let follow_up = "Write a one-line summary of the pool for the team.";
    rig.api.push_tool_call(
        "mcp__claude-failover__enqueue_task",
        json!({"project": "proj", "text": follow_up, "name": "from-model.md", "session": "s2"}),
    );
    rig.drop_task("proj", "kick.md", "+++\nsession = \"s1\"\n+++\nLook at the pool and queue a follow-up for s2.\n");

    let done = |name: &str| {
        let rig = &rig;
        let name = name.to_string();
        move || rig.result("proj", &name)
    };
    let kick = wait_until(START, "kick.md done", done("kick.md"));
    assert_eq!(kick["session"], "s1", "{kick}");
    let queued = wait_until(START, "from-model.md done", done("from-model.md"));
    assert_eq!(queued["session"], "s2", "{queued}");
    assert_eq!(rig.api.count_text(follow_up), 1, "the queued task reached the API once, as s2's turn");

    // The fake API received both results, the first with the live status.
    let results = rig.api.tool_results();
    assert_eq!(results.len(), 2, "{results:#?}");
    assert_eq!(results[0].tool, "mcp__claude-failover__status");
    assert!(!results[0].is_error, "{results:#?}");
    let live: Value = serde_json::from_str(&results[0].text).unwrap_or_else(|e| panic!("{e}: {}", results[0].text));
    assert_eq!(live["active_account"], "alpha");
    let s1 = live["sessions"].as_array().unwrap().iter().find(|s| s["name"] == "s1").cloned().unwrap();
    assert_eq!((s1["state"].as_str(), s1["task"].as_str()), (Some("busy"), Some("kick.md")), "{live}");
    assert_eq!(results[1].tool, "mcp__claude-failover__enqueue_task");
    assert!(!results[1].is_error && results[1].text.contains("from-model.md"), "{results:#?}");

    // The write is on the record, naming the client and the session it ran in.
    let events = get(rig.port, "/events?since=0").expect("events");
    let calls: Vec<&Value> = events["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "mcp_call").collect();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let call = calls[0];
    assert_eq!(
        (call["tool"].as_str(), call["session"].as_str(), call["ok"].as_bool()),
        (Some("enqueue_task"), Some("s1"), Some(true))
    );
    assert!(call["client"].as_str().is_some_and(|c| c.starts_with("claude-code")), "{call}");
    drop(daemon);
}
