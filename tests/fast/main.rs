//! The integration tests that start no real Claude Code: the daemon binary in
//! temp folders, its roles in-process, against the fake API and fake sinks.
//! One test binary (each former `tests/<name>.rs` is a module here):
//! `cargo test --test fast` runs them all, `cargo test --test fast config::`
//! one module. They run in parallel; none takes a Claude Code turn.
//! (`tests/setup_hook.rs` stays a binary of its own: the hook reads stdin on a
//! 40 ms budget, and beside this binary's hundred-odd parallel tests on two
//! cores its 300 KB documents miss it.)

mod claude_formats;
mod config;
mod corpus;
mod daemon;
mod dashboard;
mod http;
mod janitor;
mod mcp;
mod notifier;
mod packaging;
mod queue;
mod quota;
mod quota_persist;
mod telegram;
mod tmux;

/// The one logger of this binary. `log` takes one logger per process, and
/// two modules (http, notifier) each capture every line to prove no secret
/// is ever in one: each registers its capture, and this forwards each record
/// to every capture. `enabled` answers for the strictest capture: a library
/// asking whether to log more (ureq prints a URL's path, the Telegram bot
/// token in it, only when trace is enabled) is told no if any capture, like
/// the daemon's own logger, would refuse it.
mod logs {
    use std::sync::{Once, RwLock};

    static SINKS: RwLock<Vec<&'static dyn log::Log>> = RwLock::new(Vec::new());

    struct Fanout;

    impl log::Log for Fanout {
        fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
            SINKS.read().unwrap_or_else(|p| p.into_inner()).iter().all(|sink| sink.enabled(meta))
        }
        fn log(&self, record: &log::Record<'_>) {
            for sink in SINKS.read().unwrap_or_else(|p| p.into_inner()).iter() {
                sink.log(record);
            }
        }
        fn flush(&self) {}
    }

    /// From now on `sink` sees every log record of the process.
    pub fn capture(sink: &'static dyn log::Log) {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            log::set_logger(&Fanout).expect("the only logger");
            log::set_max_level(log::LevelFilter::Trace);
        });
        SINKS.write().unwrap_or_else(|p| p.into_inner()).push(sink);
    }
}

/// The kit finds the daemon binary beside the test program; it is the one
/// cargo built for these tests.
#[test]
fn the_kit_finds_the_daemon_cargo_built() {
    assert_eq!(
        kit::daemon_binary().canonicalize().unwrap(),
        std::path::Path::new(env!("CARGO_BIN_EXE_claude-failover")).canonicalize().unwrap()
    );
}
