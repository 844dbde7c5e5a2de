//! `blockhook migrate`: create or upgrade the store's schema, then exit.

use std::process::ExitCode;

use blockhook_server::telemetry;

/// Flags of `migrate`: the same store selection as `serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    serve: super::serve::Args,
}

/// Opens the store (which applies pending migrations) and reports the backend.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let settings = args.serve.settings()?;
    // Nothing worth tracing here, and no runtime yet for an exporter.
    let log = blockhook_server::config::LogSettings {
        otlp_endpoint: String::new(),
        ..settings.log.clone()
    };
    let _telemetry = telemetry::init(&log);
    let rt = tokio::runtime::Runtime::new()?;
    let url = settings.store_url();
    let backend = rt.block_on(async {
        std::fs::create_dir_all(&settings.store.data_dir)?;
        let store = blockhook_store::open(&url, &blockhook_store::StoreOptions::default()).await?;
        anyhow::Ok(store.backend())
    })?;
    println!("{backend} store is migrated and ready");
    Ok(ExitCode::SUCCESS)
}
