//! Keyed signers per endpoint, so that an attempt neither decrypts the endpoint's secret nor
//! re-keys HMAC: both showed in the dispatcher's profile, once per attempt, for a value that
//! changes only when the secret is rotated.
//!
//! An entry is keyed by endpoint id and remembers the sealed secret it was made from; a claim
//! carrying different sealed bytes (rotation, or a new master key after restart) makes a fresh
//! signer. Clear secrets are never kept: only the HMAC state derived from them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use blockhook_core::{Endpoint, EndpointId};
use blockhook_sig::v2::Signer;

use crate::keys::MasterKey;

/// Endpoints kept at most; past it the cache starts over.
const MAX_SIGNERS: usize = 100_000;

/// The cache (one per dispatcher).
#[derive(Default)]
pub(super) struct Signers {
    inner: Mutex<HashMap<EndpointId, (Vec<u8>, Arc<Signer>)>>,
}

impl Signers {
    /// The signer for `endpoint`'s current secret.
    pub(super) fn get(
        &self,
        keys: &MasterKey,
        endpoint: &Endpoint,
    ) -> Result<Arc<Signer>, crate::error::Error> {
        let sealed = &endpoint.secret.0;
        {
            let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((seen, signer)) = inner.get(&endpoint.id) {
                if seen == sealed {
                    return Ok(signer.clone());
                }
            }
        }
        // Outside the lock: decrypting is the slow part, and two racing misses only do it twice.
        let signer = Arc::new(keys.signer(&endpoint.id, &endpoint.secret)?);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.len() >= MAX_SIGNERS {
            inner.clear();
        }
        inner.insert(endpoint.id.clone(), (sealed.clone(), signer.clone()));
        Ok(signer)
    }
}
