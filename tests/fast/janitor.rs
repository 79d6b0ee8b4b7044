//! The janitor against a real folder tree and a fake clock: it archives and
//! prunes exactly what is old, and never touches a task outside done/.

use claude_failover::config::{Config, JanitorConfig, ProjectConfig};
use claude_failover::heartbeat::Heartbeats;
use claude_failover::janitor::{self, sweep};
use claude_failover::metrics::Metrics;
use claude_failover::time::rfc3339;
use kit::{wait_until, write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

fn set_mtime(path: &Path, t: SystemTime) {
    std::fs::File::options().write(true).open(path).expect("open for mtime").set_modified(t).expect("set mtime");
}

/// Writes `path` with an mtime of `t`.
fn file_at(path: &Path, text: &str, t: SystemTime) -> PathBuf {
    write(path, text);
    set_mtime(path, t);
    path.to_path_buf()
}

fn result_json(finished: SystemTime) -> String {
    format!(
        r#"{{"session":"s1","account":"alpha","attempts":1,"started_at":"{}","finished_at":"{}","last_assistant_message":"ok"}}"#,
        rfc3339(finished - HOUR),
        rfc3339(finished)
    )
}

fn month(t: SystemTime) -> String {
    rfc3339(t)[..7].to_string()
}

/// Every regular file under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn sweep_archives_and_prunes_only_what_is_old() {
    let tmp = kit::temp_dir();
    let project = ProjectConfig { name: "p".into(), path: tmp.path().join("proj"), queue_dir: ".agent-queue".into() };
    let q = project.queue_root();
    let state = tmp.path().join("state");
    let cfg = JanitorConfig {
        interval_secs: 600,
        archive_done_after_secs: 7 * 86_400,
        prune_checkpoints_after_secs: 14 * 86_400,
    };
    // The fake clock runs ten days ahead, so files written just now (ctime
    // included) are ten days old, and "young" ones get an mtime in the future.
    let real = SystemTime::now();
    let now = real + 10 * DAY;
    let ancient = now - 400 * DAY;

    // done/: old with result (by finished_at), young with result, old and
    // young without result (by mtime/ctime), a collision, a half-moved task.
    let old_finished = now - 8 * DAY;
    write(&q.join("done/old-a.md"), "a");
    write(&q.join("done/old-a.result.json"), &result_json(old_finished));
    write(&q.join("done/young.md"), "y");
    write(&q.join("done/young.result.json"), &result_json(now - DAY));
    file_at(&q.join("done/no-result.md"), "n", ancient);
    file_at(&q.join("done/fresh-no-result.md"), "f", now - HOUR);
    let m = month(old_finished);
    write(&q.join(format!("archive/{m}/old-b.md")), "earlier b");
    write(&q.join(format!("archive/{m}/old-b.result.json")), "{}");
    write(&q.join("done/old-b.md"), "later b");
    write(&q.join("done/old-b.result.json"), &result_json(old_finished));
    write(&q.join(format!("archive/{m}/half.md")), "half");
    write(&q.join("done/half.result.json"), &result_json(old_finished));
    // A result file whose finished_at does not parse falls back to its times.
    write(&q.join("done/junk.md"), "j");
    file_at(&q.join("done/junk.result.json"), "not json", now - HOUR);
    set_mtime(&q.join("done/junk.md"), now - HOUR);

    // Tasks elsewhere, however old, are never the janitor's.
    let untouched = [
        file_at(&q.join("inbox/old.md"), "i", ancient),
        file_at(&q.join("inbox/.ignored"), "i", ancient),
        file_at(&q.join("inbox/.young.md.tmp"), "t", now - 10 * 60 * Duration::from_secs(1)),
        file_at(&q.join("active/old.md"), "a", ancient),
        file_at(&q.join("active/old.lease.json"), "{}", ancient),
        file_at(&q.join("failed/old.md"), "f", ancient),
        file_at(&q.join("failed/old.error.json"), "{}", ancient),
        file_at(&state.join("checkpoints/s1/new.json"), "{}", now - DAY),
        file_at(&state.join("spool/fresh.json"), "{}", now - 5 * 60 * Duration::from_secs(1)),
        file_at(&state.join("spool/.hidden"), "{}", ancient),
    ];
    let temps = [
        file_at(&q.join("inbox/.writer.md.tmp"), "t", now - 2 * HOUR),
        file_at(&q.join("done/.x.tmp"), "t", now - 2 * HOUR),
        file_at(&q.join(".status.json.tmp"), "t", now - 2 * HOUR),
        file_at(&state.join("spool/.hook.tmp"), "t", now - 2 * HOUR),
    ];
    let old_checkpoints = [
        file_at(&state.join("checkpoints/s1/old.json"), "{}", now - 15 * DAY),
        file_at(&state.join("checkpoints/top.json"), "{}", now - 15 * DAY),
    ];
    let old_spool = file_at(&state.join("spool/abc.json"), "{}", now - 2 * HOUR);

    let metrics = Metrics::new();
    let report = sweep(std::slice::from_ref(&project), &state, &cfg, now, &metrics);
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    let real_month = month(real);
    let mut archived: Vec<String> =
        report.archived.iter().map(|p| p.strip_prefix(&q).unwrap().display().to_string()).collect();
    archived.sort();
    let mut want = vec![
        format!("archive/{m}/half.result.json"),
        format!("archive/{m}/old-a.md"),
        format!("archive/{m}/old-b-1.md"),
        format!("archive/{real_month}/no-result.md"),
    ];
    want.sort();
    assert_eq!(archived, want);

    let mut want_tree = vec![
        ".agent-queue/active/old.lease.json".to_string(),
        ".agent-queue/active/old.md".into(),
        format!(".agent-queue/archive/{m}/half.md"),
        format!(".agent-queue/archive/{m}/half.result.json"),
        format!(".agent-queue/archive/{m}/old-a.md"),
        format!(".agent-queue/archive/{m}/old-a.result.json"),
        format!(".agent-queue/archive/{m}/old-b-1.md"),
        format!(".agent-queue/archive/{m}/old-b-1.result.json"),
        format!(".agent-queue/archive/{m}/old-b.md"),
        format!(".agent-queue/archive/{m}/old-b.result.json"),
        format!(".agent-queue/archive/{real_month}/no-result.md"),
        ".agent-queue/done/fresh-no-result.md".into(),
        ".agent-queue/done/junk.md".into(),
        ".agent-queue/done/junk.result.json".into(),
        ".agent-queue/done/young.md".into(),
        ".agent-queue/done/young.result.json".into(),
        ".agent-queue/failed/old.error.json".into(),
        ".agent-queue/failed/old.md".into(),
        ".agent-queue/inbox/.ignored".into(),
        ".agent-queue/inbox/.young.md.tmp".into(),
        ".agent-queue/inbox/old.md".into(),
    ];
    want_tree.sort();
    assert_eq!(tree(&project.path), want_tree);
    // The earlier archive entry was not overwritten, the later one kept its text.
    let earlier = std::fs::read_to_string(q.join(format!("archive/{m}/old-b.md"))).unwrap();
    let later = std::fs::read_to_string(q.join(format!("archive/{m}/old-b-1.md"))).unwrap();
    assert_eq!((earlier.as_str(), later.as_str()), ("earlier b", "later b"));

    for p in &untouched {
        assert!(p.exists(), "{} was removed", p.display());
    }
    for p in temps.iter().chain(&old_checkpoints).chain([&old_spool]) {
        assert!(!p.exists(), "{} is still there", p.display());
    }
    let mut pruned = report.checkpoints_pruned.clone();
    pruned.sort();
    let mut want_pruned = old_checkpoints.to_vec();
    want_pruned.sort();
    assert_eq!(pruned, want_pruned);
    assert_eq!(report.spool_removed, vec![old_spool]);
    assert_eq!(report.temp_removed.len(), temps.len());

    let actions = |a: &str| metrics.counter("claude_failover_janitor_actions_total", &[("action", a)]);
    assert_eq!(actions("archive_done"), 4);
    assert_eq!(actions("prune_checkpoint"), 2);
    assert_eq!(actions("remove_spool"), 1);
    assert_eq!(actions("remove_temp"), 4);

    // A second sweep at the same instant has nothing left to do.
    let again = sweep(&[project], &state, &cfg, now, &metrics);
    assert_eq!(again.actions(), 0, "{again:?}");
    assert!(again.errors.is_empty(), "{:?}", again.errors);
}

#[test]
fn a_project_without_queue_folders_is_not_an_error() {
    let tmp = kit::temp_dir();
    let project =
        ProjectConfig { name: "p".into(), path: tmp.path().join("nothing-here"), queue_dir: ".agent-queue".into() };
    let report =
        sweep(&[project], &tmp.path().join("state"), &JanitorConfig::default(), SystemTime::now(), &Metrics::new());
    assert_eq!(report.actions(), 0);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

#[test]
fn the_janitor_thread_sweeps_at_start_beats_and_stops_on_join() {
    let tmp = kit::temp_dir();
    let proj = tmp.path().join("proj");
    let text = format!(
        r#"
state_dir = "{state}"
[janitor]
interval_secs = 3600
archive_done_after_secs = 60
[[accounts]]
name = "alpha"
config_dir = "/nonexistent"
[[projects]]
name = "p"
path = "{proj}"
"#,
        state = tmp.path().join("state").display(),
        proj = proj.display()
    );
    let config: Config = toml::from_str(&text).expect("config");
    let old = SystemTime::now() - 2 * HOUR;
    let done = proj.join(".agent-queue/done");
    write(&done.join("t.md"), "t");
    write(&done.join("t.result.json"), &result_json(old));

    let heartbeats = Heartbeats::new(None);
    let metrics = Metrics::new();
    let handle =
        janitor::spawn(Arc::new(config), metrics.clone(), heartbeats.register("janitor")).expect("spawn janitor");
    let archived = proj.join(format!(".agent-queue/archive/{}/t.md", month(old)));
    wait_until(Duration::from_secs(10), "the first sweep", || archived.exists().then_some(()));
    assert!(!done.join("t.result.json").exists());
    assert!(heartbeats.stale(std::time::Instant::now(), Duration::from_secs(5)).is_empty());
    let started = std::time::Instant::now();
    handle.join();
    assert!(started.elapsed() < Duration::from_secs(3));
}
