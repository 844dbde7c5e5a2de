//! `blockhook outbox`: the gateway's side of the PostgreSQL transactional outbox. `schema`
//! prints the DDL a gateway runs in its own database (the outbox table, its dead-letter table
//! and the NOTIFY trigger); blockhook relays the table once it is named in
//! `[[sources.postgres_outbox]]` (see docs/publishing.md).

use std::process::ExitCode;

use anyhow::anyhow;
use clap::Subcommand;

use blockhook_store::outbox::{OutboxTable, PayloadColumn, schema_sql};

/// Flags of `outbox`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the DDL of the outbox table for the gateway's own PostgreSQL database.
    #[command(
        after_long_help = "Example:\n  blockhook outbox schema --table payments.blockhook_outbox | psql \"$GATEWAY_DATABASE_URL\""
    )]
    Schema {
        /// The table: `name` or `schema.name`, each part [a-z_][a-z0-9_]*.
        #[arg(long, default_value = "blockhook_outbox")]
        table: String,
        /// Type of the payload column: text keeps the bytes exactly (what `raw` signatures
        /// need); jsonb has PostgreSQL check the JSON but normalises it.
        #[arg(long, default_value = "text", value_parser = ["text", "jsonb"])]
        payload: String,
    },
}

/// Runs `outbox`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Schema { table, payload } => {
            let table = OutboxTable::parse(&table).map_err(|e| anyhow!("--table: {e}"))?;
            let payload: PayloadColumn = payload.parse().map_err(|e| anyhow!("--payload: {e}"))?;
            print!("{}", schema_sql(&table, payload));
            Ok(ExitCode::SUCCESS)
        }
    }
}
