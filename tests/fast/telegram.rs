//! The Telegram receiver in the real daemon against the kit's fake Bot API:
//! each command from the allowed chats and users carried out and answered,
//! from a foreign chat or an unlisted user ignored and counted; a long answer
//! split. (Questions and their buttons need a real Claude Code: tests/e2e.)
//! The session is a stand-in program, not Claude Code: these commands only
//! read its screen and restart it.

use kit::fake_telegram::{FakeTelegram, TOKEN};
use kit::tmux::TmuxServer;
use kit::{free_port, temp_dir, wait_until, ConfigBuilder, Daemon};
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
const CHAT: i64 = -100;
const OTHER_ALLOWED_CHAT: i64 = -200;
const FOREIGN_CHAT: i64 = -999;
const WRITER: i64 = 42;
const READER: i64 = 7;

struct Setup {
    tg: FakeTelegram,
    daemon: Daemon,
    _tmux: TmuxServer,
    _dir: tempfile::TempDir,
    inbox: std::path::PathBuf,
}

fn start() -> Setup {
    let dir = temp_dir();
    let root = dir.path().canonicalize().unwrap();
    let tg = FakeTelegram::start();
    let tmux = TmuxServer::new();
    let port = free_port();
    kit::write(&root.join("telegram-token"), &format!("{TOKEN}\n"));
    let fake_claude = root.join("fake-claude");
    kit::write(&fake_claude, "#!/bin/sh\necho tail-marker-line\nexec sleep 600\n");
    std::fs::set_permissions(&fake_claude, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let project = root.join("projects/proj");
    let big = root.join("projects/big");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::create_dir_all(&big).unwrap();
    let inbox = project.join(".agent-queue/inbox");
    // Enough tasks that their list is longer than one Telegram message.
    for i in 0..400 {
        kit::write(&big.join(format!(".agent-queue/failed/{i:04}-a-task-with-a-rather-long-name.md")), "x");
    }
    let config = ConfigBuilder::base(&root, tmux.socket_name(), port)
        .set("claude", "binary", fake_claude.display().to_string())
        .set("notify", "min_interval_secs", 0)
        .set("notify.telegram", "bot_token_file", root.join("telegram-token").display().to_string())
        .set("notify.telegram", "chat_id", CHAT.to_string())
        .set("notify.telegram", "chat_ids", vec![OTHER_ALLOWED_CHAT.to_string()])
        .set("notify.telegram", "user_ids", vec![WRITER])
        .set("notify.telegram", "api_base", tg.url())
        .account("alpha", &root.join("accounts/alpha"))
        .account("beta", &root.join("accounts/beta"))
        .project("proj", &project)
        .project("big", &big)
        .session("s1", "proj")
        .entry("sessions", &[("name", "s2".into()), ("project", "big".into()), ("dispatch", false.into())])
        .render();
    let daemon = Daemon::start(&root, &config, port, &[]);
    Setup { tg, daemon, _tmux: tmux, _dir: dir, inbox }
}

impl Setup {
    /// Sends `text` and waits for the daemon's first reply to it.
    fn ask(&self, chat: i64, user: i64, text: &str) -> String {
        let id = self.tg.message(chat, user, text);
        let replied = kit::poll_until(WAIT, kit::Every::Backoff, || {
            self.tg.replies_to(id).first().map(|m| m["text"].as_str().unwrap_or_default().to_string())
        });
        replied.unwrap_or_else(|| panic!("no reply to {text:?}; daemon log:\n{}", self.daemon.log_text()))
    }

    fn status(&self) -> Value {
        self.daemon.status().expect("/status")
    }

    fn ignored(&self, reason: &str) -> u64 {
        let (_, metrics) = self.daemon.get("/metrics").expect("/metrics");
        let line = format!("claude_failover_telegram_ignored_total{{reason=\"{reason}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&line)).map_or(0, |n| n.trim().parse().unwrap())
    }

    fn command_events(&self) -> Vec<Value> {
        self.daemon.events("telegram_command")
    }
}

#[test]
fn commands_are_carried_out_for_the_allowed_and_ignored_for_the_others() {
    let s = start();
    kit::write(&s.inbox.join("fix-login.md"), "Fix the login");

    // Reads, from the writer and from a reader in the second allowed chat.
    let status = s.ask(CHAT, WRITER, "/status");
    assert!(status.starts_with("<pre>active alpha · dispatch running"), "{status}");
    assert!(status.contains("s1") && status.contains("ACCOUNT"), "{status}");
    let help = s.ask(OTHER_ALLOWED_CHAT, READER, "/help");
    assert!(help.contains("/failover [ACCOUNT]"), "{help}");
    let tasks = s.ask(CHAT, READER, "/tasks proj");
    assert!(tasks.contains("inbox (1)\n  fix-login.md"), "{tasks}");
    assert!(s.ask(CHAT, READER, "/tasks nope").contains("no project named \"nope\""));
    wait_until(WAIT, "s1's stand-in on screen", || {
        s.ask(CHAT, READER, "/tail s1").contains("tail-marker-line").then_some(())
    });
    assert!(s.ask(CHAT, WRITER, "/tail ghost").contains("no session named \"ghost\""));
    assert!(s.ask(CHAT, WRITER, "/restart").contains("usage: /restart SESSION"));

    // Writes from the writer.
    assert_eq!(s.ask(CHAT, WRITER, "/pause"), "dispatch paused");
    assert_eq!(s.status()["dispatch_paused"], true);
    assert_eq!(s.ask(OTHER_ALLOWED_CHAT, WRITER, "/resume"), "dispatch resumed");
    assert_eq!(s.status()["dispatch_paused"], false);
    let refused = s.ask(CHAT, WRITER, "/failover ghost");
    assert!(refused.starts_with("refused:") && refused.contains("ghost"), "{refused}");
    assert_eq!(s.ask(CHAT, WRITER, "/restart s1"), "restarting s1");
    wait_until(WAIT, "s1 restarted", || (s.daemon.events("session_restarted").len() == 1).then_some(()));
    assert!(s.ask(CHAT, WRITER, "/restart ghost").starts_with("refused: no session named"));

    // A reader's writes, and anything from a foreign chat: not answered, not done.
    let before = s.command_events().len();
    let ignored: Vec<i64> = vec![
        s.tg.message(CHAT, READER, "/pause"),
        s.tg.message(CHAT, READER, "/restart s1"),
        s.tg.message(CHAT, READER, "/failover beta"),
        s.tg.message(OTHER_ALLOWED_CHAT, READER, "/resume"),
        s.tg.message(FOREIGN_CHAT, WRITER, "/status"),
        s.tg.message(FOREIGN_CHAT, WRITER, "/pause"),
        s.tg.message(FOREIGN_CHAT, WRITER, "/tail s1"),
        s.tg.message(FOREIGN_CHAT, WRITER, "/tasks proj"),
        s.tg.message(FOREIGN_CHAT, READER, "/help"),
    ];
    // Updates are taken in order: once this one is answered, those were read.
    s.ask(CHAT, WRITER, "/help");
    for id in ignored {
        assert!(s.tg.replies_to(id).is_empty(), "message {id} was answered");
    }
    assert_eq!(s.ignored("user"), 4);
    assert_eq!(s.ignored("chat"), 5);
    assert_eq!(s.status()["dispatch_paused"], false);
    assert_eq!(s.daemon.events("session_restarted").len(), 1, "no second restart");
    assert_eq!(s.command_events().len(), before + 1, "only the last /help is an event");

    // Every command heard is an event naming who sent it.
    let events = s.command_events();
    let pause = events.iter().find(|e| e["command"] == "/pause").expect("a /pause event");
    assert_eq!(pause["user_id"], WRITER);
    assert_eq!(pause["subject"], format!("@user{WRITER} ({WRITER})"));
    assert_eq!(pause["outcome"], "ok");
    let failover = events.iter().find(|e| e["command"] == "/failover").expect("a /failover event");
    assert_eq!(failover["args"], "ghost");
    assert!(failover["outcome"].as_str().unwrap().starts_with("refused"));
}

#[test]
fn a_long_answer_is_split_into_messages_within_telegram_s_limit() {
    let s = start();
    let id = s.tg.message(CHAT, READER, "/tasks big");
    let parts = wait_until(WAIT, "the whole list", || {
        let parts: Vec<String> =
            s.tg.calls_of("sendMessage")
                .into_iter()
                .filter(|c| c.body["text"].as_str().is_some_and(|t| t.contains("a-task-with")))
                .map(|c| c.body["text"].as_str().unwrap().to_string())
                .collect();
        parts.iter().any(|p| p.contains("0399-")).then_some(parts)
    });
    assert!(parts.len() >= 4, "{} parts", parts.len());
    for p in &parts {
        assert!(p.chars().map(char::len_utf16).sum::<usize>() <= 4096, "a part of {} characters", p.len());
        assert!(p.starts_with("<pre>") && p.ends_with("</pre>"), "each part whole: {}", &p[..40]);
    }
    let all = parts.concat();
    for i in 0..400 {
        assert!(all.contains(&format!("{i:04}-a-task")), "task {i} missing");
    }
    assert_eq!(s.tg.replies_to(id).len(), 1, "the first part replies to the command");
}
