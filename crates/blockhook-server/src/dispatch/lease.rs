//! Lease renewal: while a request runs, its delivery's lease is extended every third of the
//! lease length, so only a dead worker's leases expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use blockhook_core::{DeliveryId, LeaseToken};

use super::DispatchCx;

/// The leases this process holds.
#[derive(Debug, Default)]
pub(super) struct LeaseBook(Mutex<HashMap<DeliveryId, LeaseToken>>);

impl LeaseBook {
    /// Records a lease taken.
    pub(super) fn hold(&self, id: &DeliveryId, token: LeaseToken) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), token);
    }

    /// Forgets a lease (its completion was handed to the recorder).
    pub(super) fn release(&self, id: &DeliveryId) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    fn snapshot(&self) -> Vec<(DeliveryId, LeaseToken)> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(id, t)| (id.clone(), *t)).collect()
    }
}

/// Renews every held lease periodically until `stop`.
pub(super) async fn renew(cx: Arc<DispatchCx>, book: Arc<LeaseBook>, stop: CancellationToken) {
    let period = cx.settings.lease / 3;
    loop {
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = stop.cancelled() => return,
        }
        let held = book.snapshot();
        if held.is_empty() {
            continue;
        }
        let until = cx.clock.now() + cx.settings.lease;
        if let Err(e) = cx.store.renew_leases(&held, until).await {
            tracing::warn!(error = %e, leases = held.len(), "renewing leases failed");
        }
    }
}
