//! Why a webhook was refused, with a precise message and a short reason code.

use blockhook_sig::Error as SigError;

/// Why [`Verifier::verify`](crate::Verifier::verify) refused a request (or why a
/// [`Verifier`](crate::Verifier) could not be built).
///
/// `Display` gives the precise explanation (log it); [`Error::reason`] a short stable code
/// (answer it, e.g. as the body of a `401`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The headers, time, signature or body failed the contract's checks: see the wrapped
    /// error for which one (its message says exactly what was wrong).
    #[error(transparent)]
    Signature(#[from] SigError),

    /// The request is valid but this exact signature was already accepted within the window:
    /// a captured request sent again. (blockhook's own retries and resends carry a fresh time,
    /// hence a new signature, and are not replays.)
    #[error(
        "replayed request: a request with this exact BlockATM-Signature-V2 was already accepted \
         within the time window"
    )]
    Replay,

    /// The signature matched, but the body is not a JSON object that `serde_json` can read
    /// (only possible in `raw` mode, or with numbers beyond `f64` range).
    #[error("body passed the signature check but is not a readable JSON object: {0}")]
    Body(String),
}

impl Error {
    /// A short, stable code for the failure: the same codes as the ready-made verifiers of
    /// `receivers/` (`missing_header`, `time_not_integer`, `too_old`, `too_new`,
    /// `malformed_signature`, `not_json_object`, `mismatch`), plus `replay`, and
    /// `config_error` for a verifier built without a usable secret.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Signature(e) => match e {
                SigError::MissingHeader(_) => "missing_header",
                SigError::TimeNotInteger | SigError::StandardTimestamp => "time_not_integer",
                SigError::TooOld { .. } | SigError::StandardTooOld { .. } => "too_old",
                SigError::TooNew { .. } | SigError::StandardTooNew { .. } => "too_new",
                SigError::MalformedSignature | SigError::MalformedStandardSignature => {
                    "malformed_signature"
                }
                SigError::NotAnObject
                | SigError::InvalidJson { .. }
                | SigError::TooDeep
                | SigError::DuplicateKey(_) => "not_json_object",
                SigError::Mismatch => "mismatch",
                SigError::EmptySecret
                | SigError::InvalidKey(_)
                | SigError::InvalidStandardSecret(_) => "config_error",
            },
            Self::Replay => "replay",
            Self::Body(_) => "not_json_object",
        }
    }

    /// Whether the fault is the receiver's configuration (no usable secret) rather than the
    /// request: answer such errors with a `500`, not a `401`.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Self::Signature(
                SigError::EmptySecret
                    | SigError::InvalidKey(_)
                    | SigError::InvalidStandardSecret(_)
            )
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_messages() {
        let cases: &[(Error, &str, &str)] = &[
            (
                SigError::MissingHeader("BlockATM-Signature-V2").into(),
                "missing_header",
                "missing header BlockATM-Signature-V2",
            ),
            (
                SigError::TimeNotInteger.into(),
                "time_not_integer",
                "not a plain integer",
            ),
            (
                SigError::TooOld { skew_ms: 7 }.into(),
                "too_old",
                "7 ms in the past",
            ),
            (
                SigError::TooNew { skew_ms: 9 }.into(),
                "too_new",
                "9 ms in the future",
            ),
            (
                SigError::MalformedSignature.into(),
                "malformed_signature",
                "64 hexadecimal",
            ),
            (
                SigError::NotAnObject.into(),
                "not_json_object",
                "not a JSON object",
            ),
            (SigError::TooDeep.into(), "not_json_object", "deeper"),
            (
                SigError::DuplicateKey("k".into()).into(),
                "not_json_object",
                "twice",
            ),
            (
                SigError::InvalidJson {
                    offset: 3,
                    reason: "x",
                }
                .into(),
                "not_json_object",
                "at byte 3",
            ),
            (
                SigError::Mismatch.into(),
                "mismatch",
                "signature does not match",
            ),
            (
                SigError::EmptySecret.into(),
                "config_error",
                "secret is empty",
            ),
            (Error::Replay, "replay", "already accepted"),
            (
                Error::Body("eof".into()),
                "not_json_object",
                "readable JSON object: eof",
            ),
        ];
        for (error, reason, text) in cases {
            assert_eq!(error.reason(), *reason, "{error:?}");
            assert!(error.to_string().contains(text), "{error} lacks {text:?}");
        }
        assert!(Error::from(SigError::EmptySecret).is_config());
        assert!(!Error::from(SigError::Mismatch).is_config());
        assert!(!Error::Replay.is_config());
    }
}
