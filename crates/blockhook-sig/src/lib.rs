/*!
BlockATM webhook signatures: bytes in, bytes out.

This crate computes and checks the signatures of the BlockATM webhook contract
(`spec/blockatm-webhooks.md`), so that a receiver written against BlockATM's documentation
accepts what blockhook sends. It is shared by the sender (blockhook's dispatcher), the
`blockhook sign`/`verify` commands and the merchant-side receiver library.

# What is signed

`BlockATM-Signature-V2 = lowercase_hex(HMAC_SHA256(secret, message))`, with `message` in one of
two forms ([`Mode`]):

- **sorted** (default): the body's pairs in key order, `key=value` joined with `&`, then
  `&time=<BlockATM-Request-Time>` (just `time=<t>` if there are no pairs). Numbers keep their
  literal text, strings are decoded but not re-escaped, nulls are skipped, nested objects and
  arrays are flattened. See [`canonical`] for every rule.
- **raw**: the exact body bytes, then `&time=<t>`.

```
use blockhook_sig::{message, sign, verify_parts, Mode, VerifyOptions};

let body = br#"{"symbol":"USDT","amount":"2000.00","id":8210003616,"memo":null}"#;
let t = 1_743_060_268_000; // BlockATM-Request-Time, ms; the caller reads the clock
assert_eq!(
    message(Mode::Sorted, body, t)?,
    b"amount=2000.00&id=8210003616&symbol=USDT&time=1743060268000"
);
let signature = sign(b"sck_secret", Mode::Sorted, body, t)?.to_string(); // 64 hex chars

// A receiver, 30 s later, with the default 5-minute window:
let ok = verify_parts(&t.to_string(), &signature, body, &[b"sck_secret"], &VerifyOptions::default(), t + 30_000)?;
assert_eq!(ok.mode, Mode::Sorted);
# Ok::<(), blockhook_sig::Error>(())
```

# Design

- **Pure.** No I/O, no clock, no async, no global state: time is a parameter (`time_ms`,
  `now_ms`), so the conformance vectors reproduce exactly and merchants can embed the crate
  anywhere. One error type, [`Error`], names exactly what was wrong.
- **Literal-preserving JSON.** The `sorted` form must be computed from the received bytes with
  number literals kept verbatim (`2000.00`, `1E-7`, 30-digit integers), which rules out general
  JSON libraries. [`json`] is a small strict parser that yields spans into the body; it is
  iterative and depth-limited ([`json::MAX_DEPTH`]), so hostile nesting is an error, never a
  stack overflow.
- **One pass, few allocations.** Canonicalisation parses once, sorts borrowed key slices
  (decoding only strings that contain a backslash) and writes into one buffer sized up front;
  the message is fed to the MAC in pieces, never concatenated. [`v2::Signer`] keeps a keyed HMAC
  state for signing many bodies with one secret.
- **Careful verification.** [`verify`] checks headers, then the time (plain integer, inside the
  window), then the signature's format, then the body, and compares in constant time against
  every secret (for key rotation) and, in [`VerifyMode::Either`], both forms.
- **Legacy V1** (ECDSA P-256, feature `v1`, on by default) lives in [`v1`].
*/
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod canonical;
mod error;
pub mod headers;
pub mod json;
pub mod samples;
pub mod standard;
#[cfg(feature = "v1")]
pub mod v1;
pub mod v2;

pub use canonical::canonical;
pub use error::{Error, ParseModeError};
pub use headers::HeaderSource;
pub use v2::{
    Mode, Signature, Verified, VerifyMode, VerifyOptions, message, sign, verify, verify_parts,
};
