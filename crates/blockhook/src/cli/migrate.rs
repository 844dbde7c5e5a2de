//! `blockhook migrate`: create or upgrade the store's schema, then exit; and [`StoreArgs`], the
//! store selection shared by the commands that work on the database without serving.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{Map, Value, json};

use blockhook_server::{Settings, keyring, telemetry};

/// Which store to work on: the same settings as `serve`, and only the flags that select a store.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Config file (TOML). Default: ./blockhook.toml when it exists.
    #[arg(long, env = "BLOCKHOOK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Store URL: postgres://user@host/db for PostgreSQL; default is SQLite in --data-dir.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Directory of the embedded database (and its generated keys).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl StoreArgs {
    /// The settings these flags select (defaults, file, `BLOCKHOOK_*`, flags).
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let mut store = Map::new();
        if let Some(u) = &self.database_url {
            store.insert("url".into(), json!(u));
        }
        if let Some(d) = &self.data_dir {
            store.insert("data_dir".into(), json!(d));
        }
        let overrides = json!({ "store": Value::Object(store) });
        Ok(Settings::load(self.config.as_deref(), overrides)?)
    }
}

/// Flags of `migrate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
}

/// Opens the store (which applies pending migrations), writes or checks the key check value
/// when a master key is at hand, and reports the backend.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let settings = args.store.settings()?;
    // Nothing worth tracing here, and no runtime yet for an exporter.
    let log = blockhook_server::config::LogSettings {
        otlp_endpoint: String::new(),
        ..settings.log.clone()
    };
    let _telemetry = telemetry::init(&log);
    let rt = tokio::runtime::Runtime::new()?;
    let url = settings.store_url();
    let embedded = keyring::embedded(&settings);
    let (backend, checked) = rt.block_on(async {
        if embedded {
            std::fs::create_dir_all(&settings.store.data_dir)?;
        }
        let store = blockhook_store::open(&url, &blockhook_store::StoreOptions::default()).await?;
        let checked = embedded || keyring::master_configured(&settings);
        if checked {
            let (keys, source) = keyring::load_master(&settings)?;
            keyring::verify_store(&*store, &keys, &source).await?;
        }
        anyhow::Ok((store.backend(), checked))
    })?;
    println!("{backend} store is migrated and ready");
    if !checked {
        println!(
            "no master key configured: the first `serve` will write the key check value \
             (configure keys.master_key_file to check it here)"
        );
    }
    Ok(ExitCode::SUCCESS)
}
