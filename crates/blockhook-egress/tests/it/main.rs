//! Integration tests for blockhook-egress: real HTTP and TLS over loopback, no mocks of the
//! client. One test binary (modules below) so the crate links once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod delivery;
mod failures;
mod ssrf;
mod support;
mod tls;
