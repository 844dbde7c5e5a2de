//! Keyed signers per endpoint, so that an attempt neither decrypts the endpoint's secret nor
//! re-keys HMAC: both showed in the dispatcher's profile, once per attempt, for a value that
//! changes only when the secret is rotated.
//!
//! An entry is keyed by endpoint id and remembers what it was made from (signing mode, sealed
//! secret, previous secret); a claim carrying anything else (rotation, a mode change, a new
//! master key after restart) makes a fresh signer. Clear secrets are never kept: only the HMAC
//! states derived from them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use blockhook_core::{Endpoint, EndpointId, PreviousSecret, SealedSecret, SigningMode};

use crate::keys::{EndpointSigner, MasterKey};

/// Endpoints kept at most; past it the cache starts over.
const MAX_SIGNERS: usize = 100_000;

/// What a signer was keyed from.
#[derive(PartialEq, Eq)]
struct Source {
    mode: SigningMode,
    secret: SealedSecret,
    previous: Option<PreviousSecret>,
}

impl Source {
    fn of(endpoint: &Endpoint) -> Self {
        Self {
            mode: endpoint.signing_mode,
            secret: endpoint.secret.clone(),
            previous: endpoint.previous_secret.clone(),
        }
    }

    fn is_of(&self, endpoint: &Endpoint) -> bool {
        self.mode == endpoint.signing_mode
            && self.secret == endpoint.secret
            && self.previous == endpoint.previous_secret
    }
}

/// A signer and what it was keyed from.
type Keyed = (Source, Arc<EndpointSigner>);

/// The cache (one per dispatcher).
#[derive(Default)]
pub(super) struct Signers {
    inner: Mutex<HashMap<EndpointId, Keyed>>,
}

impl Signers {
    /// The signer for `endpoint`'s current secrets and mode.
    pub(super) fn get(
        &self,
        keys: &MasterKey,
        endpoint: &Endpoint,
    ) -> Result<Arc<EndpointSigner>, crate::error::Error> {
        {
            let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((seen, signer)) = inner.get(&endpoint.id) {
                if seen.is_of(endpoint) {
                    return Ok(signer.clone());
                }
            }
        }
        // Outside the lock: decrypting is the slow part, and two racing misses only do it twice.
        let signer = Arc::new(keys.signer(endpoint)?);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.len() >= MAX_SIGNERS {
            inner.clear();
        }
        inner.insert(endpoint.id.clone(), (Source::of(endpoint), signer.clone()));
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
        assert_eq!(
            blockatm(&a).sign(Mode::Sorted, body, 42).unwrap(),
            expected.unwrap()
        );

        // Rotation: new sealed bytes, new signer, signing with the new secret.
        let second = EndpointSecret::parse("sck_second_secret_0123456789abcdef").unwrap();
        ep.secret = keys.seal(&ep.id, &second).unwrap();
        let c = signers.get(&keys, &ep).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        let expected = blockhook_sig::sign(second.expose().as_bytes(), Mode::Sorted, body, 42);
        assert_eq!(
            blockatm(&c).sign(Mode::Sorted, body, 42).unwrap(),
            expected.unwrap()
        );

        // A secret that does not open is an error, not a stale signer.
        ep.secret = blockhook_core::SealedSecret::from_stored(vec![7; 60]);
        assert!(signers.get(&keys, &ep).is_err());
    }

    fn blockatm(s: &EndpointSigner) -> &blockhook_sig::v2::Signer {
        match s {
            EndpointSigner::BlockAtm { signer, .. } => signer,
            EndpointSigner::Standard { .. } => panic!("expected a BlockATM signer"),
        }
    }

    #[test]
    fn a_mode_change_or_an_overlap_makes_a_new_signer() {
        use blockhook_core::{PreviousSecret, Timestamp};
        use blockhook_sig::standard::{self, StandardSecret};

        let keys = MasterKey::from_base64(KEY).unwrap();
        let mut ep = endpoint_spec(&MerchantId::generate(), "https://r.example/h", &[]);
        let new = EndpointSecret::generate_standard();
        ep.secret = keys.seal(&ep.id, &new).unwrap();
        let signers = Signers::default();
        let a = signers.get(&keys, &ep).unwrap();
        assert!(matches!(*a, EndpointSigner::BlockAtm { .. }));

        ep.signing_mode = SigningMode::Standard;
        let b = signers.get(&keys, &ep).unwrap();
        let EndpointSigner::Standard { current, previous } = &*b else {
            panic!("expected a Standard Webhooks signer");
        };
        assert!(previous.is_none());
        let key = StandardSecret::parse(new.expose()).unwrap();
        let want = standard::sign(key.key(), "evt_1", 1_700_000_000, b"{}").unwrap();
        assert_eq!(current.sign("evt_1", 1_700_000_000, b"{}"), want);

        let old = EndpointSecret::generate_standard();
        ep.previous_secret = Some(PreviousSecret {
            secret: keys.seal(&ep.id, &old).unwrap(),
            until: Timestamp::from_ms(5_000),
        });
        let c = signers.get(&keys, &ep).unwrap();
        let EndpointSigner::Standard { previous, .. } = &*c else {
            panic!("expected a Standard Webhooks signer");
        };
        let (old_signer, until) = previous.as_ref().expect("the previous secret signs");
        assert_eq!(*until, Timestamp::from_ms(5_000));
        let old_key = StandardSecret::parse(old.expose()).unwrap();
        let want = standard::sign(old_key.key(), "evt_1", 1_700_000_000, b"{}").unwrap();
        assert_eq!(old_signer.sign("evt_1", 1_700_000_000, b"{}"), want);

        // A BlockATM secret cannot sign in standard mode: an error, not a wrong signature.
        ep.secret = keys
            .seal(
                &ep.id,
                &EndpointSecret::parse("sck_not_a_standard_secret_0123").unwrap(),
            )
            .unwrap();
        assert!(signers.get(&keys, &ep).is_err());
    }
}
