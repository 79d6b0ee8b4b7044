//! claude-failover: keeps a pool of Claude Code sessions working across several
//! subscription accounts. See docs/README.md for the outside; this crate's modules
//! are laid out one per role plus one per outside format.

pub mod atomic;
pub mod checkpoint;
pub mod claude;
pub mod cli;
pub mod client;
pub mod config;
pub mod control;
pub mod coordinator;
pub mod dashboard;
pub mod dispatcher;
pub mod events;
pub mod fleet;
pub mod heartbeat;
pub mod hook;
pub mod http;
pub mod http_front;
mod inotify_thread;
pub mod janitor;
#[cfg(test)]
mod layers;
pub mod logging;
pub mod mcp;
pub mod metrics;
pub mod notifier;
pub mod queue;
pub mod quota;
pub mod report;
pub mod runtime;
pub mod sessions;
pub mod setup;
pub mod signals;
pub mod state_dir;
pub mod status;
pub mod switcher;
pub mod systemd;
pub mod telegram;
pub mod time;
pub mod tmux;
