//! The task queue on a real filesystem: bad input to failed/, the claim →
//! finish/fail/requeue lifecycle with attempts counted, crash leftovers,
//! ordering, recovery verdicts carried out, and the inotify inbox watcher.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use claude_failover::queue::{
    order, pick, recover, ErrorRecord, InboxWatcher, Lease, LoadError, Queue, QueueCounts, QueueError, Recovery,
    SessionNow, Task, TaskResult, WatchEvent,
};
use crossbeam_channel::{unbounded, Receiver};

const MAX: u64 = 4096;

fn open(dir: &Path) -> Queue {
    Queue::open("proj", dir.join(".agent-queue")).expect("open queue")
}

fn lease(session: &str, attempt: u32) -> Lease {
    Lease {
        session: session.into(),
        account: "alpha".into(),
        attempt,
        dispatched_at: "2026-11-25T16:00:00Z".into(),
        claude_session_id: None,
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn error_record(path: &Path) -> ErrorRecord {
    serde_json::from_str(&fs::read_to_string(path).expect("error json")).expect("error json parses")
}

#[test]
fn every_kind_of_bad_input_goes_to_failed_and_the_good_task_stays() {
    let dir = kit::temp_dir();
    let q = open(dir.path());
    let inbox = q.inbox_dir();
    let good = "+++\npriority = 2\n+++\nFix the login page.\n";
    fs::write(inbox.join("good.md"), good).expect("write");

    let outside = dir.path().join("outside-secret.md");
    fs::write(&outside, "secret").expect("write");
    fs::write(inbox.join("not-utf8.md"), b"caf\xe9\n").expect("write");
    fs::write(inbox.join("big.md"), "x".repeat(MAX as usize + 1)).expect("write");
    std::os::unix::fs::symlink(&outside, inbox.join("link.md")).expect("symlink");
    fs::hard_link(&outside, inbox.join("hard.md")).expect("hard link");
    fs::create_dir(inbox.join("folder.md")).expect("mkdir");
    fs::write(inbox.join("notes.txt"), "hello").expect("write");
    fs::write(inbox.join("bad-toml.md"), "+++\nthis is = = not toml\n+++\nx").expect("write");
    fs::write(inbox.join("unknown-key.md"), "+++\ncolour = \"red\"\n+++\nx").expect("write");
    fs::write(inbox.join("wrong-type.md"), "+++\npriority = \"high\"\n+++\nx").expect("write");
    fs::write(inbox.join("unclosed.md"), "+++\npriority = 1\nx").expect("write");
    fs::write(inbox.join(".writer-temp.md"), "ignored").expect("write");
    let raw_name = OsStr::from_bytes(b"bad-\xff-name.md");
    fs::write(inbox.join(raw_name), "text").expect("write");

    let want: HashMap<&str, &str> = HashMap::from([
        ("not-utf8.md", "not valid UTF-8"),
        ("big.md", "over max_task_bytes"),
        ("link.md", "symbolic link"),
        ("hard.md", "hard links"),
        ("folder.md", "directory"),
        ("notes.txt", "does not end in .md"),
        ("bad-toml.md", "bad front matter"),
        ("unknown-key.md", "bad front matter"),
        ("wrong-type.md", "bad front matter"),
        ("unclosed.md", "no closing +++"),
    ]);

    let scan = q.scan_inbox().expect("scan");
    let lossy = raw_name.to_string_lossy().into_owned();
    assert_eq!(scan.rejected, [(lossy.clone(), "the file name is not UTF-8".to_string())], "reported for its event");
    let entries = scan.entries;
    let mut loaded = Vec::new();
    for entry in &entries {
        match q.load(&entry.name, MAX) {
            Ok(task) => loaded.push(task),
            Err(LoadError::Rejected(why)) => {
                let slot = q.reject(&entry.name, &why.to_string(), 0).expect("reject");
                assert_eq!(slot, entry.name, "nothing in failed/ to collide with");
            }
            Err(LoadError::Gone) => panic!("{} vanished", entry.name),
        }
    }

    assert_eq!(loaded.len(), 1, "only the good task loads: {loaded:?}");
    let task = &loaded[0];
    assert_eq!(
        (task.name.as_str(), task.body.as_str(), task.priority, task.bytes),
        ("good.md", "Fix the login page.\n", 2, good.len() as u64)
    );
    assert_eq!(names_in(&inbox), vec![".writer-temp.md", "good.md"]);
    assert_eq!(fs::read_to_string(inbox.join("good.md")).expect("read"), good);
    assert_eq!(fs::read_to_string(&outside).expect("read"), "secret");

    let failed = q.root().join("failed");
    for (name, reason) in &want {
        assert!(fs::symlink_metadata(failed.join(name)).is_ok(), "{name} is in failed/");
        let stem = name.strip_suffix(".md").unwrap_or(name);
        let record = error_record(&failed.join(format!("{stem}.error.json")));
        assert!(record.reason.contains(reason), "{name}: {:?} should mention {reason:?}", record.reason);
        assert_eq!(record.attempts, 0);
        assert!(record.at.ends_with('Z'), "RFC 3339 UTC: {}", record.at);
    }
    // Moved as they were: the link still a link, the folder still a folder.
    assert!(fs::symlink_metadata(failed.join("link.md")).expect("link").file_type().is_symlink());
    assert!(failed.join("folder.md").is_dir());
    // The non-UTF-8 name was rejected by the scan itself, under a readable name.
    assert!(failed.join(&lossy).exists(), "{lossy} in failed/");
    let record = error_record(&failed.join(format!("{}.error.json", lossy.strip_suffix(".md").expect("md"))));
    assert!(record.reason.contains("not UTF-8"), "{}", record.reason);

    assert_eq!(q.counts().expect("counts"), QueueCounts { inbox: 1, active: 0, done: 0, failed: 11 });
}

#[test]
fn claim_requeue_and_fail_count_attempts_across_requeues() {
    let dir = kit::temp_dir();
    let q = open(dir.path());
    fs::write(q.inbox_dir().join("t.md"), "do it").expect("write");
    let active = q.root().join("active");

    for attempt in 1..=3 {
        let task = q.load("t.md", MAX).expect("load");
        assert_eq!(task.attempts, attempt - 1, "attempts made before try {attempt}");
        let held = lease("s1", task.attempts + 1);
        q.claim("t.md", &held).expect("claim");
        assert_eq!(names_in(&active), vec!["t.lease.json", "t.md"]);
        assert!(q.scan_inbox().expect("scan").entries.is_empty());
        assert_eq!(q.leases().expect("leases"), vec![("t.md".to_string(), held)]);
        if attempt < 3 {
            assert_eq!(q.requeue("t.md").expect("requeue"), "t.md");
            assert!(names_in(&active).is_empty());
        }
    }
    let mut updated = lease("s1", 3);
    updated.claude_session_id = Some("839d12a7".into());
    q.update_lease("t.md", &updated).expect("update lease");
    assert_eq!(q.lease("t.md").expect("lease"), Some(updated));

    assert_eq!(q.fail("t.md", "gave up", 3).expect("fail"), "t.md");
    assert!(names_in(&active).is_empty(), "task and lease gone from active/");
    let failed = q.root().join("failed");
    assert_eq!(fs::read_to_string(failed.join("t.md")).expect("read"), "do it");
    let record = error_record(&failed.join("t.error.json"));
    assert_eq!((record.reason.as_str(), record.attempts), ("gave up", 3));
    assert_eq!(names_in(&q.inbox_dir()), Vec::<String>::new(), "no side file left");
}

#[test]
fn finish_writes_the_result_and_never_overwrites_a_namesake() {
    let dir = kit::temp_dir();
    let q = open(dir.path());
    let result = TaskResult {
        session: "s1".into(),
        account: "alpha".into(),
        attempts: 1,
        started_at: "2026-11-25T16:00:00Z".into(),
        finished_at: "2026-11-25T16:05:00Z".into(),
        last_assistant_message: Some("Done.".into()),
    };
    for (round, want) in [(1, "x.md"), (2, "x-2.md"), (3, "x-3.md")] {
        fs::write(q.inbox_dir().join("x.md"), format!("round {round}")).expect("write");
        q.claim("x.md", &lease("s1", 1)).expect("claim");
        assert_eq!(q.finish("x.md", &result).expect("finish"), want);
    }
    let done = q.root().join("done");
    assert_eq!(
        names_in(&done),
        vec!["x-2.md", "x-2.result.json", "x-3.md", "x-3.result.json", "x.md", "x.result.json"]
    );
    assert_eq!(fs::read_to_string(done.join("x-3.md")).expect("read"), "round 3");
    let written: TaskResult =
        serde_json::from_str(&fs::read_to_string(done.join("x.result.json")).expect("read")).expect("parses");
    assert_eq!(written, result);
    assert!(names_in(&q.root().join("active")).is_empty());
    assert_eq!(q.counts().expect("counts").done, 3);
}

#[test]
fn claim_refuses_a_name_already_active_and_a_missing_task() {
    let dir = kit::temp_dir();
    let q = open(dir.path());
    fs::write(q.inbox_dir().join("a.md"), "first").expect("write");
    q.claim("a.md", &lease("s1", 1)).expect("claim");
    fs::write(q.inbox_dir().join("a.md"), "second").expect("write");
    assert!(matches!(q.claim("a.md", &lease("s2", 1)), Err(QueueError::Occupied { .. })));
    assert!(matches!(q.claim("nope.md", &lease("s2", 1)), Err(QueueError::Missing { .. })));
    assert!(matches!(q.claim("../a.md", &lease("s2", 1)), Err(QueueError::BadName { .. })));
    assert_eq!(fs::read_to_string(q.root().join("active/a.md")).expect("read"), "first");
    // Requeue while a namesake waits in the inbox: the newcomer is untouched.
    assert_eq!(q.requeue("a.md").expect("requeue"), "a-2.md");
    assert_eq!(fs::read_to_string(q.inbox_dir().join("a.md")).expect("read"), "second");
    assert_eq!(q.load("a-2.md", MAX).expect("load").attempts, 1);
    assert_eq!(q.load("a.md", MAX).expect("load").attempts, 0);
    assert_eq!(q.load("gone.md", MAX), Err(LoadError::Gone));
}

#[test]
fn leases_tidy_what_a_crash_leaves() {
    let dir = kit::temp_dir();
    let q = open(dir.path());
    let active = q.root().join("active");
    // Crash inside claim: lease written, task not yet moved.
    fs::write(q.inbox_dir().join("early.md"), "e").expect("write");
    let json = serde_json::to_string(&lease("s1", 1)).expect("json");
    fs::write(active.join("early.lease.json"), &json).expect("write");
    // Crash inside finish: task moved to done/, lease not yet removed.
    fs::write(active.join("late.lease.json"), &json).expect("write");
    // An active task whose lease is unreadable.
    fs::write(active.join("nolease.md"), "n").expect("write");
    fs::write(active.join("nolease.lease.json"), "{ torn").expect("write");
    // Crash inside the atomic write of a lease: its temp file (another pid).
    fs::write(active.join(".torn.lease.json.1.tmp"), "{\"ses").expect("write");
    // A healthy one.
    fs::write(q.inbox_dir().join("ok.md"), "o").expect("write");
    q.claim("ok.md", &lease("s2", 2)).expect("claim");

    assert_eq!(q.leases().expect("leases"), vec![("ok.md".to_string(), lease("s2", 2))]);
    assert_eq!(names_in(&active), vec!["ok.lease.json", "ok.md"]);
    let inbox: Vec<String> = q.scan_inbox().expect("scan").entries.into_iter().map(|e| e.name).collect();
    assert_eq!(inbox, vec!["early.md", "nolease.md"]);
}

fn task(name: &str, priority: i64, session: Option<&str>) -> Task {
    Task {
        name: name.into(),
        body: String::new(),
        priority,
        session: session.map(str::to_string),
        bytes: 0,
        attempts: 0,
    }
}

#[test]
fn order_is_priority_then_name_and_pinned_tasks_wait_for_their_session() {
    let tasks = vec![
        task("2026-11-25-c.md", 0, None),
        task("2026-11-24-b.md", 0, None),
        task("2026-11-26-urgent.md", 5, None),
        task("2026-11-20-pinned.md", 9, Some("s2")),
        task("2026-11-01-low.md", -1, None),
    ];
    let names = |ts: &[Task]| ts.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&order(tasks.clone())),
        vec!["2026-11-20-pinned.md", "2026-11-26-urgent.md", "2026-11-24-b.md", "2026-11-25-c.md", "2026-11-01-low.md"]
    );
    let picked = |s: &str| pick(&tasks, s).map(|t| t.name.clone());
    assert_eq!(picked("s1").as_deref(), Some("2026-11-26-urgent.md"));
    assert_eq!(picked("s2").as_deref(), Some("2026-11-20-pinned.md"));
    let only_pinned = vec![task("p.md", 0, Some("s2"))];
    assert_eq!(pick(&only_pinned, "s1"), None);
    assert_eq!(pick(&[], "s1"), None);
}

#[test]
fn recovery_verdicts_carried_out_on_disk() {
    let dir = kit::temp_dir();
    let q = open(dir.path());
    // (task, session, attempt, what the session does now, verdict)
    let table = [
        ("keep.md", "s1", 1, SessionNow::WorkingOn("keep.md".into()), Recovery::Keep),
        ("done.md", "s2", 1, SessionNow::Finished("done.md".into()), Recovery::Done),
        ("again.md", "s3", 1, SessionNow::Other, Recovery::Requeue { next_attempt: 2 }),
        ("stale.md", "s4", 2, SessionNow::WorkingOn("x.md".into()), Recovery::Requeue { next_attempt: 3 }),
        ("spent.md", "s5", 3, SessionNow::Other, Recovery::Fail { attempts: 3 }),
    ];
    let mut sessions = HashMap::new();
    for (name, session, attempt, now, _) in &table {
        fs::write(q.inbox_dir().join(name), "t").expect("write");
        q.claim(name, &lease(session, *attempt)).expect("claim");
        sessions.insert(session.to_string(), now.clone());
    }
    let verdicts = recover(&q.leases().expect("leases"), &sessions, 3);
    let want: Vec<(String, Recovery)> = {
        let mut v: Vec<_> = table.iter().map(|(n, _, _, _, r)| (n.to_string(), r.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert_eq!(verdicts, want);
    for (name, verdict) in verdicts {
        match verdict {
            Recovery::Keep => {}
            Recovery::Done => {
                let held = q.lease(&name).expect("lease").expect("held");
                let result = TaskResult {
                    session: held.session,
                    account: held.account,
                    attempts: held.attempt,
                    started_at: held.dispatched_at,
                    finished_at: "2026-11-25T17:00:00Z".into(),
                    last_assistant_message: None,
                };
                q.finish(&name, &result).expect("finish");
            }
            Recovery::Requeue { .. } => {
                q.requeue(&name).expect("requeue");
            }
            Recovery::Fail { attempts } => {
                q.fail(&name, "max_attempts reached", attempts).expect("fail");
            }
        }
    }
    assert_eq!(names_in(&q.root().join("active")), vec!["keep.lease.json", "keep.md"]);
    assert_eq!(q.load("again.md", MAX).expect("load").attempts, 1);
    assert_eq!(q.load("stale.md", MAX).expect("load").attempts, 2);
    assert!(q.root().join("done/done.md").exists());
    assert!(q.root().join("failed/spent.md").exists());
}

#[test]
fn status_json_is_replaced_whole() {
    let dir = kit::temp_dir();
    let q = open(dir.path());
    q.write_status(&serde_json::json!({"sessions": []})).expect("status");
    q.write_status(&serde_json::json!({"sessions": [{"name": "s1"}]})).expect("status");
    let text = fs::read_to_string(q.root().join("status.json")).expect("read");
    let value: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(value["sessions"][0]["name"], "s1");
    assert_eq!(names_in(q.root()), vec!["active", "archive", "done", "failed", "inbox", "status.json"]);
}

const PATIENCE: Duration = Duration::from_secs(10);

/// Receives until `want` arrives, skipping other events; panics after PATIENCE.
fn expect_event(rx: &Receiver<WatchEvent>, want: &WatchEvent) {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        match rx.recv_deadline(deadline) {
            Ok(event) if &event == want => return,
            Ok(event) => seen.push(event),
            Err(_) => panic!("no {want:?} within {PATIENCE:?}; saw {seen:?}"),
        }
    }
}

fn arrived(project: &str, name: &str) -> WatchEvent {
    WatchEvent::Arrived { project: project.into(), name: name.into() }
}

fn rescan(project: &str) -> WatchEvent {
    WatchEvent::Rescan { project: project.into() }
}

fn stop_promptly(watcher: InboxWatcher) {
    let (done_tx, done_rx) = unbounded();
    std::thread::spawn(move || {
        watcher.stop();
        let _ = done_tx.send(());
    });
    done_rx.recv_timeout(PATIENCE).expect("stop() returned");
}

#[test]
fn watcher_sees_writes_renames_and_inboxes_that_come_and_go() {
    let dir = kit::temp_dir();
    let q = open(&dir.path().join("one"));
    let later_root: PathBuf = dir.path().join("two-not-yet/.agent-queue");
    let (tx, rx) = unbounded();
    let watcher =
        InboxWatcher::start(vec![("one".into(), q.inbox_dir()), ("two".into(), later_root.join("inbox"))], tx)
            .expect("watcher");

    // Written in place.
    fs::write(q.inbox_dir().join("in-place.md"), "a").expect("write");
    expect_event(&rx, &arrived("one", "in-place.md"));
    // Written elsewhere, renamed in; the dot-file itself is never reported.
    let tmp = q.inbox_dir().join(".renamed.md.tmp");
    fs::write(&tmp, "b").expect("write");
    fs::rename(&tmp, q.inbox_dir().join("renamed.md")).expect("rename");
    expect_event(&rx, &arrived("one", "renamed.md"));
    // A directory dropped in is reported so it can be rejected.
    fs::create_dir(q.inbox_dir().join("folder.md")).expect("mkdir");
    expect_event(&rx, &arrived("one", "folder.md"));
    // So are links, which will never be closed after writing.
    let outside = dir.path().join("outside.md");
    fs::write(&outside, "x").expect("write");
    std::os::unix::fs::symlink(&outside, q.inbox_dir().join("soft.md")).expect("symlink");
    expect_event(&rx, &arrived("one", "soft.md"));
    fs::hard_link(&outside, q.inbox_dir().join("hard.md")).expect("hard link");
    expect_event(&rx, &arrived("one", "hard.md"));

    // The inbox deleted and made again.
    fs::remove_dir_all(q.inbox_dir()).expect("rm inbox");
    fs::create_dir(q.inbox_dir()).expect("mkdir inbox");
    expect_event(&rx, &rescan("one"));
    fs::write(q.inbox_dir().join("after.md"), "c").expect("write");
    expect_event(&rx, &arrived("one", "after.md"));

    // The inbox moved away and made again.
    fs::rename(q.inbox_dir(), q.root().join("old-inbox")).expect("mv inbox");
    fs::write(q.root().join("old-inbox/stray.md"), "d").expect("write");
    fs::create_dir(q.inbox_dir()).expect("mkdir inbox");
    expect_event(&rx, &rescan("one"));
    fs::write(q.inbox_dir().join("after-move.md"), "e").expect("write");
    expect_event(&rx, &arrived("one", "after-move.md"));

    // A project folder that did not exist at start.
    let two = Queue::open("two", later_root).expect("open two");
    expect_event(&rx, &rescan("two"));
    fs::write(two.inbox_dir().join("late.md"), "f").expect("write");
    expect_event(&rx, &arrived("two", "late.md"));

    stop_promptly(watcher);
    let rest: Vec<WatchEvent> = rx.try_iter().collect();
    assert!(
        !rest.contains(&arrived("one", "stray.md")),
        "a file in the moved-away folder is not the inbox's: {rest:?}"
    );
}

#[test]
fn watcher_stops_promptly_with_nothing_to_watch() {
    let (tx, _rx) = unbounded();
    let watcher = InboxWatcher::start(Vec::new(), tx).expect("watcher");
    stop_promptly(watcher);
}

#[test]
fn start_up_scan_of_ten_thousand_tasks_then_dedupe_with_the_watcher() {
    let dir = kit::temp_dir();
    let q = open(dir.path());
    let (tx, rx) = unbounded();
    let watcher = InboxWatcher::start(vec![("proj".into(), q.inbox_dir())], tx).expect("watch");
    for i in 0..10_000 {
        let text = if i % 1000 == 7 {
            format!("+++\npriority = {}\n+++\ntask {i}\n", i / 1000)
        } else {
            format!("task {i}\n")
        };
        fs::write(q.inbox_dir().join(format!("{i:05}.md")), text).expect("write");
    }
    // Watcher first, then scan: everything written is either scanned or seen.
    let scanned = q.scan_inbox().expect("scan").entries;
    assert_eq!(scanned.len(), 10_000);
    let mut known: std::collections::BTreeSet<String> = scanned.iter().map(|e| e.name.clone()).collect();
    let tasks: Vec<Task> = scanned.iter().map(|e| q.load(&e.name, MAX).expect("load")).collect();
    let ordered = order(tasks);
    let head: Vec<&str> = ordered.iter().take(11).map(|t| t.name.as_str()).collect();
    assert_eq!(
        head,
        vec![
            "09007.md", "08007.md", "07007.md", "06007.md", "05007.md", "04007.md", "03007.md", "02007.md", "01007.md",
            "00000.md", "00001.md"
        ],
        "priority first (00007 has priority 0), then by name"
    );
    assert_eq!(ordered.last().map(|t| t.name.as_str()), Some("09999.md"));

    fs::write(q.inbox_dir().join("10000.md"), "late").expect("write");
    expect_event(&rx, &arrived("proj", "10000.md"));
    // Arrivals of files the scan already had are duplicates; dedupe by name.
    let mut extra = 0;
    for event in rx.try_iter() {
        if let WatchEvent::Arrived { name, .. } = event {
            if known.insert(name) {
                extra += 1;
            }
        }
    }
    assert_eq!(extra, 0, "every early arrival was already in the scan");
    assert_eq!(q.counts().expect("counts").inbox, 10_001);
    stop_promptly(watcher);
}
