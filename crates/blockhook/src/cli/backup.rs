//! `blockhook backup` and `blockhook restore`: consistent copies of the embedded store, taken
//! while the server runs, and restored into a new directory. PostgreSQL has its own tools
//! (`pg_dump`); the master key is never in a backup and is kept apart.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use blockhook_server::keyring;

use super::migrate::StoreArgs;

/// Flags of `backup`.
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = "The backup holds the database only. Keep the master key (<data-dir>/master.key, \
or keys.master_key_file) beside it, stored separately: secrets cannot be read without it. \
For PostgreSQL use pg_dump."
)]
pub struct BackupArgs {
    /// The backup file to write (must not exist).
    #[arg(long)]
    to: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
}

/// Flags of `restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// A file written by `blockhook backup`.
    #[arg(long)]
    from: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
}

/// The embedded database these settings select, or an error for PostgreSQL.
fn database(store: &StoreArgs, what: &str) -> anyhow::Result<PathBuf> {
    let settings = store.settings()?;
    if !keyring::embedded(&settings) {
        bail!("{what} works on the embedded SQLite store; for PostgreSQL use pg_dump / pg_restore");
    }
    blockhook_store::sqlite::database_path(&settings.store_url())?
        .context("an in-memory store has nothing to back up or restore")
}

/// Runs `backup`.
pub fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let db = database(&args.store, "backup")?;
    blockhook_store::sqlite::backup(&db, &args.to)?;
    println!(
        "backed up {} to {}; keep the master key apart from it",
        db.display(),
        args.to.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `restore`.
pub fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let db = database(&args.store, "restore")?;
    blockhook_store::sqlite::restore(&args.from, &db)?;
    println!(
        "restored {} to {}; before starting, put the master key back (master.key in the data \
         directory, or keys.master_key_file)",
        args.from.display(),
        db.display()
    );
    Ok(ExitCode::SUCCESS)
}
