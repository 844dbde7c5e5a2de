//! Arbitrary bytes through the JSON parser and canonicaliser: never a panic, and the two agree.
#![no_main]

use blockhook_sig::{Mode, canonical, json, message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let valid = json::validate_object(body);
    let canon = canonical(body);
    // Both run the same parser and duplicate check, so they accept exactly the same bodies
    // (they may report different errors: canonicalisation stops at the first bad object it
    // walks, validation checks objects in document order).
    assert_eq!(
        valid.is_ok(),
        canon.is_ok(),
        "validate_object and canonical disagree"
    );
    if let Ok(canon) = canon {
        // The canonical form is never longer than the body, so one buffer of body size suffices.
        assert!(canon.len() <= body.len());
        let msg = message(Mode::Sorted, body, 42).unwrap_or_default();
        let want: &[u8] = if canon.is_empty() {
            b"time=42"
        } else {
            b"&time=42"
        };
        assert!(msg.starts_with(&canon) && msg.ends_with(want));
    }
    // Raw mode accepts any bytes.
    assert!(message(Mode::Raw, body, 42).is_ok());
});
