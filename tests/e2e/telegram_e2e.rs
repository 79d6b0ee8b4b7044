//! A question answered from Telegram, end to end: the real Claude Code 2.1.332
//! (manual permission mode) in a private tmux server against the fake
//! Messages API, which answers a task with a Bash `touch`, so Claude Code
//! stops on a permission prompt; the daemon forwards it to the kit's fake
//! Telegram with one button per option read off the screen; a press answers
//! it and the task ends in done/; a second press, or a press of an earlier
//! episode's button, does nothing. A reply with text to the question message
//! cancels the prompt and sends the text as the session's next prompt, only
//! while that message's episode is open.

use kit::fake_telegram::{FakeTelegram, TOKEN};
use kit::rig::Rig;
use kit::wait_until;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const START: Duration = Duration::from_secs(150);
const TURN: Duration = Duration::from_secs(90);
const CHAT: i64 = -100;
const USER: i64 = 42;

/// The question message for `task`, once sent.
fn question_for(rig: &Rig, tg: &FakeTelegram, task: &str) -> Value {
    let found = kit::poll_until(TURN, kit::Every::Backoff, || {
        tg.sent().into_iter().find(|m| {
            let t = m["text"].as_str().unwrap_or_default();
            t.starts_with("✋ Session s1 asks") && t.contains(&format!("(task {task})"))
        })
    });
    found.unwrap_or_else(|| {
        let sent: Vec<Value> = tg.sent().into_iter().map(|m| m["text"].clone()).collect();
        panic!("no question for {task}; sent {sent:#?}\nscreen:\n{}", rig.tmux.screen("s1"))
    })
}

/// The callback data of the button whose label ends with `label`.
fn button(message: &Value, label: &str) -> String {
    let rows = message["reply_markup"]["inline_keyboard"].as_array().expect("inline buttons");
    rows.iter()
        .flat_map(|r| r.as_array().into_iter().flatten())
        .find(|b| b["text"].as_str().is_some_and(|t| t.ends_with(&format!(". {label}"))))
        .and_then(|b| b["callback_data"].as_str())
        .unwrap_or_else(|| panic!("no {label:?} button in {message}"))
        .to_string()
}

/// The text of the answer to the callback query of the update with `data`, once given.
fn callback_answer(tg: &FakeTelegram, nth: usize) -> String {
    wait_until(TURN, "the press answered", || {
        let answers = tg.calls_of("answerCallbackQuery");
        answers.get(nth).map(|c| c.body["text"].as_str().unwrap_or_default().to_string())
    })
}

fn wait_done(rig: &Rig, task: &str) {
    let done = kit::poll_until(TURN, kit::Every::Backoff, || {
        rig.tasks("proj", "done").contains(&task.to_string()).then_some(())
    });
    if done.is_none() {
        panic!(
            "{task} not in done/ (active {:?}); user turns {:#?}\nscreen:\n{}",
            rig.tasks("proj", "active"),
            rig.api.user_texts(),
            rig.tmux.screen("s1")
        );
    }
}

/// One session `s1` on project `proj` in manual permission mode, notifying
/// `tg` (only [`USER`] in [`CHAT`] may answer); the temp dir holds the bot token.
fn telegram_rig(tg: &FakeTelegram) -> (Rig, tempfile::TempDir) {
    let secrets = kit::temp_dir();
    let token_file = secrets.path().join("telegram-token");
    kit::write(&token_file, TOKEN);
    let rig = Rig::builder(&["proj"], &[("s1", "proj")])
        .set("claude", "args", vec!["--permission-mode", "default"])
        .set("claude", "startup_timeout_secs", 120)
        .set("dispatch", "settle_secs", 1)
        .set("notify", "min_interval_secs", 0)
        .set("notify.telegram", "bot_token_file", token_file.display().to_string())
        .set("notify.telegram", "chat_id", CHAT.to_string())
        .set("notify.telegram", "user_ids", vec![USER])
        .set("notify.telegram", "api_base", tg.url())
        .build();
    (rig, secrets)
}

#[test]
fn a_permission_prompt_answered_from_telegram() {
    let _turn = kit::claude_turn();
    let tg = FakeTelegram::start();
    let (rig, _secrets) = telegram_rig(&tg);
    let marker = |n: u32| rig.project("proj").join(format!("marker-{n}"));
    rig.api.push_tool_use(&format!("touch {} && echo made", marker(1).display()));
    let daemon = rig.start();
    kit::rig::wait_idle(&daemon, &["s1"], START);

    // The task stops on the permission prompt; the question comes with its options.
    rig.drop_task("proj", "first.md", "Create the first marker");
    let first = question_for(&rig, &tg, "first.md");
    let text = first["text"].as_str().unwrap();
    assert!(text.contains("Do you want to proceed?"), "{text}");
    assert!(text.contains(&format!("touch {}", marker(1).display())), "{text}");
    let yes = button(&first, "Yes");
    let no = button(&first, "No");
    assert!(yes.starts_with("a:") && yes.ends_with(":0"), "{yes}");
    assert_ne!(yes, no);
    assert!(!marker(1).exists());

    // The press answers it: the command runs, the task goes on to done/.
    tg.press(CHAT, USER, &first, &yes);
    assert_eq!(callback_answer(&tg, 0), "answered: Yes");
    wait_done(&rig, "first.md");
    assert!(marker(1).exists(), "the command ran");
    let edited = wait_until(TURN, "the message edited", || tg.calls_of("editMessageText").first().cloned());
    let edited = edited.body["text"].as_str().unwrap().to_string();
    assert!(edited.ends_with(&format!("✔ @user{USER} ({USER}) answered: Yes")), "{edited}");
    let answered = daemon.events("question_answered");
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0]["by"], format!("@user{USER} ({USER})"));
    assert_eq!(answered[0]["subject"], "s1");

    // A second press of the same button does nothing.
    let turns = rig.api.requests().len();
    tg.press(CHAT, USER, &first, &no);
    assert_eq!(callback_answer(&tg, 1), "already answered / changed");
    assert_eq!(daemon.events("question_answered").len(), 1);

    // A new episode, the same kind of question: the first message's button is
    // stale and types nothing; the session stays on the new prompt.
    rig.api.push_tool_use(&format!("touch {} && echo made", marker(2).display()));
    rig.drop_task("proj", "second.md", "Create the second marker");
    let second = question_for(&rig, &tg, "second.md");
    assert_ne!(button(&second, "Yes"), yes, "a new episode, a new id");
    tg.press(CHAT, USER, &first, &yes);
    assert_eq!(callback_answer(&tg, 2), "already answered / changed");
    assert!(!marker(2).exists(), "nothing typed into the new prompt");
    let state = daemon.status().expect("/status")["sessions"][0]["state"].clone();
    assert_eq!(state, "waiting", "still on the second prompt");
    assert_eq!(rig.api.requests().len(), turns + 1, "only the second task reached the API");

    // Its own button answers it.
    tg.press(CHAT, USER, &second, &button(&second, "Yes"));
    assert_eq!(callback_answer(&tg, 3), "answered: Yes");
    wait_done(&rig, "second.md");
    assert!(marker(2).exists());
    assert!(Path::new(&marker(2)).exists());
}

#[test]
fn a_question_answered_with_text_by_replying_on_telegram() {
    let _turn = kit::claude_turn();
    let tg = FakeTelegram::start();
    let (rig, _secrets) = telegram_rig(&tg);
    let marker = |n: u32| rig.project("proj").join(format!("marker-{n}"));
    rig.api.push_tool_use(&format!("touch {} && echo made", marker(1).display()));
    let daemon = rig.start();
    kit::rig::wait_idle(&daemon, &["s1"], START);

    // The prompt offers Esc, so the message invites a reply with text.
    rig.drop_task("proj", "first.md", "Create the first marker");
    let first = question_for(&rig, &tg, "first.md");
    let text = first["text"].as_str().unwrap();
    assert!(text.contains("Or reply to this message with text"), "{text}");

    // The reply cancels the prompt (the command does not run) and its text is
    // the session's next prompt; that turn ends the task.
    const INSTEAD: &str = "Leave the first marker out and say so";
    let reply = tg.reply(CHAT, USER, INSTEAD, &first);
    assert_eq!(tg.wait_reply(reply, TURN), "sent to s1");
    wait_until(TURN, "the text reaching the API as a user turn", || (rig.api.count_text(INSTEAD) > 0).then_some(()));
    wait_done(&rig, "first.md");
    assert!(!marker(1).exists(), "the command was refused, not run");
    assert_eq!(rig.api.count_text(INSTEAD), 1, "typed once: {:#?}", rig.api.user_texts());
    let answered = daemon.events("question_answered");
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0]["subject"], "s1");
    assert_eq!(answered[0]["answer"], INSTEAD);
    assert_eq!(answered[0]["answer_kind"], "text");
    assert_eq!(answered[0]["by"], format!("@user{USER} ({USER})"));

    // A second reply to the same message: its episode is over, nothing typed.
    const AGAIN: &str = "Create it after all";
    let again = tg.reply(CHAT, USER, AGAIN, &first);
    assert_eq!(tg.wait_reply(again, TURN), "already answered / changed");

    // A new episode, the same kind of question: a reply to the first message
    // is stale and types nothing; the session stays on the new prompt.
    rig.api.push_tool_use(&format!("touch {} && echo made", marker(2).display()));
    rig.drop_task("proj", "second.md", "Create the second marker");
    let second = question_for(&rig, &tg, "second.md");
    const STALE: &str = "Stale words for an old question";
    let stale = tg.reply(CHAT, USER, STALE, &first);
    assert_eq!(tg.wait_reply(stale, TURN), "already answered / changed");
    let state = daemon.status().expect("/status")["sessions"][0]["state"].clone();
    assert_eq!(state, "waiting", "still on the second prompt");
    let screen = rig.tmux.screen("s1");
    assert!(!screen.contains(STALE) && !screen.contains(AGAIN), "nothing typed:\n{screen}");
    assert_eq!(daemon.events("question_answered").len(), 1);

    // A reply to its own message answers it.
    const SECOND: &str = "Skip the second marker as well";
    let own = tg.reply(CHAT, USER, SECOND, &second);
    assert_eq!(tg.wait_reply(own, TURN), "sent to s1");
    wait_done(&rig, "second.md");
    assert!(!marker(2).exists(), "the second command was refused too");
    assert_eq!(rig.api.count_text(SECOND), 1);
    for never in [AGAIN, STALE] {
        assert_eq!(rig.api.count_text(never), 0, "{never:?} reached the session: {:#?}", rig.api.user_texts());
    }
    assert_eq!(daemon.events("question_answered").len(), 2);
}
