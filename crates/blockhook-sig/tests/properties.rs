//! Property tests over random JSON objects, rendered as text with random whitespace, key order
//! and escape choices.
//!
//! A small model (`J`) is generated; `render` turns it into a body; `reference` computes its
//! canonical form independently of the library, straight from the contract's rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use blockhook_sig::{
    Error, Mode, VerifyMode, VerifyOptions, canonical, json, message, sign, verify_parts,
};
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq)]
enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<J>),
    /// `BTreeMap<String, _>` iterates in byte order of the UTF-8 keys: the contract's order.
    Obj(BTreeMap<String, J>),
}

/// Characters for keys and strings: ASCII, JSON specials, controls, 2-, 3- and 4-byte UTF-8.
/// `&` and `=` are left out so that distinct models always have distinct canonical forms
/// (with them, `{"a":"1&b=2"}` and `{"a":"1","b":"2"}` collide by the contract's design).
const CHARS: &[char] = &[
    'a', 'b', 'c', 'z', 'A', 'Z', '0', '9', '_', '-', ' ', '.', ':', ',', '{', '}', '[', ']', '"',
    '\\', '/', '\n', '\t', '\r', '\u{8}', '\u{c}', '\u{1}', '\u{1f}', '\u{7f}', 'é', 'ß', '€', 'ﬀ',
    '中', '😀', '𝄞',
];

fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(CHARS), 0..max).prop_map(String::from_iter)
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?(0|[1-9][0-9]{0,30})(\\.[0-9]{1,8})?([eE][+-]?[0-9]{1,3})?",
        Just("-0".to_owned()),
        Just("1E-7".to_owned()),
        Just("2000.00".to_owned()),
        Just("123456789012345678901234567890".to_owned()),
    ]
}

fn value() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        number().prop_map(J::Num),
        text(8).prop_map(J::Str),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(J::Arr),
            prop::collection::btree_map(text(5), inner, 0..6).prop_map(J::Obj),
        ]
    })
}

fn object() -> impl Strategy<Value = J> {
    prop::collection::btree_map(text(5), value(), 0..8).prop_map(J::Obj)
}

/// splitmix64: a tiny deterministic source of rendering choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn render(v: &J, seed: u64) -> String {
    let mut out = String::new();
    let mut rng = Rng(seed);
    ws(&mut rng, &mut out);
    render_into(v, &mut rng, &mut out);
    ws(&mut rng, &mut out);
    out
}

fn ws(rng: &mut Rng, out: &mut String) {
    for _ in 0..rng.below(4).saturating_sub(1) {
        out.push([' ', '\t', '\n', '\r'][rng.below(4)]);
    }
}

fn render_into(v: &J, rng: &mut Rng, out: &mut String) {
    match v {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Num(n) => out.push_str(n),
        J::Str(s) => render_str(s, rng, out),
        J::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    ws(rng, out);
                    out.push(',');
                }
                ws(rng, out);
                render_into(item, rng, out);
            }
            ws(rng, out);
            out.push(']');
        }
        J::Obj(map) => {
            let mut entries: Vec<(&String, &J)> = map.iter().collect();
            for i in (1..entries.len()).rev() {
                entries.swap(i, rng.below(i + 1));
            }
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    ws(rng, out);
                    out.push(',');
                }
                ws(rng, out);
                render_str(k, rng, out);
                ws(rng, out);
                out.push(':');
                ws(rng, out);
                render_into(item, rng, out);
            }
            ws(rng, out);
            out.push('}');
        }
    }
}

/// A JSON string, escaping each character in one of its valid spellings at random.
fn render_str(s: &str, rng: &mut Rng, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        let unicode = |out: &mut String, rng: &mut Rng| {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                if rng.below(2) == 0 {
                    out.push_str(&format!("\\u{unit:04x}"));
                } else {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
        };
        match c {
            '"' => out.push_str(if rng.below(4) == 0 { "\\u0022" } else { "\\\"" }),
            '\\' => out.push_str(if rng.below(4) == 0 { "\\u005c" } else { "\\\\" }),
            '\n' if rng.below(2) == 0 => out.push_str("\\n"),
            '\t' if rng.below(2) == 0 => out.push_str("\\t"),
            '\r' if rng.below(2) == 0 => out.push_str("\\r"),
            '\u{8}' if rng.below(2) == 0 => out.push_str("\\b"),
            '\u{c}' if rng.below(2) == 0 => out.push_str("\\f"),
            '/' if rng.below(2) == 0 => out.push_str("\\/"),
            _ if (c as u32) < 0x20 => unicode(out, rng),
            _ if rng.below(5) == 0 => unicode(out, rng),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The canonical form straight from the contract's rules (section 2a).
fn reference(v: &J) -> String {
    fn scalar(v: &J) -> Option<String> {
        match v {
            J::Bool(b) => Some(b.to_string()),
            J::Num(n) => Some(n.clone()),
            J::Str(s) => Some(s.clone()),
            J::Null | J::Arr(_) | J::Obj(_) => None,
        }
    }
    fn walk(v: &J, pieces: &mut Vec<String>) {
        match v {
            J::Obj(map) => {
                for (k, item) in map {
                    match item {
                        J::Null => {}
                        J::Obj(_) | J::Arr(_) => walk(item, pieces),
                        _ => pieces.extend(scalar(item).map(|s| format!("{k}={s}"))),
                    }
                }
            }
            J::Arr(items) => {
                for item in items {
                    match item {
                        J::Null => {}
                        J::Obj(_) | J::Arr(_) => walk(item, pieces),
                        _ => pieces.extend(scalar(item)),
                    }
                }
            }
            _ => {}
        }
    }
    let mut pieces = Vec::new();
    walk(v, &mut pieces);
    pieces.join("&")
}

/// Number of leaves that `mutate` can change.
fn leaves(v: &J) -> usize {
    match v {
        J::Null => 0,
        J::Bool(_) | J::Num(_) | J::Str(_) => 1,
        J::Arr(items) => items.iter().map(leaves).sum(),
        // Each non-null scalar member counts twice: its value, and its key.
        J::Obj(map) => map
            .values()
            .map(|item| match item {
                J::Bool(_) | J::Num(_) | J::Str(_) => 2,
                other => leaves(other),
            })
            .sum(),
    }
}

/// Changes the `n`-th mutable leaf (value or key, see `leaves`); `n` must be below `leaves(v)`.
fn mutate(v: &mut J, n: &mut usize) -> bool {
    fn change(v: &mut J) {
        match v {
            J::Bool(b) => *b = !*b,
            J::Num(s) => *s = if s == "7" { "8".into() } else { "7".into() },
            J::Str(s) => s.push('x'),
            _ => {}
        }
    }
    match v {
        J::Null => false,
        J::Bool(_) | J::Num(_) | J::Str(_) => {
            if *n == 0 {
                change(v);
                return true;
            }
            *n -= 1;
            false
        }
        J::Arr(items) => items.iter_mut().any(|item| mutate(item, n)),
        J::Obj(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let Some(item) = map.get_mut(&key) else {
                    continue;
                };
                if matches!(item, J::Bool(_) | J::Num(_) | J::Str(_)) {
                    if *n == 0 {
                        change(item);
                        return true;
                    }
                    if *n == 1 {
                        let item = map.remove(&key).unwrap();
                        let mut renamed = format!("{key}#");
                        while map.contains_key(&renamed) {
                            renamed.push('#');
                        }
                        map.insert(renamed, item);
                        return true;
                    }
                    *n -= 2;
                } else if mutate(item, n) {
                    return true;
                }
            }
            false
        }
    }
}

fn opts(mode: VerifyMode) -> VerifyOptions {
    VerifyOptions {
        mode,
        window_ms: 300_000,
    }
}

const T0: u64 = 1_600_000_000_000;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The library's canonical form equals the contract's, whatever the formatting.
    #[test]
    fn canonical_matches_the_contract(v in object(), seed in any::<u64>()) {
        let body = render(&v, seed);
        prop_assert_eq!(json::validate_object(body.as_bytes()), Ok(()));
        let got = canonical(body.as_bytes()).unwrap();
        prop_assert_eq!(String::from_utf8(got).unwrap(), reference(&v), "body: {}", body);
    }

    /// Sign then verify holds in both modes, for any secret and time.
    #[test]
    fn sign_then_verify(
        v in object(),
        seed in any::<u64>(),
        secret in prop::collection::vec(any::<u8>(), 1..40),
        t in T0..T0 * 2,
        skew in 0u64..300_000,
    ) {
        let body = render(&v, seed);
        for mode in [Mode::Sorted, Mode::Raw] {
            let s = sign(&secret, mode, body.as_bytes(), t).unwrap().to_string();
            for now in [t + skew, t - skew] {
                let ok = verify_parts(&t.to_string(), &s, body.as_bytes(), &[secret.as_slice()], &opts(mode.into()), now).unwrap();
                prop_assert_eq!((ok.time_ms, ok.mode, ok.secret_index), (t, mode, 0));
                let ok = verify_parts(&t.to_string(), &s, body.as_bytes(), &[b"other".as_slice(), secret.as_slice()], &opts(VerifyMode::Either), now).unwrap();
                prop_assert_eq!((ok.mode, ok.secret_index), (mode, 1));
            }
        }
        // The message is what is signed.
        let m = message(Mode::Sorted, body.as_bytes(), t).unwrap();
        let want = format!("{}time={t}", match reference(&v) { r if r.is_empty() => r, r => r + "&" });
        prop_assert_eq!(String::from_utf8(m).unwrap(), want);
    }

    /// Changing any value or key, the time or the secret breaks the signature.
    #[test]
    fn any_change_is_detected(
        v in object(),
        seed in any::<u64>(),
        pick in any::<usize>(),
        secret in prop::collection::vec(any::<u8>(), 1..40),
        t in T0..T0 * 2,
        dt in 1u64..1000,
    ) {
        let body = render(&v, seed);
        let ts = t.to_string();
        let s = sign(&secret, Mode::Sorted, body.as_bytes(), t).unwrap().to_string();
        let sorted = opts(VerifyMode::Sorted);

        // A value or a key.
        let count = leaves(&v);
        if count > 0 {
            let mut changed = v.clone();
            prop_assert!(mutate(&mut changed, &mut (pick % count)));
            prop_assert_ne!(reference(&changed), reference(&v));
            let other = render(&changed, seed);
            prop_assert_eq!(
                verify_parts(&ts, &s, other.as_bytes(), &[secret.as_slice()], &sorted, t),
                Err(Error::Mismatch),
                "original: {}\nchanged: {}", body, other
            );
        }
        // The time (still inside the window), either way.
        for other_t in [t + dt, t - dt] {
            prop_assert_eq!(
                verify_parts(&other_t.to_string(), &s, body.as_bytes(), &[secret.as_slice()], &sorted, t),
                Err(Error::Mismatch)
            );
        }
        // The secret: one byte changed, one added, one removed. (HMAC pads keys with zero
        // bytes, so a key and the same key plus trailing NULs are equivalent by design; text
        // secrets such as `sck_...` never end in NUL, so only non-NUL bytes are added/removed.)
        let mut flipped = secret.clone();
        flipped[pick % secret.len()] ^= 1 << (pick % 8);
        let mut longer = secret.clone();
        longer.push(b'x');
        let mut candidates = vec![flipped, longer];
        if secret.len() > 1 && secret.last() != Some(&0) {
            candidates.push(secret[..secret.len() - 1].to_vec());
        }
        for wrong in candidates {
            prop_assert_eq!(
                verify_parts(&ts, &s, body.as_bytes(), &[wrong.as_slice()], &sorted, t),
                Err(Error::Mismatch)
            );
        }
    }

    /// In raw mode, changing any byte of the body breaks the signature.
    #[test]
    fn raw_detects_any_byte(v in object(), seed in any::<u64>(), pick in any::<usize>(), flip in 1u8..=255) {
        let body = render(&v, seed).into_bytes();
        let s = sign(b"sck_secret", Mode::Raw, &body, T0).unwrap().to_string();
        let mut changed = body.clone();
        let i = pick % changed.len();
        changed[i] ^= flip;
        prop_assert_eq!(
            verify_parts(&T0.to_string(), &s, &changed, &[b"sck_secret".as_slice()], &opts(VerifyMode::Raw), T0),
            Err(Error::Mismatch)
        );
    }

    /// Reordering keys, reformatting whitespace or re-spelling escapes keeps the sorted signature;
    /// the raw signature changes whenever the bytes do.
    #[test]
    fn sorted_ignores_formatting_raw_does_not(v in object(), a in any::<u64>(), b in any::<u64>()) {
        let (first, second) = (render(&v, a), render(&v, b));
        let sorted = |body: &str| sign(b"sck_secret", Mode::Sorted, body.as_bytes(), T0).unwrap();
        let raw = |body: &str| sign(b"sck_secret", Mode::Raw, body.as_bytes(), T0).unwrap();
        prop_assert_eq!(sorted(&first), sorted(&second));
        prop_assert_eq!(first == second, raw(&first) == raw(&second));
        let compact = render_compact(&v);
        prop_assert_eq!(sorted(&first), sorted(&compact));
    }
}

/// The same model as plain, whitespace-free JSON in sorted key order, via serde_json.
fn render_compact(v: &J) -> String {
    fn to_value(v: &J) -> serde_json::Value {
        use serde_json::Value;
        match v {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            // serde_json would reformat numbers; embed them as raw text via a placeholder.
            J::Num(n) => Value::String(format!("\u{0}NUM{n}\u{0}")),
            J::Str(s) => Value::String(s.clone()),
            J::Arr(items) => Value::Array(items.iter().map(to_value).collect()),
            J::Obj(map) => Value::Object(
                map.iter()
                    .map(|(k, item)| (k.clone(), to_value(item)))
                    .collect(),
            ),
        }
    }
    let text = serde_json::to_string(&to_value(v)).unwrap();
    // Replace each "\u0000NUM<literal>\u0000" string with the bare literal.
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find("\"\\u0000NUM") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "\"\\u0000NUM".len()..];
        let end = after.find("\\u0000\"").unwrap();
        out.push_str(&after[..end]);
        rest = &after[end + "\\u0000\"".len()..];
    }
    out.push_str(rest);
    out
}

#[test]
fn the_model_round_trips_through_a_fixed_example() {
    // Anchor the test machinery itself on a hand-checked case.
    let mut map = BTreeMap::new();
    map.insert("b".to_owned(), J::Str("x\"y".into()));
    map.insert(
        "a".to_owned(),
        J::Arr(vec![J::Num("1E-7".into()), J::Null, J::Bool(true)]),
    );
    map.insert("c".to_owned(), J::Null);
    let v = J::Obj(map);
    assert_eq!(reference(&v), "1E-7&true&b=x\"y");
    assert_eq!(
        render_compact(&v),
        r#"{"a":[1E-7,null,true],"b":"x\"y","c":null}"#
    );
    for seed in 0..50 {
        let body = render(&v, seed);
        assert_eq!(
            canonical(body.as_bytes()).unwrap(),
            reference(&v).as_bytes(),
            "{body}"
        );
    }
}
