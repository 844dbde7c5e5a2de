//! Legacy `BlockATM-Signature-V1`: ECDSA P-256 with SHA-256 (contract section 2c).
//!
//! `BlockATM-Signature-V1 = base64(DER(ECDSA-P256-SHA256(private key, message)))`, where the
//! message is the `sorted` message of section 2a (build it with
//! [`message`](crate::message)`(Mode::Sorted, ..)`). Keys travel as standard base64 of DER:
//! PKCS#8 for the private key, X.509 SubjectPublicKeyInfo for the public key (ASCII whitespace in
//! key text, such as line breaks from copy-paste, is ignored).
//!
//! ECDSA signatures are randomised in general (this implementation uses deterministic RFC 6979
//! nonces, which is equally valid), so test by verifying, never by comparing signature bytes.
//! Signatures with a high `s` value, as some Java signers produce, are accepted.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};

use crate::Error;

/// Signs `message` with a P-256 private key given as base64 of its PKCS#8 DER encoding, and
/// returns the `BlockATM-Signature-V1` header value: base64 of the DER-encoded signature.
///
/// Errors: [`Error::InvalidKey`] when the key is not base64 or not a PKCS#8 P-256 private key.
pub fn sign(private_key_pkcs8_der_base64: &str, message: &[u8]) -> Result<String, Error> {
    let der = decode_key_text(private_key_pkcs8_der_base64)
        .ok_or(Error::InvalidKey("private key is not base64"))?;
    let key = SigningKey::from_pkcs8_der(&der).map_err(|_| {
        Error::InvalidKey("private key is not a PKCS#8 DER encoding of a P-256 key")
    })?;
    let signature: Signature = key.sign(message);
    Ok(STANDARD.encode(signature.to_der().as_bytes()))
}

/// Verifies a `BlockATM-Signature-V1` value (base64 of a DER ECDSA signature) over `message`
/// with a P-256 public key given as base64 of its X.509 SubjectPublicKeyInfo DER encoding.
///
/// Errors: [`Error::InvalidKey`] for an unusable key, [`Error::MalformedSignature`] when the
/// signature is not base64 of a DER ECDSA signature, [`Error::Mismatch`] when it does not verify.
pub fn verify(
    public_key_spki_der_base64: &str,
    message: &[u8],
    signature_base64: &str,
) -> Result<(), Error> {
    let der = decode_key_text(public_key_spki_der_base64)
        .ok_or(Error::InvalidKey("public key is not base64"))?;
    let key = VerifyingKey::from_public_key_der(&der).map_err(|_| {
        Error::InvalidKey(
            "public key is not an X.509 SubjectPublicKeyInfo DER encoding of a P-256 key",
        )
    })?;
    let signature_der = STANDARD
        .decode(signature_base64)
        .map_err(|_| Error::MalformedSignature)?;
    let signature = Signature::from_der(&signature_der).map_err(|_| Error::MalformedSignature)?;
    key.verify(message, &signature).map_err(|_| Error::Mismatch)
}

/// Standard base64 with padding, ignoring ASCII whitespace anywhere in the text.
fn decode_key_text(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return None;
    }
    STANDARD.decode(compact).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const PUBLIC: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEsjqDDEF5uuVoAFCxftskpMszLQMro888rFlrowcTzVibc4J2PgDywFZYXc6x21yHcenJ2bCZ/03XkMrbKqqEwA==";

    #[test]
    fn invalid_keys_are_named() {
        assert_eq!(
            sign("", b"m"),
            Err(Error::InvalidKey("private key is not base64"))
        );
        assert_eq!(
            sign("!!!", b"m"),
            Err(Error::InvalidKey("private key is not base64"))
        );
        // A public key is not a private key.
        assert_eq!(
            sign(PUBLIC, b"m"),
            Err(Error::InvalidKey(
                "private key is not a PKCS#8 DER encoding of a P-256 key"
            ))
        );
        assert_eq!(
            verify("%%", b"m", "AA=="),
            Err(Error::InvalidKey("public key is not base64"))
        );
        assert_eq!(
            verify("AAAA", b"m", "AA=="),
            Err(Error::InvalidKey(
                "public key is not an X.509 SubjectPublicKeyInfo DER encoding of a P-256 key"
            ))
        );
    }

    #[test]
    fn malformed_signatures() {
        assert_eq!(
            verify(PUBLIC, b"m", "not base64!"),
            Err(Error::MalformedSignature)
        );
        assert_eq!(verify(PUBLIC, b"m", "AAAA"), Err(Error::MalformedSignature));
        assert_eq!(verify(PUBLIC, b"m", ""), Err(Error::MalformedSignature));
    }

    #[test]
    fn key_text_may_contain_line_breaks() {
        let wrapped = format!("{}\n{}\r\n", &PUBLIC[..64], &PUBLIC[64..]);
        assert_eq!(decode_key_text(&wrapped), decode_key_text(PUBLIC));
        assert!(decode_key_text(PUBLIC).is_some());
    }
}
