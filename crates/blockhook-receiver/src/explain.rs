//! The signature debugger: why does (or doesn't) a received signature match?
//!
//! [`explain`] takes what a receiver saw (the body bytes, the BlockATM and/or Standard Webhooks
//! headers) and a secret, and returns an [`Explanation`]: for every mode (`sorted`, `raw`,
//! `standard`) the exact message that is signed and the signature expected from it, which
//! modes match the received signature, and the usual mistakes ([`Mistake`]), each one found by
//! actually signing the variant it names (a compacted or pretty-printed body, the time times or
//! divided by 1000, the secret with or without its prefix) and seeing it match.
//!
//! It is pure: no I/O, no clock (`now_ms` is a parameter), nothing kept. The dashboard's
//! debugger page and `blockhook verify --explain` both print what it returns, so the two always
//! agree. The secret is an input only: nothing in the [`Explanation`] contains it.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

use blockhook_sig::standard::{self, StandardSecret};
use blockhook_sig::{Mode, Signature};

use crate::json_text::{compact, respace};

/// The prefix of a BlockATM endpoint secret as blockhook generates it.
pub const BLOCKATM_SECRET_PREFIX: &str = "sck_";

/// A signing mode as the debugger knows them: the two BlockATM forms and Standard Webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DebugMode {
    /// `BlockATM-Signature-V2` over `canonical(body) + "&time=" + t`.
    Sorted,
    /// `BlockATM-Signature-V2` over `body + "&time=" + t`.
    Raw,
    /// Standard Webhooks: `webhook-signature` over `id.timestamp.body`, base64-decoded key.
    Standard,
}

impl DebugMode {
    /// Every mode, in the order they are shown.
    pub const ALL: [Self; 3] = [Self::Sorted, Self::Raw, Self::Standard];

    /// `sorted`, `raw` or `standard` (the endpoint's `signing_mode` names).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sorted => "sorted",
            Self::Raw => "raw",
            Self::Standard => "standard",
        }
    }

    /// Parses `sorted`, `raw` or `standard` (ASCII case ignored).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s.trim()))
    }

    fn blockatm(self) -> Option<Mode> {
        match self {
            Self::Sorted => Some(Mode::Sorted),
            Self::Raw => Some(Mode::Raw),
            Self::Standard => None,
        }
    }
}

impl fmt::Display for DebugMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the receiver saw, and what to check it with. Header values are given as received
/// (absent or empty means not received).
#[derive(Debug, Clone, Copy, Default)]
pub struct Input<'a> {
    /// The body bytes as the receiver verified them.
    pub body: &'a [u8],
    /// `BlockATM-Request-Time`.
    pub request_time: Option<&'a str>,
    /// `BlockATM-Signature-V2`.
    pub signature_v2: Option<&'a str>,
    /// `webhook-id`.
    pub webhook_id: Option<&'a str>,
    /// `webhook-timestamp`.
    pub webhook_timestamp: Option<&'a str>,
    /// `webhook-signature`.
    pub webhook_signature: Option<&'a str>,
    /// The secret, as the receiver uses it (`sck_…`, `whsec_…`).
    pub secret: &'a str,
    /// The mode the receiver checks (or the endpoint is configured with), if known: a match in
    /// another mode is reported as [`Mistake::WrongMode`].
    pub expected_mode: Option<DebugMode>,
    /// The receiver's "now", Unix ms, for the time-window check (`None`: not checked).
    pub now_ms: Option<u64>,
    /// The time window, ms (the contract's default is 5 minutes).
    pub window_ms: u64,
}

/// One mode's computation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeReport {
    /// The mode.
    pub mode: DebugMode,
    /// The exact signed message (lossy UTF-8), or why it cannot be formed.
    pub message: Result<String, String>,
    /// The signature this secret gives that message (header format: 64 hex for BlockATM,
    /// `v1,<base64>` for Standard Webhooks).
    pub expected: Option<String>,
    /// The received signature it is compared with, if any.
    pub received: Option<String>,
    /// Whether the received signature is the expected one.
    pub matches: bool,
}

/// A mistake found by trying the variant it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mistake {
    /// The signature matches the body re-serialised (`how`: compacted, pretty-printed, keys
    /// reordered…), not the bytes given: the receiver parsed the JSON and serialised it again
    /// before verifying.
    ReserialisedBody {
        /// The mode that matched with that body.
        mode: DebugMode,
        /// Which re-serialisation.
        how: &'static str,
    },
    /// The signature matches in another mode than the one the receiver checks.
    WrongMode {
        /// What the receiver (or the endpoint) uses.
        expected: DebugMode,
        /// What matched.
        matched: DebugMode,
    },
    /// The time is (or was signed) in seconds where milliseconds are expected, or the other
    /// way round.
    TimeUnits {
        /// The header concerned.
        header: &'static str,
        /// What was found, in words.
        detail: String,
    },
    /// The signature matches with the secret's prefix added or removed, or with the whsec_
    /// secret used as text instead of its base64-decoded bytes.
    SecretForm {
        /// The mode that matched that way.
        mode: DebugMode,
        /// What was different, in words.
        detail: &'static str,
    },
    /// The time is outside the window around `now`.
    Stale {
        /// The header concerned.
        header: &'static str,
        /// How far from now, ms (positive: in the past).
        skew_ms: i128,
        /// The window, ms.
        window_ms: u64,
    },
    /// A header is absent or not in its wire format.
    MalformedHeader {
        /// The header.
        header: &'static str,
        /// What is wrong.
        problem: String,
    },
}

impl Mistake {
    /// A short stable code: `reserialised-body`, `wrong-mode`, `time-units`, `secret-form`,
    /// `stale-time`, `malformed-header`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::ReserialisedBody { .. } => "reserialised-body",
            Self::WrongMode { .. } => "wrong-mode",
            Self::TimeUnits { .. } => "time-units",
            Self::SecretForm { .. } => "secret-form",
            Self::Stale { .. } => "stale-time",
            Self::MalformedHeader { .. } => "malformed-header",
        }
    }

    /// What was found, in plain words.
    pub fn describe(&self) -> String {
        match self {
            Self::ReserialisedBody { mode, how } => format!(
                "Re-serialised JSON: the signature matches ({mode} mode) the body {how}, not the \
                 bytes given. The receiver parsed the JSON and serialised it again before \
                 verifying, which changes the bytes."
            ),
            Self::WrongMode { expected, matched } => format!(
                "Wrong mode: the signature matches in {matched} mode, but the receiver checks \
                 {expected} mode."
            ),
            Self::TimeUnits { header, detail } => format!("Time units ({header}): {detail}."),
            Self::SecretForm { mode, detail } => {
                format!("Secret form: the signature matches ({mode} mode) {detail}.")
            }
            Self::Stale {
                header,
                skew_ms,
                window_ms,
            } => {
                let dir = if *skew_ms >= 0 {
                    "in the past"
                } else {
                    "in the future"
                };
                format!(
                    "Stale timestamp: {header} is {} {dir}, outside the {} window, so a \
                     receiver checking it now rejects it.",
                    human_ms(skew_ms.unsigned_abs()),
                    human_ms(u128::from(*window_ms))
                )
            }
            Self::MalformedHeader { header, problem } => {
                format!("Malformed header {header}: {problem}.")
            }
        }
    }

    /// How to fix it.
    pub fn fix(&self) -> String {
        match self {
            Self::ReserialisedBody { .. } => "Verify the raw request body exactly as received \
                 (read the bytes before any JSON parsing), then parse it."
                .to_owned(),
            Self::WrongMode { matched, .. } => format!(
                "Verify in {matched} mode (or change the endpoint's signing mode to the one \
                 the receiver implements)."
            ),
            Self::TimeUnits { header, .. } if *header == standard::WEBHOOK_TIMESTAMP => {
                "webhook-timestamp is Unix seconds; use it verbatim in the signed message and \
                 compare it with the clock in seconds."
                    .to_owned()
            }
            Self::TimeUnits { .. } => "BlockATM-Request-Time is Unix milliseconds (13 digits); \
                 use the header verbatim in the message and compare it with the clock in \
                 milliseconds."
                .to_owned(),
            Self::SecretForm { .. } => "Use the secret exactly as blockhook shows it, prefix \
                 included (sck_… is the HMAC key as text; for whsec_… the key is the base64 \
                 after the prefix, decoded)."
                .to_owned(),
            Self::Stale { .. } => "Check the receiver's clock (NTP) and that it compares \
                 milliseconds with milliseconds; a request captured earlier is expected to be \
                 stale when checked later."
                .to_owned(),
            Self::MalformedHeader { .. } => "Pass the header value exactly as received, \
                 without quotes, spaces or a prefix such as sha256=."
                .to_owned(),
        }
    }
}

/// Everything [`explain`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// One report per mode that could be checked (BlockATM modes when a request time is given,
    /// Standard Webhooks when its id and timestamp are), in [`DebugMode::ALL`] order.
    pub modes: Vec<ModeReport>,
    /// The mistakes found, most telling first.
    pub mistakes: Vec<Mistake>,
}

impl Explanation {
    /// The modes whose expected signature is the received one.
    pub fn matched(&self) -> Vec<DebugMode> {
        self.modes
            .iter()
            .filter(|m| m.matches)
            .map(|m| m.mode)
            .collect()
    }

    /// Whether the received signature matches in some mode with the inputs as given.
    pub fn is_match(&self) -> bool {
        self.modes.iter().any(|m| m.matches)
    }

    /// The verdict in one line.
    pub fn verdict(&self) -> String {
        let matched = self.matched();
        if matched.is_empty() {
            if self.modes.iter().all(|m| m.received.is_none()) {
                "no received signature to compare: the expected signatures are shown".to_owned()
            } else {
                "no match: the signature matches none of the modes with these inputs".to_owned()
            }
        } else {
            let names: Vec<&str> = matched.iter().map(|m| m.as_str()).collect();
            format!(
                "match: the signature is valid in {} mode",
                names.join(" and ")
            )
        }
    }

    /// The whole explanation as plain text (what `blockhook verify --explain` prints).
    pub fn to_text(&self) -> String {
        use fmt::Write as _;
        let mut out = String::new();
        for m in &self.modes {
            let _ = writeln!(out, "== mode {} ==", m.mode);
            match &m.message {
                Ok(msg) => {
                    let _ = writeln!(out, "message:   {msg}");
                }
                Err(why) => {
                    let _ = writeln!(out, "message:   (cannot be formed: {why})");
                }
            }
            let _ = writeln!(
                out,
                "expected:  {}",
                m.expected.as_deref().unwrap_or("(none)")
            );
            let _ = writeln!(
                out,
                "received:  {}",
                m.received.as_deref().unwrap_or("(none)")
            );
            let _ = writeln!(out, "matches:   {}", if m.matches { "yes" } else { "no" });
        }
        let _ = writeln!(out, "verdict: {}", self.verdict());
        if self.mistakes.is_empty() {
            out.push_str("mistakes: none found\n");
        }
        for mistake in &self.mistakes {
            let _ = writeln!(out, "mistake [{}]: {}", mistake.code(), mistake.describe());
            let _ = writeln!(out, "  fix: {}", mistake.fix());
        }
        out
    }
}

/// Explains `input`: see the [module documentation](self).
pub fn explain(input: &Input<'_>) -> Explanation {
    let mut mistakes = Vec::new();
    let mut modes = Vec::new();
    let secret = input.secret;

    // BlockATM: sorted and raw share the time and the signature header.
    let time = present(input.request_time);
    let v2 = present(input.signature_v2);
    let received_v2 = v2.and_then(|raw| parse_v2(raw, &mut mistakes));
    if let Some(time_text) = time {
        let time_ms = parse_time(
            time_text,
            blockhook_sig::headers::REQUEST_TIME,
            &mut mistakes,
        );
        for mode in [DebugMode::Sorted, DebugMode::Raw] {
            modes.push(blockatm_report(
                mode,
                input.body,
                time_text,
                time_ms,
                secret,
                v2,
                received_v2,
            ));
        }
        if let Some(t) = time_ms {
            if (1_000_000_000..100_000_000_000).contains(&t) {
                mistakes.push(Mistake::TimeUnits {
                    header: blockhook_sig::headers::REQUEST_TIME,
                    detail: format!(
                        "{t} has {} digits: it looks like Unix seconds, but BlockATM-Request-Time \
                         is Unix milliseconds",
                        t.to_string().len()
                    ),
                });
            }
            check_window(
                blockhook_sig::headers::REQUEST_TIME,
                i128::from(t),
                input,
                &mut mistakes,
            );
        }
    } else if v2.is_some() {
        mistakes.push(Mistake::MalformedHeader {
            header: blockhook_sig::headers::REQUEST_TIME,
            problem: "it is missing, and it is part of the signed message".to_owned(),
        });
    }

    // Standard Webhooks.
    let msg_id = present(input.webhook_id);
    let ts = present(input.webhook_timestamp);
    let wh_sig = present(input.webhook_signature);
    let received_std = wh_sig.map(|raw| parse_standard_sig(raw, &mut mistakes));
    match (msg_id, ts) {
        (Some(msg_id), Some(ts)) => {
            let ts_s = parse_time(ts, standard::WEBHOOK_TIMESTAMP, &mut mistakes);
            modes.push(standard_report(
                msg_id,
                ts,
                input.body,
                secret,
                wh_sig,
                received_std.as_deref(),
            ));
            if let Some(t) = ts_s {
                if t >= 100_000_000_000 {
                    mistakes.push(Mistake::TimeUnits {
                        header: standard::WEBHOOK_TIMESTAMP,
                        detail: format!(
                            "{t} has {} digits: it looks like milliseconds, but \
                             webhook-timestamp is Unix seconds",
                            t.to_string().len()
                        ),
                    });
                }
                check_window(
                    standard::WEBHOOK_TIMESTAMP,
                    i128::from(t) * 1000,
                    input,
                    &mut mistakes,
                );
            }
        }
        (id, ts) if wh_sig.is_some() || id.is_some() || ts.is_some() => {
            let missing = if id.is_none() {
                standard::WEBHOOK_ID
            } else {
                standard::WEBHOOK_TIMESTAMP
            };
            mistakes.push(Mistake::MalformedHeader {
                header: missing,
                problem: "it is missing, and it is part of the signed message".to_owned(),
            });
        }
        _ => {}
    }

    let matched: Vec<DebugMode> = modes.iter().filter(|m| m.matches).map(|m| m.mode).collect();
    if let Some(expected) = input.expected_mode {
        if !matched.is_empty() && !matched.contains(&expected) {
            mistakes.insert(
                0,
                Mistake::WrongMode {
                    expected,
                    matched: matched[0],
                },
            );
        }
    }
    if matched.is_empty() {
        let found = try_variants(input, time, received_v2, received_std.as_deref());
        // The variants go first: they say why it does not match.
        let mut all = found;
        all.append(&mut mistakes);
        mistakes = all;
    }
    dedup(&mut mistakes);
    Explanation { modes, mistakes }
}

fn present(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.trim().is_empty())
}

fn dedup(mistakes: &mut Vec<Mistake>) {
    let mut seen: Vec<Mistake> = Vec::new();
    mistakes.retain(|m| {
        if seen.contains(m) {
            false
        } else {
            seen.push(m.clone());
            true
        }
    });
}

/// Parses a `BlockATM-Signature-V2` value; a value that only needs trimming (spaces, quotes,
/// a `sha256=` prefix) is used and reported.
fn parse_v2(raw: &str, mistakes: &mut Vec<Mistake>) -> Option<Signature> {
    if let Ok(sig) = raw.parse::<Signature>() {
        return Some(sig);
    }
    let cleaned = raw.trim().trim_matches('"').trim();
    let cleaned = cleaned.strip_prefix("sha256=").unwrap_or(cleaned);
    match cleaned.parse::<Signature>() {
        Ok(sig) => {
            mistakes.push(Mistake::MalformedHeader {
                header: blockhook_sig::headers::SIGNATURE_V2,
                problem: "it carries extra characters (spaces, quotes or a sha256= prefix); the \
                          64 hex characters inside were used"
                    .to_owned(),
            });
            Some(sig)
        }
        Err(_) => {
            mistakes.push(Mistake::MalformedHeader {
                header: blockhook_sig::headers::SIGNATURE_V2,
                problem: format!(
                    "it must be 64 hexadecimal characters, and it is {} characters that are not",
                    raw.chars().count()
                ),
            });
            None
        }
    }
}

/// The `v1,<base64>` entries of a `webhook-signature` value, as text.
fn parse_standard_sig(raw: &str, mistakes: &mut Vec<Mistake>) -> Vec<String> {
    let entries: Vec<String> = raw
        .split(' ')
        .filter(|e| e.starts_with("v1,") && e.len() > 3)
        .map(str::to_owned)
        .collect();
    if entries.is_empty() {
        mistakes.push(Mistake::MalformedHeader {
            header: standard::WEBHOOK_SIGNATURE,
            problem: "it holds no v1,<base64> entry".to_owned(),
        });
    }
    entries
}

fn parse_time(text: &str, header: &'static str, mistakes: &mut Vec<Mistake>) -> Option<u64> {
    let ok = !text.is_empty() && text.len() <= 19 && text.bytes().all(|b| b.is_ascii_digit());
    match ok.then(|| text.parse::<u64>().ok()).flatten() {
        Some(t) => Some(t),
        None => {
            mistakes.push(Mistake::MalformedHeader {
                header,
                problem: format!("{text:?} is not a plain integer (digits only)"),
            });
            None
        }
    }
}

fn check_window(header: &'static str, t_ms: i128, input: &Input<'_>, out: &mut Vec<Mistake>) {
    if let Some(now) = input.now_ms {
        let skew_ms = i128::from(now) - t_ms;
        if skew_ms.unsigned_abs() >= u128::from(input.window_ms) {
            out.push(Mistake::Stale {
                header,
                skew_ms,
                window_ms: input.window_ms,
            });
        }
    }
}

/// The BlockATM message of `mode` with `time` verbatim, as the contract forms it.
fn blockatm_message(mode: Mode, body: &[u8], time: &str) -> Result<Vec<u8>, String> {
    let mut out = match mode {
        Mode::Raw => body.to_vec(),
        Mode::Sorted => blockhook_sig::canonical(body).map_err(|e| e.to_string())?,
    };
    if !out.is_empty() || mode == Mode::Raw {
        out.push(b'&');
    }
    out.extend_from_slice(b"time=");
    out.extend_from_slice(time.as_bytes());
    Ok(out)
}

fn hmac_hex(key: &[u8], message: &[u8]) -> Option<Signature> {
    use hmac::Mac as _;
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(key).ok()?;
    mac.update(message);
    let bytes: [u8; 32] = mac.finalize().into_bytes().into();
    Some(Signature::from(bytes))
}

fn blockatm_report(
    mode: DebugMode,
    body: &[u8],
    time_text: &str,
    time_ms: Option<u64>,
    secret: &str,
    received_raw: Option<&str>,
    received: Option<Signature>,
) -> ModeReport {
    let sig_mode = mode.blockatm().unwrap_or_default();
    let message = blockatm_message(sig_mode, body, time_text);
    let expected = match (&message, secret.is_empty()) {
        (Ok(msg), false) => hmac_hex(secret.as_bytes(), msg),
        _ => None,
    };
    let matches = time_ms.is_some() && matches!((expected, received), (Some(e), Some(r)) if e == r);
    ModeReport {
        mode,
        message: message.map(|m| String::from_utf8_lossy(&m).into_owned()),
        expected: expected.map(|s| s.to_hex()),
        received: received_raw.map(|r| r.trim().to_owned()),
        matches,
    }
}

fn standard_message(msg_id: &str, ts: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg_id.len() + ts.len() + body.len() + 2);
    out.extend_from_slice(msg_id.as_bytes());
    out.push(b'.');
    out.extend_from_slice(ts.as_bytes());
    out.push(b'.');
    out.extend_from_slice(body);
    out
}

fn standard_entry(key: &[u8], message: &[u8]) -> Option<String> {
    use base64::Engine as _;
    hmac_hex(key, message).map(|s| format!("v1,{}", B64.encode(s.as_bytes())))
}

/// The Standard Webhooks key of `secret` as given: the base64 after `whsec_`.
fn standard_key(secret: &str) -> Result<Vec<u8>, String> {
    if !secret.starts_with(standard::SECRET_PREFIX) {
        return Err("the secret does not start with whsec_".to_owned());
    }
    StandardSecret::parse_lenient(secret)
        .map(|s| s.key().to_vec())
        .map_err(|e| e.to_string())
}

fn standard_report(
    msg_id: &str,
    ts: &str,
    body: &[u8],
    secret: &str,
    received_raw: Option<&str>,
    received: Option<&[String]>,
) -> ModeReport {
    let message = standard_message(msg_id, ts, body);
    let (expected, key_problem) = match standard_key(secret) {
        Ok(key) => (standard_entry(&key, &message), None),
        Err(why) => (None, Some(why)),
    };
    let matches = match (&expected, received) {
        (Some(e), Some(list)) => list.contains(e),
        _ => false,
    };
    ModeReport {
        mode: DebugMode::Standard,
        message: match key_problem {
            // The message itself can be formed; say why there is no expected signature.
            Some(why) => Err(format!(
                "{why} (message: {})",
                String::from_utf8_lossy(&message)
            )),
            None => Ok(String::from_utf8_lossy(&message).into_owned()),
        },
        expected,
        received: received_raw.map(|r| r.trim().to_owned()),
        matches,
    }
}

/// The body re-serialised in the usual ways, each with its name, leaving out those equal to
/// the body itself.
fn body_variants(body: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut out: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let Ok(text) = std::str::from_utf8(body) else {
        return out;
    };
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return out;
    };
    let compact = compact(text);
    out.push((
        "compacted (whitespace removed)",
        compact.clone().into_bytes(),
    ));
    out.push((
        "with spaces after ',' and ':' (Python json.dumps)",
        respace(&compact, None).into_bytes(),
    ));
    out.push((
        "pretty-printed (2-space indent)",
        respace(&compact, Some(2)).into_bytes(),
    ));
    out.push((
        "pretty-printed (4-space indent)",
        respace(&compact, Some(4)).into_bytes(),
    ));
    // serde_json's `Value` keeps object keys in sorted order here (no `preserve_order`); the
    // sort is made explicit anyway, so the variant does not depend on a feature flag.
    let sorted = sort_keys(value);
    if let Ok(s) = serde_json::to_string(&sorted) {
        out.push((
            "with its keys reordered (sorted) and numbers re-formatted",
            s.into_bytes(),
        ));
    }
    if let Ok(s) = serde_json::to_string_pretty(&sorted) {
        out.push((
            "pretty-printed with its keys reordered (sorted)",
            s.into_bytes(),
        ));
    }
    let mut seen: Vec<Vec<u8>> = vec![body.to_vec()];
    out.retain(|(_, bytes)| {
        if seen.contains(bytes) {
            false
        } else {
            seen.push(bytes.clone());
            true
        }
    });
    out
}

fn sort_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<String, Value> =
                map.into_iter().map(|(k, v)| (k, sort_keys(v))).collect();
            Value::Object(sorted.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

/// Secret variants: `(key text, what differs)` for the BlockATM modes.
fn blockatm_secret_variants(secret: &str) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    if secret.is_empty() {
        return out;
    }
    let mut stripped = false;
    for prefix in [BLOCKATM_SECRET_PREFIX, standard::SECRET_PREFIX] {
        if let Some(rest) = secret.strip_prefix(prefix) {
            stripped = true;
            if !rest.is_empty() {
                out.push((
                    rest.to_owned(),
                    "with the secret's prefix removed: the signer used the secret without it",
                ));
            }
        }
    }
    if !stripped {
        out.push((
            format!("{BLOCKATM_SECRET_PREFIX}{secret}"),
            "with sck_ added in front of the secret: the secret given lacks its prefix",
        ));
    }
    out
}

/// Key variants for Standard Webhooks: `(key bytes, what differs)`.
fn standard_key_variants(secret: &str) -> Vec<(Vec<u8>, &'static str)> {
    let mut out = Vec::new();
    if secret.is_empty() {
        return out;
    }
    if secret.starts_with(standard::SECRET_PREFIX) {
        out.push((
            secret.as_bytes().to_vec(),
            "with the whsec_ secret used as text: the base64 after whsec_ was not decoded",
        ));
    } else {
        if let Ok(key) = StandardSecret::parse_lenient(secret) {
            out.push((
                key.key().to_vec(),
                "with whsec_ added in front of the secret: the secret given lacks its prefix",
            ));
        }
        out.push((
            secret.as_bytes().to_vec(),
            "with the secret used as text: the sender did not base64-decode it",
        ));
    }
    out
}

/// Signs every variant and reports those that match the received signature.
fn try_variants(
    input: &Input<'_>,
    time: Option<&str>,
    received_v2: Option<Signature>,
    received_std: Option<&[String]>,
) -> Vec<Mistake> {
    let mut found = Vec::new();
    let body = input.body;
    let secret = input.secret;
    let variants = body_variants(body);

    if let (Some(time), Some(received)) = (time, received_v2) {
        let blockatm_matches = |body: &[u8], time: &str, key: &str| -> Option<DebugMode> {
            [DebugMode::Sorted, DebugMode::Raw].into_iter().find(|m| {
                let mode = m.blockatm().unwrap_or_default();
                blockatm_message(mode, body, time)
                    .ok()
                    .and_then(|msg| hmac_hex(key.as_bytes(), &msg))
                    .is_some_and(|s| s == received)
            })
        };
        if !secret.is_empty() {
            for (how, bytes) in &variants {
                if let Some(mode) = blockatm_matches(bytes, time, secret) {
                    found.push(Mistake::ReserialisedBody { mode, how });
                    break;
                }
            }
            if let Ok(t) = time.parse::<u64>() {
                let tries = [
                    (
                        t.checked_mul(1000),
                        "the signature was made with the time in milliseconds, but the time \
                         given is in seconds",
                    ),
                    (
                        Some(t / 1000),
                        "the signature was made with the time in seconds, but the time given is \
                         in milliseconds",
                    ),
                ];
                for (candidate, detail) in tries {
                    let Some(candidate) = candidate else { continue };
                    let candidate = candidate.to_string();
                    if blockatm_matches(body, &candidate, secret).is_some() {
                        found.push(Mistake::TimeUnits {
                            header: blockhook_sig::headers::REQUEST_TIME,
                            detail: format!("{detail} (it matches with time={candidate})"),
                        });
                    }
                }
            }
        }
        for (key, detail) in blockatm_secret_variants(secret) {
            if let Some(mode) = blockatm_matches(body, time, &key) {
                found.push(Mistake::SecretForm { mode, detail });
            }
        }
    }

    if let (Some(msg_id), Some(ts), Some(received)) = (
        present(input.webhook_id),
        present(input.webhook_timestamp),
        received_std,
    ) {
        let std_matches = |body: &[u8], ts: &str, key: &[u8]| -> bool {
            standard_entry(key, &standard_message(msg_id, ts, body))
                .is_some_and(|e| received.contains(&e))
        };
        if let Ok(key) = standard_key(secret) {
            for (how, bytes) in &variants {
                if std_matches(bytes, ts, &key) {
                    found.push(Mistake::ReserialisedBody {
                        mode: DebugMode::Standard,
                        how,
                    });
                    break;
                }
            }
            if let Ok(t) = ts.parse::<u64>() {
                let tries = [
                    (
                        Some(t / 1000),
                        "the signature was made with the timestamp in seconds, but the one \
                         given is in milliseconds",
                    ),
                    (
                        t.checked_mul(1000),
                        "the signature was made with the timestamp in milliseconds, but the \
                         one given is in seconds",
                    ),
                ];
                for (candidate, detail) in tries {
                    let Some(candidate) = candidate else { continue };
                    let candidate = candidate.to_string();
                    if std_matches(body, &candidate, &key) {
                        found.push(Mistake::TimeUnits {
                            header: standard::WEBHOOK_TIMESTAMP,
                            detail: format!("{detail} (it matches with {candidate})"),
                        });
                    }
                }
            }
        }
        for (key, detail) in standard_key_variants(secret) {
            if std_matches(body, ts, &key) {
                found.push(Mistake::SecretForm {
                    mode: DebugMode::Standard,
                    detail,
                });
            }
        }
    }
    found
}

fn human_ms(ms: u128) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 120_000 {
        format!("{} s", ms / 1000)
    } else if ms < 7_200_000 {
        format!("{} min", ms / 60_000)
    } else if ms < 172_800_000 {
        format!("{} h", ms / 3_600_000)
    } else {
        format!("{} days", ms / 86_400_000)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use blockhook_sig::sign;

    const SECRET: &str = "sck_QOoPSlHDSsgXYeNyTP2i0ug1HKLRjHw9Ug7mCc1Q0";
    const T: u64 = 1_743_060_268_123;
    const BODY: &[u8] = br#"{"orderNo":"A1","amount":"2000.00","id":8210003616,"memo":null}"#;

    fn v2(mode: Mode, body: &[u8], t: u64, secret: &str) -> String {
        sign(secret.as_bytes(), mode, body, t).unwrap().to_hex()
    }

    fn blockatm<'a>(body: &'a [u8], time: &'a str, sig: &'a str, secret: &'a str) -> Input<'a> {
        Input {
            body,
            request_time: Some(time),
            signature_v2: Some(sig),
            secret,
            window_ms: 300_000,
            ..Input::default()
        }
    }

    fn codes(e: &Explanation) -> Vec<&'static str> {
        e.mistakes.iter().map(Mistake::code).collect()
    }

    #[test]
    fn a_correct_request_matches_in_its_mode_and_shows_both_messages() {
        let t = T.to_string();
        let sig = v2(Mode::Sorted, BODY, T, SECRET);
        let e = explain(&blockatm(BODY, &t, &sig, SECRET));
        assert_eq!(e.matched(), vec![DebugMode::Sorted]);
        assert!(e.mistakes.is_empty(), "{:?}", e.mistakes);
        assert_eq!(
            e.modes[0].message.as_deref().unwrap(),
            "amount=2000.00&id=8210003616&orderNo=A1&time=1743060268123"
        );
        assert_eq!(
            e.modes[1].message.as_deref().unwrap(),
            format!("{}&time={t}", std::str::from_utf8(BODY).unwrap())
        );
        assert_eq!(e.modes[0].expected.as_deref(), Some(sig.as_str()));
        assert!(e.verdict().starts_with("match"), "{}", e.verdict());
        assert!(
            !e.to_text().contains(SECRET),
            "the secret is never in the output"
        );
    }

    #[test]
    fn a_re_serialised_body_is_named() {
        let t = T.to_string();
        let sig = v2(Mode::Raw, BODY, T, SECRET);
        // What `json.dumps(json.loads(body), indent=2)` would hand a receiver, keys kept.
        let pretty = respace(std::str::from_utf8(BODY).unwrap(), Some(2));
        let e = explain(&blockatm(pretty.as_bytes(), &t, &sig, SECRET));
        assert!(!e.is_match());
        assert_eq!(
            e.mistakes[0],
            Mistake::ReserialisedBody {
                mode: DebugMode::Raw,
                how: "compacted (whitespace removed)"
            }
        );
        // And the other way: the sender sent Python-spaced JSON, the receiver compacted it.
        let spaced = respace(std::str::from_utf8(BODY).unwrap(), None);
        let sig = v2(Mode::Raw, spaced.as_bytes(), T, SECRET);
        let e = explain(&blockatm(BODY, &t, &sig, SECRET));
        assert_eq!(codes(&e), vec!["reserialised-body"]);
        // Keys reordered by the receiver's JSON library.
        let sorted =
            serde_json::to_string(&sort_keys(serde_json::from_slice(BODY).unwrap())).unwrap();
        let sig = v2(Mode::Raw, sorted.as_bytes(), T, SECRET);
        let e = explain(&blockatm(BODY, &t, &sig, SECRET));
        assert!(matches!(
            e.mistakes[0],
            Mistake::ReserialisedBody { how, .. } if how.contains("reordered")
        ));
    }

    #[test]
    fn the_wrong_mode_is_named() {
        let t = T.to_string();
        let sig = v2(Mode::Sorted, BODY, T, SECRET);
        let mut input = blockatm(BODY, &t, &sig, SECRET);
        input.expected_mode = Some(DebugMode::Raw);
        let e = explain(&input);
        assert_eq!(e.matched(), vec![DebugMode::Sorted]);
        assert_eq!(
            e.mistakes,
            vec![Mistake::WrongMode {
                expected: DebugMode::Raw,
                matched: DebugMode::Sorted
            }]
        );
        assert!(e.mistakes[0].fix().contains("sorted"));
    }

    #[test]
    fn a_time_in_seconds_is_named() {
        // The receiver used the time in seconds (or the sender signed seconds).
        let secs = (T / 1000).to_string();
        let sig = v2(Mode::Sorted, BODY, T, SECRET);
        let e = explain(&blockatm(BODY, &secs, &sig, SECRET));
        assert!(!e.is_match());
        assert!(codes(&e).contains(&"time-units"), "{:?}", e.mistakes);
        assert!(e.to_text().contains("looks like Unix seconds"));
        // A whole-second time is recovered exactly: the signature matches with t × 1000.
        let whole = 1_743_060_268_000u64;
        let sig = v2(Mode::Sorted, BODY, whole, SECRET);
        let secs = (whole / 1000).to_string();
        let e = explain(&blockatm(BODY, &secs, &sig, SECRET));
        assert!(
            e.mistakes
                .iter()
                .any(|m| matches!(m, Mistake::TimeUnits { detail, .. }
                if detail.contains("time=1743060268000"))),
            "{:?}",
            e.mistakes
        );
        // A sender that signed seconds while sending milliseconds.
        let sig = v2(Mode::Raw, BODY, whole / 1000, SECRET);
        let e = explain(&blockatm(BODY, &whole.to_string(), &sig, SECRET));
        assert!(
            e.mistakes
                .iter()
                .any(|m| matches!(m, Mistake::TimeUnits { detail, .. }
                if detail.contains("time=1743060268")))
        );
    }

    #[test]
    fn a_secret_without_its_prefix_is_named() {
        let t = T.to_string();
        let sig = v2(Mode::Sorted, BODY, T, SECRET);
        let bare = SECRET.strip_prefix("sck_").unwrap();
        let e = explain(&blockatm(BODY, &t, &sig, bare));
        assert_eq!(
            e.mistakes,
            vec![Mistake::SecretForm {
                mode: DebugMode::Sorted,
                detail: "with sck_ added in front of the secret: the secret given lacks its prefix"
            }]
        );
        // The other way: the sender signed with the bare secret.
        let sig = v2(Mode::Sorted, BODY, T, bare);
        let e = explain(&blockatm(BODY, &t, &sig, SECRET));
        assert_eq!(codes(&e), vec!["secret-form"]);
    }

    #[test]
    fn standard_webhooks_match_and_their_mistakes() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let key = StandardSecret::parse(secret).unwrap();
        let body = br#"{"test": 2432232314}"#;
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let sig = standard::sign(key.key(), id, 1_614_265_330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let input = |secret: &'static str, ts: &'static str, body: &'static [u8]| Input {
            body,
            webhook_id: Some(id),
            webhook_timestamp: Some(ts),
            webhook_signature: Some(Box::leak(sig.clone().into_boxed_str())),
            secret,
            window_ms: 300_000,
            ..Input::default()
        };
        let e = explain(&input(secret, "1614265330", body));
        assert_eq!(e.matched(), vec![DebugMode::Standard]);
        assert_eq!(
            e.modes[0].message.as_deref().unwrap(),
            r#"msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}"#
        );
        // Without whsec_.
        let e = explain(&input(
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "1614265330",
            body,
        ));
        assert_eq!(codes(&e), vec!["secret-form"]);
        // Timestamp in ms.
        let e = explain(&input(secret, "1614265330000", body));
        assert!(codes(&e).contains(&"time-units"), "{:?}", e.mistakes);
        // Re-serialised (compacted) body.
        let e = explain(&input(secret, "1614265330", br#"{"test":2432232314}"#));
        assert_eq!(codes(&e), vec!["reserialised-body"]);
    }

    #[test]
    fn whsec_used_as_text_is_named() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = b"{}";
        let sig = standard_entry(secret.as_bytes(), &standard_message("m", "5", body)).unwrap();
        let e = explain(&Input {
            body,
            webhook_id: Some("m"),
            webhook_timestamp: Some("5"),
            webhook_signature: Some(&sig),
            secret,
            ..Input::default()
        });
        assert!(
            matches!(&e.mistakes[0], Mistake::SecretForm { detail, .. } if detail.contains("not decoded"))
        );
    }

    #[test]
    fn stale_and_malformed_headers() {
        let t = T.to_string();
        let sig = v2(Mode::Sorted, BODY, T, SECRET);
        let mut input = blockatm(BODY, &t, &sig, SECRET);
        input.now_ms = Some(T + 600_000);
        let e = explain(&input);
        assert!(e.is_match());
        assert_eq!(codes(&e), vec!["stale-time"]);
        assert!(e.mistakes[0].describe().contains("10 min in the past"));

        let quoted = format!("\"sha256={sig}\"");
        let e = explain(&blockatm(BODY, &t, &quoted, SECRET));
        assert!(e.is_match());
        assert_eq!(codes(&e), vec!["malformed-header"]);

        let e = explain(&blockatm(BODY, &t, "abc", SECRET));
        assert!(!e.is_match());
        assert_eq!(codes(&e), vec!["malformed-header"]);

        let e = explain(&blockatm(BODY, "17430602681.5", &sig, SECRET));
        assert!(!e.is_match());
        assert!(codes(&e).contains(&"malformed-header"));
    }

    #[test]
    fn a_body_that_is_not_json_still_explains_raw() {
        let t = T.to_string();
        let sig = v2(Mode::Raw, b"not json", T, SECRET);
        let e = explain(&blockatm(b"not json", &t, &sig, SECRET));
        assert_eq!(e.matched(), vec![DebugMode::Raw]);
        assert!(e.modes[0].message.is_err());
    }

    #[test]
    fn respace_and_compact_round_trip() {
        let text = r#"{"a":[1,{"b":"x, y: z"}],"c":{},"d":[]}"#;
        assert_eq!(compact(&respace(text, Some(2))), text);
        assert_eq!(compact(&respace(text, None)), text);
        assert_eq!(
            respace(text, None),
            r#"{"a": [1, {"b": "x, y: z"}], "c": {}, "d": []}"#
        );
        // What serde_json's pretty printer writes, for the same keys in the same order.
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            respace(text, Some(2)),
            serde_json::to_string_pretty(&v).unwrap()
        );
    }
}
