//! `blockhook sign` and `blockhook verify`, run as the built binary over the documentation vector.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

const SECRET: &str = "sck_QOoPSlHDSsgXYeNyTP2i0ug1HKLRjHw9Ug7mCc1Q0";
const TIME: &str = "1743060268000";
/// `doc-payment-sorted` from spec/vectors.json.
const BODY: &str = r#"{"amount":999,"cashierId":91,"chainId":"11155111","custNo":"cust00001","fromAddress":"0xa9e358e33a57e67c9b84618a52f0194c345c8e35","id":8210003764,"network":"Ethereum","status":9,"symbol":"USDT","txId":"0x1da59f33aa6f6b435514126e26d5622c3e377e4762579aa0ac0130139625853d"}"#;
const MESSAGE: &str = "amount=999&cashierId=91&chainId=11155111&custNo=cust00001&fromAddress=0xa9e358e33a57e67c9b84618a52f0194c345c8e35&id=8210003764&network=Ethereum&status=9&symbol=USDT&txId=0x1da59f33aa6f6b435514126e26d5622c3e377e4762579aa0ac0130139625853d&time=1743060268000";
const SIGNATURE: &str = "dc6eb4a1d14c5db3f48c6d66f8ba4697d1ddd99bf8bbaf87eefcb4bf5db3d963";
/// `doc-payment-raw`: the same body in raw mode.
const RAW_SIGNATURE: &str = "0bebc162f85ae1b570ce941c271c071f42baa8369b0cdbe4fd53165a0d13499a";

/// Runs `blockhook <args>` with `stdin` as standard input and no BLOCKHOOK_SECRET inherited.
fn run(args: &[&str], stdin: &str) -> Output {
    run_env(args, stdin, &[])
}

fn run_env(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_blockhook"));
    cmd.args(args)
        .env_remove("BLOCKHOOK_SECRET")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the blockhook binary starts");
    let written = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    // A command that refuses its arguments exits without reading its input, so
    // the pipe may close under the write: that is the behaviour under test, and
    // the exit status and stderr below say whether it was right.
    if let Err(e) = written {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing stdin: {e}"
        );
    }
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn body_file(contents: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(contents.as_bytes()).unwrap();
    file
}

fn verify_args<'a>(path: &'a str, signature: &'a str) -> Vec<&'a str> {
    vec![
        "verify",
        "--secret",
        SECRET,
        "--time",
        TIME,
        "--signature",
        signature,
        "--now",
        TIME,
        path,
    ]
}

#[test]
fn sign_prints_the_vector_signature() {
    let file = body_file(BODY);
    let path = file.path().to_str().unwrap();
    let o = run(&["sign", "--secret", SECRET, "--time", TIME, path], "");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{SIGNATURE}\n"));
    assert_eq!(stderr(&o), "");
}

#[test]
fn sign_reads_stdin_and_the_secret_from_the_environment() {
    for args in [
        &["sign", "--time", TIME][..],
        &["sign", "--time", TIME, "-"],
    ] {
        let o = run_env(args, BODY, &[("BLOCKHOOK_SECRET", SECRET)]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stdout(&o), format!("{SIGNATURE}\n"));
    }
}

#[test]
fn sign_prints_the_message_before_the_signature() {
    let o = run(
        &[
            "sign",
            "--secret",
            SECRET,
            "--time",
            TIME,
            "--print-message",
        ],
        BODY,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{MESSAGE}\n{SIGNATURE}\n"));
}

#[test]
fn sign_in_raw_mode() {
    let o = run(
        &["sign", "--secret", SECRET, "--time", TIME, "--mode", "raw"],
        BODY,
    );
    assert_eq!(stdout(&o), format!("{RAW_SIGNATURE}\n"));
    let o = run(
        &[
            "sign",
            "--secret",
            SECRET,
            "--time",
            "5",
            "--mode",
            "raw",
            "--print-message",
        ],
        "not json",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("not json&time=5\n"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn sign_without_time_uses_now_and_says_so_on_stderr() {
    let o = run(&["sign", "--secret", SECRET], BODY);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    let t: u64 = err
        .trim()
        .strip_prefix("time=")
        .expect("time=<ms> on stderr")
        .parse()
        .unwrap();
    assert!(t > 1_700_000_000_000, "{t}");
    // The printed time is the one that was signed.
    let again = run(
        &["sign", "--secret", SECRET, "--time", &t.to_string()],
        BODY,
    );
    assert_eq!(stdout(&o), stdout(&again));
    let sig = stdout(&o);
    assert_eq!(sig.trim().len(), 64);
}

#[test]
fn verify_accepts_the_vector() {
    let file = body_file(BODY);
    let path = file.path().to_str().unwrap();
    let o = run(&verify_args(path, SIGNATURE), "");
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "valid (mode sorted, secret #1)\n");
}

#[test]
fn verify_reports_which_secret_and_mode_matched() {
    let args = [
        "verify",
        "--secret",
        "sck_old",
        "--secret",
        SECRET,
        "--time",
        TIME,
        "--signature",
        RAW_SIGNATURE,
        "--now",
        TIME,
        "--mode",
        "either",
    ];
    let o = run(&args, BODY);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "valid (mode raw, secret #2)\n");
}

#[test]
fn verify_rejects_a_tampered_body() {
    let tampered = BODY.replace("999", "998");
    let file = body_file(&tampered);
    let o = run(&verify_args(file.path().to_str().unwrap(), SIGNATURE), "");
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).starts_with("rejected: signature does not match"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn verify_rejects_a_wrong_time_window_or_signature() {
    // The real clock is years after the vector's time.
    let o = run(
        &[
            "verify",
            "--secret",
            SECRET,
            "--time",
            TIME,
            "--signature",
            SIGNATURE,
        ],
        BODY,
    );
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.starts_with("rejected: BlockATM-Request-Time is ")
            && out.contains("ms in the past, outside the 300 s window"),
        "{out}"
    );

    let o = run(
        &[
            "verify",
            "--secret",
            SECRET,
            "--time",
            "-5",
            "--signature",
            SIGNATURE,
        ],
        BODY,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).starts_with("rejected: BlockATM-Request-Time is not a plain integer"),
        "{}",
        stdout(&o)
    );

    let o = run(
        &[
            "verify",
            "--secret",
            SECRET,
            "--time",
            TIME,
            "--now",
            TIME,
            "--signature",
            "abc",
        ],
        BODY,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).starts_with("rejected: signature is malformed"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn missing_file_is_an_error() {
    for args in [
        &["sign", "--secret", SECRET, "/nonexistent/body.json"][..],
        &verify_args("/nonexistent/body.json", SIGNATURE),
    ] {
        let o = run(args, "");
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = stderr(&o);
        assert!(err.contains("cannot read /nonexistent/body.json"), "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert_eq!(stdout(&o), "");
    }
}

#[test]
fn not_json_in_sorted_mode_is_explained() {
    let o = run(&["sign", "--secret", SECRET, "--time", TIME], "amount=999");
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("cannot sign in sorted mode: body is not a JSON object"),
        "{err}"
    );
    assert!(err.contains("--mode raw"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let o = run(&["sign", "--secret", SECRET, "--time", TIME], r#"{"a":1,}"#);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("body is not valid JSON: expected a string key at byte 7"),
        "{}",
        stderr(&o)
    );

    let o = run(&verify_args("-", SIGNATURE), "amount=999");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).starts_with("rejected: body is not a JSON object; sorted mode needs"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn empty_secret_and_bad_mode_are_errors() {
    let o = run(&["sign", "--secret", "", "--time", TIME], BODY);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("secret is empty"), "{}", stderr(&o));
    let o = run(
        &[
            "verify",
            "--secret",
            "",
            "--time",
            TIME,
            "--signature",
            SIGNATURE,
        ],
        BODY,
    );
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["sign", "--secret", SECRET, "--mode", "sideways"], BODY);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("possible values: sorted, raw"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn help_explains_the_message() {
    let o = run(&["sign", "--help"], "");
    assert_eq!(o.status.code(), Some(0));
    let help = stdout(&o);
    assert!(
        help.contains("HMAC-SHA256")
            && help.contains("&time=")
            && help.contains("BLOCKHOOK_SECRET"),
        "{help}"
    );
    let o = run(&["verify", "--help"], "");
    let help = stdout(&o);
    assert!(
        help.contains("exit status") && help.contains("rejected: <reason>"),
        "{help}"
    );
}

#[test]
fn verify_explain_shows_messages_and_exits_0_on_a_match() {
    let file = body_file(BODY);
    let path = file.path().to_str().unwrap();
    let mut args = verify_args(path, SIGNATURE);
    args.push("--explain");
    let out = run(&args, "");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains(&format!("message:   {MESSAGE}")), "{text}");
    assert!(text.contains(&format!("expected:  {SIGNATURE}")), "{text}");
    assert!(
        text.contains(&format!("expected:  {RAW_SIGNATURE}")),
        "{text}"
    );
    assert!(
        text.contains("verdict: match: the signature is valid in sorted mode"),
        "{text}"
    );
    assert!(text.contains("mistakes: none found"), "{text}");
    assert!(!text.contains(SECRET), "the secret is never printed");
}

#[test]
fn verify_explain_names_each_mistake_and_exits_1() {
    let file = body_file(BODY);
    let path = file.path().to_str().unwrap();
    let now = ["--now", TIME];
    // Time in seconds (the vector's time is a whole second, so × 1000 matches exactly).
    let out = run(
        &[
            &[
                "verify",
                "--explain",
                "--secret",
                SECRET,
                "--time",
                "1743060268",
            ][..],
            &["--signature", SIGNATURE, path],
            &now,
        ]
        .concat(),
        "",
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("mistake [time-units]"), "{text}");
    assert!(text.contains("time=1743060268000"), "{text}");
    // Secret without its prefix.
    let bare = SECRET.strip_prefix("sck_").unwrap();
    let out = run(
        &[
            &["verify", "--explain", "--secret", bare, "--time", TIME][..],
            &["--signature", SIGNATURE, path],
            &now,
        ]
        .concat(),
        "",
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("mistake [secret-form]"), "{text}");
    assert!(text.contains("sck_ added"), "{text}");
    // Wrong mode: a raw signature checked in sorted mode.
    let out = run(
        &[
            &["verify", "--explain", "--secret", SECRET, "--time", TIME][..],
            &["--signature", RAW_SIGNATURE, path],
            &now,
        ]
        .concat(),
        "",
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("mistake [wrong-mode]"), "{text}");
    assert!(text.contains("Verify in raw mode"), "{text}");
    // Re-serialised: the raw signature with a pretty-printed body.
    let pretty =
        serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(BODY).unwrap())
            .unwrap();
    let pretty_file = body_file(&pretty);
    let out = run(
        &[
            &["verify", "--explain", "--mode", "raw", "--secret", SECRET][..],
            &["--time", TIME, "--signature", RAW_SIGNATURE],
            &[pretty_file.path().to_str().unwrap()],
            &now,
        ]
        .concat(),
        "",
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("mistake [reserialised-body]"), "{text}");
    // Stale: the right request, checked an hour later.
    let out = run(
        &[
            &["verify", "--explain", "--secret", SECRET, "--time", TIME][..],
            &["--signature", SIGNATURE, path, "--now", "1743063868000"],
        ]
        .concat(),
        "",
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("mistake [stale-time]"), "{text}");
}

#[test]
fn verify_explain_needs_some_headers() {
    let out = run(&["verify", "--explain", "--secret", SECRET], "{}");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--explain needs"), "{}", stderr(&out));
    let out = run(&["verify", "--secret", SECRET, "--time", TIME], "{}");
    assert_eq!(
        out.status.code(),
        Some(2),
        "--signature stays required without --explain"
    );
}
