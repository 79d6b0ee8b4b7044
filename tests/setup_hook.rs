//! `setup` on accounts that already hold transcripts and settings, run twice,
//! and `hook`: fast, silent, always 0, spooling whole documents atomically, and
//! passing a wrapped statusline's output through.

use claude_failover::config::Config;
use claude_failover::hook;
use claude_failover::setup::{self, ProjectsAction, StatusLineAction};
use kit::write;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// docs/cli.md: the hook answers within 50 ms.
const HOOK_BUDGET: Duration = Duration::from_millis(50);

const STATUSLINE_JSON: &str = r#"{"session_id":"839d12a7-1111-2222-3333-444455556666","transcript_path":"/p/x.jsonl","cwd":"/srv/app","model":{"id":"claude-opus"},"rate_limits":{"five_hour":{"used_percentage":23.5,"resets_at":1738425600},"seven_day":{"used_percentage":41.0,"resets_at":1738857600}}}"#;

/// The user's own statusline: quotes, `$(...)`, a pipe, reading stdin.
const USER_STATUSLINE: &str = r#"printf "it's %s bytes" "$(wc -c | tr -d ' ')""#;

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// Runs the hook in-process: (exit status, what it printed, how long it took).
fn hook_lib(args: &[String], stdin: impl Read + Send + 'static) -> (i32, Vec<u8>, Duration) {
    let mut out = Vec::new();
    let started = Instant::now();
    let status = hook::run_with(args, stdin, &mut out);
    (status, out, started.elapsed())
}

/// The real binary: `claude-failover hook ARGS` with `stdin`, timed from
/// spawn to exit.
fn hook_binary(args: &[String], stdin: &[u8]) -> (i32, Vec<u8>, Duration) {
    use std::process::{Command, Stdio};
    let started = Instant::now();
    let mut child = Command::new(kit::daemon_binary())
        .arg("hook")
        .args(args)
        .env_remove("CLAUDE_FAILOVER_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the hook");
    let mut pipe = child.stdin.take().expect("stdin");
    // The hook may stop reading early (garbage): a broken pipe is fine.
    let _ = pipe.write_all(stdin);
    drop(pipe);
    let out = child.wait_with_output().expect("wait for the hook");
    let took = started.elapsed();
    assert!(out.stderr.is_empty(), "the hook wrote to stderr: {:?}", String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), out.stdout, took)
}

/// The fastest of three runs: one slow start on a busy machine says nothing
/// about the hook, three slow ones do.
fn best_of_three(mut run: impl FnMut() -> Duration) -> Duration {
    (0..3).map(|_| run()).min().expect("three runs")
}

fn spooled(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    files.sort();
    files
}

fn assert_spool_name(path: &Path) {
    let name = path.file_name().unwrap().to_str().unwrap();
    let stem = name.strip_suffix(".json").expect("ends in .json");
    let (nanos, pid) = stem.split_once('-').expect("nanos-pid");
    assert!(nanos.parse::<u128>().is_ok() && pid.parse::<u32>().is_ok(), "{name}");
}

#[test]
fn hook_spools_one_document_silently_and_fast() {
    let dir = kit::temp_dir();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let args = strings(&["--spool", spool.to_str().unwrap()]);

    let (status, out, took) = hook_lib(&args, STATUSLINE_JSON.as_bytes());
    assert_eq!(status, 0);
    assert!(out.is_empty(), "printed {out:?}");
    assert!(took < HOOK_BUDGET, "took {took:?}");

    let files = spooled(&spool);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_spool_name(&files[0]);
    let doc: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    let sent: Value = serde_json::from_str(STATUSLINE_JSON).unwrap();
    assert_eq!(doc, sent);
}

#[test]
fn hook_with_garbage_or_too_much_input_spools_nothing_and_still_exits_0() {
    let dir = kit::temp_dir();
    let spool = dir.path().join("spool");
    let args = strings(&["--spool", spool.to_str().unwrap()]);
    let huge = format!("{{\"x\":\"{}\"}}", "a".repeat(hook::MAX_INPUT));
    let inputs: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        b"{\"cut\": ".to_vec(),
        b"[1, 2, 3]".to_vec(),
        vec![0xff, 0xfe, 0x00, b'{', b'}' ^ 0x80],
        Vec::new(),
        huge.into_bytes(),
    ];
    for input in inputs {
        let (status, out, took) = hook_lib(&args, std::io::Cursor::new(input));
        assert_eq!(status, 0);
        assert!(out.is_empty());
        assert!(took < HOOK_BUDGET, "took {took:?}");
    }
    assert!(spooled(&spool).is_empty(), "{:?}", spooled(&spool));
}

/// Writes `first`, then holds stdin open for a long time without closing it.
struct SlowWriter {
    first: Option<Vec<u8>>,
}

impl Read for SlowWriter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.first.take() {
            Some(bytes) => {
                buf[..bytes.len()].copy_from_slice(&bytes);
                Ok(bytes.len())
            }
            None => {
                std::thread::sleep(Duration::from_secs(3));
                Ok(0)
            }
        }
    }
}

#[test]
fn a_writer_that_never_closes_stdin_cannot_hold_the_hook() {
    let dir = kit::temp_dir();
    let spool = dir.path().join("spool");
    let args = strings(&["--spool", spool.to_str().unwrap()]);

    // A whole document then silence: spooled at once, no wait for EOF.
    let slow = SlowWriter { first: Some(br#"{"hook_event_name":"Stop","session_id":"s1"}"#.to_vec()) };
    let (status, out, took) = hook_lib(&args, slow);
    assert_eq!((status, out.len()), (0, 0));
    assert!(took < HOOK_BUDGET, "took {took:?}");
    assert_eq!(spooled(&spool).len(), 1);

    // Half a document then silence: given up after the read budget (40 ms);
    // the bound allows for a loaded machine waking the thread late.
    let slow = SlowWriter { first: Some(br#"{"hook_event_name":"Stop","#.to_vec()) };
    let (status, out, took) = hook_lib(&args, slow);
    assert_eq!((status, out.len()), (0, 0));
    assert!(took >= hook::READ_BUDGET, "took {took:?}");
    assert!(took < Duration::from_millis(150), "took {took:?}");
    assert_eq!(spooled(&spool).len(), 1);
}

#[test]
fn hook_survives_a_missing_or_unwritable_spool_folder() {
    let dir = kit::temp_dir();
    // Missing: made on the way.
    let nested = dir.path().join("state/spool");
    let args = strings(&["--spool", nested.to_str().unwrap()]);
    let (status, out, _) = hook_lib(&args, STATUSLINE_JSON.as_bytes());
    assert_eq!((status, out.len()), (0, 0));
    assert_eq!(spooled(&nested).len(), 1);

    // Impossible: under a regular file.
    let file = dir.path().join("a-file");
    write(&file, "x");
    let args = strings(&["--spool", file.join("spool").to_str().unwrap()]);
    let (status, out, took) = hook_lib(&args, STATUSLINE_JSON.as_bytes());
    assert_eq!((status, out.len()), (0, 0));
    assert!(took < HOOK_BUDGET, "took {took:?}");

    // No spool and no readable config: nothing to do, still 0.
    let args = strings(&["--config", dir.path().join("none.toml").to_str().unwrap()]);
    let (status, out, _) = hook_lib(&args, STATUSLINE_JSON.as_bytes());
    assert_eq!((status, out.len()), (0, 0));
}

#[test]
fn hook_without_spool_finds_it_through_the_config() {
    let dir = kit::temp_dir();
    let state = dir.path().join("state");
    let config = dir.path().join("config.toml");
    write(
        &config,
        &format!("state_dir = {:?}\n[[accounts]]\nname = \"a\"\nconfig_dir = {:?}\n", state, dir.path().join("a")),
    );
    let args = strings(&["--config", config.to_str().unwrap()]);
    let (status, out, _) = hook_lib(&args, STATUSLINE_JSON.as_bytes());
    assert_eq!((status, out.len()), (0, 0));
    assert_eq!(hook::spool_dir(&state), state.join("spool"));
    assert_eq!(spooled(&state.join("spool")).len(), 1);
}

#[test]
fn spool_files_appear_whole() {
    let dir = kit::temp_dir();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let args = strings(&["--spool", spool.to_str().unwrap()]);
    let big = format!("{{\"padding\":\"{}\",\"end\":true}}", "x".repeat(300_000));

    // A reader watching the folder the way the daemon will: every visible
    // (non-dot) file it finds must already be complete.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (spool, stop) = (spool.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut checked = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for path in spooled(&spool) {
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    if name.starts_with('.') {
                        continue;
                    }
                    let bytes = std::fs::read(&path).unwrap();
                    let doc: Value =
                        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name} seen incomplete: {e}"));
                    assert_eq!(doc["end"], true);
                    checked += 1;
                }
            }
            checked
        })
    };
    for _ in 0..20 {
        let (status, _, _) = hook_lib(&args, std::io::Cursor::new(big.clone().into_bytes()));
        assert_eq!(status, 0);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(watcher.join().unwrap() > 0);

    let files = spooled(&spool);
    assert_eq!(files.len(), 20);
    for f in &files {
        assert_spool_name(f);
    }
}

/// The real binary with no daemon running: garbage on stdin, then a real
/// statusline document, then no --spool and no config at all.
#[test]
fn binary_hook_answers_within_50ms_with_no_daemon() {
    let dir = kit::temp_dir();
    let took = best_of_three(|| {
        let spool = dir.path().join("garbage-spool");
        let args = strings(&["--spool", spool.to_str().unwrap()]);
        let (status, out, took) = hook_binary(&args, b"\x00garbage{{{");
        assert_eq!(status, 0);
        assert!(out.is_empty(), "printed {out:?}");
        assert!(spooled(&spool).is_empty());
        took
    });
    assert!(took < HOOK_BUDGET, "took {took:?}");
    let mut n = 0;
    let took = best_of_three(|| {
        n += 1;
        let spool = dir.path().join(format!("spool-{n}"));
        let args = strings(&["--spool", spool.to_str().unwrap()]);
        let (status, out, took) = hook_binary(&args, STATUSLINE_JSON.as_bytes());
        assert_eq!((status, out.len()), (0, 0));
        assert_eq!(spooled(&spool).len(), 1);
        took
    });
    assert!(took < HOOK_BUDGET, "took {took:?}");
    let missing = dir.path().join("no-such-config.toml");
    let args = strings(&["--config", missing.to_str().unwrap()]);
    let (status, out, _) = hook_binary(&args, STATUSLINE_JSON.as_bytes());
    assert_eq!((status, out.len()), (0, 0));
}

// ---------------------------------------------------------------- setup

struct Accounts {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: Config,
    /// A stand-in `claude-failover` that records its arguments (see `run_statusline`).
    exe: PathBuf,
}

/// Two accounts with transcripts (overlapping and distinct) and a third whose
/// folder does not exist yet; alpha has the user's settings.json.
fn accounts() -> Accounts {
    let dir = kit::temp_dir();
    let shared = dir.path().join("state/projects");
    accounts_sharing(dir, shared)
}

fn accounts_sharing(dir: tempfile::TempDir, shared: PathBuf) -> Accounts {
    let root = dir.path().to_path_buf();
    let alpha = root.join("home/.claude-alpha");
    let beta = root.join("home/.claude-beta");
    write(&alpha.join("projects/-srv-app/s1.jsonl"), "{\"alpha\":1}\n");
    write(&alpha.join("projects/-srv-app/same.jsonl"), "{\"both\":1}\n");
    write(&alpha.join("projects/-srv-app/clash.jsonl"), "{\"alpha\":\"clash\"}\n");
    write(&alpha.join("projects/-srv-app/s1/tool-results/r1.txt"), "tool output");
    write(&alpha.join("projects/-srv-only-alpha/a.jsonl"), "{\"a\":1}\n");
    write(&beta.join("projects/-srv-app/s2.jsonl"), "{\"beta\":2}\n");
    write(&beta.join("projects/-srv-app/same.jsonl"), "{\"both\":1}\n");
    write(&beta.join("projects/-srv-app/clash.jsonl"), "{\"beta\":\"clash\"}\n");
    write(&beta.join("projects/-srv-only-beta/b.jsonl"), "{\"b\":1}\n");
    let settings = serde_json::json!({
        "model": "opus",
        "permissions": {"allow": ["Bash(ls:*)"]},
        "hooks": {
            "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}],
            "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "audit-bash"}]}]
        },
        "statusLine": {"type": "command", "command": USER_STATUSLINE, "padding": 1}
    });
    write(&alpha.join("settings.json"), &serde_json::to_string_pretty(&settings).unwrap());

    let exe = root.join("bin/claude-failover");
    write(&exe, "#!/bin/sh\nprintf '%s\\0' \"$@\" > \"$CF_ARGS_OUT\"\n");
    std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let config_path = root.join("config.toml");
    write(
        &config_path,
        &format!(
            "state_dir = {state:?}\n\
             [claude]\nshared_projects_dir = {shared:?}\n\
             [[accounts]]\nname = \"alpha\"\nconfig_dir = {alpha:?}\n\
             [[accounts]]\nname = \"beta\"\nconfig_dir = {beta:?}\n\
             [[accounts]]\nname = \"gamma\"\nconfig_dir = {gamma:?}\n",
            state = root.join("state"),
            shared = shared,
            gamma = root.join("home/.claude-gamma"),
        ),
    );
    let config = Config::load(&config_path).expect("config");
    Accounts { _dir: dir, root, config, exe }
}

/// Every file under `dir` (following the top symlink): relative path -> content.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn settings_of(config_dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(config_dir.join("settings.json")).unwrap()).unwrap()
}

fn our_commands(settings: &Value, event: &str) -> Vec<String> {
    settings["hooks"][event]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["hooks"].as_array().unwrap().iter())
        .filter_map(|h| h["command"].as_str())
        .filter(|c| c.contains(" hook --spool "))
        .map(str::to_string)
        .collect()
}

/// Runs a statusLine command the way Claude Code does (`sh -c`, JSON on
/// stdin). The stand-in binary records the argv the shell gave it; those
/// arguments then drive the hook (the library until `main` routes `hook`).
fn run_statusline(acc: &Accounts, command: &str, stdin: &str) -> (i32, String) {
    let args_file = acc.root.join("args.bin");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("CF_ARGS_OUT", &args_file)
        .stdin(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let raw = std::fs::read(&args_file).unwrap();
    let argv: Vec<String> =
        raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8(a.to_vec()).unwrap()).collect();
    assert_eq!(argv.first().map(String::as_str), Some("hook"), "{argv:?}");
    let (status, out, _) = hook_binary(&argv[1..], stdin.as_bytes());
    (status, String::from_utf8(out).unwrap())
}

#[test]
fn setup_twice_shares_every_transcript_and_installs_hooks_once() {
    let acc = accounts();
    let shared = acc.root.join("state/projects");
    let spool = acc.root.join("state/spool");
    let alpha = acc.root.join("home/.claude-alpha");
    let beta = acc.root.join("home/.claude-beta");
    let gamma = acc.root.join("home/.claude-gamma");
    let before_alpha = tree(&alpha.join("projects"));
    let before_beta = tree(&beta.join("projects"));

    let first = setup::run(&acc.config, &acc.exe)
        .unwrap_or_else(|errors| panic!("{}", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")));
    assert!(first.created_shared_dir);
    let by_name = |r: &setup::SetupReport, n: &str| r.accounts.iter().find(|a| a.account == n).unwrap().clone();
    assert_eq!(by_name(&first, "alpha").projects, ProjectsAction::Replaced);
    assert_eq!(by_name(&first, "beta").projects, ProjectsAction::Replaced);
    assert_eq!(by_name(&first, "gamma").projects, ProjectsAction::Linked);
    assert!(by_name(&first, "gamma").created_config_dir);
    let beta_merge = by_name(&first, "beta").merge;
    assert_eq!(beta_merge.deduplicated, 1, "{beta_merge:?}");
    assert_eq!(beta_merge.kept_both.len(), 1, "{beta_merge:?}");
    assert!(matches!(by_name(&first, "alpha").settings.status_line, StatusLineAction::Wrapped { .. }));
    assert!(spool.is_dir());
    let printed = first.to_string();
    assert!(printed.contains("account beta") && printed.contains("conflict-beta"), "{printed}");

    let second = setup::run(&acc.config, &acc.exe).expect("second run");
    for a in &second.accounts {
        assert_eq!(a.projects, ProjectsAction::AlreadyLinked, "{}", a.account);
        assert_eq!(a.merge, Default::default(), "{}", a.account);
        assert!(a.settings.hooks_added.is_empty(), "{}", a.account);
        assert_eq!(a.settings.status_line, StatusLineAction::Unchanged);
        assert_eq!(a.settings.backup, None, "{}", a.account);
    }

    // Every account sees the same tree, holding every transcript ever there.
    let seen = tree(&shared);
    for config_dir in [&alpha, &beta, &gamma] {
        let link = config_dir.join("projects");
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_link(&link).unwrap(), shared);
        assert_eq!(tree(&link), seen);
        let leftovers: Vec<_> = std::fs::read_dir(config_dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("projects."))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
    for (rel, content) in before_alpha.iter().chain(before_beta.iter()) {
        assert!(seen.values().any(|c| c == content), "{rel} ({content:?}) lost; shared tree: {seen:?}");
        assert!(seen.contains_key(rel), "{rel} not at its own path");
    }
    assert_eq!(seen["-srv-app/clash.jsonl"], "{\"alpha\":\"clash\"}\n");
    assert_eq!(seen["-srv-app/clash.jsonl.conflict-beta"], "{\"beta\":\"clash\"}\n");
    assert_eq!(seen.len(), before_alpha.len() + before_beta.len() - 1, "{seen:?}");

    // settings.json: the user's keys and hooks stay, ours are there once.
    let settings = settings_of(&alpha);
    assert_eq!(settings["model"], "opus");
    assert_eq!(settings["permissions"]["allow"][0], "Bash(ls:*)");
    assert_eq!(settings["hooks"]["Stop"][0]["hooks"][0]["command"], "notify-send done");
    assert_eq!(settings["hooks"]["PreToolUse"][0]["matcher"], "Bash");
    assert_eq!(settings["hooks"]["PreToolUse"][0]["hooks"][0]["command"], "audit-bash");
    assert_eq!(settings["statusLine"]["padding"], 1);
    for config_dir in [&alpha, &beta, &gamma] {
        let settings = settings_of(config_dir);
        for event in setup::HOOK_EVENTS {
            let ours = our_commands(&settings, event);
            assert_eq!(ours.len(), 1, "{event} in {}: {ours:?}", config_dir.display());
            assert_eq!(ours[0], first.hook_command);
        }
    }
    assert!(first.hook_command.starts_with(acc.exe.to_str().unwrap()));
    assert!(first.hook_command.ends_with(&format!("--spool {}", spool.display())));

    let status_line = settings["statusLine"]["command"].as_str().unwrap();
    assert_eq!(status_line.matches("--then").count(), 1, "{status_line}");
    let beta_status = settings_of(&beta)["statusLine"]["command"].as_str().unwrap().to_string();
    assert_eq!(beta_status, first.hook_command);

    // One backup, of the user's original file, for the one run that changed it.
    let backups: Vec<PathBuf> = std::fs::read_dir(&alpha)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("settings.json.bak-"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let original: Value = serde_json::from_str(&std::fs::read_to_string(&backups[0]).unwrap()).unwrap();
    assert_eq!(original["statusLine"]["command"], USER_STATUSLINE);

    // The user's statusline still prints, through the hook, which also spools.
    let (status, printed) = run_statusline(&acc, status_line, STATUSLINE_JSON);
    assert_eq!(status, 0);
    assert_eq!(printed, format!("it's {} bytes", STATUSLINE_JSON.len()));
    assert_eq!(spooled(&spool).len(), 1);
    // Our plain hook prints nothing.
    let (status, printed) = run_statusline(&acc, &beta_status, STATUSLINE_JSON);
    assert_eq!((status, printed.as_str()), (0, ""));
    assert_eq!(spooled(&spool).len(), 2);
}

#[test]
fn setup_reports_a_foreign_symlink_and_a_broken_settings_file() {
    let acc = accounts();
    let alpha = acc.root.join("home/.claude-alpha");
    let beta = acc.root.join("home/.claude-beta");
    let elsewhere = acc.root.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::rename(alpha.join("projects"), acc.root.join("alpha-projects")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, alpha.join("projects")).unwrap();
    write(&beta.join("settings.json"), "{ not json");

    let errors = setup::run(&acc.config, &acc.exe).unwrap_err();
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 2, "{text:?}");
    assert!(text.iter().any(|e| e.contains("account alpha") && e.contains("elsewhere")), "{text:?}");
    assert!(text.iter().any(|e| e.contains("account beta") && e.contains("settings.json")), "{text:?}");
    // Neither was touched.
    assert_eq!(std::fs::read_link(alpha.join("projects")).unwrap(), elsewhere);
    assert_eq!(std::fs::read_to_string(beta.join("settings.json")).unwrap(), "{ not json");

    // A symlink that reaches the shared tree by another spelling is fine.
    let shared = acc.root.join("state/projects");
    std::fs::remove_file(alpha.join("projects")).unwrap();
    std::os::unix::fs::symlink(acc.root.join("state/../state/projects"), alpha.join("projects")).unwrap();
    write(&beta.join("settings.json"), "{}");
    let report = setup::run(&acc.config, &acc.exe).expect("fixed");
    assert!(report.accounts.iter().all(|a| a.projects != ProjectsAction::Skipped));
    assert!(shared.join("-srv-only-beta/b.jsonl").exists());
}

#[test]
fn setup_moves_transcripts_into_a_shared_tree_on_another_filesystem() {
    // /dev/shm is a tmpfs here while temp dirs are on disk: links cannot cross,
    // so files are copied, synced and linked in, then the originals removed.
    let Ok(other_fs) = tempfile::Builder::new().prefix("cf-test-").tempdir_in("/dev/shm") else {
        eprintln!("no writable /dev/shm: the same-filesystem path is covered elsewhere");
        return;
    };
    let shared = other_fs.path().join("projects");
    let acc = accounts_sharing(kit::temp_dir(), shared.clone());
    let alpha = acc.root.join("home/.claude-alpha");
    let beta = acc.root.join("home/.claude-beta");
    let mut before = tree(&alpha.join("projects"));
    before.extend(tree(&beta.join("projects")).into_iter().map(|(k, v)| (k + " (beta)", v)));

    let report = setup::run(&acc.config, &acc.exe).expect("setup");
    let beta_merge = &report.accounts[1].merge;
    assert_eq!(beta_merge.deduplicated, 1, "{beta_merge:?}");
    assert_eq!(beta_merge.kept_both.len(), 1, "{beta_merge:?}");
    let seen = tree(&shared);
    for content in before.values() {
        assert!(seen.values().any(|c| c == content), "{content:?} lost: {seen:?}");
    }
    assert_eq!(seen.len(), before.len() - 1);
    assert_eq!(tree(&alpha.join("projects")), seen);
    assert_eq!(tree(&beta.join("projects")), seen);
    let stray: Vec<_> = std::fs::read_dir(shared.join("-srv-app"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}
