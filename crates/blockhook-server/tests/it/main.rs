//! Integration tests of `blockhook-server`: a real app on a loopback port, real stores (SQLite
//! always, PostgreSQL when `BLOCKHOOK_TEST_DATABASE_URL` is set), real HTTPS receivers signed by
//! a test CA made here. One binary, modules by topic.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod helpers;
mod receiver;

mod alerts;
mod browser;
mod delivery;
mod edge;
mod handlers;
mod ingest;
mod jetstream;
mod keys;
mod manage;
mod metrics;
mod outbox;
mod receiver_kit;
mod retention;
mod ssrf;
mod ui;
