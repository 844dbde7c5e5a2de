//! The [`Verifier`]: secrets, mode, window and replay cache, applied to one request at a time.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use blockhook_sig::standard::{self, StandardSecret};
use blockhook_sig::{HeaderSource, Signature, VerifyMode, VerifyOptions, headers};

use crate::replay::ReplayCache;
use crate::{Error, EventKind, Webhook};

/// Verifies webhooks for one endpoint: build it once at start-up, share it (`Arc<Verifier>`)
/// between requests. It is `Send + Sync`; the replay cache sits behind a mutex.
pub struct Verifier {
    secrets: Vec<Vec<u8>>,
    scheme: Scheme,
    options: VerifyOptions,
    replay: Option<Mutex<ReplayCache>>,
    clock: Option<Clock>,
}

/// Which headers and signature a [`Verifier`] checks: one scheme per endpoint, as its signing
/// mode says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scheme {
    /// `BlockATM-Signature-V2` over the sorted or raw message with `BlockATM-Request-Time`
    /// (signing modes `sorted` and `raw`; which ones is [`VerifierBuilder::mode`]).
    #[default]
    BlockAtm,
    /// Standard Webhooks (signing mode `standard`): `webhook-id`, `webhook-timestamp` and
    /// `webhook-signature` with a `whsec_` secret.
    Standard,
}

impl Scheme {
    /// `"blockatm"` or `"standard"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BlockAtm => "blockatm",
            Self::Standard => "standard",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A source of "now" in Unix milliseconds.
type Clock = Box<dyn Fn() -> u64 + Send + Sync>;

/// Configures a [`Verifier`]: see [`Verifier::builder`].
#[derive(Default)]
pub struct VerifierBuilder {
    secrets: Vec<Vec<u8>>,
    scheme: Scheme,
    mode: VerifyMode,
    window_ms: Option<u64>,
    replay_capacity: Option<usize>,
    clock: Option<Clock>,
}

impl Verifier {
    /// How many signatures the replay cache holds by default.
    pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;

    /// The contract's default window: 5 minutes.
    pub const DEFAULT_WINDOW: Duration = Duration::from_millis(VerifyOptions::DEFAULT_WINDOW_MS);

    /// Starts a configuration: no secret yet, mode `sorted`, 5-minute window, no replay cache.
    pub fn builder() -> VerifierBuilder {
        VerifierBuilder::default()
    }

    /// A verifier with one secret and the defaults (mode `sorted`, 5-minute window, no replay
    /// cache). Errors: an empty secret.
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, Error> {
        Self::builder().secret(secret).build()
    }

    /// Verifies a request against the current time (the system clock, or the builder's
    /// [`clock`](VerifierBuilder::clock)). `headers` is any [`HeaderSource`]
    /// (names are matched case-insensitively); `body` must be the raw bytes received, before
    /// any JSON parsing.
    ///
    /// Checks, in order: the time and signature headers are present, the time is a plain
    /// integer inside the window, the signature is well formed and matches one of the secrets
    /// (in the configured mode), the body is a JSON object, and (with replay protection) this
    /// signature was not accepted before.
    pub fn verify(
        &self,
        headers: &(impl HeaderSource + ?Sized),
        body: &[u8],
    ) -> Result<Webhook, Error> {
        let now = self.clock.as_ref().map_or_else(now_ms, |clock| clock());
        self.verify_at(headers, body, now)
    }

    /// [`Verifier::verify`] at a given time (`now_ms`, Unix milliseconds): for tests.
    pub fn verify_at(
        &self,
        headers: &(impl HeaderSource + ?Sized),
        body: &[u8],
        now_ms: u64,
    ) -> Result<Webhook, Error> {
        let secrets: Vec<&[u8]> = self.secrets.iter().map(Vec::as_slice).collect();
        let checked = match self.scheme {
            Scheme::BlockAtm => {
                let verified =
                    blockhook_sig::verify(headers, body, &secrets, &self.options, now_ms)?;
                let signature: Signature = headers
                    .header(headers::SIGNATURE_V2)
                    .ok_or(blockhook_sig::Error::MissingHeader(headers::SIGNATURE_V2))?
                    .parse()?;
                Checked {
                    time_ms: verified.time_ms,
                    mode: verified.mode,
                    secret_index: verified.secret_index,
                    signature: *signature.as_bytes(),
                    event_header: headers::EVENT,
                    event_id_header: headers::EVENT_ID,
                }
            }
            Scheme::Standard => {
                let header = |name| {
                    headers
                        .header(name)
                        .ok_or(blockhook_sig::Error::MissingHeader(name))
                };
                let verified = standard::verify_which(
                    header(standard::WEBHOOK_ID)?,
                    header(standard::WEBHOOK_TIMESTAMP)?,
                    header(standard::WEBHOOK_SIGNATURE)?,
                    body,
                    &secrets,
                    self.options.window_ms / 1000,
                    now_ms / 1000,
                )?;
                Checked {
                    time_ms: verified.timestamp_s.saturating_mul(1000),
                    // The body is signed byte for byte, as in `raw`.
                    mode: blockhook_sig::Mode::Raw,
                    secret_index: verified.key_index,
                    signature: verified.signature,
                    event_header: headers::EVENT_TYPE,
                    event_id_header: standard::WEBHOOK_ID,
                }
            }
        };
        let value: Value = serde_json::from_slice(body).map_err(|e| Error::Body(e.to_string()))?;
        if !value.is_object() {
            return Err(Error::Body("the top level is not an object".to_owned()));
        }
        if let Some(cache) = &self.replay {
            let expires_ms = checked.time_ms.saturating_add(self.options.window_ms);
            let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
            if !cache.insert(checked.signature, expires_ms, now_ms) {
                return Err(Error::Replay);
            }
        }
        let event_header = headers
            .header(checked.event_header)
            .unwrap_or_default()
            .to_owned();
        Ok(Webhook {
            event: EventKind::parse(&event_header),
            event_header,
            request_time_ms: checked.time_ms,
            event_id: headers.header(checked.event_id_header).map(str::to_owned),
            attempt: headers
                .header(headers::ATTEMPT)
                .and_then(|a| a.trim().parse().ok()),
            scheme: self.scheme,
            mode: checked.mode,
            secret_index: checked.secret_index,
            body: body.to_vec(),
            value,
        })
    }

    /// Which scheme is checked.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The accepted signing mode(s).
    pub fn mode(&self) -> VerifyMode {
        self.options.mode
    }

    /// The time window: requests this far from now, or farther, are refused.
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.options.window_ms)
    }

    /// How many secrets are tried.
    pub fn secret_count(&self) -> usize {
        self.secrets.len()
    }

    /// Whether exact replays are refused.
    pub fn replay_protection(&self) -> bool {
        self.replay.is_some()
    }
}

/// What either scheme's check found, before the body and replay checks.
struct Checked {
    time_ms: u64,
    mode: blockhook_sig::Mode,
    secret_index: usize,
    signature: [u8; 32],
    /// Where the event type is read from.
    event_header: &'static str,
    /// Where the event id is read from.
    event_id_header: &'static str,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.secrets.len()),
            )
            .field("scheme", &self.scheme)
            .field("mode", &self.options.mode)
            .field("window_ms", &self.options.window_ms)
            .field("replay_protection", &self.replay.is_some())
            .field(
                "clock",
                &if self.clock.is_some() {
                    "custom"
                } else {
                    "system"
                },
            )
            .finish()
    }
}

impl VerifierBuilder {
    /// Adds a secret, used exactly as shown in the dashboard (`sck_...`, not decoded). Give
    /// two during a rotation: a request is accepted if any secret matches.
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secrets.push(secret.as_ref().to_vec());
        self
    }

    /// Adds several secrets (see [`VerifierBuilder::secret`]).
    pub fn secrets<I>(self, secrets: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        secrets.into_iter().fold(self, Self::secret)
    }

    /// Verifies Standard Webhooks instead of BlockATM signatures (for an endpoint whose signing
    /// mode is `standard`). Secrets are then `whsec_` secrets as shown (the prefix is optional),
    /// and the window applies to `webhook-timestamp`, in seconds.
    pub fn scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// Which signing mode(s) to accept: the endpoint's (`sorted` by default, or `raw`), or
    /// `either` if you do not know it. Not used by [`Scheme::Standard`].
    pub fn mode(mut self, mode: VerifyMode) -> Self {
        self.mode = mode;
        self
    }

    /// The time window (default 5 minutes). The contract advises never more than 15 minutes:
    /// the window is what makes a captured request useless later.
    pub fn window(mut self, window: Duration) -> Self {
        self.window_ms = Some(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Refuse an exact replay of an accepted request ([`Error::Replay`]), remembering up to
    /// [`Verifier::DEFAULT_REPLAY_CAPACITY`] signatures; `false` turns it off again.
    pub fn replay_protection(mut self, on: bool) -> Self {
        self.replay_capacity = on.then_some(Verifier::DEFAULT_REPLAY_CAPACITY);
        self
    }

    /// Turns replay protection on with a cache of `capacity` signatures. When the cache is
    /// full the oldest entry is forgotten, so size it above your peak requests per window.
    pub fn replay_cache_capacity(mut self, capacity: usize) -> Self {
        self.replay_capacity = Some(capacity);
        self
    }

    /// Reads "now" (Unix milliseconds) from `clock` instead of the system clock in
    /// [`Verifier::verify`], and so in the axum extractor: for tests whose sender runs on a
    /// manual clock. [`Verifier::verify_at`] is unaffected.
    pub fn clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Some(Box::new(clock));
        self
    }

    /// Builds the verifier. Errors: no secret, or an empty one
    /// ([`blockhook_sig::Error::EmptySecret`]); with [`Scheme::Standard`], a secret that is not
    /// base64 ([`blockhook_sig::Error::InvalidStandardSecret`]).
    pub fn build(self) -> Result<Verifier, Error> {
        if self.secrets.is_empty() || self.secrets.iter().any(Vec::is_empty) {
            return Err(blockhook_sig::Error::EmptySecret.into());
        }
        let secrets = match self.scheme {
            Scheme::BlockAtm => self.secrets,
            // The HMAC key is the decoded bytes, not the text.
            Scheme::Standard => self
                .secrets
                .iter()
                .map(|s| {
                    let text = std::str::from_utf8(s).map_err(|_| {
                        blockhook_sig::Error::InvalidStandardSecret("it is not text")
                    })?;
                    Ok(StandardSecret::parse_lenient(text)?.key().to_vec())
                })
                .collect::<Result<_, Error>>()?,
        };
        Ok(Verifier {
            secrets,
            scheme: self.scheme,
            options: VerifyOptions {
                mode: self.mode,
                window_ms: self.window_ms.unwrap_or(VerifyOptions::DEFAULT_WINDOW_MS),
            },
            replay: self
                .replay_capacity
                .map(|c| Mutex::new(ReplayCache::new(c))),
            clock: self.clock,
        })
    }
}

impl fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.secrets.len()),
            )
            .field("scheme", &self.scheme)
            .field("mode", &self.mode)
            .field("window_ms", &self.window_ms)
            .field("replay_capacity", &self.replay_capacity)
            .field(
                "clock",
                &if self.clock.is_some() {
                    "custom"
                } else {
                    "system"
                },
            )
            .finish()
    }
}

/// The current Unix time in milliseconds (0 if the clock is before 1970).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use blockhook_sig::{Mode, sign};

    const T: u64 = 1_743_060_268_000;
    const BODY: &[u8] = br#"{"orderNo":"OrderNo_1","amount":"2000.00","id":8210003616}"#;

    fn headers(secret: &str, mode: Mode, body: &[u8], t: u64) -> Vec<(String, String)> {
        let sig = sign(secret.as_bytes(), mode, body, t).unwrap().to_string();
        vec![
            ("BlockATM-Event".into(), "payment".into()),
            ("BlockATM-Request-Time".into(), t.to_string()),
            ("BlockATM-Signature-V2".into(), sig),
            ("BlockHook-Event-Id".into(), "evt_1".into()),
            ("BlockHook-Attempt".into(), "3".into()),
        ]
    }

    #[test]
    fn accepts_and_exposes_everything() {
        let v = Verifier::new("sck_a").unwrap();
        let hook = v
            .verify_at(&headers("sck_a", Mode::Sorted, BODY, T), BODY, T + 1)
            .unwrap();
        assert_eq!(*hook.event(), EventKind::Payment);
        assert_eq!(hook.event_header(), "payment");
        assert_eq!(hook.request_time_ms(), T);
        assert_eq!(hook.event_id(), Some("evt_1"));
        assert_eq!(hook.attempt(), Some(3));
        assert_eq!(hook.mode(), Mode::Sorted);
        assert_eq!(hook.secret_index(), 0);
        assert_eq!(hook.body(), BODY);
        assert_eq!(hook.value()["amount"], "2000.00");
        assert_eq!(hook.order_no(), Some("OrderNo_1"));
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Payment {
            order_no: String,
            id: u64,
        }
        let p: Payment = hook.json().unwrap();
        assert_eq!((p.order_no.as_str(), p.id), ("OrderNo_1", 8_210_003_616));
        assert_eq!(hook.clone().into_body(), BODY);
        assert!(hook.into_value().is_object());
    }

    #[test]
    fn optional_headers_may_be_absent() {
        let v = Verifier::new("sck_a").unwrap();
        let mut h = headers("sck_a", Mode::Sorted, BODY, T);
        h.retain(|(k, _)| k.starts_with("BlockATM-R") || k.starts_with("BlockATM-S"));
        let hook = v.verify_at(&h, BODY, T).unwrap();
        assert_eq!(*hook.event(), EventKind::Other(String::new()));
        assert_eq!((hook.event_id(), hook.attempt()), (None, None));
    }

    #[test]
    fn builder_refuses_missing_or_empty_secrets() {
        assert!(Verifier::builder().build().unwrap_err().is_config());
        assert!(Verifier::new("").unwrap_err().is_config());
        assert!(Verifier::builder().secrets(["a", ""]).build().is_err());
    }

    #[test]
    fn builder_settings_are_kept_and_debug_hides_secrets() {
        let v = Verifier::builder()
            .secrets(["sck_one", "sck_two"])
            .mode(VerifyMode::Either)
            .window(Duration::from_secs(60))
            .replay_protection(true)
            .build()
            .unwrap();
        assert_eq!(v.mode(), VerifyMode::Either);
        assert_eq!(v.window(), Duration::from_secs(60));
        assert_eq!(v.secret_count(), 2);
        assert!(v.replay_protection());
        let debug = format!("{v:?}");
        assert!(!debug.contains("sck_"), "{debug}");
        assert!(debug.contains("2 redacted"), "{debug}");
        assert_eq!(Verifier::DEFAULT_WINDOW, Duration::from_secs(300));
        let b = format!("{:?}", Verifier::builder().secret("sck_x"));
        assert!(!b.contains("sck_x"), "{b}");
        assert!(
            !Verifier::builder()
                .secret("a")
                .replay_protection(true)
                .replay_protection(false)
                .build()
                .unwrap()
                .replay_protection()
        );
    }

    #[test]
    fn verify_reads_the_configured_clock() {
        let h = headers("k", Mode::Sorted, BODY, T);
        let system = Verifier::new("k").unwrap();
        assert_eq!(system.verify(&h, BODY).unwrap_err().reason(), "too_old"); // T is March 2025
        let fixed = Verifier::builder()
            .secret("k")
            .clock(|| T + 1_000)
            .build()
            .unwrap();
        assert_eq!(fixed.verify(&h, BODY).unwrap().request_time_ms(), T);
        let late = Verifier::builder()
            .secret("k")
            .clock(|| T + 300_000)
            .build()
            .unwrap();
        assert_eq!(late.verify(&h, BODY).unwrap_err().reason(), "too_old");
        let early = Verifier::builder()
            .secret("k")
            .clock(|| T - 300_000)
            .build()
            .unwrap();
        assert_eq!(early.verify(&h, BODY).unwrap_err().reason(), "too_new");
        assert!(format!("{fixed:?}").contains("custom"));
    }

    #[test]
    fn raw_mode_body_must_still_be_a_json_object() {
        let v = Verifier::builder()
            .secret("k")
            .mode(VerifyMode::Raw)
            .build()
            .unwrap();
        for body in [&b"not json"[..], b"[1,2]", b"{\"a\":1e400}"] {
            let err = v
                .verify_at(&headers("k", Mode::Raw, body, T), body, T)
                .unwrap_err();
            assert!(matches!(err, Error::Body(_)), "{err:?}");
            assert_eq!(err.reason(), "not_json_object");
        }
    }

    #[test]
    fn replay_key_ignores_signature_case() {
        let v = Verifier::builder()
            .secret("k")
            .replay_protection(true)
            .build()
            .unwrap();
        let mut h = headers("k", Mode::Sorted, BODY, T);
        v.verify_at(&h, BODY, T).unwrap();
        h[2].1 = h[2].1.to_uppercase();
        assert_eq!(v.verify_at(&h, BODY, T).unwrap_err(), Error::Replay);
    }

    #[test]
    fn replays_are_refused_only_with_protection_and_only_exact_ones() {
        let plain = Verifier::new("k").unwrap();
        let guarded = Verifier::builder()
            .secret("k")
            .replay_cache_capacity(10)
            .build()
            .unwrap();
        let h = headers("k", Mode::Sorted, BODY, T);
        for _ in 0..3 {
            plain.verify_at(&h, BODY, T).unwrap();
        }
        guarded.verify_at(&h, BODY, T).unwrap();
        assert_eq!(
            guarded.verify_at(&h, BODY, T + 10).unwrap_err(),
            Error::Replay
        );
        // A retry: same body, fresh time, new signature.
        let retry = headers("k", Mode::Sorted, BODY, T + 60_000);
        guarded.verify_at(&retry, BODY, T + 60_000).unwrap();
        // A rejected request is not recorded.
        let wrong = headers("other", Mode::Sorted, BODY, T + 1);
        assert_eq!(
            guarded.verify_at(&wrong, BODY, T + 1).unwrap_err().reason(),
            "mismatch"
        );
        // After the window, the window check refuses the old request (not the cache).
        assert_eq!(
            guarded
                .verify_at(&h, BODY, T + 300_000)
                .unwrap_err()
                .reason(),
            "too_old"
        );
    }

    const WHSEC_NEW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const WHSEC_OLD: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX";

    fn standard_headers(secrets: &[&str], id: &str, ts_s: u64) -> Vec<(String, String)> {
        let keys: Vec<Vec<u8>> = secrets
            .iter()
            .map(|s| StandardSecret::parse(s).unwrap().key().to_vec())
            .collect();
        let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        vec![
            ("webhook-id".into(), id.into()),
            ("webhook-timestamp".into(), ts_s.to_string()),
            (
                "webhook-signature".into(),
                standard::sign_all(&keys, id, ts_s, BODY).unwrap(),
            ),
            ("BlockHook-Event-Type".into(), "Payment".into()),
            ("BlockHook-Attempt".into(), "2".into()),
        ]
    }

    #[test]
    fn standard_scheme_verifies_and_exposes_the_headers() {
        let v = Verifier::builder()
            .secret(WHSEC_NEW)
            .scheme(Scheme::Standard)
            .replay_protection(true)
            .build()
            .unwrap();
        assert_eq!(v.scheme(), Scheme::Standard);
        let ts = T / 1000;
        let h = standard_headers(&[WHSEC_NEW], "evt_9", ts);
        let hook = v.verify_at(&h, BODY, T + 4_000).unwrap();
        assert_eq!(hook.scheme(), Scheme::Standard);
        assert_eq!(*hook.event(), EventKind::Payment);
        assert_eq!(hook.event_id(), Some("evt_9"));
        assert_eq!(hook.attempt(), Some(2));
        assert_eq!(hook.request_time_ms(), ts * 1000);
        assert_eq!(hook.order_no(), Some("OrderNo_1"));
        // The same request again is a replay; a BlockATM verifier finds none of its headers.
        assert_eq!(v.verify_at(&h, BODY, T + 5_000).unwrap_err(), Error::Replay);
        let blockatm = Verifier::new(WHSEC_NEW).unwrap();
        assert_eq!(
            blockatm.verify_at(&h, BODY, T).unwrap_err().reason(),
            "missing_header"
        );
    }

    #[test]
    fn standard_scheme_during_a_rotation_and_its_refusals() {
        let ts = T / 1000;
        // The sender lists the new then the old signature; a receiver still on the old secret
        // accepts, and one that has both reports which matched.
        let both = standard_headers(&[WHSEC_NEW, WHSEC_OLD], "evt_1", ts);
        let old_only = Verifier::builder()
            .secret(WHSEC_OLD.trim_start_matches("whsec_")) // the prefix is optional
            .scheme(Scheme::Standard)
            .build()
            .unwrap();
        assert_eq!(
            old_only.verify_at(&both, BODY, T).unwrap().secret_index(),
            0
        );
        let two = Verifier::builder()
            .secrets([WHSEC_OLD, WHSEC_NEW])
            .scheme(Scheme::Standard)
            .build()
            .unwrap();
        assert_eq!(two.verify_at(&both, BODY, T).unwrap().secret_index(), 0);
        let new_only = standard_headers(&[WHSEC_NEW], "evt_1", ts);
        assert_eq!(two.verify_at(&new_only, BODY, T).unwrap().secret_index(), 1);

        assert_eq!(
            old_only.verify_at(&new_only, BODY, T).unwrap_err().reason(),
            "mismatch"
        );
        assert_eq!(
            two.verify_at(&new_only, b"{}", T).unwrap_err().reason(),
            "mismatch"
        );
        assert_eq!(
            two.verify_at(&new_only, BODY, T + 301_000)
                .unwrap_err()
                .reason(),
            "too_old"
        );
        assert_eq!(
            two.verify_at(&new_only, BODY, T - 301_000)
                .unwrap_err()
                .reason(),
            "too_new"
        );
        let bad = Verifier::builder()
            .secret("not base64!")
            .scheme(Scheme::Standard)
            .build()
            .unwrap_err();
        assert!(bad.is_config());
    }
}
