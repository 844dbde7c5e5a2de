//! A small keyed rate limiter (GCRA): per API key for the API, per endpoint for deliveries.
//!
//! Each key remembers the theoretical arrival time of its next request; a request is allowed
//! when that time is within `burst` intervals of now. One mutex-guarded map is enough at the
//! request rates involved, and it is trimmed when it grows.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keyed limiter.
#[derive(Debug)]
pub struct RateLimiter<K> {
    tat: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Clone> Default for RateLimiter<K> {
    fn default() -> Self {
        Self {
            tat: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// Tries to admit one request for `key` at `per_second` with `burst`; on refusal returns how
    /// long until one would be admitted.
    pub fn check(&self, key: &K, per_second: u32, burst: u32) -> Result<(), Duration> {
        let interval = Duration::from_secs_f64(1.0 / f64::from(per_second.max(1)));
        let tolerance = interval * (burst.max(1) - 1);
        let now = Instant::now();
        let mut map = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        let tat = map.get(key).copied().unwrap_or(now).max(now);
        let allowed_at = tat.checked_sub(tolerance).unwrap_or(now);
        if allowed_at > now {
            return Err(allowed_at - now);
        }
        map.insert(key.clone(), tat + interval);
        if map.len() > 100_000 {
            map.retain(|_, t| *t > now);
        }
        Ok(())
    }

    /// Reserves the next slot for `key` at `per_second` (burst 1) and returns how long the
    /// caller must wait before using it.
    pub fn reserve(&self, key: &K, per_second: u32) -> Duration {
        let interval = Duration::from_secs_f64(1.0 / f64::from(per_second.max(1)));
        let now = Instant::now();
        let mut map = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        let slot = map.get(key).copied().unwrap_or(now).max(now);
        map.insert(key.clone(), slot + interval);
        slot - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal() {
        let rl = RateLimiter::default();
        for _ in 0..5 {
            assert!(rl.check(&"k", 1, 5).is_ok());
        }
        let wait = rl.check(&"k", 1, 5).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(rl.check(&"other", 1, 5).is_ok(), "keys are independent");
    }

    #[test]
    fn reservations_are_spaced() {
        let rl = RateLimiter::default();
        assert_eq!(rl.reserve(&1, 10), Duration::ZERO);
        let second = rl.reserve(&1, 10);
        assert!(second > Duration::from_millis(90) && second <= Duration::from_millis(100));
    }
}
