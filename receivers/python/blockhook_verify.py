"""Verify BlockATM-Signature-V2 webhooks (as sent by blockhook). Python 3.7+, standard library only.

Copy this file into your project. Typical use (Flask shown; any framework works as long as you
pass the *raw* request body bytes, not a re-serialised JSON object):

    from blockhook_verify import verify, WebhookVerificationError

    @app.post("/webhooks/blockatm")
    def webhook():
        try:
            verify(request.headers, request.get_data(), secrets=["sck_..."], mode="sorted")
        except WebhookVerificationError as e:
            return e.reason, 401
        enqueue(request.get_data())      # do the work asynchronously
        return "", 200                   # only a 200 acknowledges the delivery

Signature (contract section 2):
    signature = lowercase_hex(HMAC_SHA256(key = UTF-8 bytes of the secret, message))
    sorted:  message = canonical(body) + "&time=" + t     ("time=" + t when canonical is empty)
    raw:     message = <exact body bytes> + "&time=" + t
"""

import hashlib
import hmac
import json
import time as _time

TIME_HEADER = "BlockATM-Request-Time"
SIGNATURE_HEADER = "BlockATM-Signature-V2"
DEFAULT_WINDOW_MS = 5 * 60 * 1000

# Reasons carried by WebhookVerificationError.reason
MISSING_HEADER = "missing_header"
TIME_NOT_INTEGER = "time_not_integer"
TOO_OLD = "too_old"
TOO_NEW = "too_new"
MALFORMED_SIGNATURE = "malformed_signature"
NOT_JSON_OBJECT = "not_json_object"
MISMATCH = "mismatch"


class WebhookVerificationError(Exception):
    """Raised by verify(); .reason is one of the constants above, .detail a human explanation."""

    def __init__(self, reason, detail):
        super().__init__("%s: %s" % (reason, detail))
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------------------------------------
# Canonical form (mode "sorted")
#
# json.loads is used with hooks so that nothing is lost: parse_int/parse_float receive the exact
# literal text of each number ("1E-7", "2000.00" stay as written, never become floats),
# object_pairs_hook keeps every pair (so duplicate keys are detected and rejected) and
# parse_constant rejects NaN/Infinity, which are not JSON.
# ---------------------------------------------------------------------------------------------

class _Object(list):
    """The (key, value) pairs of one JSON object, in document order."""


def _object_hook(pairs):
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError("duplicate key %r" % key)
        seen.add(key)
    return _Object(pairs)


def _reject_constant(name):
    raise ValueError("%s is not valid JSON" % name)


def _parse(body):
    if isinstance(body, (bytes, bytearray, memoryview)):
        body = bytes(body).decode("utf-8")  # strict: invalid UTF-8 raises
    return json.loads(body, object_pairs_hook=_object_hook, parse_int=str, parse_float=str,
                      parse_constant=_reject_constant)


def _scalar(value):
    # After _parse, a scalar is a str (string value or number literal) or a bool.
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value


def _object_parts(pairs):
    parts = []
    for key, value in sorted(pairs, key=lambda kv: kv[0].encode("utf-8")):  # UTF-8 byte order
        if value is None:
            continue
        if isinstance(value, _Object):
            parts.extend(_object_parts(value))      # nested object: its pairs, no key prefix
        elif isinstance(value, list):
            parts.extend(_array_parts(value))       # array: its elements, no key
        else:
            parts.append(key + "=" + _scalar(value))
    return parts


def _array_parts(items):
    parts = []
    for value in items:
        if value is None:
            continue
        if isinstance(value, _Object):
            parts.extend(_object_parts(value))
        elif isinstance(value, list):
            parts.extend(_array_parts(value))
        else:
            parts.append(_scalar(value))            # scalar elements are bare
    return parts


def canonical(body):
    """The canonical string of a JSON object body (bytes or str). Raises ValueError if the body
    is not a valid JSON object (including duplicate keys and lone surrogate escapes)."""
    try:
        tree = _parse(body)
        if not isinstance(tree, _Object):
            raise ValueError("the body is not a JSON object")
        text = "&".join(_object_parts(tree))
        text.encode("utf-8")  # a lone surrogate escape (\ud800) cannot be encoded: reject it
        return text
    except (UnicodeError, RecursionError) as e:
        raise ValueError("invalid JSON body: %s" % e) from None


def message(mode, body, time):
    """The exact bytes that are HMAC'd. mode is "sorted" or "raw"; time is the header string."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    if mode == "raw":
        return bytes(body) + b"&time=" + time.encode("ascii")
    if mode == "sorted":
        c = canonical(body)
        return (c + "&time=" + time if c else "time=" + time).encode("utf-8")
    raise ValueError("mode must be 'sorted' or 'raw'")


def sign(secret, message_bytes):
    """Lowercase hex HMAC-SHA256 of the message, keyed with the UTF-8 bytes of the secret."""
    if isinstance(message_bytes, str):
        message_bytes = message_bytes.encode("utf-8")
    return hmac.new(secret.encode("utf-8"), message_bytes, hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------------------------

def _header(headers, name):
    """Case-insensitive lookup in a dict, a framework headers object or a list of pairs."""
    items = headers.items() if hasattr(headers, "items") else headers
    wanted = name.lower()
    for key, value in items:
        if isinstance(key, bytes):
            key = key.decode("latin-1")
        if key.lower() == wanted:
            if isinstance(value, (list, tuple)):
                value = value[0] if value else ""
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            return value
    return None


def _is_plain_integer(text):
    # ASCII digits only (no sign, no spaces, no exponent); at most 18 so it fits in 64 bits.
    return 0 < len(text) <= 18 and all("0" <= c <= "9" for c in text)


def verify(headers, raw_body, secrets, mode="sorted", window_ms=DEFAULT_WINDOW_MS, now_ms=None):
    """Verify one webhook request.

    headers:   the request headers (any mapping or list of pairs; names are case-insensitive)
    raw_body:  the exact request body bytes
    secrets:   one secret string, or several (e.g. old and new during a rotation)
    mode:      "sorted" (default), "raw" or "either" (must match the endpoint's signing mode)
    window_ms: maximum |now - BlockATM-Request-Time|; 5 minutes by default, keep it <= 15 minutes
    now_ms:    current Unix time in ms (defaults to the system clock)

    Returns the mode that matched ("sorted" or "raw"); raises WebhookVerificationError.
    """
    if mode not in ("sorted", "raw", "either"):
        raise ValueError("mode must be 'sorted', 'raw' or 'either'")
    if isinstance(secrets, str):
        secrets = [secrets]
    secrets = list(secrets)
    if not secrets or not all(isinstance(s, str) and s for s in secrets):
        raise ValueError("give at least one non-empty secret")
    if isinstance(raw_body, str):
        raw_body = raw_body.encode("utf-8")

    time_text = _header(headers, TIME_HEADER)
    signature = _header(headers, SIGNATURE_HEADER)
    if time_text is None:
        raise WebhookVerificationError(MISSING_HEADER, "no %s header" % TIME_HEADER)
    if signature is None:
        raise WebhookVerificationError(MISSING_HEADER, "no %s header" % SIGNATURE_HEADER)

    if not _is_plain_integer(time_text):
        raise WebhookVerificationError(TIME_NOT_INTEGER,
                                       "%s is not a plain integer: %r" % (TIME_HEADER, time_text))
    now = int(_time.time() * 1000) if now_ms is None else now_ms
    age = now - int(time_text)
    if age >= window_ms:
        raise WebhookVerificationError(TOO_OLD, "request time is %d ms in the past" % age)
    if -age >= window_ms:
        raise WebhookVerificationError(TOO_NEW, "request time is %d ms in the future" % -age)

    if len(signature) != 64 or not all(c in "0123456789abcdefABCDEF" for c in signature):
        raise WebhookVerificationError(MALFORMED_SIGNATURE,
                                       "%s is not 64 hex characters" % SIGNATURE_HEADER)
    signature = signature.lower()

    candidates = []  # (mode, message bytes)
    body_error = None
    if mode in ("raw", "either"):
        candidates.append(("raw", message("raw", raw_body, time_text)))
    if mode in ("sorted", "either"):
        try:
            candidates.append(("sorted", message("sorted", raw_body, time_text)))
        except ValueError as e:
            body_error = str(e)

    matched = None
    for candidate_mode, msg in candidates:
        for secret in secrets:
            # compare_digest runs in constant time; keep looping so timing reveals nothing.
            if hmac.compare_digest(sign(secret, msg), signature) and matched is None:
                matched = candidate_mode
    if matched:
        return matched
    if body_error is not None:
        raise WebhookVerificationError(NOT_JSON_OBJECT, body_error)
    raise WebhookVerificationError(MISMATCH, "signature does not match")
