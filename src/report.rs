//! How a role reports without knowing who listens.
//!
//! Each role owns its report type and is handed a `Reporter` of it; the
//! runtime builds the reporter so that every role's reports land, wrapped,
//! in the coordinator's one ordered input channel. A role therefore names
//! only its own types, never the coordinator's, and the import graph keeps
//! pointing down. This module must stay free of any other crate module.

use crossbeam_channel::Sender;
use std::sync::Arc;

/// Hands a role's reports on; `send` says whether anyone still listens.
pub struct Reporter<R>(Arc<dyn Fn(R) -> bool + Send + Sync>);

impl<R> Clone for Reporter<R> {
    fn clone(&self) -> Self {
        Reporter(Arc::clone(&self.0))
    }
}

impl<R> std::fmt::Debug for Reporter<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reporter")
    }
}

impl<R: 'static> Reporter<R> {
    /// Reports into `channel`, each wrapped by `wrap` into the listener's type.
    pub fn into_channel<T: Send + 'static>(channel: Sender<T>, wrap: fn(R) -> T) -> Reporter<R> {
        Reporter(Arc::new(move |report| channel.send(wrap(report)).is_ok()))
    }

    /// Reports straight into a channel of the role's own type.
    pub fn channel(channel: Sender<R>) -> Reporter<R>
    where
        R: Send,
    {
        Reporter(Arc::new(move |report| channel.send(report).is_ok()))
    }

    /// False once the listener is gone: the role may then stop.
    pub fn send(&self, report: R) -> bool {
        (self.0)(report)
    }
}

#[cfg(test)]
mod tests {
    use super::Reporter;

    #[test]
    fn reports_arrive_wrapped_in_order_and_a_gone_listener_is_told() {
        #[derive(Debug, PartialEq)]
        enum Input {
            Number(u32),
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let reporter = Reporter::into_channel(tx, Input::Number);
        let other = reporter.clone();
        assert!(reporter.send(1) && other.send(2) && reporter.send(3));
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [Input::Number(1), Input::Number(2), Input::Number(3)]);
        drop(rx);
        assert!(!reporter.send(4), "a dropped receiver is reported as gone");
    }
}
