//! `blockhook merchant`: create, list, read, suspend, reactivate and delete merchants, and
//! issue, list and revoke their API keys. Operator token required.

use std::process::ExitCode;

use clap::Subcommand;

use super::api_client::{ApiClient, Conn, PageArgs, block_on};
use super::output::{Columns, print};

const MERCHANT: Columns<'static> = &[
    ("ID", "id"),
    ("NAME", "name"),
    ("STATUS", "status"),
    ("CREATED", "created_at"),
];
const KEYS: Columns<'static> = &[
    ("ID", "id"),
    ("PREFIX", "prefix"),
    ("CREATED", "created_at"),
    ("REVOKED", "revoked_at"),
];

/// Flags of `merchant`.
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = "Examples:\n  blockhook merchant create --name 'Acme Pay'\n  \
blockhook merchant key issue mch_...\n  blockhook merchant suspend mch_..."
)]
pub struct Args {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create a merchant.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// An id of your choice (mch_…); generated when absent.
        #[arg(long)]
        id: Option<String>,
    },
    /// List merchants, newest first.
    List(PageArgs),
    /// Show one merchant.
    Get {
        /// Merchant id.
        id: String,
    },
    /// Suspend a merchant: its keys are refused and its events rejected.
    Suspend {
        /// Merchant id.
        id: String,
    },
    /// Reactivate a suspended merchant.
    Activate {
        /// Merchant id.
        id: String,
    },
    /// Delete a merchant and everything it owns.
    Delete {
        /// Merchant id.
        id: String,
    },
    /// Manage a merchant's API keys.
    #[command(subcommand)]
    Key(KeyCmd),
}

#[derive(Debug, Subcommand)]
enum KeyCmd {
    /// Issue a key (it is shown only once).
    Issue {
        /// Merchant id.
        merchant: String,
    },
    /// List a merchant's keys (prefixes only).
    List {
        /// Merchant id.
        merchant: String,
    },
    /// Revoke a key.
    Revoke {
        /// Merchant id.
        merchant: String,
        /// Key id (key_…).
        key_id: String,
    },
}

/// Runs `merchant`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let api = ApiClient::new(&args.conn)?;
    let json = args.conn.json;
    block_on(async {
        let (value, columns) = match &args.command {
            Cmd::Create { name, id } => (api.create_merchant(name, id.as_deref()).await?, MERCHANT),
            Cmd::List(page) => (api.list_merchants(page).await?, MERCHANT),
            Cmd::Get { id } => (api.get_merchant(id).await?, MERCHANT),
            Cmd::Suspend { id } => (api.set_merchant_status(id, "suspended").await?, MERCHANT),
            Cmd::Activate { id } => (api.set_merchant_status(id, "active").await?, MERCHANT),
            Cmd::Delete { id } => {
                api.delete_merchant(id).await?;
                eprintln!("deleted {id}");
                return Ok(());
            }
            Cmd::Key(KeyCmd::Issue { merchant }) => {
                let v = api.issue_key(merchant).await?;
                if !json {
                    eprintln!("Store this key now: it is not shown again.");
                }
                (v, KEYS)
            }
            Cmd::Key(KeyCmd::List { merchant }) => (api.list_keys(merchant).await?, KEYS),
            Cmd::Key(KeyCmd::Revoke { merchant, key_id }) => {
                api.revoke_key(merchant, key_id).await?;
                eprintln!("revoked {key_id}");
                return Ok(());
            }
        };
        print(&value, json, columns);
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
