//! Standard Webhooks: every case of `spec/standard-webhooks-vectors.json`, read at run time,
//! through `standard::verify`, and every valid case's entries reproduced by `standard::sign`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use blockhook_sig::Error;
use blockhook_sig::standard::{self, StandardSecret};
use serde_json::Value;

fn cases() -> (u64, Vec<Value>) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/standard-webhooks-vectors.json");
    let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let cases = doc["cases"].as_array().unwrap().clone();
    assert!(cases.len() >= 10, "the vectors file lost cases");
    (doc["tolerance_s"].as_u64().unwrap(), cases)
}

fn kind(e: &Error) -> &'static str {
    match e {
        Error::Mismatch => "mismatch",
        Error::StandardTimestamp => "timestamp",
        Error::StandardTooOld { .. } => "too_old",
        Error::StandardTooNew { .. } => "too_new",
        Error::MalformedStandardSignature => "malformed_signature",
        Error::MissingHeader(_) => "missing_header",
        _ => "other",
    }
}

#[test]
fn every_vector_verifies_as_specified() {
    let (tolerance, cases) = cases();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let s = |k: &str| case[k].as_str().unwrap();
        let secret = StandardSecret::parse_lenient(s("secret")).unwrap();
        let got = standard::verify(
            s("id"),
            s("timestamp"),
            s("signature"),
            s("body").as_bytes(),
            &[secret.key()],
            tolerance,
            case["now"].as_u64().unwrap(),
        );
        if case["valid"].as_bool().unwrap() {
            assert_eq!(got, Ok(()), "{name}");
        } else {
            let err = got.expect_err(name);
            assert_eq!(kind(&err), s("error"), "{name}: {err}");
        }
    }
}

#[test]
fn signing_reproduces_each_valid_vectors_entry() {
    let (_, cases) = cases();
    let mut reproduced = 0;
    for case in cases.iter().filter(|c| c["valid"].as_bool().unwrap()) {
        let s = |k: &str| case[k].as_str().unwrap();
        let secret = StandardSecret::parse_lenient(s("secret")).unwrap();
        let entry = standard::sign(
            secret.key(),
            s("id"),
            s("timestamp").parse().unwrap(),
            s("body").as_bytes(),
        )
        .unwrap();
        assert!(
            s("signature").split(' ').any(|e| e == entry),
            "{}: {entry} not among {}",
            s("name"),
            s("signature")
        );
        reproduced += 1;
    }
    assert!(reproduced >= 5);
}

#[test]
fn a_rotation_signs_with_every_key_and_either_key_verifies() {
    let new = StandardSecret::from_bytes(vec![7; 32]).unwrap();
    let old = StandardSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let body = br#"{"orderNo":"A1","status":"SUCCESS"}"#;
    let header = standard::sign_all(&[new.key(), old.key()], "evt_1", 1_700_000_000, body).unwrap();
    assert_eq!(header.split(' ').count(), 2);
    for key in [new.key(), old.key()] {
        standard::verify(
            "evt_1",
            "1700000000",
            &header,
            body,
            &[key],
            300,
            1_700_000_000,
        )
        .unwrap();
    }
    let stranger = StandardSecret::from_bytes(vec![9; 32]).unwrap();
    assert_eq!(
        standard::verify(
            "evt_1",
            "1700000000",
            &header,
            body,
            &[stranger.key()],
            300,
            1_700_000_000
        ),
        Err(Error::Mismatch)
    );
}
