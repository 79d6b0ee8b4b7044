//! The task queue and dispatcher end to end: the real `claude-failover run`,
//! the real Claude Code 2.1.332 in a private tmux server against the fake API,
//! real inotify. Tasks go in through the inbox and must come out in done/ (or
//! failed/) exactly once, each reaching the API as one user turn.

use kit::daemon::Daemon;
use kit::rig::{stem, wait_idle, Rig};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Sessions start in about 8 s alone; on a loaded machine several at once
/// take much longer.
const START: Duration = Duration::from_secs(150);

fn dispatch_table(settle: u64, extra: &str) -> String {
    format!("[dispatch]\nsettle_secs = {settle}\n{extra}\n")
}

/// Waits until `names` are all in `folder` of `project`; dumps the queue and
/// the daemon's log tail on timeout.
fn wait_all_in(rig: &Rig, daemon: &Daemon, project: &str, folder: &str, names: &[String], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let have = rig.tasks(project, folder);
        if names.iter().all(|n| have.contains(n)) {
            return;
        }
        if Instant::now() >= deadline {
            let log = daemon.log_text();
            let tail: Vec<&str> = log.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
            panic!(
                "timed out after {timeout:?}: {project}/{folder} holds {have:?}, want {names:?}\n\
                 inbox {:?} active {:?} failed {:?}\n--- daemon log tail ---\n{}",
                rig.tasks(project, "inbox"),
                rig.tasks(project, "active"),
                rig.tasks(project, "failed"),
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the fake API answers a prompt: "Done: " and its first 40 characters.
fn fake_answer(prompt: &str) -> String {
    format!("Done: {}", prompt.trim().chars().take(40).collect::<String>())
}

/// Checks one done/ task: its result names a session of `sessions`, one
/// attempt, and the API's answer to this very prompt; the prompt reached the
/// API exactly once.
fn check_done(rig: &Rig, project: &str, name: &str, text: &str, sessions: &[&str], attempts: Option<u64>) -> String {
    let result = rig.side_json(project, "done", &format!("{}.result.json", stem(name)));
    let session = result["session"].as_str().unwrap_or_default().to_string();
    assert!(sessions.contains(&session.as_str()), "{name} done by {session:?}, not one of {sessions:?}: {result}");
    assert_eq!(result["account"], "alpha", "{name}: {result}");
    if let Some(a) = attempts {
        assert_eq!(result["attempts"], a, "{name}: {result}");
    }
    let message = result["last_assistant_message"].as_str().unwrap_or_default();
    assert_eq!(message, fake_answer(text), "{name}: last_assistant_message is not this task's answer: {result}");
    assert_eq!(rig.api.count_text(text.trim()), 1, "{name} should reach the API exactly once");
    session
}

#[test]
fn twenty_tasks_over_two_projects_and_three_sessions_each_done_once() {
    let _lock = kit::claude_turn();
    let began = Instant::now();
    let rig = Rig::new(
        &["alpha-proj", "beta-proj"],
        &[("a1", "alpha-proj"), ("a2", "alpha-proj"), ("b1", "beta-proj")],
        &dispatch_table(1, ""),
    );
    let mut tasks: Vec<(&str, String, String)> = Vec::new();
    for i in 0..20 {
        let project = if i % 3 == 2 { "beta-proj" } else { "alpha-proj" };
        let name = format!("2026-11-25-{i:02}-task.md");
        let text = format!("e2e-{i:02} {project}: list three colours, one per line.\n");
        tasks.push((project, name, text));
    }
    // A few are waiting before the daemon starts (picked up by the start-up
    // scan); the rest arrive while it runs (inotify).
    for (project, name, text) in &tasks[..5] {
        rig.drop_task(project, name, text);
    }
    let daemon = rig.start();
    wait_idle(&daemon, &["a1", "a2", "b1"], START);
    for (project, name, text) in &tasks[5..] {
        rig.drop_task(project, name, text);
    }
    for project in ["alpha-proj", "beta-proj"] {
        let names: Vec<String> = tasks.iter().filter(|t| t.0 == project).map(|t| t.1.clone()).collect();
        wait_all_in(&rig, &daemon, project, "done", &names, Duration::from_secs(240));
    }
    let mut by_session: BTreeMap<String, usize> = BTreeMap::new();
    for (project, name, text) in &tasks {
        let allowed: &[&str] = if *project == "alpha-proj" { &["a1", "a2"] } else { &["b1"] };
        let session = check_done(&rig, project, name, text, allowed, Some(1));
        *by_session.entry(session).or_default() += 1;
    }
    for project in ["alpha-proj", "beta-proj"] {
        for folder in ["inbox", "active", "failed"] {
            assert!(rig.tasks(project, folder).is_empty(), "{project}/{folder} not empty");
        }
    }
    assert_eq!(rig.api.requests().len(), 20, "one user turn per task: {:?}", rig.api.user_texts());
    eprintln!("20 tasks done in {:?}; per session {by_session:?}", began.elapsed());
}

#[test]
fn a_multi_line_task_with_a_code_block_arrives_whole_as_one_turn() {
    let _lock = kit::claude_turn();
    let rig = Rig::new(&["p"], &[("s1", "p")], &dispatch_table(1, ""));
    let body = "e2e-multiline: review this function and say what it prints.\n\n\
                ```rust\nfn main() {\n    let xs = [1, 2, 3];\n    for x in xs {\n        println!(\"{x} -> {}\", x * 2);\n    }\n}\n```\n\n\
                Then, on a new paragraph: keep  double  spaces (Claude Code turns a tab into four spaces), and `inline code`.\n";
    let daemon = rig.start();
    wait_idle(&daemon, &["s1"], START);
    rig.drop_task("p", "multi.md", &format!("+++\npriority = 1\n+++\n{body}"));
    wait_all_in(&rig, &daemon, "p", "done", &["multi.md".into()], Duration::from_secs(90));
    let turns: Vec<String> = rig.api.user_texts().into_iter().filter(|t| t.contains("e2e-multiline")).collect();
    assert_eq!(turns.len(), 1, "one user turn: {turns:?}");
    assert!(turns[0].contains(body.trim_end()), "the turn does not hold the whole body verbatim:\n{}", turns[0]);
    assert!(!turns[0].contains("+++"), "front matter was pasted: {}", turns[0]);
    let result = rig.side_json("p", "done", "multi.result.json");
    assert_eq!(result["session"], "s1");
    assert_eq!(result["attempts"], 1);
}

#[test]
fn bad_input_goes_to_failed_with_a_reason_beside_good_tasks() {
    use std::os::unix::ffi::OsStrExt;
    let _lock = kit::claude_turn();
    let rig = Rig::new(&["p"], &[("s1", "p")], &dispatch_table(1, "max_task_bytes = 4096"));
    let daemon = rig.start();
    wait_idle(&daemon, &["s1"], START);
    let inbox = rig.folder("p", "inbox");
    rig.drop_task("p", "good-1.md", "e2e-good-1: say yes.\n");
    std::fs::write(inbox.join("binary.md"), b"\xff\xfe\x00not text\x80\n").unwrap();
    std::fs::write(inbox.join("huge.md"), "x".repeat(5000)).unwrap();
    let outside = rig.dir.path().join("outside.md");
    std::fs::write(&outside, "e2e-outside: must never be sent\n").unwrap();
    std::os::unix::fs::symlink(&outside, inbox.join("link.md")).unwrap();
    std::fs::create_dir(inbox.join("folder.md")).unwrap();
    std::fs::write(inbox.join("notes.txt"), "e2e-notes: not markdown\n").unwrap();
    std::fs::write(inbox.join("front.md"), "+++\npriority = \"high\"\n+++\ne2e-front: bad front matter\n").unwrap();
    std::fs::write(inbox.join(Path::new(std::ffi::OsStr::from_bytes(b"name-\xff.md"))), "e2e-badname\n").unwrap();
    std::fs::write(inbox.join(".draft.md"), "e2e-draft: a writer's temp file\n").unwrap();
    rig.drop_task("p", "good-2.md", "e2e-good-2: say no.\n");

    let failed: [(&str, &str, &str); 7] = [
        ("binary.md", "binary", "UTF-8"),
        ("huge.md", "huge", "max_task_bytes"),
        ("link.md", "link", "symbolic link"),
        ("folder.md", "folder", "directory"),
        ("notes.txt", "notes.txt", ".md"),
        ("front.md", "front", "front matter"),
        ("name-\u{FFFD}.md", "name-\u{FFFD}", "UTF-8"),
    ];
    let want: Vec<String> = failed.iter().map(|f| f.0.to_string()).collect();
    wait_all_in(&rig, &daemon, "p", "done", &["good-1.md".into(), "good-2.md".into()], Duration::from_secs(90));
    let mut present: Vec<String> = std::fs::read_dir(rig.folder("p", "failed"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    for (name, side, word) in failed {
        assert!(present.contains(&name.to_string()), "{name} not in failed/: {present:?} (want {want:?})");
        let error = rig.side_json("p", "failed", &format!("{side}.error.json"));
        let reason = error["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(word), "{name}: reason {reason:?} should mention {word:?}");
        assert!(error["at"].as_str().is_some_and(|a| !a.is_empty()), "{name}: {error}");
    }
    // Each one told as a task_failed event naming it, the non-UTF-8 name too
    // (rejected by the scan before any name could be read).
    let failures = daemon.events("task_failed");
    let told: Vec<&str> = failures.iter().filter_map(|e| e["task"].as_str()).collect();
    for (name, _, _) in failed {
        assert_eq!(told.iter().filter(|t| **t == name).count(), 1, "task_failed for {name}: {told:?}");
    }
    // The link was moved as a link: its target is untouched and never sent.
    assert!(std::fs::symlink_metadata(rig.folder("p", "failed").join("link.md")).unwrap().file_type().is_symlink());
    assert!(outside.exists());
    assert!(inbox.join(".draft.md").exists(), "the dot-file must be left alone");
    for word in ["e2e-outside", "e2e-notes", "e2e-front", "e2e-badname", "e2e-draft", "xxxxxxxx"] {
        assert_eq!(rig.api.count_text(word), 0, "{word} must never be sent");
    }
    check_done(&rig, "p", "good-1.md", "e2e-good-1: say yes.\n", &["s1"], Some(1));
    check_done(&rig, "p", "good-2.md", "e2e-good-2: say no.\n", &["s1"], Some(1));
    assert!(rig.tasks("p", "active").is_empty());
}

#[test]
fn a_daemon_killed_mid_dispatch_loses_nothing_and_sends_nothing_twice() {
    let _lock = kit::claude_turn();
    let rig = Rig::new(&["p"], &[("s1", "p"), ("s2", "p")], &dispatch_table(1, ""));
    let mut daemon = rig.start();
    wait_idle(&daemon, &["s1", "s2"], START);
    let tasks: Vec<(String, String)> =
        (0..10).map(|i| (format!("crash-{i:02}.md"), format!("e2e-crash-{i:02}: answer with one word.\n"))).collect();
    for (name, text) in &tasks {
        rig.drop_task("p", name, text);
    }
    kit::wait_until(Duration::from_secs(120), "two done and some still to go", || {
        let done = rig.tasks("p", "done").len();
        let pending = rig.tasks("p", "inbox").len() + rig.tasks("p", "active").len();
        (done >= 2 && pending > 0).then_some(())
    });
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    let at_kill = (rig.tasks("p", "done").len(), rig.tasks("p", "active").len(), rig.tasks("p", "inbox").len());
    let first_log = daemon.log_text();
    drop(daemon);

    // The tmux sessions outlive the daemon; the new one adopts them.
    let daemon = rig.start();
    let names: Vec<String> = tasks.iter().map(|t| t.0.clone()).collect();
    wait_all_in(&rig, &daemon, "p", "done", &names, Duration::from_secs(180));
    for (name, text) in &tasks {
        let result = rig.side_json("p", "done", &format!("{}.result.json", stem(name)));
        let session = result["session"].as_str().unwrap_or_default();
        assert!(["s1", "s2"].contains(&session), "{name}: {result}");
        assert_eq!(
            rig.api.count_text(text.trim()),
            1,
            "{name} sent {} times (done/active/inbox at the kill: {at_kill:?})\n--- first daemon ---\n{first_log}\n--- second ---\n{}",
            rig.api.count_text(text.trim()),
            daemon.log_text()
        );
    }
    assert_active_empty(&rig, &daemon);
    assert!(rig.tasks("p", "inbox").is_empty() && rig.tasks("p", "failed").is_empty());
    eprintln!("at the kill: done {} active {} inbox {}", at_kill.0, at_kill.1, at_kill.2);
}

/// The worst instant for a crash: a task pasted into a session's input box,
/// its Enter not yet sent. The text must not ride along with the next task.
/// A long paste shows as one `[Pasted text #1 +8 lines]` row.
#[test]
fn a_daemon_killed_between_paste_and_enter_sends_each_task_once() {
    killed_with_a_paste_in_the_box("line 2\nline 3\nline 4\nline 5\nline 6\nline 7\nline 8\n");
}

/// As above with a two-line task, which Claude Code shows as two rows of
/// text: one Ctrl-U clears only the last, and the leftover went out with
/// the next paste (a task sent twice in the crash test).
#[test]
fn a_daemon_killed_with_two_rows_in_the_input_box_sends_each_task_once() {
    killed_with_a_paste_in_the_box("line 2\n");
}

fn killed_with_a_paste_in_the_box(rest: &str) {
    let _lock = kit::claude_turn();
    let rig = Rig::new(&["p"], &[("s1", "p"), ("s2", "p")], &dispatch_table(1, ""));
    let mut daemon = rig.start();
    wait_idle(&daemon, &["s1", "s2"], START);
    let tasks: Vec<(String, String)> = (0..6)
        .map(|i| (format!("torn-{i:02}.md"), format!("e2e-torn-{i:02}: answer with one word.\n{rest}")))
        .collect();
    for (name, text) in &tasks {
        rig.drop_task("p", name, text);
    }
    let tmux = claude_failover::tmux::Tmux::new(rig.tmux.socket_name());
    // The paste shows for some 50 ms before its Enter: look without pause.
    let deadline = Instant::now() + Duration::from_secs(60);
    let torn = loop {
        let pasted = ["s1", "s2"].into_iter().find(|s| {
            tmux.capture_pane(s)
                .ok()
                .and_then(|screen| claude_failover::claude::pane::input_text(&screen))
                .is_some_and(|input| input.contains("[Pasted text") || input.contains("e2e-torn-"))
        });
        if let Some(session) = pasted {
            break session;
        }
        assert!(Instant::now() < deadline, "no paste seen waiting for its Enter within 60 s");
    };
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    let left = tmux.capture_pane(torn).unwrap_or_default();
    drop(daemon);
    let daemon = rig.start();
    let names: Vec<String> = tasks.iter().map(|t| t.0.clone()).collect();
    wait_all_in(&rig, &daemon, "p", "done", &names, Duration::from_secs(180));
    for (name, text) in &tasks {
        let first = text.lines().next().unwrap();
        assert_eq!(
            rig.api.count_text(first),
            1,
            "{name} (killed with a paste in {torn}):\n{left}\n{:?}",
            rig.api.user_texts()
        );
    }
    for turn in rig.api.user_texts() {
        assert_eq!(turn.matches("e2e-torn-").count(), 1, "two tasks in one turn: {turn}");
    }
    assert_active_empty(&rig, &daemon);
}

/// Nothing left in active/ once every task is done: no task, lease or
/// temp file. A finish moves the task into done/ before it drops the lease
/// (a crash between the two leaves a lease the next start removes), so the
/// last lease may trail the last task by a moment.
fn assert_active_empty(rig: &Rig, daemon: &Daemon) {
    let left = || -> Vec<String> {
        std::fs::read_dir(rig.folder("p", "active"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let emptied = kit::poll_until(Duration::from_secs(5), kit::Every::Backoff, || left().is_empty().then_some(()));
    assert!(emptied.is_some(), "leftovers in active/: {:?}\n--- daemon log ---\n{}", left(), daemon.log_text());
}

#[test]
fn a_task_waits_while_dispatch_is_paused_and_goes_on_resume() {
    let _lock = kit::claude_turn();
    let rig = Rig::new(&["p"], &[("s1", "p")], &dispatch_table(1, ""));
    let daemon = rig.start();
    wait_idle(&daemon, &["s1"], START);
    let (code, body) = daemon.request("POST", "/dispatch/pause", Some("{}"), &[kit::http::JSON]).unwrap();
    assert_eq!((code, body.contains("\"paused\":true")), (200, true), "{body}");
    rig.drop_task("p", "held.md", "e2e-held: wait for resume.\n");
    // Paused means it stays: watch it sit there for a while.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert_eq!(rig.tasks("p", "inbox"), ["held.md"], "the task left the inbox while paused");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(rig.api.count_text("e2e-held"), 0);
    let (code, body) = daemon.request("POST", "/dispatch/resume", Some("{}"), &[kit::http::JSON]).unwrap();
    assert_eq!((code, body.contains("\"paused\":false")), (200, true), "{body}");
    wait_all_in(&rig, &daemon, "p", "done", &["held.md".into()], Duration::from_secs(60));
    check_done(&rig, "p", "held.md", "e2e-held: wait for resume.\n", &["s1"], Some(1));
}

#[test]
fn priority_orders_and_a_pinned_task_goes_only_to_its_session() {
    let _lock = kit::claude_turn();
    let rig = Rig::new(&["p"], &[("s1", "p"), ("s2", "p")], &dispatch_table(1, ""));
    // Every task is in the inbox before the daemon starts, so the start-up
    // scan has them all before the first offer: the order below then depends
    // on the daemon only, not on when inotify news of each file arrives.
    let unpinned = [
        ("a-low.md", 0, "e2e-prio-low: one word.\n"),
        ("m-mid.md", 1, "e2e-prio-mid: one word.\n"),
        ("z-high.md", 5, "e2e-prio-high: one word.\n"),
    ];
    for (name, priority, text) in unpinned {
        rig.drop_task("p", name, &format!("+++\npriority = {priority}\n+++\n{text}"));
    }
    let pinned: Vec<(String, String)> =
        (1..=3).map(|i| (format!("b-pinned-{i}.md"), format!("e2e-pinned-{i}: for s2 only.\n"))).collect();
    for (name, text) in &pinned {
        rig.drop_task("p", name, &format!("+++\nsession = \"s2\"\n+++\n{text}"));
    }
    // Every turn takes two seconds or more: a task claimed after a turn ended
    // is claimed in a later second than the first two.
    rig.api.set_delay(Duration::from_secs(2));
    let daemon = rig.start();
    // Both sessions at their prompt before anything is handed out, so the
    // first two offers come together (Claude Code starts in seconds; the
    // pause goes in long before).
    let (code, body) = daemon.request("POST", "/dispatch/pause", Some("{}"), &[kit::http::JSON]).unwrap();
    assert_eq!(code, 200, "{body}");
    wait_idle(&daemon, &["s1", "s2"], START);
    assert!(
        rig.tasks("p", "done").is_empty() && rig.tasks("p", "active").is_empty(),
        "nothing handed out while paused"
    );
    let (code, body) = daemon.request("POST", "/dispatch/resume", Some("{}"), &[kit::http::JSON]).unwrap();
    assert_eq!(code, 200, "{body}");
    let all: Vec<String> = unpinned.iter().map(|u| u.0.to_string()).chain(pinned.iter().map(|p| p.0.clone())).collect();
    wait_all_in(&rig, &daemon, "p", "done", &all, Duration::from_secs(150));
    for (name, text) in &pinned {
        check_done(&rig, "p", name, text, &["s2"], Some(1));
    }
    for (name, _, text) in unpinned {
        check_done(&rig, "p", name, text, &["s1", "s2"], Some(1));
    }
    // The first two sessions to be idle take the two highest tasks, and the
    // lowest is claimed only after one is free again. Compared by when each
    // was claimed (its lease's time, kept in the result): the order their
    // turns reach the API can differ on a busy machine, one paste taking
    // longer than the other session's whole turn and its next claim.
    let claimed = |name: &str| rig.result("p", name).unwrap()["started_at"].as_str().unwrap().to_string();
    let (high, mid, low) = (claimed("z-high.md"), claimed("m-mid.md"), claimed("a-low.md"));
    assert!(high < low && mid < low, "priority order not kept: high {high}, mid {mid}, low {low}");
}
