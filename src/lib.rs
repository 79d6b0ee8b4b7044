//! claude-failover: keeps a pool of Claude Code sessions working across several
//! subscription accounts. See SPEC (README) for the outside; this crate's modules
//! are laid out one per role plus one per outside format.

pub mod claude;
pub mod config;
