//! `blockhook verify`: check a received `BlockATM-Signature-V2` the way a receiver should, and
//! say precisely why it is rejected.

use std::path::PathBuf;
use std::process::ExitCode;

use blockhook_sig::{Error, VerifyMode, VerifyOptions};
use clap::builder::{PossibleValuesParser, TypedValueParser};

use super::sign::{now_ms, read_body};

const AFTER_HELP: &str = "\
What is checked: BlockATM-Signature-V2 must be the lowercase hex HMAC-SHA256, keyed with the
endpoint's secret, of a message built from the body and BlockATM-Request-Time (Unix ms):
  sorted  every key=value pair of the JSON body, keys in ascending byte order, joined with '&',
          then '&time=<t>' ('time=<t>' alone for an empty object). Nulls are skipped; strings
          and number literals are copied as they are; nested objects and arrays are flattened.
  raw     the body bytes exactly as received, then '&time=<t>'.
  either  accept both forms.
In order: the time must be a plain integer and within --window of now; the signature must be
64 hex characters; in sorted mode the body must be a JSON object; then the signature must
match one of the secrets (compared in constant time).

Output and exit status:
  0  'valid (mode sorted, secret #1)': which form and which --secret matched
  1  'rejected: <reason>': the signature, time or body does not pass
  2  an error (unreadable file, empty secret, bad arguments)

With --explain it prints, for each mode (sorted and raw from --time/--signature, standard from
--webhook-id/--webhook-timestamp/--webhook-signature), the exact signed message and the
expected and received signatures, then which mode matches and the usual mistakes it finds by
signing their variants: a re-serialised body, the wrong mode, the time in seconds instead of
milliseconds, the secret without its prefix, a stale time, a malformed header. Exit 0 when a
receiver checking --mode (standard, with only the Standard Webhooks headers) accepts it now,
1 otherwise. Only the first --secret is used.

Example (a request captured earlier, checked as of its own time):
  blockhook verify --secret sck_... --time 1743060268000 --signature dc6e...d963 \\
      --now 1743060268000 payment.json
  blockhook verify --explain --secret sck_... --time 1743060268 --signature dc6e...d963 payment.json";

/// Arguments of `blockhook verify`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER_HELP, after_help = "Run with --help for what exactly is checked.")]
pub struct Args {
    /// A secret to try (e.g. sck_...). Repeat it during a key rotation: each is tried, and the
    /// one that matched is reported by position (#1, #2, ...).
    #[arg(
        long = "secret",
        value_name = "SECRET",
        env = "BLOCKHOOK_SECRET",
        hide_env_values = true,
        required = true
    )]
    secrets: Vec<String>,

    /// The BlockATM-Request-Time header value, exactly as received (Unix milliseconds).
    #[arg(
        long,
        value_name = "MS",
        allow_hyphen_values = true,
        required_unless_present = "explain"
    )]
    time: Option<String>,

    /// The BlockATM-Signature-V2 header value (64 hex characters).
    #[arg(
        long,
        value_name = "HEX",
        allow_hyphen_values = true,
        required_unless_present = "explain"
    )]
    signature: Option<String>,

    /// Explain the signature instead of only judging it: each mode's message, the expected
    /// signature, which mode matches and the usual mistakes (see --help).
    #[arg(long)]
    explain: bool,

    /// With --explain: the Standard Webhooks webhook-id header value.
    #[arg(long, value_name = "ID", requires = "explain")]
    webhook_id: Option<String>,

    /// With --explain: the Standard Webhooks webhook-timestamp header value (Unix seconds).
    #[arg(
        long,
        value_name = "SECS",
        allow_hyphen_values = true,
        requires = "explain"
    )]
    webhook_timestamp: Option<String>,

    /// With --explain: the Standard Webhooks webhook-signature header value (v1,<base64>).
    #[arg(
        long,
        value_name = "V1",
        allow_hyphen_values = true,
        requires = "explain"
    )]
    webhook_signature: Option<String>,

    /// Which message form to accept: sorted (the default for endpoints), raw, or either.
    #[arg(
        long,
        default_value = "sorted",
        value_parser = PossibleValuesParser::new(["sorted", "raw", "either"])
            .try_map(|s| s.parse::<VerifyMode>())
    )]
    mode: VerifyMode,

    /// Reject request times this many seconds or more away from now, in either direction.
    /// The contract's default is 300 (5 minutes) and it advises never more than 900.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    window: u64,

    /// Check the time against this instant (Unix milliseconds) instead of the clock, e.g. to
    /// re-check a request captured earlier.
    #[arg(long, value_name = "MS")]
    now: Option<u64>,

    /// The body as received: a file, or '-' (or nothing) for standard input.
    #[arg(value_name = "FILE|-")]
    file: Option<PathBuf>,
}

/// Verifies and prints the verdict: exit 0 valid, 1 rejected; errors are returned (exit 2).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.secrets.iter().any(String::is_empty) {
        anyhow::bail!("a --secret is empty");
    }
    let body = read_body(args.file.as_deref())?;
    let now = match args.now {
        Some(now) => now,
        None => now_ms()?,
    };
    let window_ms = args.window.saturating_mul(1000);
    let opts = VerifyOptions {
        mode: args.mode,
        window_ms,
    };
    if args.explain {
        return explain(&args, &body, now, window_ms);
    }
    let secrets: Vec<&[u8]> = args.secrets.iter().map(|s| s.as_bytes()).collect();
    let (Some(time), Some(signature)) = (args.time.as_deref(), args.signature.as_deref()) else {
        anyhow::bail!("--time and --signature are required (or use --explain)");
    };

    match blockhook_sig::verify_parts(time, signature, &body, &secrets, &opts, now) {
        Ok(ok) => {
            println!("valid (mode {}, secret #{})", ok.mode, ok.secret_index + 1);
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::EmptySecret) => anyhow::bail!("a --secret is empty"),
        Err(reason) => {
            println!("rejected: {}", describe(&reason, args.window, args.mode));
            Ok(ExitCode::from(1))
        }
    }
}

/// `--explain`: prints the explanation; exit 0 when a receiver checking the expected mode
/// accepts the request now (it matches in that mode and no time is stale), 1 otherwise.
fn explain(args: &Args, body: &[u8], now: u64, window_ms: u64) -> anyhow::Result<ExitCode> {
    use blockhook_receiver::explain::{self, DebugMode};
    let secret = args.secrets.first().map(String::as_str).unwrap_or_default();
    let blockatm = args.time.is_some() || args.signature.is_some();
    let standard = args.webhook_id.is_some()
        || args.webhook_timestamp.is_some()
        || args.webhook_signature.is_some();
    if !blockatm && !standard {
        anyhow::bail!(
            "--explain needs --time and --signature, or --webhook-id, --webhook-timestamp and \
             --webhook-signature"
        );
    }
    // The mode a receiver would check: --mode for the BlockATM headers (none for `either`),
    // standard when only the Standard Webhooks headers are given.
    let expected = if blockatm {
        match args.mode {
            VerifyMode::Sorted => Some(DebugMode::Sorted),
            VerifyMode::Raw => Some(DebugMode::Raw),
            VerifyMode::Either => None,
        }
    } else {
        Some(DebugMode::Standard)
    };
    let e = explain::explain(&explain::Input {
        body,
        request_time: args.time.as_deref(),
        signature_v2: args.signature.as_deref(),
        webhook_id: args.webhook_id.as_deref(),
        webhook_timestamp: args.webhook_timestamp.as_deref(),
        webhook_signature: args.webhook_signature.as_deref(),
        secret,
        expected_mode: expected,
        now_ms: Some(now),
        window_ms,
    });
    print!("{}", e.to_text());
    let accepted = match expected {
        Some(mode) => e.matched().contains(&mode),
        None => e.is_match(),
    } && !e.mistakes.iter().any(|m| m.code() == "stale-time");
    Ok(if accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The rejection reason, with the window and hints the library cannot know about.
fn describe(reason: &Error, window_secs: u64, mode: VerifyMode) -> String {
    match reason {
        Error::TooOld { skew_ms } => format!(
            "BlockATM-Request-Time is {skew_ms} ms in the past, outside the {window_secs} s window \
             (a captured request? pass --now <ms> or a wider --window)"
        ),
        Error::TooNew { skew_ms } => format!(
            "BlockATM-Request-Time is {skew_ms} ms in the future, outside the {window_secs} s \
             window (is one of the clocks wrong?)"
        ),
        Error::Mismatch => format!(
            "signature does not match in {mode} mode: the body, the time or the secret differs \
             from what was signed{}",
            if mode == VerifyMode::Either {
                ""
            } else {
                " (try --mode either)"
            }
        ),
        Error::NotAnObject
        | Error::InvalidJson { .. }
        | Error::TooDeep
        | Error::DuplicateKey(_) => {
            format!("{reason}; sorted mode needs a JSON object (try --mode raw or --mode either)")
        }
        other => other.to_string(),
    }
}
