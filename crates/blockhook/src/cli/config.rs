//! `blockhook config check`: load the settings exactly as `serve` would (defaults, the config
//! file, `BLOCKHOOK_*` variables, strictly: an unknown key is an error) and print the effective
//! configuration as TOML, every secret redacted.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use blockhook_server::Settings;

/// Flags of `config`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Check the configuration `serve` would run with and print it (secrets redacted); exits 2
    /// on any error (unknown key or variable, bad value, missing file).
    Check {
        /// Config file (TOML). Default: ./blockhook.toml when it exists.
        #[arg(long, env = "BLOCKHOOK_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// Runs `config`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Cmd::Check { config } => {
            let settings = Settings::load(config.as_deref(), serde_json::json!({}))?;
            print!("{}", settings.redacted_toml()?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
