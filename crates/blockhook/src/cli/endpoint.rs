//! `blockhook endpoint`: a merchant's webhook endpoints: create, list, read, update, delete,
//! enable, disable, show or rotate the secret, send a test webhook, recover failed deliveries.
//!
//! `--merchant` defaults to `me`, the merchant of the API key in `--token`; the operator names
//! the merchant.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::{Map, Value, json};

use super::api_client::{ApiClient, Conn, PageArgs, block_on};
use super::output::{Columns, print};
use super::progress::Progress;

const ENDPOINTS: Columns<'static> = &[
    ("ID", "id"),
    ("URL", "url"),
    ("TYPES", "event_types"),
    ("MODE", "signing_mode"),
    ("ENABLED", "enabled"),
    ("LABEL", "label"),
];
const BACKLOG: Columns<'static> = &[
    ("ENDPOINT", "endpoint_id"),
    ("PENDING", "pending"),
    ("FAILED", "failed"),
    ("OLDEST", "oldest"),
];

/// Flags of `endpoint`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:\n  \
blockhook endpoint create --merchant mch_... https://shop.example/webhooks --event-type Payment\n  \
blockhook endpoint test ep_... --event-type Payout\n  \
blockhook endpoint recover ep_... --since 6h --wait")]
pub struct Args {
    #[command(flatten)]
    conn: Conn,
    /// The merchant (`me` = the API key's merchant).
    #[arg(long, global = true, default_value = "me")]
    merchant: String,
    #[command(subcommand)]
    command: Cmd,
}

/// Settable fields, shared by `create` and `update`.
#[derive(Debug, Clone, Default, clap::Args)]
struct Fields {
    /// Free text.
    #[arg(long)]
    description: Option<String>,
    /// Event type to receive (repeatable; none = all types).
    #[arg(long = "event-type", value_name = "TYPE")]
    event_types: Vec<String>,
    /// `sorted` (default) or `raw` (BlockATM headers), or `standard` (Standard Webhooks).
    #[arg(long)]
    signing_mode: Option<String>,
    /// `200` (default) or `2xx`.
    #[arg(long)]
    success_policy: Option<String>,
    /// Extra header "Name: value" sent with every webhook (repeatable).
    #[arg(long = "header", value_name = "K:V")]
    headers: Vec<String>,
    /// At most this many deliveries per second.
    #[arg(long)]
    rate_limit: Option<u32>,
    /// A label such as cashier:91.
    #[arg(long)]
    label: Option<String>,
    /// Ordered delivery: `none` or `per_key` (docs/ordering.md).
    #[arg(long, value_name = "MODE")]
    ordering: Option<String>,
    /// With `--ordering per_key`: the top-level payload field whose value is the key of an
    /// event published without an ordering key (e.g. orderNo).
    #[arg(long, value_name = "FIELD")]
    ordering_key_field: Option<String>,
    /// With `--ordering per_key`, after a delivery's last retry: `continue` with the key's next
    /// event, or `hold` the key until a release or a resend.
    #[arg(long, value_name = "WHAT")]
    on_final_failure: Option<String>,
}

impl Fields {
    fn into_json(self, body: &mut Map<String, Value>) -> anyhow::Result<()> {
        let mut set = |k: &str, v: Value| {
            body.insert(k.to_owned(), v);
        };
        if let Some(d) = self.description {
            set("description", json!(d));
        }
        if !self.event_types.is_empty() {
            set("event_types", json!(self.event_types));
        }
        if let Some(m) = self.signing_mode {
            set("signing_mode", json!(m));
        }
        if let Some(p) = self.success_policy {
            set("success_policy", json!(p));
        }
        if !self.headers.is_empty() {
            let pairs = self
                .headers
                .iter()
                .map(|h| {
                    let (k, v) = h
                        .split_once(':')
                        .with_context(|| format!("--header {h:?}: expected \"Name: value\""))?;
                    Ok(json!([k.trim(), v.trim()]))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            set("headers", json!(pairs));
        }
        if let Some(r) = self.rate_limit {
            set("rate_limit", json!(r));
        }
        if let Some(l) = self.label {
            set("label", json!(l));
        }
        // Only the fields given: on an update they replace just those.
        let mut ordering = Map::new();
        for (key, value) in [
            ("mode", self.ordering),
            ("key_field", self.ordering_key_field),
            ("on_final_failure", self.on_final_failure),
        ] {
            if let Some(v) = value {
                ordering.insert(key.to_owned(), json!(v));
            }
        }
        if !ordering.is_empty() {
            set("ordering", Value::Object(ordering));
        }
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create an endpoint (prints its signing secret).
    Create {
        /// Where webhooks are POSTed (https://). Positional, since `--url` is the server's.
        endpoint_url: String,
        #[command(flatten)]
        fields: Fields,
        /// A secret of your choice (16+ characters, 32+ advised; a whsec_ secret with
        /// `--signing-mode standard`); generated when absent.
        #[arg(long)]
        secret: Option<String>,
    },
    /// List endpoints, newest first.
    List(PageArgs),
    /// Show one endpoint (without its secret: see `secret`).
    Get {
        /// Endpoint id (ep_…).
        id: String,
    },
    /// Change an endpoint (only the flags given; --event-type/--header replace the lists).
    Update {
        /// Endpoint id.
        id: String,
        /// New URL for the webhooks (`--url` is the server's).
        #[arg(long)]
        endpoint_url: Option<String>,
        #[command(flatten)]
        fields: Fields,
        /// Enable (true) or disable (false).
        #[arg(long)]
        enabled: Option<bool>,
    },
    /// Delete an endpoint with its deliveries.
    Delete {
        /// Endpoint id.
        id: String,
    },
    /// Enable an endpoint.
    Enable {
        /// Endpoint id.
        id: String,
    },
    /// Disable an endpoint (pending deliveries wait).
    Disable {
        /// Endpoint id.
        id: String,
    },
    /// Print the signing secret (the only read that shows it).
    Secret {
        /// Endpoint id.
        id: String,
    },
    /// Replace the signing secret and print the new one.
    RotateSecret {
        /// Endpoint id.
        id: String,
        /// How long the old secret keeps signing beside the new one (`standard` mode; default
        /// 24h there, at most 7d; BlockATM modes send one signature: 0s only).
        #[arg(long, value_name = "DURATION")]
        overlap: Option<String>,
    },
    /// Send a signed sample webhook now and show the request and the response.
    Test {
        /// Endpoint id.
        id: String,
        /// Payment, Payout, QR-Payment or QR-Payout.
        #[arg(long, default_value = "Payment")]
        event_type: String,
    },
    /// Re-queue the endpoint's failed deliveries since a time.
    Recover {
        /// Unix ms, or an age such as 90m, 6h, 7d.
        #[arg(long)]
        since: String,
        /// Endpoint id.
        id: String,
        /// Then follow the endpoint's backlog until it is empty (a progress bar on a terminal);
        /// exits 1 if it is not empty within --wait-timeout.
        #[arg(long)]
        wait: bool,
        /// Seconds to wait with --wait.
        #[arg(long, default_value_t = 600)]
        wait_timeout: u64,
        /// Only say how many deliveries it would re-queue; change nothing.
        #[arg(long, conflicts_with = "wait")]
        dry_run: bool,
    },
    /// Undelivered work per endpoint.
    Backlog,
}

/// The endpoint's row of `GET …/backlog`: (pending, failed).
async fn backlog_of(api: &ApiClient, merchant: &str, id: &str) -> anyhow::Result<(u64, u64)> {
    let rows = api.backlog(merchant).await?;
    let row = rows
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["endpoint_id"] == id));
    Ok(row.map_or((0, 0), |r| {
        (
            r["pending"].as_u64().unwrap_or(0),
            r["failed"].as_u64().unwrap_or(0),
        )
    }))
}

/// Polls the endpoint's backlog until nothing is pending; `false` when `limit` passed first.
async fn follow_backlog(
    api: &ApiClient,
    merchant: &str,
    id: &str,
    limit: Duration,
) -> anyhow::Result<bool> {
    let started = Instant::now();
    let (first, _) = backlog_of(api, merchant, id).await?;
    let shown = Progress::new(first, "delivered or failed again");
    let mut printed = Instant::now();
    loop {
        let (pending, failed) = backlog_of(api, merchant, id).await?;
        let line = || format!("  {pending} pending, {failed} failed");
        if shown.is_bar() || printed.elapsed() >= Duration::from_secs(5) {
            shown.tick(
                first.saturating_sub(pending),
                &format!("{failed} failed"),
                line,
            );
            printed = Instant::now();
        }
        if pending == 0 || started.elapsed() >= limit {
            shown.finish();
            eprintln!("backlog of {id}: {pending} pending, {failed} failed");
            return Ok(pending == 0);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs `endpoint`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let api = ApiClient::new(&args.conn)?;
    let (json, m) = (args.conn.json, args.merchant.as_str());
    let mut success = true;
    block_on(async {
        let value = match args.command {
            Cmd::Create {
                endpoint_url,
                fields,
                secret,
            } => {
                let mut body = Map::new();
                body.insert("url".into(), json!(endpoint_url));
                if let Some(s) = secret {
                    body.insert("secret".into(), json!(s));
                }
                fields.into_json(&mut body)?;
                api.create_endpoint(m, Value::Object(body)).await?
            }
            Cmd::List(page) => api.list_endpoints(m, &page).await?,
            Cmd::Get { id } => api.get_endpoint(m, &id).await?,
            Cmd::Update {
                id,
                endpoint_url,
                fields,
                enabled,
            } => {
                let mut body = Map::new();
                if let Some(u) = endpoint_url {
                    body.insert("url".into(), json!(u));
                }
                if let Some(e) = enabled {
                    body.insert("enabled".into(), json!(e));
                }
                fields.into_json(&mut body)?;
                api.update_endpoint(m, &id, Value::Object(body)).await?
            }
            Cmd::Delete { id } => {
                api.delete_endpoint(m, &id).await?;
                eprintln!("deleted {id}");
                return Ok(());
            }
            Cmd::Enable { id } => api.endpoint_action(m, &id, "enable", json!({})).await?,
            Cmd::Disable { id } => api.endpoint_action(m, &id, "disable", json!({})).await?,
            Cmd::Secret { id } => {
                let v = api.endpoint_secret(m, &id).await?;
                if !json {
                    // Bare, so `$(blockhook endpoint secret ep_…)` is the secret.
                    println!("{}", v["secret"].as_str().unwrap_or_default());
                    return Ok(());
                }
                v
            }
            Cmd::RotateSecret { id, overlap } => {
                let body = match overlap {
                    Some(o) => json!({ "overlap": o }),
                    None => json!({}),
                };
                api.endpoint_action(m, &id, "rotate-secret", body).await?
            }
            Cmd::Test { id, event_type } => {
                let v = api
                    .endpoint_action(m, &id, "test", json!({ "event_type": event_type }))
                    .await?;
                success = v["success"] == true;
                if !json {
                    print_exchange(&v);
                    return Ok(());
                }
                v
            }
            Cmd::Recover {
                id,
                since,
                wait,
                wait_timeout,
                dry_run,
            } => {
                let body = json!({
                    "since": super::when::parse_ms("--since", &since)?,
                    "dry_run": dry_run,
                });
                let recovered = api.endpoint_action(m, &id, "recover", body).await?;
                if wait {
                    let limit = Duration::from_secs(wait_timeout);
                    success = follow_backlog(&api, m, &id, limit).await?;
                }
                recovered
            }
            Cmd::Backlog => {
                print(&api.backlog(m).await?, json, BACKLOG);
                return Ok(());
            }
        };
        print(&value, json, ENDPOINTS);
        Ok(())
    })?;
    // Like `blockhook send`: a test the endpoint did not acknowledge exits 1.
    Ok(if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A test send as a readable exchange.
fn print_exchange(v: &Value) {
    let req = &v["request"];
    println!("> POST {}", req["url"].as_str().unwrap_or_default());
    for h in req["headers"].as_array().into_iter().flatten() {
        println!(
            "> {}: {}",
            h[0].as_str().unwrap_or_default(),
            h[1].as_str().unwrap_or_default()
        );
    }
    println!(">\n> {}\n", req["body"].as_str().unwrap_or_default());
    let resp = &v["response"];
    match resp["status"].as_u64() {
        Some(status) => println!("< {status} ({} ms)", resp["latency_ms"]),
        None => println!(
            "< no response: {} ({})",
            resp["error"].as_str().unwrap_or("error"),
            resp["error_detail"].as_str().unwrap_or_default()
        ),
    }
    for h in resp["headers"].as_array().into_iter().flatten() {
        println!(
            "< {}: {}",
            h[0].as_str().unwrap_or_default(),
            h[1].as_str().unwrap_or_default()
        );
    }
    if let Some(body) = resp["body"].as_str().filter(|b| !b.is_empty()) {
        println!("<\n< {body}");
    }
    println!(
        "\n{}",
        if v["success"] == true {
            "acknowledged"
        } else {
            "NOT acknowledged"
        }
    );
}
