//! The real Claude Code 2.1.332 in a private tmux server against the fake API:
//! the pane classifier, the transcript reader and the project-key rule must agree
//! with what the real client shows and writes.

use claude_failover::claude::pane::{classify, LimitKind, PaneState};
use claude_failover::claude::transcript::{RecordKind, TranscriptReader};
use claude_failover::claude::{project_key, transcript_path};
use kit::fake_api::{FakeApi, Mode};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TOKEN: &str = "sk-ant-oat01-TEST-LIVE";

/// A private tmux server, killed when dropped.
struct Tmux(String);

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").arg("-L").arg(&self.0).args(args).output().expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "live"])
    }

    /// Types `text`, then Enter on its own, pressing Enter again if the prompt
    /// still sits in the input box after a while (a paste can swallow it).
    fn prompt(&self, text: &str) {
        self.run(&["send-keys", "-t", "live", "-l", text]);
        kit::wait_until(Duration::from_secs(10), "the prompt to be typed", || {
            input_box(&self.screen()).contains(text).then_some(())
        });
        // Enter must arrive apart from the typed text, or it is taken as part of it.
        std::thread::sleep(Duration::from_millis(300));
        for _ in 0..5 {
            self.run(&["send-keys", "-t", "live", "Enter"]);
            let sent = Instant::now() + Duration::from_secs(3);
            while Instant::now() < sent {
                if !input_box(&self.screen()).contains(text) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("the prompt {text:?} was never sent:\n{}", self.screen());
    }
}

/// The text of the input box: the line under the second-to-last `───` rule.
fn input_box(screen: &str) -> String {
    let lines: Vec<&str> = screen.lines().collect();
    let rules: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].starts_with("──────────")).collect();
    match rules[..] {
        [.., top, _] => lines.get(top + 1).unwrap_or(&"").to_string(),
        _ => String::new(),
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.0, "kill-server"]).status();
    }
}

fn wait_state(tmux: &Tmux, what: &str, want: impl Fn(&PaneState) -> bool) -> PaneState {
    kit::wait_until(Duration::from_secs(30), what, || {
        let state = classify(&tmux.screen());
        want(&state).then_some(state)
    })
}

fn write_account(dir: &Path, project: &Path) {
    let expires = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() + 8 * 3_600_000;
    kit::write(
        &dir.join(".credentials.json"),
        &format!(
            r#"{{"claudeAiOauth":{{"accessToken":"{TOKEN}","refreshToken":"sk-ant-ort01-TEST","expiresAt":{expires},"scopes":["user:inference","user:profile"],"subscriptionType":"max"}}}}"#
        ),
    );
    kit::write(
        &dir.join(".claude.json"),
        &serde_json::json!({"hasCompletedOnboarding": true, "theme": "dark",
            "projects": {project.to_string_lossy(): {"hasTrustDialogAccepted": true}}})
        .to_string(),
    );
}

#[test]
fn real_claude_turn_and_hard_limit() {
    let _lock = kit::claude_turn();
    let api = FakeApi::start();
    let tmp = kit::temp_dir();
    let account = tmp.path().join("account");
    let project = tmp.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    write_account(&account, &project);
    let session_id = format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), 0x1e57u64);

    let tmux = Tmux(kit::unique_name("cf-live"));
    let claude = kit::claude_binary();
    let base_url = format!("ANTHROPIC_BASE_URL={}", api.url());
    let config_dir = format!("CLAUDE_CONFIG_DIR={}", account.display());
    let project_s = project.to_string_lossy().into_owned();
    #[rustfmt::skip]
    let args = [
        "-f", "/dev/null", "new-session", "-d", "-s", "live", "-x", "200", "-y", "50", "-c", &project_s,
        "env", "-u", "ANTHROPIC_API_KEY", "-u", "ANTHROPIC_AUTH_TOKEN", "-u", "CLAUDE_CODE_OAUTH_TOKEN",
        &config_dir, &base_url, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_TELEMETRY=1",
        "DISABLE_AUTOUPDATER=1", claude.to_str().unwrap(), "--session-id", &session_id,
    ];
    tmux.run(&args);

    wait_state(&tmux, "Claude Code to be idle", |s| *s == PaneState::Idle);

    // A normal turn: the fake API records it, the transcript gains it.
    tmux.prompt("Please run the live check");
    kit::wait_until(Duration::from_secs(20), "the fake API to see the prompt", || {
        (api.count_text("Please run the live check") == 1).then_some(())
    });
    let recorded = api.requests();
    assert_eq!(recorded[0].token, TOKEN);
    assert_eq!(recorded[0].session_id.as_deref(), Some(session_id.as_str()));

    let path = transcript_path(&account.join("projects"), &project, &session_id);
    assert_eq!(path.parent().unwrap().file_name().unwrap().to_string_lossy(), project_key(&project));
    let mut reader = TranscriptReader::new(&path);
    let mut kinds = Vec::new();
    kit::wait_until(Duration::from_secs(20), "the transcript to hold the answer", || {
        kinds.extend(reader.read_new().unwrap().into_iter().map(|r| r.kind));
        kinds
            .iter()
            .any(|k| matches!(k, RecordKind::AssistantText { text } if text == "Done: Please run the live check"))
            .then_some(())
    });
    assert!(kinds.contains(&RecordKind::UserTurn { text: "Please run the live check".into() }));
    wait_state(&tmux, "idle after the turn", |s| *s == PaneState::Idle);

    // A hard limit: the screen and the transcript both say so.
    let reset = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3 * 3600;
    api.set_mode(TOKEN, Mode::HardLimit { claim: "five_hour".into(), reset_unix: reset });
    tmux.prompt("Second task hits the limit");
    let state = wait_state(&tmux, "the limit on screen", |s| matches!(s, PaneState::RateLimited { .. }));
    assert!(
        matches!(state, PaneState::RateLimited { kind: LimitKind::FiveHour, resets_text: Some(_), .. }),
        "{state:?}\n{}",
        tmux.screen()
    );
    let limit = kit::wait_until(Duration::from_secs(20), "the quota limit in the transcript", || {
        reader.read_new().unwrap().into_iter().find_map(|r| match r.kind {
            RecordKind::QuotaLimit { resets_at, rate_limit_type, .. } => Some((resets_at, rate_limit_type)),
            _ => None,
        })
    });
    assert_eq!(limit.0, Some(UNIX_EPOCH + Duration::from_secs(reset)));
    assert_eq!(limit.1.as_deref(), Some("five_hour"));
}

/// The fake API itself, without Claude Code: what the other tests lean on.
#[test]
fn fake_api_answers_per_token_and_obeys_http_control() {
    use kit::fake_api::ScriptedUsage;
    use std::io::Read;

    let api = FakeApi::start();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let call = |method: &str, path: &str, token: &str, body: &str| {
        let url = format!("{}{path}", api.url());
        let auth = format!("Bearer {token}");
        let resp = if method == "GET" {
            agent.get(&url).header("authorization", &auth).call()
        } else {
            agent.post(&url).header("authorization", &auth).send(body)
        };
        let mut resp = resp.expect("fake API answers");
        let headers: Vec<(String, String)> =
            resp.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string())).collect();
        let mut text = String::new();
        resp.body_mut().as_reader().read_to_string(&mut text).unwrap();
        (resp.status().as_u16(), headers, text)
    };
    let turn = |text: &str, stream: bool| {
        serde_json::json!({"model": "m", "stream": stream, "tools": [{"name": "Bash"}],
            "metadata": {"user_id": "{\"session_id\":\"sess-1\"}"},
            "messages": [{"role": "user", "content": [{"type": "text", "text": "<system-reminder>x</system-reminder>"}, {"type": "text", "text": text}]},
                         {"role": "system", "content": "env"}]})
        .to_string()
    };

    let (status, _, body) = call("POST", "/v1/messages?beta=true", "A", &turn("hello there", true));
    assert_eq!(status, 200);
    for event in ["message_start", "content_block_delta", "text_delta", "end_turn", "message_stop"] {
        assert!(body.contains(event), "{event} missing from {body}");
    }
    assert!(body.contains("Done: hello there"));
    let (_, _, body) = call("POST", "/v1/messages", "A", &turn("plain", false));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["content"][0]["text"], "Done: plain");
    // A side request (no tools) and a tool result are not user turns.
    call("POST", "/v1/messages", "A", r#"{"messages":[{"role":"user","content":"title?"}]}"#);
    call(
        "POST",
        "/v1/messages",
        "A",
        r#"{"tools":[{}],"messages":[{"role":"user","content":[{"type":"tool_result","content":"ok"}]}]}"#,
    );
    assert_eq!(api.user_texts(), ["hello there", "plain"]);
    assert_eq!(api.requests()[0].session_id.as_deref(), Some("sess-1"));
    assert_eq!(api.count_text("hello"), 1);

    // A quota of one more turn, then the hard limit with its unified headers
    // (announced to reset in a day: a limit whose reset passed is over).
    let reset = kit::fake_api::unix_now() + 86_400;
    api.set_quota("B", 1, "seven_day", reset);
    assert_eq!(call("POST", "/v1/messages", "B", &turn("one", false)).0, 200);
    let (status, headers, body) = call("POST", "/v1/messages", "B", &turn("two", false));
    assert_eq!(status, 429);
    assert!(body.contains("rate_limit_error"));
    let header = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    assert_eq!(header("anthropic-ratelimit-unified-status").as_deref(), Some("rejected"));
    assert_eq!(header("anthropic-ratelimit-unified-reset"), Some(reset.to_string()));
    assert_eq!(header("anthropic-ratelimit-unified-representative-claim").as_deref(), Some("seven_day"));
    assert!(matches!(api.mode("B"), Mode::HardLimit { .. }));
    // The usage endpoint agrees: the claimed window is full until the reset.
    let (_, _, body) = call("GET", "/api/oauth/usage", "B", "");
    let usage = claude_failover::claude::usage::parse(&body).unwrap();
    assert_eq!(usage.window("seven_day").unwrap().utilization, 100.0, "{body}");
    // A limit whose announced reset has passed is over; a revoked token is
    // refused by the usage endpoint too; an invalid request is a 400.
    api.set_mode("C", Mode::HardLimit { claim: "five_hour".into(), reset_unix: kit::fake_api::unix_now() - 1 });
    assert_eq!(call("POST", "/v1/messages", "C", &turn("after the reset", false)).0, 200);
    assert_eq!(api.mode("C"), Mode::Ok);
    api.set_mode("D", Mode::Unauthorized);
    assert_eq!(call("GET", "/api/oauth/usage", "D", "").0, 401);
    api.set_mode("D", Mode::InvalidRequest);
    assert_eq!(call("POST", "/v1/messages", "D", &turn("bad", false)).0, 400);
    assert_eq!(call("POST", "/v1/messages", "A", &turn("A still works", false)).0, 200);

    // Control over HTTP, as make demo drives it.
    for (mode, want) in [("plain_rate_limit", 429), ("overloaded", 529), ("unauthorized", 401), ("ok", 200)] {
        let (s, _, _) = call("POST", "/_control/mode", "", &format!(r#"{{"token":"C","mode":"{mode}"}}"#));
        assert_eq!(s, 200);
        let (status, headers, _) = call("POST", "/v1/messages", "C", &turn("x", false));
        assert_eq!(status, want, "{mode}");
        assert!(headers.iter().all(|(k, _)| !k.starts_with("anthropic-ratelimit-unified")));
    }
    assert_eq!(call("POST", "/_control/mode", "", r#"{"token":"C","mode":"nope"}"#).0, 400);
    call("POST", "/_control/reply", "", r#"{"text":"Fixed reply"}"#);
    assert!(call("POST", "/v1/messages", "C", &turn("y", false)).2.contains("Fixed reply"));

    // Usage: utilizations, scripted answers, call counts.
    call("POST", "/_control/usage", "", r#"{"token":"A","five_hour":42.5,"seven_day":10}"#);
    let (status, _, body) = call("GET", "/api/oauth/usage", "A", "");
    assert_eq!(status, 200);
    let usage = claude_failover::claude::usage::parse(&body).unwrap();
    assert_eq!(usage.window("five_hour").unwrap().utilization, 42.5);
    assert!(usage.window("five_hour").unwrap().resets_at.is_some());
    assert!(usage.window("seven_day_opus").is_none());
    api.script_usage(
        "A",
        ScriptedUsage { status: 429, body: "slow down".into(), headers: vec![("Retry-After".into(), "120".into())] },
    );
    let (status, headers, body) = call("GET", "/api/oauth/usage", "A", "");
    assert_eq!((status, body.as_str()), (429, "slow down"));
    assert!(headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("retry-after") && v == "120"));
    assert_eq!(api.usage_calls("A"), 2);
    assert_eq!(api.usage_calls("nobody"), 0);
    assert_eq!(call("GET", "/anything/else", "A", "").2, "{}");
}
