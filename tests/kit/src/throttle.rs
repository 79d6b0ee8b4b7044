//! Turns for tests that start real Claude Code (see the crate doc for the
//! limit and why). A turn is an exclusive `flock` on one of N slot files in
//! `target/`; the kernel drops it when the holder exits, however it exits.

use std::fs::{File, TryLockError};
use std::path::PathBuf;

/// Real-Claude tests at once unless `CF_CLAUDE_TESTS` says otherwise.
pub const DEFAULT_LIMIT: usize = 1;

/// Held while a test runs real Claude Code processes; dropping it gives the turn back.
#[must_use = "the turn ends when this is dropped"]
pub struct ClaudeTurn {
    _slots: Vec<File>,
}

/// The limit: `CF_CLAUDE_TESTS` (at least 1), else [`DEFAULT_LIMIT`].
pub fn limit() -> usize {
    match std::env::var("CF_CLAUDE_TESTS") {
        Ok(v) => v.trim().parse::<usize>().ok().filter(|n| *n >= 1).unwrap_or_else(|| {
            panic!("CF_CLAUDE_TESTS={v:?}: expected a whole number of at least 1");
        }),
        Err(_) => DEFAULT_LIMIT,
    }
}

fn slot(i: usize) -> File {
    let dir = super::repo_root().join("target");
    std::fs::create_dir_all(&dir).expect("target dir");
    let path: PathBuf = dir.join(format!("claude-tests.{i}.lock"));
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Takes one turn: the first free slot, or, when all are taken, waits on one
/// (chosen by process and call, so that waiters spread over the slots).
pub fn claude_turn() -> ClaudeTurn {
    let n = limit();
    for i in 0..n {
        let f = slot(i);
        match f.try_lock() {
            Ok(()) => return ClaudeTurn { _slots: vec![f] },
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => panic!("claude-tests.{i}.lock: {e}"),
        }
    }
    static WAITERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let i = (std::process::id() as usize + WAITERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) % n;
    let f = slot(i);
    f.lock().unwrap_or_else(|e| panic!("claude-tests.{i}.lock: {e}"));
    ClaudeTurn { _slots: vec![f] }
}

/// Takes every turn, in slot order (so two such callers cannot deadlock):
/// nothing else starts Claude Code while it is held.
pub fn claude_all() -> ClaudeTurn {
    let slots = (0..limit())
        .map(|i| {
            let f = slot(i);
            f.lock().unwrap_or_else(|e| panic!("claude-tests.{i}.lock: {e}"));
            f
        })
        .collect();
    ClaudeTurn { _slots: slots }
}
