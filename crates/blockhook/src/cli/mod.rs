//! The command-line surface: one module per subcommand, each with its own `Args` and `run`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod api_client;
mod backup;
mod bench;
mod config;
mod endpoint;
mod event;
mod keys;
mod listen;
mod merchant;
mod migrate;
mod outbox;
mod output;
mod progress;
mod send;
mod serve;
mod sign;
mod status;
mod verify;
mod when;

/// blockhook: self-hosted webhook delivery for stablecoin payment gateways.
///
/// Stores each event durably, then POSTs it to every matching endpoint of its merchant,
/// signed with BlockATM-Signature-V2 and retried until the endpoint answers HTTP 200.
#[derive(Debug, Parser)]
#[command(name = "blockhook", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run blockhook: the HTTP API and the delivery workers (see `serve --help`).
    Serve(serve::Args),
    /// Check the configuration and print it with secrets redacted (`config check`).
    Config(config::Args),
    /// Create or upgrade the database schema, then exit.
    Migrate(migrate::Args),
    /// Write a consistent copy of the embedded store while it runs (`--to FILE`).
    Backup(backup::BackupArgs),
    /// Restore a backup of the embedded store into a new or empty data directory.
    Restore(backup::RestoreArgs),
    /// Make a master key or operator token; re-seal secrets after a master key rotation.
    Keys(keys::Args),
    /// Print the BlockATM-Signature-V2 of a JSON body.
    Sign(sign::Args),
    /// Check a BlockATM-Signature-V2 against a body (exit 0 valid, 1 rejected, 2 error).
    Verify(verify::Args),
    /// Run a local receiver for development: verify and print each webhook, optionally forward it.
    Listen(listen::Args),
    /// Send one correctly signed sample webhook to a URL and show the exchange (exit 0 on 200).
    Send(send::Args),
    /// Measure end-to-end delivery throughput and latency against a loopback receiver.
    Bench(bench::Args),
    /// Summarise a running server's /metrics and /readyz on one screen.
    Status(status::Args),
    /// Manage merchants and their API keys (operator).
    Merchant(merchant::Args),
    /// Manage a merchant's webhook endpoints.
    Endpoint(endpoint::Args),
    /// Publish events and read the event logs (events, deliveries, attempts); resend.
    Event(event::Args),
    /// The PostgreSQL transactional outbox: print the gateway's table DDL (`outbox schema`).
    Outbox(outbox::Args),
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Config(args) => config::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Backup(args) => backup::backup(args),
        Command::Restore(args) => backup::restore(args),
        Command::Keys(args) => keys::run(args),
        Command::Sign(args) => sign::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Listen(args) => listen::run(args),
        Command::Send(args) => send::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Status(args) => status::run(args),
        Command::Merchant(args) => merchant::run(args),
        Command::Endpoint(args) => endpoint::run(args),
        Command::Event(args) => event::run(args),
        Command::Outbox(args) => outbox::run(args),
    }
}
