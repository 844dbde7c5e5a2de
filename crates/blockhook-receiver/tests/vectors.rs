//! `Verifier::verify` over every conformance vector: the repository's `spec/vectors.json` and
//! `spec/vectors.extra.json`, and the shared `../shared/spec/vectors.json` when present.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use serde::Deserialize;

use blockhook_receiver::{EventKind, Mode, Verifier, VerifyMode};

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    mode: String,
    secret: String,
    time: String,
    body: String,
    message: String,
    signature: String,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(path: &Path) -> Vec<Vector> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str::<File>(&text).unwrap().vectors
}

fn all_vectors() -> Vec<(String, Vector)> {
    let root = repo_root();
    let mut files = vec![
        root.join("spec/vectors.json"),
        root.join("spec/vectors.extra.json"),
    ];
    let shared = root.join("../shared/spec/vectors.json");
    if shared.exists() {
        files.push(shared);
    }
    let mut out = Vec::new();
    for f in files {
        for v in load(&f) {
            out.push((format!("{}:{}", f.display(), v.name), v));
        }
    }
    out
}

fn headers(v: &Vector, signature: &str) -> Vec<(String, String)> {
    vec![
        ("blockatm-event".into(), "Payment".into()),
        ("BlockATM-Request-Time".into(), v.time.clone()),
        ("BlockATM-Signature-V2".into(), signature.to_owned()),
    ]
}

#[test]
fn every_vector_verifies_in_its_mode_and_in_either() {
    let vectors = all_vectors();
    assert!(vectors.len() >= 31, "only {} vectors found", vectors.len());
    for (name, v) in &vectors {
        let mode: VerifyMode = v.mode.parse().unwrap();
        let now: u64 = v.time.parse::<u64>().unwrap() + 1_000;
        for accept in [mode, VerifyMode::Either] {
            let verifier = Verifier::builder()
                .secret(&v.secret)
                .mode(accept)
                .replay_protection(true)
                .build()
                .unwrap();
            let hook = verifier
                .verify_at(&headers(v, &v.signature), v.body.as_bytes(), now)
                .unwrap_or_else(|e| panic!("{name} ({accept}): {e}"));
            assert_eq!(hook.body(), v.body.as_bytes(), "{name}");
            assert_eq!(hook.request_time_ms(), now - 1_000, "{name}");
            assert_eq!(*hook.event(), EventKind::Payment);
            assert!(hook.value().is_object(), "{name}");
            if accept != VerifyMode::Either {
                assert_eq!(hook.mode(), v.mode.parse::<Mode>().unwrap(), "{name}");
            }
            // The very same request again is a replay.
            let again = verifier.verify_at(&headers(v, &v.signature), v.body.as_bytes(), now);
            assert_eq!(again.unwrap_err().reason(), "replay", "{name}");
        }
    }
}

#[test]
fn every_vector_fails_with_a_wrong_secret_or_a_changed_signature() {
    for (name, v) in &all_vectors() {
        let now: u64 = v.time.parse::<u64>().unwrap();
        let mode: VerifyMode = v.mode.parse().unwrap();
        let wrong = Verifier::builder()
            .secret("sck_wrong")
            .mode(mode)
            .build()
            .unwrap();
        let err = wrong
            .verify_at(&headers(v, &v.signature), v.body.as_bytes(), now)
            .unwrap_err();
        assert_eq!(err.reason(), "mismatch", "{name}: {err}");

        let right = Verifier::builder()
            .secret(&v.secret)
            .mode(mode)
            .build()
            .unwrap();
        let mut flipped = v.signature.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        let err = right
            .verify_at(&headers(v, &flipped), v.body.as_bytes(), now)
            .unwrap_err();
        assert_eq!(err.reason(), "mismatch", "{name}: {err}");
    }
}

#[test]
fn rotation_accepts_either_secret_and_reports_which() {
    let (name, v) = all_vectors().into_iter().next().unwrap();
    let now: u64 = v.time.parse().unwrap();
    let mode: VerifyMode = v.mode.parse().unwrap();
    let verifier = Verifier::builder()
        .secret("sck_brand_new")
        .secret(&v.secret)
        .mode(mode)
        .build()
        .unwrap();
    let hook = verifier
        .verify_at(&headers(&v, &v.signature), v.body.as_bytes(), now)
        .unwrap();
    assert_eq!(hook.secret_index(), 1, "{name}");
    let old_first = Verifier::builder()
        .secret(&v.secret)
        .secret("sck_brand_new")
        .mode(mode)
        .build()
        .unwrap();
    let hook = old_first
        .verify_at(&headers(&v, &v.signature), v.body.as_bytes(), now)
        .unwrap();
    assert_eq!(hook.secret_index(), 0, "{name}");
}

/// The signature debugger explains every vector as a match, in the vector's mode only, with
/// the vector's message and signature and no mistake (with the mode as configured).
#[test]
fn every_vector_is_explained_as_a_match() {
    use blockhook_receiver::explain::{DebugMode, Input, explain};
    let vectors = all_vectors();
    assert!(!vectors.is_empty());
    for (name, v) in &vectors {
        let mode = DebugMode::parse(&v.mode).unwrap();
        let e = explain(&Input {
            body: v.body.as_bytes(),
            request_time: Some(&v.time),
            signature_v2: Some(&v.signature),
            secret: &v.secret,
            expected_mode: Some(mode),
            window_ms: 300_000,
            ..Input::default()
        });
        assert!(e.matched().contains(&mode), "{name}: {}", e.to_text());
        assert!(e.mistakes.is_empty(), "{name}: {:?}", e.mistakes);
        let report = e.modes.iter().find(|m| m.mode == mode).unwrap();
        assert_eq!(report.message.as_deref(), Ok(v.message.as_str()), "{name}");
        assert_eq!(
            report.expected.as_deref(),
            Some(v.signature.as_str()),
            "{name}"
        );
    }
}
