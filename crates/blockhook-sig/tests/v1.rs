//! Legacy `BlockATM-Signature-V1` (ECDSA P-256): the published vector, and sign-then-verify with
//! a key generated here.
#![cfg(feature = "v1")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use blockhook_sig::{Error, Mode, message, v1};
use p256::SecretKey;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};

/// From BlockATM's V1 documentation.
const PUBLIC: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEsjqDDEF5uuVoAFCxftskpMszLQMro888rFlrowcTzVibc4J2PgDywFZYXc6x21yHcenJ2bCZ/03XkMrbKqqEwA==";
const MESSAGE: &str = "amount=13.410037&chainId=5&custNo=OrderNO_123456&fee=2&network=TRON&platOrderNo=8210000374&status=1&symbol=USDT&txId=1t&type=1&time=1696947336603";
const SIGNATURE: &str = "MEYCIQDHxQ0IhgUNbRqTKbU71fBkp+lAJlMXEQYt6mDQfWRY7gIhAMWIpVoG6qBhgIPi30x30wLlAaxyhptZfm6nMRz75VxA";

#[test]
fn published_vector_verifies() {
    assert_eq!(v1::verify(PUBLIC, MESSAGE.as_bytes(), SIGNATURE), Ok(()));
}

#[test]
fn published_message_is_the_sorted_message_of_its_body() {
    // The V1 message is the section 2a message: rebuild it from a body in another key order.
    let body = br#"{"txId":"1t","type":1,"symbol":"USDT","status":1,"platOrderNo":"8210000374",
        "network":"TRON","fee":"2","custNo":"OrderNO_123456","chainId":"5","amount":"13.410037"}"#;
    assert_eq!(
        message(Mode::Sorted, body, 1_696_947_336_603).unwrap(),
        MESSAGE.as_bytes()
    );
}

#[test]
fn published_vector_rejects_tampering() {
    let tampered = MESSAGE.replace("13.410037", "13.410038");
    assert_eq!(
        v1::verify(PUBLIC, tampered.as_bytes(), SIGNATURE),
        Err(Error::Mismatch)
    );
    let later = MESSAGE.replace("1696947336603", "1696947336604");
    assert_eq!(
        v1::verify(PUBLIC, later.as_bytes(), SIGNATURE),
        Err(Error::Mismatch)
    );
    // A different, well-formed signature (s flipped to n - s is still valid ECDSA, so change r).
    let mut der = STANDARD.decode(SIGNATURE).unwrap();
    der[10] ^= 1;
    let other = STANDARD.encode(der);
    assert_eq!(
        v1::verify(PUBLIC, MESSAGE.as_bytes(), &other),
        Err(Error::Mismatch)
    );
}

#[test]
fn sign_then_verify_with_a_generated_key() {
    let secret = SecretKey::random(&mut rand::rngs::OsRng);
    let private = STANDARD.encode(secret.to_pkcs8_der().unwrap().as_bytes());
    let public = STANDARD.encode(secret.public_key().to_public_key_der().unwrap().as_bytes());

    let body = br#"{"orderNo":"A1","amount":"10.00","detail":[{"k":1},{"k":2}],"memo":null}"#;
    let msg = message(Mode::Sorted, body, 1_743_060_268_000).unwrap();
    let signature = v1::sign(&private, &msg).unwrap();
    assert_eq!(v1::verify(&public, &msg, &signature), Ok(()));

    // Tampered message, other key, and a signature over another message are all rejected.
    let mut tampered = msg.clone();
    tampered[0] ^= 1;
    assert_eq!(
        v1::verify(&public, &tampered, &signature),
        Err(Error::Mismatch)
    );
    assert_eq!(v1::verify(PUBLIC, &msg, &signature), Err(Error::Mismatch));
    let other = v1::sign(&private, b"time=1").unwrap();
    assert_eq!(v1::verify(&public, &msg, &other), Err(Error::Mismatch));
    // Not base64, and base64 of something that is not DER.
    assert_eq!(
        v1::verify(&public, &msg, "%%%"),
        Err(Error::MalformedSignature)
    );
    assert_eq!(
        v1::verify(&public, &msg, "AAAA"),
        Err(Error::MalformedSignature)
    );
}

#[test]
fn keys_of_the_wrong_kind_are_invalid() {
    let secret = SecretKey::random(&mut rand::rngs::OsRng);
    let private = STANDARD.encode(secret.to_pkcs8_der().unwrap().as_bytes());
    assert!(matches!(
        v1::verify(&private, b"m", SIGNATURE),
        Err(Error::InvalidKey(_))
    ));
    assert!(matches!(v1::sign(PUBLIC, b"m"), Err(Error::InvalidKey(_))));
}
