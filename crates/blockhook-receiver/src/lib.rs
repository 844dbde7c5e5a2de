/*!
Receive BlockATM webhooks sent by blockhook (or by BlockATM itself), in Rust.

This is the merchant's side of the wire contract (`spec/blockatm-webhooks.md`): check
`BlockATM-Signature-V2` over the **raw body bytes**, enforce the time window, optionally refuse
exact replays, and hand the handler a [`Webhook`] with the event type, ids and parsed body.

```
use blockhook_receiver::{EventKind, Verifier};
use blockhook_sig::{Mode, sign};

let verifier = Verifier::builder()
    .secret("sck_new")          // during a rotation, give both secrets
    .secret("sck_old")
    .replay_protection(true)    // refuse an exact repeat of an accepted request
    .build()?;

// What blockhook would send (here signed by hand):
let body = br#"{"orderNo":"OrderNo_1","amount":"2000.00","status":"SUCCESS"}"#;
let t = 1_743_060_268_000u64;
let sig = sign(b"sck_old", Mode::Sorted, body, t)?.to_string();
let headers = [
    ("BlockATM-Event", "Payment"),
    ("BlockATM-Request-Time", &*t.to_string()),
    ("BlockATM-Signature-V2", &*sig),
];

let hook = verifier.verify_at(&headers, body, t + 2_000)?; // verify() reads the clock
assert_eq!(*hook.event(), EventKind::Payment);
assert_eq!(hook.order_no(), Some("OrderNo_1"));
assert_eq!(hook.secret_index(), 1); // still signed with the old secret
// The same request again is a replay.
assert_eq!(verifier.verify_at(&headers, body, t + 3_000).unwrap_err().reason(), "replay");
# Ok::<(), Box<dyn std::error::Error>>(())
```

# Design

- **Framework-agnostic core.** [`Verifier::verify`] takes any [`HeaderSource`] (slices of
  pairs; `http::HeaderMap` with the `http` feature) and the body bytes. Everything signature
  related is delegated to `blockhook-sig`, the crate blockhook itself signs with, so both sides
  agree on every conformance vector.
- **Verify, then parse.** The body is parsed as JSON only after the signature matched, from the
  same bytes; [`Webhook::json`] deserialises from those bytes too, so a decimal type sees
  `2000.00` as written.
- **Replay protection is local and bounded.** An in-memory cache of accepted signatures, each
  kept until its request time leaves the window, capped in size (oldest first out). It stops an
  attacker from replaying a captured request within the window on *this process*; across
  several instances, de-duplicate on `BlockHook-Event-Id` / the order number in your database.
- **One error type.** [`Error`] wraps [`blockhook_sig::Error`] (whose messages name exactly
  what was wrong) and adds [`Error::Replay`]; [`Error::reason`] gives the short code shared by
  every ready-made verifier (`mismatch`, `too_old`, ...), suitable for a `401` body.
- **axum** (feature `axum`): the [`axum::VerifiedWebhook`] extractor reads the raw body, before
  any JSON parsing, verifies it with the `Arc<Verifier>` found in the router state, and rejects
  with `401` and the reason code.
*/
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "axum")]
pub mod axum;
mod error;
mod event;
pub mod explain;
pub mod json_text;
mod replay;
mod verifier;
mod webhook;

pub use blockhook_sig::{HeaderSource, Mode, VerifyMode, headers};
pub use error::Error;
pub use event::EventKind;
pub use verifier::{Scheme, Verifier, VerifierBuilder};
pub use webhook::Webhook;
