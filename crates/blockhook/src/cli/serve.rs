//! `blockhook serve`: run the API and the dispatcher.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use blockhook_server::{Application, Settings, cancel_on_signal, telemetry};

/// Flags of `serve` (each overrides the config file and `BLOCKHOOK_*` variables).
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = "Settings are layered: compiled-in defaults, then the config file, then \
BLOCKHOOK_* environment variables (sections joined by '__', e.g. BLOCKHOOK_DELIVERY__CONCURRENCY=64), \
then these flags. See blockhook.example.toml for every setting.\n\n\
The retry schedule, timeouts and leases have no flags: set them in the settings file \
([delivery] retry_schedule, connect_timeout, total_timeout, lease, drain_deadline, concurrency) or \
as BLOCKHOOK_DELIVERY__<KEY> variables, and check the result with `blockhook config check`.\n\n\
With no configuration at all, blockhook stores everything in ./blockhook-data/ (SQLite), listens on \
127.0.0.1:8080, and writes a generated operator token to ./blockhook-data/admin-token. With \
PostgreSQL nothing is generated and nothing is written locally: every process needs the same master key \
(keys.master_key_file or BLOCKHOOK_KEYS__MASTER_KEY) and API processes the operator token \
(server.admin_token_file or BLOCKHOOK_SERVER__ADMIN_TOKEN); `blockhook keys generate` makes them."
)]
pub struct Args {
    /// Config file (TOML). Default: ./blockhook.toml when it exists.
    #[arg(long, env = "BLOCKHOOK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Directory for the embedded database and generated keys.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Store URL: postgres://user@host/db for PostgreSQL; default is SQLite in --data-dir.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Which parts to run: all (API + delivery), api, or worker.
    #[arg(long, value_parser = ["all", "api", "worker"])]
    pub role: Option<String>,
    /// Accept http:// endpoint URLs (development only).
    #[arg(long)]
    pub allow_http: bool,
    /// Allow delivering to this network despite the address policy (repeatable), e.g. 127.0.0.0/8.
    #[arg(long = "allow-net", value_name = "CIDR")]
    pub allow_nets: Vec<String>,
    /// Log format: pretty or json.
    #[arg(long, value_parser = ["pretty", "json"])]
    pub log_format: Option<String>,
    /// Once listening, write the bound address (`host:port`) into this file: with
    /// `--listen 127.0.0.1:0`, how a script or supervisor learns the port.
    #[arg(long, value_name = "FILE")]
    pub port_file: Option<PathBuf>,
}

impl Args {
    /// Only the flags the user set, nested like the config file.
    fn overrides(&self) -> Value {
        let mut root = Map::new();
        let mut set = |section: &str, key: &str, value: Value| {
            let entry = root.entry(section.to_owned()).or_insert_with(|| json!({}));
            if let Value::Object(m) = entry {
                m.insert(key.to_owned(), value);
            }
        };
        if let Some(l) = self.listen {
            set("server", "listen", json!(l.to_string()));
        }
        if let Some(r) = &self.role {
            set("server", "role", json!(r));
        }
        if let Some(d) = &self.data_dir {
            set("store", "data_dir", json!(d));
        }
        if let Some(u) = &self.database_url {
            set("store", "url", json!(u));
        }
        if self.allow_http {
            set("delivery", "allow_http", json!(true));
        }
        if !self.allow_nets.is_empty() {
            set("delivery", "allow_nets", json!(self.allow_nets));
        }
        if let Some(f) = &self.log_format {
            set("log", "format", json!(f));
        }
        Value::Object(root)
    }

    /// The settings these flags select.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        Ok(Settings::load(self.config.as_deref(), self.overrides())?)
    }
}

/// Writes `addr` into `path` through a temporary file and a rename, so a reader polling for the
/// file never sees it half written.
fn write_port_file(path: &std::path::Path, addr: SocketAddr) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{addr}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("writing --port-file {}", path.display()))
}

/// Runs until SIGINT/SIGTERM.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let settings = args.settings()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.runtime_workers())
        .enable_all()
        .build()?;
    // Inside the runtime: the OTLP exporter, when configured, is one of its tasks.
    let telemetry = rt.block_on(async { telemetry::init(&settings.log) });
    if telemetry.exports() {
        tracing::info!(endpoint = %settings.log.otlp_endpoint, "exporting spans over OTLP/HTTP");
    }
    let served = rt.block_on(async {
        let app = Application::build(settings).await?;
        let addr = app.local_addr()?;
        if let Some(path) = &args.port_file {
            write_port_file(path, addr)?;
        }
        // Plain, on stdout, whatever the log format: scripts read this line.
        println!("listening on http://{addr}");
        let stop = CancellationToken::new();
        tokio::spawn(cancel_on_signal(stop.clone()));
        app.run_until_stopped(stop).await?;
        anyhow::Ok(())
    });
    rt.block_on(telemetry.shutdown());
    served?;
    Ok(ExitCode::SUCCESS)
}
