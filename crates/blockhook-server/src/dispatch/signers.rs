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

/// A signer and the sealed secret bytes it was keyed from.
type Keyed = (Vec<u8>, Arc<Signer>);

/// The cache (one per dispatcher).
#[derive(Default)]
pub(super) struct Signers {
    inner: Mutex<HashMap<EndpointId, Keyed>>,
}

impl Signers {
    /// The signer for `endpoint`'s current secret.
    pub(super) fn get(
        &self,
        keys: &MasterKey,
        endpoint: &Endpoint,
    ) -> Result<Arc<Signer>, crate::error::Error> {
        let sealed = endpoint.secret.as_stored();
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
        inner.insert(endpoint.id.clone(), (sealed.to_vec(), signer.clone()));
        Ok(signer)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::keys::EndpointSecret;
    use blockhook_core::MerchantId;
    use blockhook_sig::Mode;
    use blockhook_store::contract::fixtures::endpoint_spec;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="; // bytes 0..32

    #[test]
    fn reuses_a_signer_until_the_secret_changes() {
        let keys = MasterKey::from_base64(KEY).unwrap();
        let mut ep = endpoint_spec(&MerchantId::generate(), "https://r.example/h", &[]);
        let first = EndpointSecret::parse("sck_first_secret_0123456789abcdef").unwrap();
        ep.secret = keys.seal(&ep.id, &first).unwrap();
        let signers = Signers::default();

        let a = signers.get(&keys, &ep).unwrap();
        let b = signers.get(&keys, &ep).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "same sealed secret, same signer");
        let body = br#"{"orderNo":"A1"}"#;
        let expected = blockhook_sig::sign(first.expose().as_bytes(), Mode::Sorted, body, 42);
        assert_eq!(a.sign(Mode::Sorted, body, 42).unwrap(), expected.unwrap());

        // Rotation: new sealed bytes, new signer, signing with the new secret.
        let second = EndpointSecret::parse("sck_second_secret_0123456789abcdef").unwrap();
        ep.secret = keys.seal(&ep.id, &second).unwrap();
        let c = signers.get(&keys, &ep).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        let expected = blockhook_sig::sign(second.expose().as_bytes(), Mode::Sorted, body, 42);
        assert_eq!(c.sign(Mode::Sorted, body, 42).unwrap(), expected.unwrap());

        // A secret that does not open is an error, not a stale signer.
        ep.secret = blockhook_core::SealedSecret::from_stored(vec![7; 60]);
        assert!(signers.get(&keys, &ep).is_err());
    }
}
