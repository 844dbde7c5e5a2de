//! Conformance vectors: every signing and verifying path must reproduce them exactly.
//!
//! - `spec/vectors.json` (the repository copy) must exist and pass.
//! - `../shared/spec/vectors.json` beside the workspace (the published spec) is checked when present.
//! - `spec/vectors.extra.json` (extra edge cases, same format) is checked when present.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use blockhook_sig::{
    HeaderSource, Mode, Verified, VerifyMode, VerifyOptions, headers, message, sign, verify,
    verify_parts,
};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Vector {
    name: String,
    mode: Mode,
    secret: String,
    time: String,
    body: String,
    message: String,
    signature: String,
}

fn field<'a>(v: &'a Value, name: &str, key: &str) -> &'a Value {
    v.get(key)
        .unwrap_or_else(|| panic!("vector {name}: missing field {key:?}"))
}

fn load(path: &Path) -> Vec<Vector> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let list = doc
        .get("vectors")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{} has no \"vectors\" array", path.display()));
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .map_or(format!("#{i}"), str::to_owned);
            let text = |key: &str| -> String {
                match field(v, &name, key) {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    other => panic!("vector {name}: field {key:?} is {other}"),
                }
            };
            let mode = text("mode")
                .parse()
                .unwrap_or_else(|e| panic!("vector {name}: {e}"));
            Vector {
                mode,
                secret: text("secret"),
                time: text("time"),
                body: text("body"),
                message: text("message"),
                signature: text("signature"),
                name,
            }
        })
        .collect()
}

/// Every way a vector must hold; returns one line per failure.
fn check(v: &Vector) -> Vec<String> {
    let mut failures = Vec::new();
    let mut fail = |what: String| failures.push(format!("{}: {what}", v.name));
    let t: u64 = match v.time.parse() {
        Ok(t) => t,
        Err(e) => {
            fail(format!("time {:?} is not a u64: {e}", v.time));
            return failures;
        }
    };
    let body = v.body.as_bytes();
    let secret = v.secret.as_bytes();

    // The vector's own message and signature agree (tells a wrong vector from a wrong library).
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(v.message.as_bytes());
    let own = hex::encode(mac.finalize().into_bytes());
    if own != v.signature {
        fail(format!(
            "the vector is inconsistent: its message HMACs to {own}, not {}",
            v.signature
        ));
    }

    match message(v.mode, body, t) {
        Ok(m) if m == v.message.as_bytes() => {}
        Ok(m) => fail(format!(
            "message differs\n    want {:?}\n    got  {:?}",
            v.message,
            String::from_utf8_lossy(&m)
        )),
        Err(e) => fail(format!("message failed: {e}")),
    }
    match sign(secret, v.mode, body, t) {
        Ok(s) if s.to_hex() == v.signature && s.to_string() == v.signature => {}
        Ok(s) => fail(format!("signature differs: want {}, got {s}", v.signature)),
        Err(e) => fail(format!("sign failed: {e}")),
    }

    let opts = VerifyOptions {
        mode: v.mode.into(),
        ..VerifyOptions::default()
    };
    let want = Verified {
        time_ms: t,
        mode: v.mode,
        secret_index: 0,
    };
    let got = verify_parts(&v.time, &v.signature, body, &[secret], &opts, t);
    if got != Ok(want) {
        fail(format!("verify_parts at the signing time: {got:?}"));
    }
    // Through headers, with unusual case, a second (wrong) secret first, a minute later.
    let h = [
        ("blockatm-request-time", v.time.as_str()),
        ("BLOCKATM-SIGNATURE-V2", v.signature.as_str()),
    ];
    assert_eq!(h.header(headers::REQUEST_TIME), Some(v.time.as_str()));
    let got = verify(&h, body, &[b"sck_wrong", secret], &opts, t + 60_000);
    if got
        != Ok(Verified {
            secret_index: 1,
            ..want
        })
    {
        fail(format!("verify through headers: {got:?}"));
    }
    let either = VerifyOptions {
        mode: VerifyMode::Either,
        ..opts
    };
    match verify_parts(&v.time, &v.signature, body, &[secret], &either, t) {
        Ok(ok) if ok.mode == v.mode => {}
        other => fail(format!("verify in either mode: {other:?}")),
    }
    // And the same signature is rejected once anything changes.
    let later = (t + 1).to_string();
    if verify_parts(&later, &v.signature, body, &[secret], &opts, t).is_ok() {
        fail("verify accepted a different time".into());
    }
    if verify_parts(&v.time, &v.signature, body, &[b"sck_wrong"], &opts, t).is_ok() {
        fail("verify accepted a wrong secret".into());
    }
    failures
}

fn check_file(path: &Path) -> usize {
    let vectors = load(path);
    assert!(!vectors.is_empty(), "{} holds no vectors", path.display());
    let failures: Vec<String> = vectors.iter().flat_map(check).collect();
    assert!(
        failures.is_empty(),
        "{} vector check(s) failed in {}:\n  {}",
        failures.len(),
        path.display(),
        failures.join("\n  ")
    );
    println!("{}: {} vectors pass", path.display(), vectors.len());
    vectors.len()
}

#[test]
fn repository_vectors() {
    let path = workspace().join("spec/vectors.json");
    assert!(path.exists(), "{} must exist", path.display());
    check_file(&path);
}

#[test]
fn shared_spec_vectors_when_present() {
    let path = workspace().join("../shared/spec/vectors.json");
    if path.exists() {
        check_file(&path);
    } else {
        println!("skipped: {} does not exist", path.display());
    }
}

#[test]
fn extra_vectors_when_present() {
    let path = workspace().join("spec/vectors.extra.json");
    if path.exists() {
        check_file(&path);
    } else {
        println!("skipped: {} does not exist", path.display());
    }
}

#[test]
fn the_check_can_fail() {
    // Guard against a check that accepts everything: a corrupted vector must be reported.
    let path = workspace().join("spec/vectors.json");
    let mut v = load(&path).remove(0);
    v.signature = v.signature.replace('a', "b");
    v.message.push('x');
    let failures = check(&v);
    assert!(
        failures.iter().any(|f| f.contains("message differs")),
        "{failures:?}"
    );
    assert!(
        failures.iter().any(|f| f.contains("signature differs")),
        "{failures:?}"
    );
    assert!(
        failures.iter().any(|f| f.contains("verify_parts")),
        "{failures:?}"
    );
}
