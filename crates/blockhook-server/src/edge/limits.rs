//! Connection admission: a cap on open connections in all and per client address, with a few
//! overflow slots that answer only the health probes, so a flood cannot starve the local
//! supervisor's `/healthz` and `/readyz`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Overflow connections served at once (health probes only); past them, closed at once.
const OVERFLOW_SLOTS: usize = 64;

/// What a new connection gets.
#[derive(Debug)]
pub enum Admission {
    /// The full service.
    Full {
        /// Frees the connection's slots when dropped.
        _guard: ConnectionGuard,
    },
    /// Over a cap: health probes only, then closed. `reason` is `max_connections` or
    /// `max_connections_per_ip`.
    HealthOnly {
        /// Frees the overflow slot when dropped.
        _slot: OwnedSemaphorePermit,
        /// Which cap was reached.
        reason: &'static str,
    },
    /// Over a cap with every overflow slot taken: closed without a word.
    Closed {
        /// Which cap was reached.
        reason: &'static str,
    },
}

/// Counts open connections, in all and per client address.
#[derive(Debug)]
pub struct ConnectionLimits {
    total: Arc<Semaphore>,
    overflow: Arc<Semaphore>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_ip: usize,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnectionGuard {
    _total: OwnedSemaphorePermit,
    /// The client's address; `None` for a local (Unix socket) peer, counted in the total only.
    ip: Option<IpAddr>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let Some(ip) = self.ip else { return };
        let mut map = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }
}

impl ConnectionLimits {
    /// `max_total` connections at most, `max_per_ip` from one address (0: no such cap).
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self {
            total: Arc::new(Semaphore::new(max_total)),
            overflow: Arc::new(Semaphore::new(OVERFLOW_SLOTS)),
            per_ip: Arc::default(),
            max_per_ip,
        }
    }

    /// Admits a connection from `ip`, or from a local peer (`None`: a reverse proxy on the Unix
    /// socket, whose connections carry many clients and count only towards the total).
    pub fn admit(&self, ip: Option<IpAddr>) -> Admission {
        let over = |reason| match self.overflow.clone().try_acquire_owned() {
            Ok(slot) => Admission::HealthOnly {
                _slot: slot,
                reason,
            },
            Err(_) => Admission::Closed { reason },
        };
        let Ok(total) = self.total.clone().try_acquire_owned() else {
            return over("max_connections");
        };
        if let Some(ip) = ip {
            let mut map = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
            let n = map.entry(ip).or_insert(0);
            if self.max_per_ip > 0 && *n >= self.max_per_ip {
                if *n == 0 {
                    map.remove(&ip);
                }
                drop(map);
                return over("max_connections_per_ip");
            }
            *n += 1;
        }
        Admission::Full {
            _guard: ConnectionGuard {
                _total: total,
                ip,
                per_ip: self.per_ip.clone(),
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn caps_in_all_and_per_address_with_overflow_then_closed() {
        let limits = ConnectionLimits::new(3, 2);
        let a1 = limits.admit(ip("10.0.0.1"));
        let a2 = limits.admit(ip("10.0.0.1"));
        assert!(matches!(a1, Admission::Full { .. }) && matches!(a2, Admission::Full { .. }));
        assert!(matches!(
            limits.admit(ip("10.0.0.1")),
            Admission::HealthOnly {
                reason: "max_connections_per_ip",
                ..
            }
        ));
        let b1 = limits.admit(ip("10.0.0.2"));
        assert!(matches!(b1, Admission::Full { .. }));
        assert!(matches!(
            limits.admit(ip("10.0.0.3")),
            Admission::HealthOnly {
                reason: "max_connections",
                ..
            }
        ));
        // A closed connection frees its place, in all and for its address.
        drop(a1);
        let a3 = limits.admit(ip("10.0.0.1"));
        assert!(matches!(a3, Admission::Full { .. }));
        // Overflow slots run out: then connections are closed at once.
        let held: Vec<Admission> = (0..OVERFLOW_SLOTS)
            .map(|_| limits.admit(ip("10.0.0.9")))
            .collect();
        assert!(
            held.iter()
                .all(|a| matches!(a, Admission::HealthOnly { .. }))
        );
        assert!(matches!(
            limits.admit(ip("10.0.0.9")),
            Admission::Closed {
                reason: "max_connections"
            }
        ));
        drop((a2, a3, b1));
    }

    #[test]
    fn local_peers_count_towards_the_total_only() {
        let limits = ConnectionLimits::new(3, 1);
        let local: Vec<Admission> = (0..2).map(|_| limits.admit(None)).collect();
        assert!(local.iter().all(|a| matches!(a, Admission::Full { .. })));
        let remote = limits.admit(ip("10.0.0.1"));
        assert!(matches!(remote, Admission::Full { .. }));
        assert!(matches!(
            limits.admit(None),
            Admission::HealthOnly {
                reason: "max_connections",
                ..
            }
        ));
        drop(local);
        assert!(matches!(limits.admit(None), Admission::Full { .. }));
        drop(remote);
    }

    #[test]
    fn zero_means_no_per_address_cap() {
        let limits = ConnectionLimits::new(1000, 0);
        let held: Vec<Admission> = (0..500).map(|_| limits.admit(ip("::1"))).collect();
        assert!(held.iter().all(|a| matches!(a, Admission::Full { .. })));
    }
}
