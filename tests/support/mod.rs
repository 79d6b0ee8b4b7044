//! Shared helpers for the integration tests: temp folders, the built binary,
//! the pinned Claude Code install, a lock that keeps Claude Code tests from
//! running all at once, and waiting for a condition with a deadline.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The claude-failover binary cargo built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_claude-failover"))
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("cf-test-").tempdir().expect("temp dir")
}

/// A tmux socket name no other test (or user) shares.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The pinned Claude Code binary installed by `make claude-code`
/// (`build/claude-code/node_modules/.bin/claude`), or `CLAUDE_BIN`.
pub fn claude_binary() -> PathBuf {
    if let Ok(p) = std::env::var("CLAUDE_BIN") {
        return PathBuf::from(p);
    }
    let p = repo_root().join("build/claude-code/node_modules/.bin/claude");
    assert!(p.exists(), "Claude Code is not installed at {}: run `make claude-code` (make test does)", p.display());
    p
}

/// Held while a test runs real Claude Code processes: they cost about 0.5 s of
/// CPU each to start, so such tests take turns across every test binary.
pub struct ClaudeLock(#[allow(dead_code)] File);

pub fn claude_lock() -> ClaudeLock {
    let dir = repo_root().join("target");
    std::fs::create_dir_all(&dir).expect("target dir");
    let f = File::create(dir.join("claude-tests.lock")).expect("lock file");
    f.lock().expect("lock");
    ClaudeLock(f)
}

/// Polls `f` until it returns Some, or panics naming `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

pub fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

pub mod accounts;
pub mod claude_accounts;
pub mod daemon;
pub mod failover_rig;
pub mod fake_api;
pub mod tmux;
