//! `blockhook keys`: make a master key or operator token, and re-seal every secret with the
//! current master key after a rotation.

use std::process::ExitCode;

use clap::Subcommand;

use blockhook_server::keyring;
use blockhook_server::keys::{AdminToken, MasterKey};

use super::migrate::StoreArgs;

/// Flags of `keys`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a new random master key (base64 of 32 bytes), for keys.master_key(_file).
    Generate {
        /// Print a new operator token instead, for server.admin_token(_file).
        #[arg(long)]
        admin_token: bool,
    },
    /// Re-seal every endpoint secret (and the key check value) with keys.master_key, opening them
    /// with it or keys.old_master_keys. Safe while servers run: each row is a compare-and-set.
    #[command(
        after_long_help = "Rotation without downtime: (1) give every process the new key in \
keys.master_key and the previous one in keys.old_master_keys, restarting them one at a time; \
(2) run `blockhook keys reseal`; (3) remove the previous key from keys.old_master_keys."
    )]
    Reseal {
        #[command(flatten)]
        store: StoreArgs,
        /// Endpoints read per batch.
        #[arg(long, default_value_t = 500)]
        batch: u32,
    },
}

/// Runs `keys`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Generate { admin_token } => {
            if admin_token {
                println!("{}", AdminToken::generate());
            } else {
                println!("{}", MasterKey::generate_base64());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Reseal { store, batch } => reseal(&store, batch),
    }
}

fn reseal(args: &StoreArgs, batch: u32) -> anyhow::Result<ExitCode> {
    let settings = args.settings()?;
    let (keys, source) = keyring::load_master(&settings)?;
    let rt = tokio::runtime::Runtime::new()?;
    let done = rt.block_on(async {
        let url = settings.store_url();
        let store = blockhook_store::open(&url, &blockhook_store::StoreOptions::default()).await?;
        keyring::verify_store(&*store, &keys, &source).await?;
        anyhow::Ok(keyring::reseal(&*store, &keys, batch).await?)
    })?;
    println!(
        "re-sealed {} secrets ({} already sealed with the current key, {} changed meanwhile); \
         key check value {}",
        done.resealed,
        done.current,
        done.raced,
        if done.check_value {
            "re-sealed"
        } else {
            "already current"
        }
    );
    Ok(ExitCode::SUCCESS)
}
