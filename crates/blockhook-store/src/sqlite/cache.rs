//! An in-memory cache of recently ingested events (type, payload, time), so that claiming a
//! delivery normally reads no payload from the database.
//!
//! Why it is safe: those three fields never change once an event is stored (retention only
//! removes payloads of events with nothing pending, which are never claimed), so an entry can
//! never be stale; a miss just falls back to the database. Why it pays: in steady state a
//! delivery is claimed moments after its event was ingested, so nearly every claim hits, and the
//! payload bytes the ingest request carried are shared (`Bytes`), not copied. The embedded store
//! serves one process, so its cache sees every ingest.
//!
//! Bounded by total payload bytes; the oldest entries go first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use blockhook_core::{Endpoint, EventType, Payload, Timestamp};
use bytes::Bytes;

/// What a claim needs from an event.
#[derive(Clone)]
pub(super) struct CachedEvent {
    pub(super) event_type: EventType,
    pub(super) payload: Payload,
    pub(super) created_at: Timestamp,
}

/// Rough per-entry overhead (key, map slot, queue slot), counted against the budget.
const ENTRY_OVERHEAD: usize = 128;

pub(super) struct EventCache {
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, CachedEvent>,
    order: VecDeque<String>,
    bytes: usize,
}

impl EventCache {
    /// A cache holding at most about `budget` bytes (0 disables it).
    pub(super) fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Remembers events just committed.
    pub(super) fn put_all(&self, events: impl IntoIterator<Item = (String, CachedEvent)>) {
        if self.budget == 0 {
            return;
        }
        // A poisoned lock only means another thread panicked mid-update of a cache: start over.
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| {
            let mut guard = poisoned.into_inner();
            *guard = Inner::default();
            guard
        });
        for (id, mut ev) in events {
            let size = ev.payload.len() + id.len() + ENTRY_OVERHEAD;
            if size > self.budget {
                continue;
            }
            // A payload is usually a slice of its request's body, and a slice keeps the whole
            // body allocation alive (a batch request's, or a buffer grown past the body): the
            // cache keeps its own exact-size copy, so the budget measures what is really held.
            // (Measured: without it, RSS grew ~5 KiB per cached event.)
            ev.payload = Payload::from_trusted(Bytes::copy_from_slice(ev.payload.bytes()));
            if let Some(old) = inner.map.insert(id.clone(), ev) {
                inner.bytes -= old.payload.len() + id.len() + ENTRY_OVERHEAD;
            } else {
                inner.order.push_back(id);
            }
            inner.bytes += size;
            while inner.bytes > self.budget {
                let Some(oldest) = inner.order.pop_front() else {
                    break;
                };
                if let Some(gone) = inner.map.remove(&oldest) {
                    inner.bytes -= gone.payload.len() + oldest.len() + ENTRY_OVERHEAD;
                }
            }
        }
    }

    /// Looks events up; returns the hits, and the ids it does not hold.
    pub(super) fn get_all<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> (HashMap<&'a str, CachedEvent>, Vec<&'a str>) {
        let mut hits = HashMap::new();
        let mut misses = Vec::new();
        let Ok(inner) = self.inner.lock() else {
            return (hits, ids.into_iter().collect());
        };
        for id in ids {
            match inner.map.get(id) {
                Some(ev) => {
                    hits.insert(id, ev.clone());
                }
                None => misses.push(id),
            }
        }
        (hits, misses)
    }
}

/// Parsed endpoints by id, each with the row version it was read at (`endpoints.version`, which
/// every UPDATE bumps). A claim or a handoff names the version it saw in the same transaction,
/// so an entry is used only while it is exactly current: never stale, and a miss is one read.
/// Why: parsing an endpoint row (URL, filter, headers) for every claim was a visible share of the
/// dispatcher's CPU, and every claim of an endpoint can share one `Arc`.
pub(super) struct EndpointCache {
    inner: Mutex<HashMap<String, (i64, Arc<Endpoint>)>>,
}

/// Endpoints kept at most; past it the cache starts over (deleted endpoints are never evicted
/// one by one, so this bounds them).
const MAX_ENDPOINTS: usize = 100_000;

impl EndpointCache {
    pub(super) fn new() -> Self {
        Self {
            inner: Mutex::new(HashMap::new()),
        }
    }

    /// The endpoint if it is cached at exactly `version`.
    pub(super) fn get(&self, id: &str, version: i64) -> Option<Arc<Endpoint>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .get(id)
            .filter(|(v, _)| *v == version)
            .map(|(_, ep)| ep.clone())
    }

    /// Remembers `ep` as read at `version`.
    pub(super) fn put(&self, version: i64, ep: Arc<Endpoint>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.len() >= MAX_ENDPOINTS {
            inner.clear();
        }
        inner.insert(ep.id.as_str().to_owned(), (version, ep));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(len: usize) -> CachedEvent {
        CachedEvent {
            event_type: EventType::parse("Payment").unwrap_or_else(|_| unreachable!()),
            payload: Payload::from_trusted(Bytes::from(vec![b' '; len])),
            created_at: Timestamp::from_ms(1),
        }
    }

    #[test]
    fn evicts_oldest_over_budget() {
        let cache = EventCache::new(3 * (100 + 5 + ENTRY_OVERHEAD));
        cache.put_all((0..5).map(|i| (format!("evt_{i}"), ev(100))));
        let ids = ["evt_0", "evt_1", "evt_2", "evt_3", "evt_4"];
        let (hits, misses) = cache.get_all(ids);
        assert_eq!(misses, vec!["evt_0", "evt_1"]);
        assert_eq!(hits.len(), 3);
        assert_eq!(hits["evt_4"].payload.len(), 100);
    }

    #[test]
    fn keeps_a_compact_copy_not_the_request_body() {
        let body = Bytes::from(vec![b'x'; 64 * 1024]);
        let payload = Payload::from_trusted(body.slice(10..20));
        let cache = EventCache::new(1 << 20);
        cache.put_all([(
            "evt_a".to_owned(),
            CachedEvent {
                event_type: EventType::parse("Payment").unwrap_or_else(|_| unreachable!()),
                payload,
                created_at: Timestamp::from_ms(1),
            },
        )]);
        let (hits, _) = cache.get_all(["evt_a"]);
        let held = hits["evt_a"].payload.bytes();
        assert_eq!(held.as_ref(), &body[10..20]);
        // Not a view into the 64 KiB body.
        let range = body.as_ptr() as usize..body.as_ptr() as usize + body.len();
        assert!(!range.contains(&(held.as_ptr() as usize)));
    }

    #[test]
    fn disabled_cache_misses_everything() {
        let cache = EventCache::new(0);
        cache.put_all([("evt_a".to_owned(), ev(10))]);
        assert_eq!(cache.get_all(["evt_a"]).1, vec!["evt_a"]);
    }
}
