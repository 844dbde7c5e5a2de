//! `blockhook sign`: print the `BlockATM-Signature-V2` of a body, exactly as blockhook would
//! sign it when delivering, so a merchant can compare it with what their receiver computes.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use blockhook_sig::Mode;
use clap::builder::{PossibleValuesParser, TypedValueParser};

const AFTER_HELP: &str = "\
What is signed: BlockATM-Signature-V2 is the lowercase hex HMAC-SHA256, keyed with the secret,
of a message built from the body and the BlockATM-Request-Time header (Unix milliseconds):
  sorted  every key=value pair of the JSON body, keys in ascending byte order, joined with '&',
          then '&time=<t>'. Nulls are skipped; strings and number literals are copied as they
          are; nested objects and arrays are flattened without their parent key.
          {\"b\":\"x\",\"a\":1.50,\"c\":null} at t=1743060268000 signs
          a=1.50&b=x&time=1743060268000
  raw     the body bytes exactly as sent, then '&time=<t>' (the body need not be JSON).

Output: the signature alone on stdout (with --print-message, the message on the line before
it). Without --time the current time is used and printed to stderr as 'time=<ms>': send that
value as BlockATM-Request-Time, or pass --time to choose it.

Examples:
  blockhook sign --secret sck_... --time 1743060268000 payment.json
  echo '{\"id\":1}' | BLOCKHOOK_SECRET=sck_... blockhook sign --print-message";

/// Arguments of `blockhook sign`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER_HELP, after_help = "Run with --help for what exactly is signed.")]
pub struct Args {
    /// The endpoint's webhook secret, exactly as shown to the merchant (e.g. sck_...); its
    /// bytes are the HMAC key, it is not hex- or base64-decoded.
    #[arg(long, env = "BLOCKHOOK_SECRET", hide_env_values = true)]
    secret: String,

    /// How the signed message is built from the body: sorted (the key=value pairs in key
    /// order) or raw (the body bytes as they are).
    #[arg(
        long,
        default_value = "sorted",
        value_parser = PossibleValuesParser::new(["sorted", "raw"]).try_map(|s| s.parse::<Mode>())
    )]
    mode: Mode,

    /// The BlockATM-Request-Time to sign, in Unix milliseconds [default: now, printed to
    /// stderr as time=MS].
    #[arg(long, value_name = "MS")]
    time: Option<u64>,

    /// Also print the exact message that is signed, on its own line before the signature.
    #[arg(long)]
    print_message: bool,

    /// The body to sign: a file, or '-' (or nothing) for standard input.
    #[arg(value_name = "FILE|-")]
    file: Option<PathBuf>,
}

/// Signs the body and prints the signature; any failure is an error (exit 2).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let body = read_body(args.file.as_deref())?;
    let time = match args.time {
        Some(time) => time,
        None => {
            let now = now_ms()?;
            eprintln!("time={now}");
            now
        }
    };
    let signature = blockhook_sig::sign(args.secret.as_bytes(), args.mode, &body, time)
        .map_err(|e| explain(e, args.mode))?;

    let mut out = std::io::stdout().lock();
    if args.print_message {
        let message =
            blockhook_sig::message(args.mode, &body, time).map_err(|e| explain(e, args.mode))?;
        out.write_all(&message)?;
        out.write_all(b"\n")?;
    }
    writeln!(out, "{signature}")?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Turns a library error into the one-line message the user sees, with a hint where useful.
fn explain(error: blockhook_sig::Error, mode: Mode) -> anyhow::Error {
    use blockhook_sig::Error as E;
    match error {
        E::EmptySecret => {
            anyhow::anyhow!("the secret is empty: pass --secret or set BLOCKHOOK_SECRET")
        }
        E::NotAnObject | E::InvalidJson { .. } | E::TooDeep | E::DuplicateKey(_) => {
            anyhow::anyhow!(
                "cannot sign in {mode} mode: {error}; {mode} mode needs a JSON object \
                 (use --mode raw to sign the bytes as they are)"
            )
        }
        other => anyhow::anyhow!("cannot sign: {other}"),
    }
}

/// Reads the body from `file`, or from standard input when it is `None` or `-`.
pub(super) fn read_body(file: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    match file {
        Some(path) if path != Path::new("-") => {
            body =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        }
        _ => {
            let mut stdin = std::io::stdin().lock();
            if stdin.is_terminal() {
                eprintln!("reading the body from standard input (end it with Ctrl-D)");
            }
            stdin
                .read_to_end(&mut body)
                .context("cannot read standard input")?;
        }
    }
    Ok(body)
}

/// The current Unix time in milliseconds.
pub(super) fn now_ms() -> anyhow::Result<u64> {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?;
    u64::try_from(since_epoch.as_millis()).context("the system clock is out of range")
}
