//! Sessions: the coordinator's model of each configured Claude Code session
//! (`model`) and the role that launches, watches and relaunches them.

pub mod launch;
pub mod model;
