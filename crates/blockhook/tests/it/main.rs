//! The binary's tests, black-box: the real `blockhook` binary run as child processes against
//! real SQLite files and PostgreSQL, with loopback receivers. One test binary (modules below),
//! so the suite links once.
//!
//! - the CLI: `cli_config`, `cli_listen`, `cli_manage`, `cli_sig`, `bench_quick`;
//! - the documentation run as written: `docs`;
//! - operations (keys, backups, upgrades, config): `ops`;
//! - reliability under faults (see docs/reliability.md): `crash`, `faults`, `hostile`, `clock`,
//!   `disk`, `store_outage`, `scale_out`;
//! - ordered delivery per key under failures, SIGKILL and three workers: `ordering`;
//! - the PostgreSQL transactional outbox relayed by two processes, one SIGKILLed: `outbox`;
//! - NATS JetStream read through a durable consumer, blockhook SIGKILLed mid-stream: `jetstream`;
//! - `common`: the server as a child process, scripted receivers, an API client, ledgers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

mod common;

mod bench_quick;
mod cli_config;
mod cli_listen;
mod cli_manage;
mod cli_sig;
mod clock;
mod crash;
mod disk;
mod docs;
mod faults;
mod hostile;
mod jetstream;
mod ops;
mod ordering;
mod outbox;
mod scale_out;
mod store_outage;
