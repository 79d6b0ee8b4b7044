//! The one test kit of claude-failover, used by the integration tests
//! (`tests/fast`, `tests/e2e`) and the benches (`examples/`) alike:
//!
//! - [`fake_api`]: the fake Anthropic API (Messages, OAuth usage, per-token
//!   failure modes), also run as a program by `examples/fake_api.rs`;
//! - [`fake_telegram`]: the fake Telegram Bot API (updates in, sends recorded);
//! - [`daemon::Daemon`]: one `claude-failover run` process, its log and HTTP;
//! - [`rig::Rig`]: a whole daemon rig (temp folder, fake API, private tmux
//!   server, accounts, projects, sessions, config) for runs with real Claude Code;
//! - [`config::ConfigBuilder`]: every config a test or bench writes;
//! - [`http::request`]: the one raw HTTP/1.1 client;
//! - [`accounts`]: account folders with one token spelling ([`accounts::token`]);
//! - [`port::free_port`]: a loopback port to listen on, without a bind-then-drop race;
//! - [`tmux::TmuxServer`]: a private tmux server per test;
//! - [`wait_until`] / [`poll_until`]: waiting for a condition with a deadline;
//! - [`throttle`]: the turns tests starting real Claude Code take;
//! - [`etcd::EtcdCluster`] / [`fleet::FleetRig`]: a real etcd cluster and a fleet of daemons on it.
//!
//! # The Claude Code throttle
//!
//! Every test (and bench) that starts real Claude Code processes first takes a
//! turn with [`throttle::claude_turn`] and holds it to its end. At most
//! [`throttle::DEFAULT_LIMIT`] (1) such test runs at a time, across every test
//! binary and process that shares this checkout's `target/`: a Claude Code
//! start costs about 0.5 s of CPU, a test starts two to ten of them, and the
//! test machine has 2 cores shared with other work. Two at once was tried: the
//! two `dispatch_e2e::a_daemon_killed_*` tests (kill between a paste and its
//! Enter) saw tasks sent twice, so the load changes what they test.
//! `CF_CLAUDE_TESTS=N` raises the limit for a machine with more cores. The
//! benches take every turn ([`throttle::claude_all`]) so that nothing runs
//! beside their figures.
//! The turns are `flock`s on `target/claude-tests.<i>.lock`, so a killed
//! test never leaves one taken.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub mod accounts;
pub mod config;
pub mod daemon;
pub mod etcd;
pub mod fake_api;
pub mod fake_telegram;
pub mod fleet;
pub mod http;
pub mod mcp;
pub mod port;
pub mod relay;
pub mod rig;
pub mod throttle;
pub mod tmux;

pub use config::ConfigBuilder;
pub use daemon::Daemon;
pub use port::free_port;
pub use rig::Rig;
pub use throttle::claude_turn;

/// An example program cargo built beside the daemon
/// (`target/<profile>/examples/NAME`), e.g. `dispatch_bench`, whose
/// `--stand-in` mode stands in for Claude Code where twenty real ones would
/// be too many.
pub fn example_binary(name: &str) -> PathBuf {
    let path = daemon_binary().parent().expect("target/<profile>").join("examples").join(name);
    assert!(path.exists(), "{} is not built: run `cargo build --examples` first (`make test` does; `cargo test --all-targets` builds examples only as test harnesses)", path.display());
    path
}

/// The repository's root (the kit lives in `tests/kit`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository root")
}

/// The `claude-failover` binary cargo built beside the running program: a test
/// runs from `target/<profile>/deps/`, an example from
/// `target/<profile>/examples/`, and the daemon is `target/<profile>/claude-failover`.
/// `CF_BIN` overrides it.
pub fn daemon_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CF_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the running program's path");
    let profile = exe.parent().and_then(Path::parent).expect("the program runs from target/<profile>/<dir>/");
    profile.join("claude-failover")
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

/// The Python of the venv holding the MCP SDK (`make mcp-clients`).
pub fn mcp_python() -> PathBuf {
    let p = repo_root().join("build/mcp-clients/venv/bin/python");
    assert!(
        p.exists(),
        "the Python MCP SDK is not installed at {}: run `make mcp-clients` (make test does)",
        p.display()
    );
    p
}

/// The MCP Inspector CLI (`make mcp-clients`).
pub fn mcp_inspector() -> PathBuf {
    let p = repo_root().join("build/mcp-clients/inspector/node_modules/.bin/mcp-inspector");
    assert!(
        p.exists(),
        "the MCP Inspector is not installed at {}: run `make mcp-clients` (make test does)",
        p.display()
    );
    p
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("cf-test-").tempdir().expect("temp dir")
}

/// A name (tmux socket, marker file) no other test, process or user shares.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{}-{nanos:x}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Writes `text` to `path`, making its folder first.
pub fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

/// How often [`poll_until`] looks.
#[derive(Clone, Copy, Debug)]
pub enum Every {
    /// From 10 ms, doubling to 100 ms: quick when the condition is near,
    /// cheap when it is far.
    Backoff,
    /// A fixed pause (a bench timing a condition wants a fine grain).
    Fixed(Duration),
}

/// Polls `f` until it returns Some, or None once `timeout` has passed.
pub fn poll_until<T>(timeout: Duration, every: Every, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = match every {
        Every::Backoff => Duration::from_millis(10),
        Every::Fixed(d) => d,
    };
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(pause);
        if let Every::Backoff = every {
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

/// Polls `f` until it returns Some, or panics naming `what` after `timeout`.
pub fn wait_until<T>(timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    poll_until(timeout, Every::Backoff, f).unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}
