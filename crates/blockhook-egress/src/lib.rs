//! blockhook's only way out to the network: one webhook POST to a merchant endpoint.
//!
//! [`Client::send`] takes a [`Request`] (URL, headers, body) and always returns a
//! [`Response`]: a received HTTP response of any status has `failure: None` (the caller judges
//! the status), and everything else (refused by policy, DNS, connect, TLS, timeout, protocol)
//! is a [`FailClass`] with a short `detail`. `send` never returns `Err`, so every attempt can be
//! recorded. [`Error`] is only for building a client from a bad [`EgressConfig`].
//!
//! # SSRF: where addresses are vetted
//! Merchants choose the URLs, so the client must not become a way into the operator's network.
//! The [address policy](ip) forbids loopback, private, CGNAT, link-local (cloud metadata),
//! multicast, reserved and documentation ranges, IPv6 ULA/link-local/site-local, and the
//! IPv6 forms that carry a forbidden IPv4 address (mapped, NAT64, 6to4, Teredo), unless an
//! operator exempts a network with `allow_nets`.
//!
//! The policy is applied *inside the DNS resolver* reqwest uses (`resolver`): it resolves
//! the name, drops every forbidden address and fails when none is left, and reqwest dials only
//! what it returns. There is no check-then-lookup gap for DNS rebinding to exploit. URLs whose
//! host is an IP literal never reach a resolver, so `send` checks them (and the scheme and
//! URL credentials) before any socket is opened. Redirects are never followed and
//! environment proxies are ignored, since either would let a request reach an address the
//! policy never saw. `resolve_overrides` (like curl's `--resolve`) go through the same vetting.
//!
//! # Transport
//! rustls with the ring provider, the webpki roots plus `extra_ca_pem`; ALPN offers `h2`
//! and `http/1.1`, so HTTP/2 is used when the server offers it. Keep-alive connections are
//! pooled per host. One deadline (`total_timeout`) covers connecting, the response head and
//! reading the body; at most `max_response_bytes` of the body are read, after which the
//! connection is dropped rather than drained.
//!
//! # Failure classes
//! Errors are classified by walking the error's source chain: the resolver's own refusal is
//! [`FailClass::Blocked`], its lookup failures [`FailClass::Dns`]; any timeout is
//! [`FailClass::Timeout`]; a `rustls::Error` anywhere is [`FailClass::Tls`]; a connect-phase
//! error is [`FailClass::ConnectRefused`] (RST to the SYN) or [`FailClass::Connect`]; an
//! error after the connection was up and before a full response head (reset, closed early,
//! malformed) is [`FailClass::Protocol`]. Once the response head has arrived the attempt
//! has a status: a body that then fails or stalls is kept as far as it was read, marked
//! `truncated`, with a `detail`, and `failure` stays `None`.
#![forbid(unsafe_code)]

mod client;
mod error;
pub mod ip;
mod resolver;
mod tls;

pub use client::{Client, EgressConfig, Request, Response};
pub use error::{Error, FailClass};
pub use ip::AddressPolicy;
