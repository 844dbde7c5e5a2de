//! The retry decision: a pure function of the attempt number, the outcome and the time.
//!
//! Default schedule per the contract: after a failed first attempt wait 1 min, then 5 min,
//! 30 min, 2 h, 24 h (each counted from the previous attempt): six attempts in all, then give up.

use std::time::Duration;

use crate::{Outcome, Timestamp};

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Acknowledged: done.
    Succeeded,
    /// Try again at this time.
    RetryAt(Timestamp),
    /// Out of attempts: the delivery is failed.
    GiveUp,
    /// The endpoint answered 410 Gone: fail the delivery and disable the endpoint.
    DisableEndpoint,
}

/// The retry schedule and its bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delay after the n-th failed attempt (n = 1..); its length + 1 is the number of attempts.
    pub schedule: Vec<Duration>,
    /// Spread each delay by up to ± this fraction (0.0 to 0.5), so retries of a burst do not
    /// arrive together.
    pub jitter: f64,
    /// The longest `Retry-After` (on 429/503) honoured; longer values are clamped to it.
    pub retry_after_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            schedule: [60, 300, 1_800, 7_200, 86_400]
                .map(Duration::from_secs)
                .to_vec(),
            jitter: 0.1,
            retry_after_max: Duration::from_secs(7_200),
        }
    }
}

impl RetryPolicy {
    /// Attempts in all: the first plus one per scheduled delay.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.schedule.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// Decides what follows attempt number `attempt` (1-based, within the current round).
    ///
    /// `unit` is a random sample in `[0, 1)` for the jitter, passed in to keep this pure.
    pub fn decide(&self, attempt: u32, outcome: &Outcome, now: Timestamp, unit: f64) -> Next {
        match outcome {
            Outcome::Delivered { .. } => Next::Succeeded,
            Outcome::Failed {
                status: Some(410), ..
            } => Next::DisableEndpoint,
            Outcome::Failed {
                status,
                retry_after,
                ..
            } => {
                let Some(base) = self.delay_after(attempt) else {
                    return Next::GiveUp;
                };
                let mut delay = self.jittered(base, unit);
                if matches!(status, Some(429 | 503)) {
                    if let Some(asked) = retry_after {
                        delay = delay.max((*asked).min(self.retry_after_max));
                    }
                }
                Next::RetryAt(now + delay)
            }
        }
    }

    /// The scheduled delay after failed attempt `attempt`, or `None` when it was the last.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        let index = usize::try_from(attempt.checked_sub(1)?).ok()?;
        self.schedule.get(index).copied()
    }

    fn jittered(&self, base: Duration, unit: f64) -> Duration {
        let spread = self.jitter.clamp(0.0, 0.5);
        let factor = 1.0 + spread * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        base.mul_f64(factor.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorClass;
    use proptest::prelude::*;

    fn failed(status: Option<u16>, retry_after: Option<Duration>) -> Outcome {
        Outcome::Failed {
            status,
            class: ErrorClass::BadStatus,
            retry_after,
        }
    }

    fn exact() -> RetryPolicy {
        RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn default_schedule_is_the_contracts() {
        let p = exact();
        let t0 = Timestamp::from_ms(1_000_000);
        let expect = [60, 300, 1_800, 7_200, 86_400];
        for (i, secs) in expect.iter().enumerate() {
            let attempt = u32::try_from(i + 1).unwrap();
            assert_eq!(
                p.decide(attempt, &failed(Some(500), None), t0, 0.5),
                Next::RetryAt(t0 + Duration::from_secs(*secs))
            );
        }
        assert_eq!(p.decide(6, &failed(Some(500), None), t0, 0.5), Next::GiveUp);
        assert_eq!(p.max_attempts(), 6);
    }

    #[test]
    fn success_and_gone() {
        let p = exact();
        let t = Timestamp::from_ms(0);
        assert_eq!(
            p.decide(3, &Outcome::Delivered { status: 200 }, t, 0.1),
            Next::Succeeded
        );
        assert_eq!(
            p.decide(1, &failed(Some(410), None), t, 0.1),
            Next::DisableEndpoint
        );
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let p = exact();
        let t = Timestamp::from_ms(0);
        let long = Some(Duration::from_secs(600));
        assert_eq!(
            p.decide(1, &failed(Some(503), long), t, 0.5),
            Next::RetryAt(t + Duration::from_secs(600))
        );
        // Only on 429/503.
        assert_eq!(
            p.decide(1, &failed(Some(500), long), t, 0.5),
            Next::RetryAt(t + Duration::from_secs(60))
        );
        // Clamped.
        let huge = Some(Duration::from_secs(1_000_000));
        assert_eq!(
            p.decide(1, &failed(Some(429), huge), t, 0.5),
            Next::RetryAt(t + Duration::from_secs(7_200))
        );
        // Never shorter than the schedule.
        let short = Some(Duration::from_secs(1));
        assert_eq!(
            p.decide(2, &failed(Some(429), short), t, 0.5),
            Next::RetryAt(t + Duration::from_secs(300))
        );
    }

    proptest! {
        #[test]
        fn jitter_stays_within_its_fraction(attempt in 1u32..=5, unit in 0.0f64..1.0, jitter in 0.0f64..0.5) {
            let p = RetryPolicy { jitter, ..RetryPolicy::default() };
            let t = Timestamp::from_ms(0);
            let base = p.delay_after(attempt).unwrap().as_millis() as f64;
            match p.decide(attempt, &failed(None, None), t, unit) {
                Next::RetryAt(at) => {
                    let d = at.ms() as f64;
                    prop_assert!(d >= base * (1.0 - jitter) - 1.0 && d <= base * (1.0 + jitter) + 1.0);
                }
                other => prop_assert!(false, "unexpected {other:?}"),
            }
        }

        #[test]
        fn never_more_attempts_than_the_schedule_allows(len in 0usize..8, attempt in 1u32..20) {
            let p = RetryPolicy { schedule: vec![Duration::from_secs(1); len], jitter: 0.0, ..RetryPolicy::default() };
            let next = p.decide(attempt, &failed(Some(500), None), Timestamp::from_ms(0), 0.0);
            prop_assert_eq!(matches!(next, Next::GiveUp), attempt as usize > len);
        }
    }
}
