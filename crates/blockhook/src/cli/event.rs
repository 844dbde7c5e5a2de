//! `blockhook event`: publish an event (operator), and read a merchant's event logs: events,
//! one event with its payload, its deliveries, a delivery's attempts; resend an event, or
//! retry one delivery.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use super::api_client::{ApiClient, Conn, block_on};
use super::output::{Columns, pretty_json, print};
use super::when;

const EVENTS: Columns<'static> = &[
    ("ID", "id"),
    ("TYPE", "event_type"),
    ("CREATED", "created_at"),
    ("RESENDS", "resend_count"),
    ("IDEMPOTENCY KEY", "idempotency_key"),
];
const PUBLISHED: Columns<'static> = &[
    ("EVENT", "event_id"),
    ("DELIVERIES", "deliveries"),
    ("DUPLICATE", "duplicate"),
];
const DELIVERIES: Columns<'static> = &[
    ("ID", "id"),
    ("ENDPOINT", "endpoint_id"),
    ("STATE", "state"),
    ("ORIGIN", "origin"),
    ("ATTEMPTS", "attempts"),
    ("LAST STATUS", "last_status"),
    ("NEXT ATTEMPT", "next_attempt_at"),
];
const ATTEMPTS: Columns<'static> = &[
    ("#", "number"),
    ("STARTED", "started_at"),
    ("STATUS", "status"),
    ("LATENCY MS", "latency_ms"),
    ("ERROR", "error"),
    ("RESPONSE", "response_body"),
];
const RESENT: Columns<'static> = &[("DELIVERIES", "delivery_ids")];

/// Flags of `event`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:\n  \
blockhook event publish --merchant mch_... --type Payment order.json\n  \
echo '{\"orderNo\":\"A1\"}' | blockhook event publish --merchant mch_... --type Payment -\n  \
blockhook event list --merchant mch_... --state failed\n  \
blockhook event search --merchant mch_... --order-no OrderNo_1001\n  \
blockhook event search --merchant mch_... --field txId --value 0x7614... --endpoint ep_...\n  \
blockhook event attempts dlv_...")]
pub struct Args {
    #[command(flatten)]
    conn: Conn,
    /// The merchant (`me` = the API key's merchant; `publish` needs a real id).
    #[arg(long, global = true, default_value = "me")]
    merchant: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Publish one event (operator token); the payload is sent byte for byte.
    Publish {
        /// Event type: Payment, Payout, QR-Payment, QR-Payout or your own.
        #[arg(long = "type", value_name = "TYPE")]
        event_type: String,
        /// Makes publishing idempotent: a repeated key returns the first event.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Ordering key (1 to 256 bytes): endpoints ordered per key deliver this key's events
        /// one at a time, in publish order (docs/ordering.md).
        #[arg(long)]
        ordering_key: Option<String>,
        /// JSON object file with the payload, or `-` for stdin.
        payload: PathBuf,
    },
    /// Search events, newest first: every filter given must match; prints the page and the
    /// number of matches.
    #[command(visible_alias = "search")]
    List {
        /// Only this event (evt_…).
        #[arg(long)]
        id: Option<String>,
        /// Only events whose payload's `orderNo` is this (shorthand for `--field orderNo --value`).
        #[arg(long, conflicts_with_all = ["field", "value"])]
        order_no: Option<String>,
        /// A searchable payload field (one of the server's `[search] fields`); with `--value`.
        #[arg(long, requires = "value")]
        field: Option<String>,
        /// The value of `--field`: a string's text, or a number as written.
        #[arg(long, requires = "field")]
        value: Option<String>,
        /// Only events with a delivery to this endpoint (ep_…), in `--state` when given.
        #[arg(long)]
        endpoint: Option<String>,
        /// Only this type.
        #[arg(long)]
        event_type: Option<String>,
        /// Created at or after: Unix ms, or a duration ago (`30m`, `6h`, `7d`).
        #[arg(long)]
        since: Option<String>,
        /// Created before: Unix ms, or a duration ago.
        #[arg(long)]
        until: Option<String>,
        /// Only events with a delivery in this state: pending, in_flight, succeeded, failed.
        #[arg(long)]
        state: Option<String>,
        /// The page of older matches: the `--after` value printed under a page.
        #[arg(long, conflicts_with = "before")]
        after: Option<String>,
        /// The page of newer matches: the `--before` value printed under a page.
        #[arg(long)]
        before: Option<String>,
        /// Page size (1 to 250).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Show one event with its payload, byte for byte as published.
    Get {
        /// Event id (evt_…).
        id: String,
        /// Indent the payload for reading (keys keep their order, literals their spelling).
        #[arg(long)]
        pretty: bool,
    },
    /// The event's deliveries.
    Deliveries {
        /// Event id.
        id: String,
    },
    /// A delivery's attempts.
    Attempts {
        /// Delivery id (dlv_…).
        delivery_id: String,
    },
    /// Resend an event (to one endpoint, or every endpoint it went to).
    Resend {
        /// Event id.
        id: String,
        /// Only to this endpoint.
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Send one delivery again (its event to its endpoint; counts as a resend of the event).
    Retry {
        /// Delivery id (dlv_…).
        delivery_id: String,
    },
}

fn read_payload(path: &PathBuf) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the payload from stdin")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// Prints `GET …/events/{id}`: with `--json` the server's answer as it came, otherwise the
/// event's fields, then the payload exactly as published (`--pretty` indents it).
fn print_event(text: &str, json: bool, pretty: bool) -> anyhow::Result<()> {
    if json {
        println!("{text}");
        return Ok(());
    }
    #[derive(serde::Deserialize)]
    struct Payload<'a> {
        #[serde(borrow)]
        payload: Option<&'a serde_json::value::RawValue>,
    }
    let raw: Payload<'_> = serde_json::from_str(text).context("reading the event")?;
    let payload = match raw.payload {
        None => "(removed by retention)".to_owned(),
        Some(p) if pretty => pretty_json(p.get()),
        Some(p) => p.get().to_owned(),
    };
    let mut fields: serde_json::Value = serde_json::from_str(text).context("reading the event")?;
    if let Some(map) = fields.as_object_mut() {
        map.remove("payload");
    }
    print(&fields, false, EVENTS);
    println!("payload:\n{payload}");
    Ok(())
}

/// Runs `event`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let api = ApiClient::new(&args.conn)?;
    let (json, m) = (args.conn.json, args.merchant.as_str());
    block_on(async {
        let (value, columns) = match args.command {
            Cmd::Publish {
                event_type,
                idempotency_key,
                ordering_key,
                payload,
            } => {
                let payload = read_payload(&payload)?;
                let keys = (idempotency_key.as_deref(), ordering_key.as_deref());
                let v = api.publish(m, &event_type, &payload, keys).await?;
                (v, PUBLISHED)
            }
            Cmd::List {
                id,
                order_no,
                field,
                value,
                endpoint,
                event_type,
                since,
                until,
                state,
                after,
                before,
                limit,
            } => {
                let mut q: Vec<(&str, String)> = Vec::new();
                q.extend(id.map(|v| ("event_id", v)));
                q.extend(order_no.map(|v| ("order_no", v)));
                q.extend(field.map(|v| ("field", v)));
                q.extend(value.map(|v| ("value", v)));
                q.extend(endpoint.map(|v| ("endpoint_id", v)));
                q.extend(event_type.map(|v| ("event_type", v)));
                if let Some(v) = since {
                    q.push(("since", when::parse_ms("--since", &v)?.to_string()));
                }
                if let Some(v) = until {
                    q.push(("until", when::parse_ms("--until", &v)?.to_string()));
                }
                q.extend(state.map(|v| ("state", v)));
                q.extend(after.map(|v| ("after", v)));
                q.extend(before.map(|v| ("before", v)));
                q.extend(limit.map(|v| ("limit", v.to_string())));
                (api.list_events(m, &q).await?, EVENTS)
            }
            Cmd::Get { id, pretty } => {
                let text = api.get_event(m, &id).await?;
                print_event(&text, json, pretty)?;
                return Ok(());
            }
            Cmd::Deliveries { id } => (api.deliveries(m, &id).await?, DELIVERIES),
            Cmd::Attempts { delivery_id } => (api.attempts(m, &delivery_id).await?, ATTEMPTS),
            Cmd::Resend { id, endpoint } => {
                (api.resend(m, &id, endpoint.as_deref()).await?, RESENT)
            }
            Cmd::Retry { delivery_id } => (api.retry_delivery(m, &delivery_id).await?, RESENT),
        };
        print(&value, json, columns);
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
