//! The crate's one construction [`Error`], the [`FailClass`] of a failed attempt, and the
//! mapping from a transport error to its class.

use std::error::Error as StdError;
use std::fmt;
use std::io;

use crate::resolver::ResolveError;

/// Why a [`Client`](crate::Client) could not be built. Sending never fails with this: a failed
/// attempt is a [`Response`](crate::Response) whose `failure` is set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `extra_ca_pem` holds no certificate, unreadable PEM, or a certificate that cannot be a
    /// trust anchor.
    #[error("extra CA bundle: {0}")]
    ExtraCa(String),
    /// rustls refused the TLS configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// `user_agent` is not a valid HTTP header value.
    #[error("user agent is not a valid header value")]
    UserAgent,
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// Why an attempt got no HTTP response. Any received response, whatever its status, has no
/// failure class: the caller judges the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailClass {
    /// The host name did not resolve (or resolved to nothing).
    Dns,
    /// Refused before any connection was opened: scheme, credentials in the URL, or every
    /// address of the host is forbidden by the address policy.
    Blocked,
    /// The TCP connection was actively refused (RST to our SYN).
    ConnectRefused,
    /// Any other failure to establish the connection (unreachable, reset or closed during
    /// the TLS handshake, …).
    Connect,
    /// The connect timeout or the total timeout ran out before a response head arrived.
    Timeout,
    /// The TLS handshake failed: untrusted or mismatched certificate, protocol error, a
    /// non-TLS server on an `https` URL.
    Tls,
    /// The connection was established but no complete response head came back: reset,
    /// closed mid-response, malformed response.
    Protocol,
}

impl FailClass {
    /// The stable snake_case name, as stored in attempt records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Blocked => "blocked",
            Self::ConnectRefused => "connection_refused",
            Self::Connect => "connection",
            Self::Timeout => "timeout",
            Self::Tls => "tls",
            Self::Protocol => "protocol",
        }
    }
}

impl fmt::Display for FailClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest `detail` text kept for a failure.
const MAX_DETAIL: usize = 300;

/// Classify a transport error from reqwest by walking its source chain.
///
/// Order matters: our resolver's own verdicts (blocked, DNS) first, then timeouts, then TLS,
/// then connect-phase errors; anything after the connection was up is [`FailClass::Protocol`].
pub(crate) fn classify(err: &reqwest::Error) -> FailClass {
    if let Some(resolve) = chain(err).find_map(|e| e.downcast_ref::<ResolveError>()) {
        // The resolver refuses by policy (blocked) or finds no usable address (DNS).
        return match resolve {
            ResolveError::Lookup { .. } | ResolveError::NoAddresses { .. } => FailClass::Dns,
            ResolveError::Blocked { .. } => FailClass::Blocked,
        };
    }
    if err.is_timeout() || has_io_kind(err, io::ErrorKind::TimedOut) {
        return FailClass::Timeout;
    }
    if chain(err).any(is_tls_error) {
        return FailClass::Tls;
    }
    if err.is_connect() {
        if has_io_kind(err, io::ErrorKind::ConnectionRefused) {
            return FailClass::ConnectRefused;
        }
        return FailClass::Connect;
    }
    FailClass::Protocol
}

/// A short human description of a transport error: its source chain, joined with ": ",
/// without the URL (which may carry secrets in its query) and capped in length.
pub(crate) fn describe(err: reqwest::Error) -> String {
    let err = err.without_url();
    // The resolver's own words say it best (no "dns error:" prefix on a policy refusal).
    if let Some(resolve) = chain(&err).find_map(|e| e.downcast_ref::<ResolveError>()) {
        return truncate(resolve.to_string());
    }
    let mut parts: Vec<String> = Vec::new();
    for e in chain(&err) {
        let text = e.to_string();
        // Wrappers often repeat their cause's text; keep each piece once, and leave out the
        // generic outer layers ("error sending request", "client error (Connect)").
        if text.is_empty() || is_wrapper_noise(&text) || parts.iter().any(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    if parts.is_empty() {
        return truncate(err.to_string());
    }
    truncate(parts.join(": "))
}

fn is_wrapper_noise(text: &str) -> bool {
    text.starts_with("error sending request") || text.starts_with("client error (")
}

pub(crate) fn truncate(mut text: String) -> String {
    if text.len() > MAX_DETAIL {
        let mut end = MAX_DETAIL;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The error and its sources, outermost first.
fn chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |e| next_in_chain(*e))
}

/// The next error in a chain. `io::Error::source` skips the error it wraps (it returns the
/// wrapped error's source), so for a custom `io::Error` step into the wrapped error itself:
/// that is where tokio-rustls keeps its `rustls::Error`.
fn next_in_chain<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    if let Some(io) = err.downcast_ref::<io::Error>() {
        if let Some(inner) = io.get_ref() {
            return Some(inner as &(dyn StdError + 'static));
        }
    }
    err.source()
}

fn has_io_kind(err: &reqwest::Error, kind: io::ErrorKind) -> bool {
    chain(err).any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == kind)
    })
}

fn is_tls_error(err: &(dyn StdError + 'static)) -> bool {
    err.is::<rustls::Error>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_class_names_are_stable() {
        let all = [
            (FailClass::Dns, "dns"),
            (FailClass::Blocked, "blocked"),
            (FailClass::ConnectRefused, "connection_refused"),
            (FailClass::Connect, "connection"),
            (FailClass::Timeout, "timeout"),
            (FailClass::Tls, "tls"),
            (FailClass::Protocol, "protocol"),
        ];
        for (class, name) in all {
            assert_eq!(class.as_str(), name);
            assert_eq!(class.to_string(), name);
        }
    }

    #[test]
    fn chain_steps_into_wrapped_io_errors() {
        let inner = rustls::Error::General("boom".into());
        let io = io::Error::new(io::ErrorKind::InvalidData, inner);
        let found = chain(&io).any(is_tls_error);
        assert!(found, "the rustls error inside an io::Error is found");
    }

    #[test]
    fn long_details_are_cut_on_a_char_boundary() {
        let text = "é".repeat(400);
        let cut = truncate(text);
        assert!(cut.len() <= MAX_DETAIL + '…'.len_utf8());
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short".into()), "short");
    }
}
