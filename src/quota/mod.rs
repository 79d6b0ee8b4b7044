//! Quota: what each account has left, and the failover decisions built on it.
//!
//! `decide` holds the pure decisions (eligibility, hard-limit confirmation,
//! whether and where to swap, poll scheduling) over state the coordinator
//! owns; `poller` is the quota role, the one thread that asks the usage
//! endpoint, on a per-account budget, with each account's own token.
//!
//! Who holds what: the poller keeps each account's [`decide::PollSchedule`]
//! (when to ask next, backoff, `Retry-After`), because only it acts on it;
//! the coordinator keeps one [`decide::AccountQuota`] per account, fed by
//! [`poller::QuotaReport`]s, statusline samples and hard-limit sightings, and
//! builds `/status` and its swap decisions from those. `persist` keeps the
//! part a restart must not forget (hard limits, last windows) in
//! `<state_dir>/quota.json`; `history` the readings behind the dashboard's
//! charts, in `<state_dir>/history.json`; `spend_file` what `api_key`
//! accounts spent today, in `<state_dir>/spend.json`.

pub mod decide;
pub mod history;
pub mod persist;
pub mod poller;
pub mod spend_file;

pub use decide::{
    confirm_hard_limit, eligible, eligible_again_at, should_swap, state_name, AccountQuota, HardLimitSignal,
    Ineligible, LimitSource, PollError, SwapDecision, SwapReason, TokenState, Verdict, Window, Windows,
};
pub use poller::{spawn, QuotaCommand, QuotaHandle, QuotaReport};
