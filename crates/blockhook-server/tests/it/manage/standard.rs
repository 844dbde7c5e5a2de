//! The Standard Webhooks signing mode on the wire, on both stores: the headers (and only those of
//! the scheme), `whsec_` secrets generated or brought, the 422s, a switch from a BlockATM mode,
//! rotation with an overlap carrying both signatures, and the official `standardwebhooks` Python
//! package verifying real deliveries (in CI; skipped with a notice where it is not installed).

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use blockhook_receiver::{Scheme, Verifier};

use super::{assert_problem, call, json_of, key_for};
use crate::helpers::{Backend, PAYMENT, TestApp, backends};
use crate::receiver::{Received, Receiver, now_ms};

/// Verifies with blockhook's receiver kit in Standard Webhooks mode; the index of the secret
/// that matched.
fn kit_verifies(r: &Received, secrets: &[&str]) -> Option<usize> {
    let v = Verifier::builder()
        .secrets(secrets)
        .scheme(Scheme::Standard)
        .build()
        .unwrap();
    v.verify_at(&r.headers, &r.body, r.at_ms)
        .ok()
        .map(|hook| hook.secret_index())
}

/// One case for the Python package.
fn case(name: String, secret: &str, r: &Received, expect: bool) -> Value {
    let headers: serde_json::Map<String, Value> = r
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "name": name,
        "secret": secret,
        "headers": headers,
        "body_b64": base64::engine::general_purpose::STANDARD.encode(&r.body),
        "expect": expect,
    })
}

/// Runs the cases through `receivers/standard-webhooks/verify.py` with the interpreter named by
/// `BLOCKHOOK_TEST_STANDARDWEBHOOKS_PYTHON` (a venv with the package, made by `.ci/run`). Without it
/// the check is skipped with a notice, unless `BLOCKHOOK_REQUIRE_STANDARDWEBHOOKS` is set.
fn python_verifies(cases: &[Value]) {
    let Ok(python) = std::env::var("BLOCKHOOK_TEST_STANDARDWEBHOOKS_PYTHON") else {
        assert!(
            std::env::var_os("BLOCKHOOK_REQUIRE_STANDARDWEBHOOKS").is_none(),
            "BLOCKHOOK_TEST_STANDARDWEBHOOKS_PYTHON is not set but the Python check is required"
        );
        eprintln!(
            "skipped: the standardwebhooks Python package check (set \
             BLOCKHOOK_TEST_STANDARDWEBHOOKS_PYTHON to a Python that has it; .ci/run does)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cases.json");
    std::fs::write(&file, serde_json::to_vec(cases).unwrap()).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../receivers/standard-webhooks/verify.py"
    );
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "standardwebhooks disagreed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("{0} of {0} cases as expected", cases.len())),
        "{text}"
    );
}

#[tokio::test]
async fn standard_mode_sends_its_headers_signed_with_a_whsec_secret_and_overlaps_rotations() {
    let mut cases = Vec::new();
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let rx = Receiver::ok(Some(&app.ca)).await;
        let m = app.merchant().await;
        let key = key_for(&app, &m).await;
        let ep = app
            .endpoint(&m, &rx.url(), json!({ "signing_mode": "standard" }))
            .await;
        assert_eq!(ep["signing_mode"], "standard");
        let first = ep["secret"].as_str().unwrap().to_owned();
        assert!(first.starts_with("whsec_"), "{first}");
        let ep_path = format!("/v1/merchants/me/endpoints/{}", ep["id"].as_str().unwrap());

        let published = app.publish(&m, "Payment", PAYMENT).await;
        let event_id = published["event_id"].as_str().unwrap().to_owned();
        let got = rx.wait_for(1, Duration::from_secs(10)).await;
        let r = &got[0];
        assert_eq!(r.header("webhook-id"), Some(event_id.as_str()));
        let ts: u64 = r.header("webhook-timestamp").unwrap().parse().unwrap();
        assert!(ts.abs_diff(r.at_ms / 1000) <= 5, "Unix seconds, now");
        let sig = r.header("webhook-signature").unwrap();
        assert!(sig.starts_with("v1,") && !sig.contains(' '), "{sig}");
        assert_eq!(r.header("BlockHook-Event-Type"), Some("Payment"));
        for absent in [
            "BlockATM-Event",
            "BlockATM-Request-Time",
            "BlockATM-Signature-V2",
        ] {
            assert_eq!(r.header(absent), None, "{backend:?}: no {absent}");
        }
        assert_eq!(&r.body[..], PAYMENT.as_bytes(), "byte for byte");
        assert_eq!(kit_verifies(r, &[&first]), Some(0), "{backend:?}");
        cases.push(case(format!("{backend:?} first"), &first, r, true));

        // A resend carries the same webhook-id (receivers de-duplicate on it), freshly signed.
        let (status, v) = json_of(
            app.post(
                &format!("/v1/merchants/me/events/{event_id}/resend"),
                &key,
                &json!({}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 202, "{v}");
        let got = rx.wait_for(2, Duration::from_secs(10)).await;
        assert_eq!(got[1].header("webhook-id"), Some(event_id.as_str()));
        assert_eq!(kit_verifies(&got[1], &[&first]), Some(0));

        // Rotation with an overlap: both signatures, new first; either secret verifies.
        let (status, rotated) = json_of(
            app.post(
                &format!("{ep_path}/rotate-secret"),
                &key,
                &json!({ "overlap": "1h" }),
            )
            .await,
        )
        .await;
        assert_eq!(status, 200, "{rotated}");
        let second = rotated["secret"].as_str().unwrap().to_owned();
        assert!(second.starts_with("whsec_") && second != first);
        let until = rotated["previous_secret_until"].as_i64().unwrap();
        let hour_from_now = now_ms() as i64 + 3_600_000;
        assert!((until - hour_from_now).abs() < 60_000, "{rotated}");
        let (_, view) = json_of(app.get(&ep_path, &key).await).await;
        assert_eq!(view["previous_secret_until"], until, "{view}");
        app.publish(&m, "Payment", PAYMENT).await;
        let got = rx.wait_for(3, Duration::from_secs(10)).await;
        let r = &got[2];
        let sig = r.header("webhook-signature").unwrap();
        assert_eq!(sig.split(' ').count(), 2, "{sig}");
        assert_eq!(kit_verifies(r, &[&second]), Some(0), "{backend:?}: new");
        assert_eq!(kit_verifies(r, &[&first]), Some(0), "{backend:?}: old");
        assert_eq!(kit_verifies(r, &[&first, &second]), Some(0));
        cases.push(case(format!("{backend:?} overlap, old"), &first, r, true));
        cases.push(case(format!("{backend:?} overlap, new"), &second, r, true));

        // Rotation without overlap: one signature, and the older secrets fail.
        let (status, rotated) = json_of(
            app.post(
                &format!("{ep_path}/rotate-secret"),
                &key,
                &json!({ "overlap": "0s" }),
            )
            .await,
        )
        .await;
        assert_eq!(status, 200, "{rotated}");
        assert!(rotated.get("previous_secret_until").is_none(), "{rotated}");
        let third = rotated["secret"].as_str().unwrap().to_owned();
        app.publish(&m, "Payment", PAYMENT).await;
        let got = rx.wait_for(4, Duration::from_secs(10)).await;
        let r = &got[3];
        assert!(!r.header("webhook-signature").unwrap().contains(' '));
        assert_eq!(kit_verifies(r, &[&third]), Some(0));
        assert_eq!(kit_verifies(r, &[&first, &second]), None);
        cases.push(case(format!("{backend:?} after, new"), &third, r, true));
        cases.push(case(format!("{backend:?} after, old"), &second, r, false));
        app.stop().await;
    }
    python_verifies(&cases);
}

#[tokio::test]
async fn standard_mode_refuses_what_it_cannot_sign_with() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let m = app.merchant().await;
        let key = key_for(&app, &m).await;
        let url = "https://merchant.example/hook";
        let create = format!("/v1/merchants/{m}/endpoints");
        for secret in [
            "sck_a_blockatm_secret_0123456789abcdef",
            "whsec_not base64!",
            "whsec_c2hvcnQ=", // 5 bytes
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ] {
            let body = json!({ "url": url, "signing_mode": "standard", "secret": secret });
            let r = app.post(&create, crate::helpers::ADMIN, &body).await;
            assert_problem(r, 422, Some("secret"), secret).await;
        }
        let brought = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let ep = app
            .endpoint(
                &m,
                url,
                json!({ "signing_mode": "standard", "secret": brought }),
            )
            .await;
        assert_eq!(ep["secret"], brought);
        let r = app
            .post(
                &create,
                crate::helpers::ADMIN,
                &json!({ "url": url, "signing_mode": "jwt" }),
            )
            .await;
        assert_problem(r, 422, Some("signing_mode"), "unknown mode").await;

        let rotate = format!(
            "/v1/merchants/me/endpoints/{}/rotate-secret",
            ep["id"].as_str().unwrap()
        );
        for overlap in ["8d", "soon", "-1h"] {
            let r = app
                .post(&rotate, &key, &json!({ "overlap": overlap }))
                .await;
            assert_problem(r, 422, Some("overlap"), overlap).await;
        }
        let r = app.post(&rotate, &key, &json!({ "overlap": 5 })).await;
        assert_problem(r, 422, None, "overlap as a number").await;
        let r = app.post(&rotate, &key, &json!({ "grace": "1h" })).await;
        assert_problem(r, 422, None, "unknown field").await;
        // Nothing was rotated by the refused requests.
        let (_, shown) = json_of(
            app.get(
                &format!(
                    "/v1/merchants/me/endpoints/{}/secret",
                    ep["id"].as_str().unwrap()
                ),
                &key,
            )
            .await,
        )
        .await;
        assert_eq!(shown["secret"], brought);

        // A BlockATM-mode endpoint sends one signature: no overlap, but a body-less rotate works.
        let blockatm = app.endpoint(&m, url, json!({})).await;
        let rotate = format!(
            "/v1/merchants/me/endpoints/{}/rotate-secret",
            blockatm["id"].as_str().unwrap()
        );
        let r = app.post(&rotate, &key, &json!({ "overlap": "1h" })).await;
        assert_problem(r, 422, Some("overlap"), "overlap in a BlockATM mode").await;
        let r = call(&app, reqwest::Method::POST, &rotate, Some(&key), None).await;
        let (status, v) = json_of(r).await;
        assert_eq!(status, 200, "{backend:?}: {v}");
        assert!(v["secret"].as_str().unwrap().starts_with("sck_"));
        app.stop().await;
    }
}

#[tokio::test]
async fn switching_to_standard_mode_generates_a_whsec_secret_and_shows_it_once() {
    for backend in [Backend::Sqlite] {
        let app = TestApp::spawn(backend).await;
        let rx = Receiver::ok(Some(&app.ca)).await;
        let m = app.merchant().await;
        let key = key_for(&app, &m).await;
        let ep = app.endpoint(&m, &rx.url(), json!({})).await;
        let path = format!("/v1/merchants/me/endpoints/{}", ep["id"].as_str().unwrap());
        let r = call(
            &app,
            reqwest::Method::PATCH,
            &path,
            Some(&key),
            Some(&json!({ "signing_mode": "standard" })),
        )
        .await;
        let (status, view) = json_of(r).await;
        assert_eq!(status, 200, "{view}");
        let secret = view["secret"].as_str().unwrap().to_owned();
        assert!(secret.starts_with("whsec_"), "{view}");
        assert!(view["warnings"][0].as_str().unwrap().contains("whsec_"));
        let (_, again) = json_of(app.get(&path, &key).await).await;
        assert!(again.get("secret").is_none(), "shown once: {again}");
        app.publish(&m, "Payout", blockhook_sig::samples::PAYOUT)
            .await;
        let got = rx.wait_for(1, Duration::from_secs(10)).await;
        assert_eq!(kit_verifies(&got[0], &[&secret]), Some(0));

        // Back to sorted: the whsec_ text keeps signing, as a BlockATM secret.
        let r = call(
            &app,
            reqwest::Method::PATCH,
            &path,
            Some(&key),
            Some(&json!({ "signing_mode": "sorted" })),
        )
        .await;
        let (status, view) = json_of(r).await;
        assert_eq!(status, 200, "{view}");
        assert!(view.get("secret").is_none());
        app.publish(&m, "Payout", blockhook_sig::samples::PAYOUT)
            .await;
        let got = rx.wait_for(2, Duration::from_secs(10)).await;
        let opts = blockhook_sig::VerifyOptions::default();
        assert!(
            blockhook_sig::verify(
                &got[1].headers,
                &got[1].body,
                &[secret.as_bytes()],
                &opts,
                got[1].at_ms
            )
            .is_ok()
        );
        app.stop().await;
    }
}
