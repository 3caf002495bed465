//! Whether a W2-shaped window held: every delivery in order with p99 send → receive under
//! 50 ms, and the senders on schedule; and which step of the sustained-rate series was the
//! largest that did.

use super::{count, ms};

/// A step of the sustained-rate series holds while p99 send → receive stays under this.
pub(super) const SUSTAIN_P99_MS: f64 = 50.0;
/// …and at least this share of the offered messages and deliveries per second went through.
pub(super) const SUSTAIN_SHARE: f64 = 0.95;

/// What decides whether a W2-shaped window held.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sustain {
    /// p99 send → receive.
    pub p99_ms: f64,
    /// Whether every expected delivery arrived before the drain gave up.
    pub complete: bool,
    /// Deliveries that never arrived.
    pub lost: u64,
    /// Deliveries out of order.
    pub out_of_order: u64,
    /// Sends that failed.
    pub failed_sends: u64,
    /// Messages sent per second ÷ offered.
    pub sent_share: f64,
    /// Deliveries per second ÷ offered.
    pub delivered_share: f64,
}

impl Sustain {
    /// Every delivery arrived, in order, p99 under 50 ms, and the senders kept to their
    /// schedule.
    pub(crate) fn holds(&self) -> bool {
        self.why_not().is_empty()
    }

    /// What failed, or an empty string.
    pub(crate) fn why_not(&self) -> String {
        let mut reasons = Vec::new();
        if self.p99_ms >= SUSTAIN_P99_MS {
            reasons.push(format!("p99 {}", ms(self.p99_ms)));
        }
        if !self.complete || self.lost > 0 {
            reasons.push(format!("{} deliveries lost", count(self.lost)));
        }
        if self.out_of_order > 0 {
            reasons.push(format!("{} out of order", count(self.out_of_order)));
        }
        if self.failed_sends > 0 {
            reasons.push(format!("{} sends failed", count(self.failed_sends)));
        }
        if self.sent_share < SUSTAIN_SHARE {
            reasons.push(format!("{:.0}% of the messages sent on time", self.sent_share * 100.0));
        }
        if self.delivered_share < SUSTAIN_SHARE {
            reasons.push(format!("{:.0}% of the deliveries per second", self.delivered_share * 100.0));
        }
        reasons.join(", ")
    }
}

/// The largest group count among the steps that held, if any did.
pub(super) fn highest_sustained(steps: impl IntoIterator<Item = (usize, bool)>) -> Option<usize> {
    steps.into_iter().filter(|(_, held)| *held).map(|(groups, _)| groups).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holding() -> Sustain {
        Sustain {
            p99_ms: 20.0,
            complete: true,
            lost: 0,
            out_of_order: 0,
            failed_sends: 0,
            sent_share: 1.0,
            delivered_share: 0.998,
        }
    }

    #[test]
    fn a_step_holds_only_with_every_delivery_under_the_p99() {
        assert!(holding().holds());
        assert!(!Sustain { p99_ms: 50.0, ..holding() }.holds());
        assert!(!Sustain { complete: false, lost: 3, ..holding() }.holds());
        assert!(!Sustain { out_of_order: 1, ..holding() }.holds());
        assert!(!Sustain { failed_sends: 1, ..holding() }.holds());
        assert!(!Sustain { sent_share: 0.8, ..holding() }.holds());
        let reasons = Sustain { p99_ms: 120.0, complete: false, lost: 7, ..holding() }.why_not();
        assert!(reasons.contains("p99 120 ms") && reasons.contains("7 deliveries lost"), "{reasons}");
    }

    #[test]
    fn the_highest_sustained_rate_is_the_largest_step_that_held() {
        assert_eq!(highest_sustained([(500, true), (750, true), (1_000, false)]), Some(750));
        assert_eq!(highest_sustained([(500, false)]), None);
        assert_eq!(highest_sustained([]), None);
        // A step that held after one that did not (a quieter moment) still counts.
        assert_eq!(highest_sustained([(500, true), (750, false), (1_000, true)]), Some(1_000));
    }
}
