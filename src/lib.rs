//! claude-failover: keeps a pool of Claude Code sessions working across several
//! subscription accounts. See SPEC (README) for the outside; this crate's modules
//! are laid out one per role plus one per outside format.

pub mod config;
pub mod control;
pub mod coordinator;
pub mod events;
pub mod heartbeat;
pub mod metrics;
pub mod quota;
pub mod runtime;
pub mod sessions;
pub mod signals;
pub mod status;
pub mod time;
