//! The command-line surface: one module per subcommand, each with its own `Args` and `run`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod listen;
mod migrate;
mod send;
mod serve;
mod sign;
mod verify;

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
    /// Create or upgrade the database schema, then exit.
    Migrate(migrate::Args),
    /// Print the BlockATM-Signature-V2 of a JSON body.
    Sign(sign::Args),
    /// Check a BlockATM-Signature-V2 against a body (exit 0 valid, 1 rejected, 2 error).
    Verify(verify::Args),
    /// Run a local receiver for development: verify and print each webhook, optionally forward it.
    Listen(listen::Args),
    /// Send one correctly signed sample webhook to a URL and show the exchange (exit 0 on 200).
    Send(send::Args),
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Sign(args) => sign::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Listen(args) => listen::run(args),
        Command::Send(args) => send::run(args),
    }
}
