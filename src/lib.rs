//! claude-failover: keeps a pool of Claude Code sessions working across several
//! subscription accounts. See SPEC (README) for the outside; this crate's modules
//! are laid out one per role plus one per outside format.

pub mod client;
pub mod config;
pub mod control;
pub mod events;
pub mod heartbeat;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod status;
pub mod systemd;
pub mod time;
