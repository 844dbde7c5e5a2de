//! Arbitrary time, signature, body and secret through `verify`: never a panic, and a
//! signature made by `sign` always verifies.
#![no_main]

use blockhook_sig::{Mode, VerifyMode, VerifyOptions, sign, verify, verify_parts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Layout: [mode][window: 4][time_len][time][sig_len][sig][secret_len][secret][body...]
    let mut rest = data;
    let mut take = |n: usize| {
        let n = n.min(rest.len());
        let (head, tail) = rest.split_at(n);
        rest = tail;
        head
    };
    let mode = match take(1).first().copied().unwrap_or(0) % 3 {
        0 => VerifyMode::Sorted,
        1 => VerifyMode::Raw,
        _ => VerifyMode::Either,
    };
    let window = take(4).iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
    let time_len = usize::from(take(1).first().copied().unwrap_or(0) % 24);
    let time = String::from_utf8_lossy(take(time_len)).into_owned();
    let sig_len = usize::from(take(1).first().copied().unwrap_or(0) % 70);
    let sig = String::from_utf8_lossy(take(sig_len)).into_owned();
    let secret_len = usize::from(take(1).first().copied().unwrap_or(0) % 16);
    let secret = take(secret_len).to_vec();
    let body = rest;
    let opts = VerifyOptions {
        mode,
        window_ms: window,
    };
    let now = 1_700_000_000_000;

    let _ = verify_parts(&time, &sig, body, &[secret.as_slice()], &opts, now);
    let headers = [
        ("blockatm-request-time", time.as_str()),
        ("BlockATM-Signature-V2", sig.as_str()),
    ];
    let _ = verify(&headers, body, &[secret.as_slice(), b"second"], &opts, now);

    // Whatever the inputs, what `sign` produces verifies, in its own mode and in `either`.
    let t = now.to_string();
    for sign_mode in [Mode::Sorted, Mode::Raw] {
        if let Ok(s) = sign(&secret, sign_mode, body, now) {
            let s = s.to_string();
            let own = VerifyOptions {
                mode: sign_mode.into(),
                window_ms: 1_000,
            };
            let result = verify_parts(&t, &s, body, &[secret.as_slice()], &own, now);
            assert_eq!(
                result.map(|v| v.mode),
                Ok(sign_mode),
                "sign/verify round trip failed"
            );
            let either = VerifyOptions {
                mode: VerifyMode::Either,
                window_ms: 1_000,
            };
            assert!(verify_parts(&t, &s, body, &[secret.as_slice()], &either, now).is_ok());
        }
    }
});
