//! The quota decisions, as plain functions of per-account state and an
//! injected `now`: which accounts may take the sessions, whether a limit seen
//! somewhere is real, whether and where to swap, and when to poll next.
//!
//! No I/O and no clock here. The coordinator owns one [`AccountQuota`] per
//! account and feeds it poll reports, statusline samples and hard-limit
//! signals; the quota poller owns one [`PollSchedule`] per account.
//!
//! Choices worth knowing:
//! - A window whose `resets_at` has passed counts as 0 %: it has reset, even
//!   if no poll has said so yet. That is what lets failback happen on time.
//! - An account never polled is not eligible (`Unknown`), and neither is one
//!   whose access token expired (`TokenExpired`): we cannot vouch for their
//!   headroom. Both are *soft* reasons. A swap the active account cannot avoid
//!   (a hard limit, or a threshold crossing with nowhere better to go) falls
//!   back to a soft-ineligible account rather than stopping all work: a
//!   standby account runs no Claude Code, so its token expires after some
//!   hours and is refreshed only when Claude Code starts there; refusing such
//!   accounts would strand every overnight failover. Failback and projected
//!   swaps go only to accounts known to have headroom.
//! - The active account's own token state never causes a swap: the sessions
//!   running there refresh it.
//!
//! - An `api_key` account (one with a `spend`) is paid for: it is chosen only
//!   when no subscription can take the sessions, and left for one as soon as
//!   one can (`BackToSubscription`). Its only limit is its daily spend cap.
//!
//! `model` is the per-account state and what feeds it (confirming a limit
//! included); `verdict` the decisions over it (eligibility, whether and where
//! to swap); `schedule` when the poller asks next.

mod model;
mod schedule;
mod spend;
mod verdict;

pub use model::*;
pub use schedule::*;
pub use spend::*;
pub use verdict::*;

#[cfg(test)]
mod tests;
