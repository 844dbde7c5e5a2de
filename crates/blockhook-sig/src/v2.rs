//! `BlockATM-Signature-V2`: HMAC-SHA256 over the `sorted` or `raw` message (contract section 2).
//!
//! `signature = lowercase_hex(HMAC_SHA256(key = secret bytes, message))`, where
//!
//! - `sorted`: `message = canonical(body) + "&time=" + t`, or `"time=" + t` when the canonical
//!   form is empty;
//! - `raw`: `message = body + "&time=" + t`, for any bytes (the body need not be JSON).
//!
//! The message is fed to the MAC in pieces, so signing in `raw` mode allocates nothing and
//! `sorted` mode allocates only the canonical buffer. [`Signer`] keeps a keyed HMAC state for
//! callers that sign many bodies with one secret.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::canonical::canonical_into;
use crate::error::ParseModeError;
use crate::headers::{self, HeaderSource};
use crate::{Error, canonical};

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// The longest accepted `BlockATM-Request-Time` (every 19-digit number fits in a `u64`).
const MAX_TIME_DIGITS: usize = 19;

/// How the signed message is formed from the body (contract section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// `canonical(body) + "&time=" + t`: the default, and BlockATM's documented rule.
    #[default]
    Sorted,
    /// `body + "&time=" + t`: the exact body bytes.
    Raw,
}

impl Mode {
    /// The wire/configuration name: `"sorted"` or `"raw"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sorted => "sorted",
            Self::Raw => "raw",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = ParseModeError;

    /// Parses `sorted` or `raw` (ASCII case ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("sorted") {
            Ok(Self::Sorted)
        } else if s.eq_ignore_ascii_case("raw") {
            Ok(Self::Raw)
        } else {
            Err(ParseModeError {
                input: s.to_owned(),
                expected: "sorted or raw",
            })
        }
    }
}

/// Which message forms a receiver accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VerifyMode {
    /// Only [`Mode::Sorted`] (the default).
    #[default]
    Sorted,
    /// Only [`Mode::Raw`].
    Raw,
    /// Either form; [`Verified::mode`] says which one matched (`sorted` is tried first).
    Either,
}

impl VerifyMode {
    /// The configuration name: `"sorted"`, `"raw"` or `"either"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sorted => "sorted",
            Self::Raw => "raw",
            Self::Either => "either",
        }
    }

    fn accepts(self, mode: Mode) -> bool {
        matches!(
            (self, mode),
            (Self::Either, _) | (Self::Sorted, Mode::Sorted) | (Self::Raw, Mode::Raw)
        )
    }
}

impl From<Mode> for VerifyMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Sorted => Self::Sorted,
            Mode::Raw => Self::Raw,
        }
    }
}

impl fmt::Display for VerifyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VerifyMode {
    type Err = ParseModeError;

    /// Parses `sorted`, `raw` or `either` (ASCII case ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("either") {
            return Ok(Self::Either);
        }
        Mode::from_str(s)
            .map(Self::from)
            .map_err(|_| ParseModeError {
                input: s.to_owned(),
                expected: "sorted, raw or either",
            })
    }
}

/// What [`verify`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Which message forms to accept.
    pub mode: VerifyMode,
    /// Requests whose time differs from `now` by this many milliseconds **or more** are
    /// rejected. The contract's default is 5 minutes and it advises never more than 15.
    /// `0` rejects everything.
    pub window_ms: u64,
}

impl VerifyOptions {
    /// The contract's default window: 5 minutes.
    pub const DEFAULT_WINDOW_MS: u64 = 300_000;
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            mode: VerifyMode::Sorted,
            window_ms: Self::DEFAULT_WINDOW_MS,
        }
    }
}

/// A V2 signature: the 32 bytes of an HMAC-SHA256.
///
/// Displays as 64 lowercase hex characters (the header value); parses from 64 hex characters
/// in either case. Equality is constant-time.
#[derive(Clone, Copy)]
pub struct Signature([u8; 32]);

impl Signature {
    /// The header value: 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The raw MAC bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<[u8; 32]> for Signature {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        // Encoding 32 bytes into 64 is infallible; fall back to the allocating path regardless.
        match hex::encode_to_slice(self.0, &mut buf) {
            Ok(()) => f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?),
            Err(_) => f.write_str(&self.to_hex()),
        }
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

impl FromStr for Signature {
    type Err = Error;

    /// Parses exactly 64 hex characters (either case); anything else is
    /// [`Error::MalformedSignature`].
    fn from_str(s: &str) -> Result<Self, Error> {
        let mut bytes = [0u8; 32];
        if s.len() != 64 {
            return Err(Error::MalformedSignature);
        }
        hex::decode_to_slice(s, &mut bytes).map_err(|_| Error::MalformedSignature)?;
        Ok(Self(bytes))
    }
}

impl ConstantTimeEq for Signature {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl PartialEq for Signature {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for Signature {}

/// A successful verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The request time that was signed (`BlockATM-Request-Time`), in Unix milliseconds.
    pub time_ms: u64,
    /// The message form that matched.
    pub mode: Mode,
    /// Index into the `secrets` slice of the secret that matched (the first one, if several).
    pub secret_index: usize,
}

/// A keyed HMAC state, for signing many bodies with one secret without re-keying each time.
///
/// ```
/// use blockhook_sig::{v2::Signer, Mode};
/// let signer = Signer::new(b"sck_secret").unwrap();
/// let a = signer.sign(Mode::Sorted, br#"{"b":1,"a":2}"#, 1_700_000_000_000).unwrap();
/// let b = blockhook_sig::sign(b"sck_secret", Mode::Sorted, br#"{"a":2,"b":1}"#, 1_700_000_000_000).unwrap();
/// assert_eq!(a, b);
/// ```
#[derive(Clone)]
pub struct Signer {
    keyed: HmacSha256,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signer { .. }")
    }
}

impl Signer {
    /// Keys a signer with `secret` (its bytes as-is: the UTF-8 of e.g. `sck_...`, not decoded).
    ///
    /// Errors: [`Error::EmptySecret`].
    pub fn new(secret: &[u8]) -> Result<Self, Error> {
        Ok(Self {
            keyed: keyed(secret)?,
        })
    }

    /// Signs `body` at `time_ms`, exactly like [`sign`].
    pub fn sign(&self, mode: Mode, body: &[u8], time_ms: u64) -> Result<Signature, Error> {
        let mut digits = [0u8; 20];
        let time = format_time(time_ms, &mut digits);
        match mode {
            Mode::Raw => Ok(finish(self.keyed.clone(), body, RAW_SEPARATOR, time)),
            Mode::Sorted => {
                let mut canon = Vec::with_capacity(body.len());
                canonical_into(body, &mut canon)?;
                Ok(finish(
                    self.keyed.clone(),
                    &canon,
                    sorted_separator(&canon),
                    time,
                ))
            }
        }
    }
}

/// The exact bytes that are HMAC'd: see the [module documentation](self) for both forms.
///
/// ```
/// use blockhook_sig::{message, Mode};
/// assert_eq!(message(Mode::Sorted, br#"{"b":"x","a":1}"#, 42).unwrap(), b"a=1&b=x&time=42");
/// assert_eq!(message(Mode::Sorted, b"{}", 42).unwrap(), b"time=42");
/// assert_eq!(message(Mode::Raw, b"not json", 42).unwrap(), b"not json&time=42");
/// ```
///
/// Errors (`sorted` only): the body must pass [`json::validate_object`](crate::json::validate_object).
pub fn message(mode: Mode, body: &[u8], time_ms: u64) -> Result<Vec<u8>, Error> {
    let mut digits = [0u8; 20];
    let time = format_time(time_ms, &mut digits);
    let mut out = Vec::with_capacity(body.len() + RAW_SEPARATOR.len() + time.len());
    match mode {
        Mode::Raw => {
            out.extend_from_slice(body);
            out.extend_from_slice(RAW_SEPARATOR);
        }
        Mode::Sorted => {
            canonical_into(body, &mut out)?;
            let separator = sorted_separator(&out);
            out.extend_from_slice(separator);
        }
    }
    out.extend_from_slice(time);
    Ok(out)
}

/// Signs `body` as sent at `time_ms` (the value of `BlockATM-Request-Time`) with `secret`
/// (its bytes as-is, prefix included: `sck_...` is not hex- or base64-decoded).
///
/// ```
/// use blockhook_sig::{sign, Mode};
/// let sig = sign(b"sck_secret", Mode::Sorted, br#"{"id":1}"#, 1_700_000_000_000).unwrap();
/// assert_eq!(sig.to_string().len(), 64);
/// ```
///
/// Errors: [`Error::EmptySecret`]; in `sorted` mode, the body errors of
/// [`json::validate_object`](crate::json::validate_object).
pub fn sign(secret: &[u8], mode: Mode, body: &[u8], time_ms: u64) -> Result<Signature, Error> {
    Signer::new(secret)?.sign(mode, body, time_ms)
}

/// Verifies a received request: reads `BlockATM-Request-Time` and `BlockATM-Signature-V2` from
/// `h` (case-insensitively) and then does what [`verify_parts`] does.
///
/// `now_ms` is the receiver's current Unix time in milliseconds; this crate never reads a clock.
///
/// ```
/// use blockhook_sig::{headers, sign, verify, Mode, VerifyOptions};
/// let body = br#"{"orderNo":"A1","amount":"10.00"}"#;
/// let sig = sign(b"sck_secret", Mode::Sorted, body, 1_700_000_000_000).unwrap().to_string();
/// let h = [("blockatm-request-time", "1700000000000"), ("BlockATM-Signature-V2", sig.as_str())];
/// let ok = verify(&h, body, &[b"sck_secret"], &VerifyOptions::default(), 1_700_000_060_000).unwrap();
/// assert_eq!((ok.mode, ok.secret_index), (Mode::Sorted, 0));
/// ```
pub fn verify(
    h: &(impl HeaderSource + ?Sized),
    body: &[u8],
    secrets: &[&[u8]],
    opts: &VerifyOptions,
    now_ms: u64,
) -> Result<Verified, Error> {
    check_secrets(secrets)?;
    let time = h
        .header(headers::REQUEST_TIME)
        .ok_or(Error::MissingHeader(headers::REQUEST_TIME))?;
    let signature = h
        .header(headers::SIGNATURE_V2)
        .ok_or(Error::MissingHeader(headers::SIGNATURE_V2))?;
    verify_parts(time, signature, body, secrets, opts, now_ms)
}

/// Verifies a signature given the two header values directly.
///
/// Checks, in this order, returning the first failure:
/// 1. `secrets` is non-empty and holds no empty secret ([`Error::EmptySecret`]: a
///    configuration error, reported before anything about the request);
/// 2. `time` is a plain decimal integer: digits only, 1 to 19 of them ([`Error::TimeNotInteger`]);
/// 3. `|now_ms - time| < window_ms` ([`Error::TooOld`] / [`Error::TooNew`]);
/// 4. `signature` is 64 hex characters ([`Error::MalformedSignature`]);
/// 5. in `sorted` mode, the body is a valid JSON object ([`Error::NotAnObject`],
///    [`Error::InvalidJson`], [`Error::TooDeep`], [`Error::DuplicateKey`]); in `either` mode a
///    body that is not one is simply checked in `raw` form only;
/// 6. the signature equals, in constant time, the HMAC of the message under some secret (and
///    some accepted mode), else [`Error::Mismatch`]. Every secret and mode is computed, with no
///    early exit; the first match (secrets in order, `sorted` before `raw`) is reported.
///
/// The message uses `time` exactly as received.
pub fn verify_parts(
    time: &str,
    signature: &str,
    body: &[u8],
    secrets: &[&[u8]],
    opts: &VerifyOptions,
    now_ms: u64,
) -> Result<Verified, Error> {
    check_secrets(secrets)?;
    let time_ms = parse_time(time)?;
    check_window(time_ms, now_ms, opts.window_ms)?;
    let expected: Signature = signature.parse()?;

    let sorted = match opts.mode {
        VerifyMode::Sorted => Some(canonical(body)?),
        VerifyMode::Either => canonical(body).ok(),
        VerifyMode::Raw => None,
    };

    let time = time.as_bytes();
    let mut found: Option<(usize, Mode)> = None;
    for (index, secret) in secrets.iter().enumerate() {
        let keyed = keyed(secret)?;
        if let Some(canon) = &sorted {
            let actual = finish(keyed.clone(), canon, sorted_separator(canon), time);
            if bool::from(actual.ct_eq(&expected)) && found.is_none() {
                found = Some((index, Mode::Sorted));
            }
        }
        if opts.mode.accepts(Mode::Raw) {
            let actual = finish(keyed, body, RAW_SEPARATOR, time);
            if bool::from(actual.ct_eq(&expected)) && found.is_none() {
                found = Some((index, Mode::Raw));
            }
        }
    }
    match found {
        Some((secret_index, mode)) => Ok(Verified {
            time_ms,
            mode,
            secret_index,
        }),
        None => Err(Error::Mismatch),
    }
}

const RAW_SEPARATOR: &[u8] = b"&time=";

/// `&time=` after a non-empty canonical form, `time=` after an empty one.
fn sorted_separator(canon: &[u8]) -> &'static [u8] {
    if canon.is_empty() {
        b"time="
    } else {
        RAW_SEPARATOR
    }
}

pub(crate) fn keyed(secret: &[u8]) -> Result<HmacSha256, Error> {
    if secret.is_empty() {
        return Err(Error::EmptySecret);
    }
    // HMAC accepts keys of any length; the error branch cannot happen.
    <HmacSha256 as Mac>::new_from_slice(secret).map_err(|_| Error::EmptySecret)
}

/// MACs `first + separator + time` with an already keyed state.
fn finish(mut mac: HmacSha256, first: &[u8], separator: &[u8], time: &[u8]) -> Signature {
    mac.update(first);
    mac.update(separator);
    mac.update(time);
    Signature(mac.finalize().into_bytes().into())
}

fn check_secrets(secrets: &[&[u8]]) -> Result<(), Error> {
    if secrets.is_empty() || secrets.iter().any(|s| s.is_empty()) {
        return Err(Error::EmptySecret);
    }
    Ok(())
}

fn parse_time(time: &str) -> Result<u64, Error> {
    if time.is_empty() || time.len() > MAX_TIME_DIGITS || !time.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(Error::TimeNotInteger);
    }
    time.parse().map_err(|_| Error::TimeNotInteger)
}

fn check_window(time_ms: u64, now_ms: u64, window_ms: u64) -> Result<(), Error> {
    if time_ms <= now_ms {
        let skew_ms = now_ms - time_ms;
        if skew_ms >= window_ms {
            return Err(Error::TooOld { skew_ms });
        }
    } else {
        let skew_ms = time_ms - now_ms;
        if skew_ms >= window_ms {
            return Err(Error::TooNew { skew_ms });
        }
    }
    Ok(())
}

/// Writes `value` in decimal into `buf` and returns the digits.
fn format_time(mut value: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    for slot in buf.iter_mut().rev() {
        // `value % 10` is below 10, so the cast cannot truncate.
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
        start -= 1;
        if value == 0 {
            break;
        }
    }
    buf.get(start..).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"sck_QOoPSlHDSsgXYeNyTP2i0ug1HKLRjHw9Ug7mCc1Q0";
    const T: u64 = 1_743_060_268_000;

    fn sig(mode: Mode, body: &[u8], t: u64) -> String {
        sign(SECRET, mode, body, t).expect("signs").to_string()
    }

    fn opts(mode: VerifyMode) -> VerifyOptions {
        VerifyOptions {
            mode,
            ..VerifyOptions::default()
        }
    }

    #[test]
    fn format_time_all_widths() {
        let mut buf = [0u8; 20];
        for v in [0, 7, 10, 1_743_060_268_000, u64::MAX] {
            assert_eq!(format_time(v, &mut buf), v.to_string().as_bytes());
        }
    }

    #[test]
    fn messages() {
        let body = br#"{"b":"x","a":1,"n":null}"#;
        assert_eq!(message(Mode::Sorted, body, 5).unwrap(), b"a=1&b=x&time=5");
        assert_eq!(
            message(Mode::Raw, body, 5).unwrap(),
            [&body[..], b"&time=5"].concat()
        );
        assert_eq!(message(Mode::Sorted, b"{}", 5).unwrap(), b"time=5");
        assert_eq!(
            message(Mode::Sorted, br#"{"a":null,"b":{}}"#, 5).unwrap(),
            b"time=5"
        );
        assert_eq!(message(Mode::Raw, b"", 5).unwrap(), b"&time=5");
        assert_eq!(
            message(Mode::Raw, b"\xff not json", 0).unwrap(),
            b"\xff not json&time=0"
        );
        assert_eq!(message(Mode::Sorted, b"nope", 5), Err(Error::NotAnObject));
        assert_eq!(
            message(Mode::Sorted, b"{\"a\":}", 5),
            Err(Error::InvalidJson {
                offset: 5,
                reason: "expected a value"
            })
        );
    }

    #[test]
    fn sign_is_hmac_of_message() {
        for (mode, body) in [
            (Mode::Sorted, &br#"{"k":"v","a":[1,{"b":2}]}"#[..]),
            (Mode::Raw, b"anything"),
        ] {
            let mut mac = HmacSha256::new_from_slice(SECRET).unwrap();
            mac.update(&message(mode, body, T).unwrap());
            let want = hex::encode(mac.finalize().into_bytes());
            assert_eq!(sig(mode, body, T), want);
        }
    }

    #[test]
    fn signer_matches_sign_and_is_reusable() {
        let signer = Signer::new(SECRET).unwrap();
        for body in [&br#"{"a":1}"#[..], br#"{"b":2}"#, b"{}"] {
            assert_eq!(
                signer.sign(Mode::Sorted, body, T).unwrap().to_string(),
                sig(Mode::Sorted, body, T)
            );
            assert_eq!(
                signer.sign(Mode::Raw, body, T).unwrap().to_string(),
                sig(Mode::Raw, body, T)
            );
        }
        assert_eq!(format!("{signer:?}"), "Signer { .. }");
    }

    #[test]
    fn empty_secret() {
        assert_eq!(sign(b"", Mode::Raw, b"x", T), Err(Error::EmptySecret));
        assert_eq!(Signer::new(b"").err(), Some(Error::EmptySecret));
        let s = sig(Mode::Raw, b"x", T);
        let t = T.to_string();
        let o = opts(VerifyMode::Raw);
        assert_eq!(
            verify_parts(&t, &s, b"x", &[], &o, T),
            Err(Error::EmptySecret)
        );
        assert_eq!(
            verify_parts(&t, &s, b"x", &[SECRET, b""], &o, T),
            Err(Error::EmptySecret)
        );
        // Reported before anything about the request.
        assert_eq!(
            verify(&[("a", "b")], b"x", &[], &o, T),
            Err(Error::EmptySecret)
        );
    }

    #[test]
    fn signature_hex_round_trip() {
        let s = sign(SECRET, Mode::Raw, b"x", T).unwrap();
        let text = s.to_string();
        assert_eq!(text, s.to_hex());
        assert_eq!(text.len(), 64);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(text.parse::<Signature>().unwrap(), s);
        assert_eq!(text.to_uppercase().parse::<Signature>().unwrap(), s);
        assert_eq!(Signature::from(*s.as_bytes()), s);
        assert_eq!(format!("{s:?}"), format!("Signature({text})"));
        for bad in [
            "",
            "abc",
            &text[..63],
            &format!("{text}0"),
            &format!("g{}", &text[1..]),
            &format!(" {}", &text[1..]),
        ] {
            assert_eq!(
                bad.parse::<Signature>(),
                Err(Error::MalformedSignature),
                "{bad:?}"
            );
        }
        // 64 bytes but not 64 hex characters.
        let non_ascii = format!("é{}", &text[2..]);
        assert_eq!(non_ascii.len(), 64);
        assert_eq!(
            non_ascii.parse::<Signature>(),
            Err(Error::MalformedSignature)
        );
    }

    #[test]
    fn modes_parse_and_display() {
        assert_eq!(Mode::default(), Mode::Sorted);
        assert_eq!(VerifyMode::default(), VerifyMode::Sorted);
        for m in [Mode::Sorted, Mode::Raw] {
            assert_eq!(m.to_string().parse::<Mode>().unwrap(), m);
        }
        for m in [VerifyMode::Sorted, VerifyMode::Raw, VerifyMode::Either] {
            assert_eq!(m.to_string().parse::<VerifyMode>().unwrap(), m);
        }
        assert_eq!("RAW".parse::<Mode>().unwrap(), Mode::Raw);
        assert_eq!(Mode::Sorted.to_string(), "sorted");
        assert_eq!(VerifyMode::Either.to_string(), "either");
        let err = "either".parse::<Mode>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown signing mode \"either\": expected sorted or raw"
        );
        let err = "json".parse::<VerifyMode>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown signing mode \"json\": expected sorted, raw or either"
        );
        assert_eq!(VerifyMode::from(Mode::Raw), VerifyMode::Raw);
    }

    #[test]
    fn default_options() {
        assert_eq!(
            VerifyOptions::default(),
            VerifyOptions {
                mode: VerifyMode::Sorted,
                window_ms: 300_000
            }
        );
    }

    #[test]
    fn verify_accepts_and_reports_mode_and_secret() {
        let body = br#"{"b":2,"a":1}"#;
        let t = T.to_string();
        let sorted = sig(Mode::Sorted, body, T);
        let raw = sig(Mode::Raw, body, T);
        let other: &[u8] = b"sck_other";
        let ok = verify_parts(
            &t,
            &sorted,
            body,
            &[other, SECRET],
            &opts(VerifyMode::Sorted),
            T,
        )
        .unwrap();
        assert_eq!(
            ok,
            Verified {
                time_ms: T,
                mode: Mode::Sorted,
                secret_index: 1
            }
        );
        let ok = verify_parts(&t, &raw, body, &[SECRET], &opts(VerifyMode::Raw), T).unwrap();
        assert_eq!(
            ok,
            Verified {
                time_ms: T,
                mode: Mode::Raw,
                secret_index: 0
            }
        );
        let ok = verify_parts(
            &t,
            &raw,
            body,
            &[other, SECRET],
            &opts(VerifyMode::Either),
            T,
        )
        .unwrap();
        assert_eq!((ok.mode, ok.secret_index), (Mode::Raw, 1));
        let ok = verify_parts(&t, &sorted, body, &[SECRET], &opts(VerifyMode::Either), T).unwrap();
        assert_eq!(ok.mode, Mode::Sorted);
        // Uppercase hex is accepted.
        assert!(
            verify_parts(
                &t,
                &sorted.to_uppercase(),
                body,
                &[SECRET],
                &opts(VerifyMode::Sorted),
                T
            )
            .is_ok()
        );
        // The wrong mode does not match.
        assert_eq!(
            verify_parts(&t, &raw, body, &[SECRET], &opts(VerifyMode::Sorted), T),
            Err(Error::Mismatch)
        );
        assert_eq!(
            verify_parts(&t, &sorted, body, &[SECRET], &opts(VerifyMode::Raw), T),
            Err(Error::Mismatch)
        );
        // The wrong secret does not match.
        assert_eq!(
            verify_parts(&t, &sorted, body, &[other], &opts(VerifyMode::Either), T),
            Err(Error::Mismatch)
        );
    }

    #[test]
    fn either_mode_checks_non_json_bodies_as_raw() {
        let body = b"plain text";
        let t = T.to_string();
        let raw = sig(Mode::Raw, body, T);
        let ok = verify_parts(&t, &raw, body, &[SECRET], &opts(VerifyMode::Either), T).unwrap();
        assert_eq!(ok.mode, Mode::Raw);
        assert_eq!(
            verify_parts(
                &t,
                &raw,
                b"plain text!",
                &[SECRET],
                &opts(VerifyMode::Either),
                T
            ),
            Err(Error::Mismatch)
        );
        assert_eq!(
            verify_parts(&t, &raw, body, &[SECRET], &opts(VerifyMode::Sorted), T),
            Err(Error::NotAnObject)
        );
    }

    #[test]
    fn time_must_be_a_plain_integer() {
        let s = sig(Mode::Raw, b"x", T);
        let o = opts(VerifyMode::Raw);
        for bad in [
            "",
            " 1743060268000",
            "1743060268000 ",
            "+1743060268000",
            "-1",
            "1.5",
            "1e3",
            "0x10",
            "１２",
            "12345678901234567890",
        ] {
            assert_eq!(
                verify_parts(bad, &s, b"x", &[SECRET], &o, T),
                Err(Error::TimeNotInteger),
                "{bad:?}"
            );
        }
        // 19 digits is the longest accepted (here far in the future).
        assert!(matches!(
            verify_parts("9999999999999999999", &s, b"x", &[SECRET], &o, T),
            Err(Error::TooNew { .. })
        ));
    }

    #[test]
    fn time_is_used_verbatim_in_the_message() {
        // A leading zero is still a plain integer, and is signed as received.
        let mut mac = HmacSha256::new_from_slice(SECRET).unwrap();
        mac.update(b"x&time=0005");
        let s = hex::encode(mac.finalize().into_bytes());
        let ok = verify_parts("0005", &s, b"x", &[SECRET], &opts(VerifyMode::Raw), 5).unwrap();
        assert_eq!(ok.time_ms, 5);
        assert_eq!(
            verify_parts("5", &s, b"x", &[SECRET], &opts(VerifyMode::Raw), 5),
            Err(Error::Mismatch)
        );
    }

    #[test]
    fn window_is_exclusive() {
        let o = VerifyOptions {
            mode: VerifyMode::Raw,
            window_ms: 1000,
        };
        let s = sig(Mode::Raw, b"x", T);
        let t = T.to_string();
        let check = |now| verify_parts(&t, &s, b"x", &[SECRET], &o, now);
        assert!(check(T).is_ok());
        assert!(check(T + 999).is_ok());
        assert!(check(T - 999).is_ok());
        assert_eq!(check(T + 1000), Err(Error::TooOld { skew_ms: 1000 }));
        assert_eq!(check(T - 1000), Err(Error::TooNew { skew_ms: 1000 }));
        assert_eq!(check(T + 412_000), Err(Error::TooOld { skew_ms: 412_000 }));
        assert_eq!(check(0), Err(Error::TooNew { skew_ms: T }));
        let zero = VerifyOptions { window_ms: 0, ..o };
        assert_eq!(
            verify_parts(&t, &s, b"x", &[SECRET], &zero, T),
            Err(Error::TooOld { skew_ms: 0 })
        );
        let open = VerifyOptions {
            window_ms: u64::MAX,
            ..o
        };
        assert!(verify_parts(&t, &s, b"x", &[SECRET], &open, u64::MAX - 1).is_ok());
    }

    #[test]
    fn check_order_headers_time_signature_body_compare() {
        let o = opts(VerifyMode::Sorted);
        let bad_body = b"[]";
        // Missing headers come first (time before signature).
        assert_eq!(
            verify(&[("x", "y")], bad_body, &[SECRET], &o, T),
            Err(Error::MissingHeader(headers::REQUEST_TIME))
        );
        assert_eq!(
            verify(
                &[(headers::REQUEST_TIME, "nope")],
                bad_body,
                &[SECRET],
                &o,
                T
            ),
            Err(Error::MissingHeader(headers::SIGNATURE_V2))
        );
        // Then the time format, then the window, even with a malformed signature and body.
        assert_eq!(
            verify_parts("nope", "zz", bad_body, &[SECRET], &o, T),
            Err(Error::TimeNotInteger)
        );
        assert_eq!(
            verify_parts("1", "zz", bad_body, &[SECRET], &o, T),
            Err(Error::TooOld { skew_ms: T - 1 })
        );
        // Then the signature format, then the body.
        let t = T.to_string();
        assert_eq!(
            verify_parts(&t, "zz", bad_body, &[SECRET], &o, T),
            Err(Error::MalformedSignature)
        );
        let good_format = "0".repeat(64);
        assert_eq!(
            verify_parts(&t, &good_format, bad_body, &[SECRET], &o, T),
            Err(Error::NotAnObject)
        );
        assert_eq!(
            verify_parts(&t, &good_format, b"{}", &[SECRET], &o, T),
            Err(Error::Mismatch)
        );
    }

    #[test]
    fn verify_reads_headers_case_insensitively() {
        let body = br#"{"a":1}"#;
        let s = sig(Mode::Sorted, body, T);
        let t = T.to_string();
        let h = vec![
            ("blockatm-request-time".to_owned(), t),
            ("BLOCKATM-SIGNATURE-V2".to_owned(), s),
        ];
        let ok = verify(&h, body, &[SECRET], &VerifyOptions::default(), T + 1).unwrap();
        assert_eq!(ok.time_ms, T);
    }

    #[test]
    fn every_error_displays_precisely() {
        let cases: &[(Error, &str)] = &[
            (
                Error::MissingHeader(headers::SIGNATURE_V2),
                "missing header BlockATM-Signature-V2",
            ),
            (
                Error::TimeNotInteger,
                "BlockATM-Request-Time is not a plain integer of milliseconds (expected digits only, e.g. 1743060268000)",
            ),
            (
                Error::TooOld { skew_ms: 412_000 },
                "BlockATM-Request-Time is 412000 ms in the past, outside the verification window",
            ),
            (
                Error::TooNew { skew_ms: 5 },
                "BlockATM-Request-Time is 5 ms in the future, outside the verification window (is one of the clocks wrong?)",
            ),
            (
                Error::MalformedSignature,
                "signature is malformed (BlockATM-Signature-V2 must be 64 hexadecimal characters; V1 must be base64 of a DER ECDSA signature)",
            ),
            (
                Error::Mismatch,
                "signature does not match: the body, the time or the secret differs from what was signed",
            ),
            (Error::NotAnObject, "body is not a JSON object"),
            (
                Error::InvalidJson {
                    offset: 7,
                    reason: "unterminated string",
                },
                "body is not valid JSON: unterminated string at byte 7",
            ),
            (
                Error::TooDeep,
                "body nests objects and arrays deeper than 128 levels",
            ),
            (
                Error::DuplicateKey("a\"b".into()),
                "body has the key \"a\\\"b\" twice in one JSON object",
            ),
            (
                Error::EmptySecret,
                "secret is empty (or no secret was given)",
            ),
            (
                Error::InvalidKey("public key is not base64"),
                "invalid V1 key: public key is not base64",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), *text);
        }
    }
}
