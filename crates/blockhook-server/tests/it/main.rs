//! Integration tests of `blockhook-server`: a real app on a loopback port, real stores (SQLite
//! always, PostgreSQL when `BLOCKHOOK_TEST_DATABASE_URL` is set), real HTTPS receivers signed by
//! a test CA made here. One binary, modules by topic.

mod helpers;
mod receiver;

mod delivery;
mod ingest;
mod manage;
mod metrics;
mod ssrf;
mod ui;
