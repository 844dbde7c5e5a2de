#!/usr/bin/env python3
"""Check blockhook_verify.py against conformance vectors.

Usage: python3 test_vectors.py path/to/vectors.json [more.json ...]

Each vector is one case (message, signature, verify accepts it in its mode and in "either",
verify rejects a tampered body and a stale time); the fixed rejection checks below are one case
each. Prints "FAIL ..." lines and a final "python: N passed, M failed"; exits 1 on any failure.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blockhook_verify as bv  # noqa: E402

WINDOW = bv.DEFAULT_WINDOW_MS


def headers(time, signature):
    return {"BlockATM-Request-Time": time, "BlockATM-Signature-V2": signature}


def expect_ok(hdrs, body, secrets, mode="sorted", now=None, window=WINDOW):
    bv.verify(hdrs, body, secrets, mode=mode, window_ms=window, now_ms=now)


def expect_reason(reason, hdrs, body, secrets, mode="sorted", now=None, window=WINDOW):
    try:
        bv.verify(hdrs, body, secrets, mode=mode, window_ms=window, now_ms=now)
    except bv.WebhookVerificationError as e:
        if e.reason != reason:
            raise AssertionError("expected %s, got %s (%s)" % (reason, e.reason, e.detail))
        return
    raise AssertionError("expected %s, but verify accepted" % reason)


def check_vector(v):
    body = v["body"].encode("utf-8")
    msg = bv.message(v["mode"], body, v["time"])
    if msg != v["message"].encode("utf-8"):
        raise AssertionError("message %r != expected %r" % (msg.decode("utf-8", "replace"),
                                                             v["message"]))
    sig = bv.sign(v["secret"], msg)
    if sig != v["signature"]:
        raise AssertionError("signature %s != expected %s" % (sig, v["signature"]))
    t = int(v["time"])
    hdrs = headers(v["time"], v["signature"])
    got = bv.verify(hdrs, body, v["secret"], mode=v["mode"], now_ms=t + 1000)
    if got != v["mode"]:
        raise AssertionError("verify returned %r" % got)
    expect_ok(hdrs, body, [v["secret"]], mode="either", now=t - 1000)
    tampered = b'{"tampered":true,"original":' + body + b"}"
    expect_reason(bv.MISMATCH, hdrs, tampered, v["secret"], mode=v["mode"], now=t)
    expect_reason(bv.TOO_OLD, hdrs, body, v["secret"], mode=v["mode"], now=t + WINDOW)


# Fixed checks of every rejection reason (same list in every language's test).
SECRET = "sck_builtin_test"
BODY = b'{"orderNo":"A1","amount":1.50}'
T = "1700000000000"
NOW = 1700000000000
SIG = bv.sign(SECRET, bv.message("sorted", BODY, T))
BAD_TIMES = ["", "1.7e12", "-1700000000000", "+1700000000000", " 1700000000000",
             "17000000000000000000", "\u0661\u0667\u0660\u0660", "1700000000000\n"]
BAD_SIGNATURES = ["", "abc", SIG[:63], SIG + "0", "g" * 64, " " + SIG[1:], SIG + "\n"]
BAD_BODIES = [b"[1]", b'"x"', b"", b"null", b'{"a":1,"a":2}', b'{"a":1,"\\u0061":2}',
              b'{"x":{"a":1,"a":2}}', b'{"a":01}', b'{"a":1.}', b'{"a":.5}', b'{"a":-}', b'{"a":1e}', b'{"a":+1}',
              b'{"a":1,}', b'{"a":[1,]}', b'{"a" 1}', b'{"a":1 "b":2}', b'{"a":NaN}',
              b'{"a":Infinity}', b'{"a":tru}', b"{'a':1}", b'{"a":"\\ud800"}',
              b'{"a":"\\udc00x"}', b'{"\\ud800":null}', b'{"a":"\\x"}', b'{"a":"x\ty"}',
              b'{"a":1}x', b'{"a":1}{}', b"\xef\xbb\xbf{}", b'{"a":"\xff"}', b'{"a":"\xc3"}',
              b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}"]
RAW_SIG = bv.sign(SECRET, bv.message("raw", b"not json", T))

FIXED_CHECKS = [
    ("header names are case-insensitive", lambda: expect_ok(
        {"blockatm-request-time": T, "BLOCKATM-SIGNATURE-V2": SIG}, BODY, SECRET, now=NOW)),
    ("uppercase hex signature accepted", lambda: expect_ok(
        headers(T, SIG.upper()), BODY, SECRET, now=NOW)),
    ("rotation: any listed secret", lambda: expect_ok(
        headers(T, SIG), BODY, ["sck_old_wrong", SECRET], now=NOW)),
    ("window edges accepted", lambda: (
        expect_ok(headers(T, SIG), BODY, SECRET, now=NOW + WINDOW - 1),
        expect_ok(headers(T, SIG), BODY, SECRET, now=NOW - WINDOW + 1))),
    ("missing time header", lambda: expect_reason(
        bv.MISSING_HEADER, {"BlockATM-Signature-V2": SIG}, BODY, SECRET, now=NOW)),
    ("missing signature header", lambda: expect_reason(
        bv.MISSING_HEADER, {"BlockATM-Request-Time": T}, BODY, SECRET, now=NOW)),
    ("time not a plain integer", lambda: [expect_reason(
        bv.TIME_NOT_INTEGER, headers(t, SIG), BODY, SECRET, now=NOW) for t in BAD_TIMES]),
    ("too old", lambda: expect_reason(
        bv.TOO_OLD, headers(T, SIG), BODY, SECRET, now=NOW + WINDOW)),
    ("too new", lambda: expect_reason(
        bv.TOO_NEW, headers(T, SIG), BODY, SECRET, now=NOW - WINDOW)),
    ("custom window", lambda: expect_reason(
        bv.TOO_OLD, headers(T, SIG), BODY, SECRET, now=NOW + 1000, window=1000)),
    ("malformed signature", lambda: [expect_reason(
        bv.MALFORMED_SIGNATURE, headers(T, s), BODY, SECRET, now=NOW) for s in BAD_SIGNATURES]),
    ("wrong secret", lambda: expect_reason(
        bv.MISMATCH, headers(T, SIG), BODY, ["sck_wrong", "sck_other"], now=NOW)),
    ("invalid bodies rejected in sorted and either mode", lambda: [
        (expect_reason(bv.NOT_JSON_OBJECT, headers(T, SIG), b, SECRET, now=NOW),
         expect_reason(bv.NOT_JSON_OBJECT, headers(T, SIG), b, SECRET, mode="either", now=NOW))
        for b in BAD_BODIES]),
    ("raw mode does not parse the body", lambda: expect_ok(
        headers(T, RAW_SIG), b"not json", SECRET, mode="raw", now=NOW)),
    ("sorted mode rejects a raw-mode signature", lambda: expect_reason(
        bv.MISMATCH, headers(T, bv.sign(SECRET, bv.message("raw", BODY, T))), BODY, SECRET,
        now=NOW)),
    ("moderate nesting accepted", lambda: bv.canonical(
        b'{"a":' + b"[" * 50 + b"1" + b"]" * 50 + b"}") == "1" or fail("bad canonical")),
]


def fail(text):
    raise AssertionError(text)


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: test_vectors.py vectors.json [more.json ...]")
    passed = failed = 0

    def run(name, fn):
        nonlocal passed, failed
        try:
            fn()
            passed += 1
        except Exception as e:  # report every failure, keep going
            failed += 1
            print("FAIL %s: %s" % (name, e))

    for path in sys.argv[1:]:
        with open(path, encoding="utf-8") as f:
            vectors = json.load(f)["vectors"]
        for v in vectors:
            run("%s: %s" % (os.path.basename(path), v["name"]), lambda v=v: check_vector(v))
    for name, fn in FIXED_CHECKS:
        run(name, fn)
    print("python: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
