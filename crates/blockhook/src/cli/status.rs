//! `blockhook status`: one screen about a running server, from its `/readyz` and `/metrics`.
//!
//! Only the Prometheus text format is read (no API token needed): store and readiness, the
//! delivery queue, events ingested, attempts and deliveries by outcome, failing endpoints.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

/// Flags of `status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Base URL of the running server.
    #[arg(long, env = "BLOCKHOOK_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
}

/// One sample: metric name, label pairs, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Parses the lines of the text exposition format that carry samples.
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let (head, value) = line.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match head.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}')?;
                    let labels = inner
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .filter_map(|pair| {
                            let (k, v) = pair.split_once('=')?;
                            Some((k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
                        })
                        .collect();
                    (name, labels)
                }
                None => (head, Vec::new()),
            };
            Some(Sample {
                name: name.trim().to_owned(),
                labels,
                value,
            })
        })
        .collect()
}

/// The value of an unlabelled metric.
fn value(samples: &[Sample], name: &str) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && s.labels.is_empty())
        .map(|s| s.value)
}

/// `kind` label → value for one metric family.
fn by_kind(samples: &[Sample], name: &str) -> BTreeMap<String, f64> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter_map(|s| {
            s.labels
                .iter()
                .find(|(k, _)| k == "kind")
                .map(|(_, v)| (v.clone(), s.value))
        })
        .collect()
}

fn render(ready: &str, samples: &[Sample]) -> String {
    let n = |name: &str| value(samples, name).map_or("-".to_owned(), |v| format!("{v:.0}"));
    let kinds = |name: &str| {
        let m = by_kind(samples, name);
        if m.is_empty() {
            "-".to_owned()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k}={v:.0}"))
                .collect::<Vec<_>>()
                .join("  ")
        }
    };
    let age = value(samples, "blockhook_oldest_due_age_milliseconds")
        .map_or("-".to_owned(), |ms| format!("{:.1} s", ms / 1000.0));
    // A fold from +0.0: an empty float `sum` is -0.0, which would print as "-0".
    let failing = by_kind(samples, "blockhook_failing_endpoints")
        .values()
        .fold(0.0, |a, b| a + b);
    let mut out = String::new();
    out.push_str(&format!("store:              {ready}\n"));
    out.push_str(&format!(
        "queue:              due {}  scheduled {}  in flight {}\n",
        n("blockhook_queue_due"),
        n("blockhook_queue_scheduled"),
        n("blockhook_queue_in_flight")
    ));
    out.push_str(&format!("oldest due age:     {age}\n"));
    out.push_str(&format!(
        "requests in flight: {}\n",
        n("blockhook_in_flight_requests")
    ));
    out.push_str(&format!(
        "events ingested:    {}\n",
        n("blockhook_events_ingested_total")
    ));
    out.push_str(&format!(
        "deliveries:         {}\n",
        kinds("blockhook_deliveries_total")
    ));
    out.push_str(&format!(
        "attempts:           {}\n",
        kinds("blockhook_attempts_total")
    ));
    out.push_str(&format!(
        "failing endpoints:  {failing:.0} ({})\n",
        kinds("blockhook_failing_endpoints")
    ));
    out
}

/// Fetches and prints; exit 0 when the server is ready, 1 when it answers but is not ready.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let base = args.url.trim_end_matches('/');
        let ready = client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .with_context(|| format!("reaching {base}"))?;
        let ready_ok = ready.status().is_success();
        let ready_text = match ready.json::<Value>().await {
            Ok(v) if ready_ok => format!("{} (ready)", v["store"].as_str().unwrap_or("?")),
            Ok(v) => format!("NOT READY: {v}"),
            Err(e) => format!("NOT READY: {e}"),
        };
        let metrics = client
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        print!("{}", render(&ready_text, &parse(&metrics)));
        anyhow::Ok(if ready_ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP blockhook_events_ingested Events accepted by ingest.\n\
# TYPE blockhook_events_ingested counter\n\
blockhook_events_ingested_total 4\n\
blockhook_deliveries_total{kind=\"succeeded\"} 3\n\
blockhook_deliveries_total{kind=\"failed\"} 1\n\
blockhook_queue_due 2\n\
blockhook_oldest_due_age_milliseconds 1500\n\
blockhook_failing_endpoints{kind=\"1\"} 1\n\
blockhook_failing_endpoints{kind=\"6+\"} 2\n\
# EOF\n";

    #[test]
    fn parses_and_summarises_the_exposition() {
        let s = parse(TEXT);
        assert_eq!(value(&s, "blockhook_events_ingested_total"), Some(4.0));
        assert_eq!(
            by_kind(&s, "blockhook_deliveries_total").get("failed"),
            Some(&1.0)
        );
        let screen = render("sqlite (ready)", &s);
        assert!(screen.contains("events ingested:    4"), "{screen}");
        assert!(screen.contains("due 2  scheduled -"), "{screen}");
        assert!(screen.contains("oldest due age:     1.5 s"), "{screen}");
        assert!(screen.contains("failing endpoints:  3"), "{screen}");
        assert!(screen.contains("failed=1  succeeded=3"), "{screen}");
        let empty = render("sqlite (ready)", &parse(""));
        assert!(empty.contains("failing endpoints:  0 (-)"), "{empty}");
    }
}
