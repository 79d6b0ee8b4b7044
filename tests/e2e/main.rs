//! The end-to-end tests: the daemon over real Claude Code (the pinned 2.1.332
//! in `build/claude-code`, `make claude-code`) against the fake API, plus the
//! demo script and the security checks around a whole rig. One test binary
//! (each former `tests/<name>.rs` is a module here): `cargo test --test e2e`
//! runs them all, `cargo test --test e2e failover_e2e::` one module.
//!
//! The tests run in parallel threads, but each that starts Claude Code first
//! takes a turn (`kit::claude_turn`), so at most `kit::throttle::limit()` of
//! them (1, or `CF_CLAUDE_TESTS`) run at once, across test binaries too.

mod api_key;
mod claude_live;
mod crash;
mod dashboard_e2e;
mod demo;
mod dispatch_e2e;
mod failover_e2e;
mod faults;
mod fleet_e2e;
mod mcp_clients;
mod recovery;
mod security;
mod sessions_e2e;
mod telegram_e2e;
