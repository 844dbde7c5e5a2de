#!/usr/bin/env python3
"""Generate spec/vectors.extra.json: extra BlockATM-Signature-V2 conformance vectors.

Standard library only. The canonical form (contract section 2a) is computed by a small
hand-written JSON walker below, NOT by json.loads, so that number literals are kept exactly
as written and duplicate keys / lone surrogates are caught. Before writing anything the
script checks itself:

  * its walker must reproduce every message and signature of spec/vectors.json;
  * every case below carries a hand-written `expect` message, and the walker must agree.

Usage:  python3 spec/gen_extra_vectors.py            # rewrite spec/vectors.extra.json
        python3 spec/gen_extra_vectors.py --check    # fail if the committed file is stale
"""

import hashlib
import hmac
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "vectors.extra.json")
BASE = os.path.join(HERE, "vectors.json")


# --------------------------------------------------------------------------------------------
# A literal-preserving JSON parser (RFC 8259, strict).
#
# Tree: ("object", [(key, value), ...]) | ("array", [value, ...]) | ("number", "literal text")
#       | str | True | False | None
# --------------------------------------------------------------------------------------------

class JsonError(ValueError):
    pass


WS = " \t\n\r"
ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class Parser:
    def __init__(self, text):
        self.s = text
        self.i = 0

    def fail(self, what):
        raise JsonError("%s at offset %d" % (what, self.i))

    def skip_ws(self):
        while self.i < len(self.s) and self.s[self.i] in WS:
            self.i += 1

    def peek(self):
        return self.s[self.i] if self.i < len(self.s) else ""

    def expect(self, ch):
        if self.peek() != ch:
            self.fail("expected %r" % ch)
        self.i += 1

    def parse_document(self):
        self.skip_ws()
        value = self.value()
        self.skip_ws()
        if self.i != len(self.s):
            self.fail("trailing data")
        return value

    def value(self):
        c = self.peek()
        if c == "{":
            return self.obj()
        if c == "[":
            return self.arr()
        if c == '"':
            return self.string()
        if c == "-" or c.isdigit() and c.isascii():
            return self.number()
        for word, val in (("true", True), ("false", False), ("null", None)):
            if self.s.startswith(word, self.i):
                self.i += len(word)
                return val
        self.fail("unexpected character")

    def obj(self):
        self.expect("{")
        pairs, seen = [], set()
        self.skip_ws()
        if self.peek() == "}":
            self.i += 1
            return ("object", pairs)
        while True:
            self.skip_ws()
            key = self.string()
            if key in seen:
                self.fail("duplicate key %r" % key)
            seen.add(key)
            self.skip_ws()
            self.expect(":")
            self.skip_ws()
            pairs.append((key, self.value()))
            self.skip_ws()
            if self.peek() == ",":
                self.i += 1
                continue
            self.expect("}")
            return ("object", pairs)

    def arr(self):
        self.expect("[")
        items = []
        self.skip_ws()
        if self.peek() == "]":
            self.i += 1
            return ("array", items)
        while True:
            self.skip_ws()
            items.append(self.value())
            self.skip_ws()
            if self.peek() == ",":
                self.i += 1
                continue
            self.expect("]")
            return ("array", items)

    def hex4(self):
        h = self.s[self.i:self.i + 4]
        if len(h) != 4 or any(c not in "0123456789abcdefABCDEF" for c in h):
            self.fail("bad \\u escape")
        self.i += 4
        return int(h, 16)

    def string(self):
        self.expect('"')
        out = []
        while True:
            if self.i >= len(self.s):
                self.fail("unterminated string")
            c = self.s[self.i]
            self.i += 1
            if c == '"':
                return "".join(out)
            if c < " ":
                self.fail("control character in string")
            if c != "\\":
                out.append(c)
                continue
            e = self.s[self.i:self.i + 1]
            self.i += 1
            if e in ESCAPES:
                out.append(ESCAPES[e])
            elif e == "u":
                cp = self.hex4()
                if 0xD800 <= cp <= 0xDBFF:
                    if self.s[self.i:self.i + 2] != "\\u":
                        self.fail("lone high surrogate")
                    self.i += 2
                    lo = self.hex4()
                    if not 0xDC00 <= lo <= 0xDFFF:
                        self.fail("bad low surrogate")
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                elif 0xDC00 <= cp <= 0xDFFF:
                    self.fail("lone low surrogate")
                out.append(chr(cp))
            else:
                self.fail("bad escape")

    def number(self):
        start = self.i
        digits = "0123456789"

        def run():
            n = self.i
            while self.i < len(self.s) and self.s[self.i] in digits:
                self.i += 1
            return self.i - n

        if self.peek() == "-":
            self.i += 1
        if self.peek() == "0":
            self.i += 1
        elif run() == 0:
            self.fail("bad number")
        if self.peek() == ".":
            self.i += 1
            if run() == 0:
                self.fail("bad fraction")
        if self.peek() in ("e", "E"):
            self.i += 1
            if self.peek() in ("+", "-"):
                self.i += 1
            if run() == 0:
                self.fail("bad exponent")
        return ("number", self.s[start:self.i])


def parse(body_bytes):
    return Parser(body_bytes.decode("utf-8")).parse_document()


# --------------------------------------------------------------------------------------------
# Canonical form (contract section 2a)
# --------------------------------------------------------------------------------------------

def scalar_text(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, tuple) and v[0] == "number":
        return v[1]
    return v  # a string


def object_parts(pairs):
    parts = []
    for key, value in sorted(pairs, key=lambda kv: kv[0].encode("utf-8")):
        if value is None:
            continue
        if isinstance(value, tuple) and value[0] == "object":
            parts += object_parts(value[1])
        elif isinstance(value, tuple) and value[0] == "array":
            parts += array_parts(value[1])
        else:
            parts.append(key + "=" + scalar_text(value))
    return parts


def array_parts(items):
    parts = []
    for value in items:
        if value is None:
            continue
        if isinstance(value, tuple) and value[0] == "object":
            parts += object_parts(value[1])
        elif isinstance(value, tuple) and value[0] == "array":
            parts += array_parts(value[1])
        else:
            parts.append(scalar_text(value))
    return parts


def canonical(body_bytes):
    tree = parse(body_bytes)
    if not (isinstance(tree, tuple) and tree[0] == "object"):
        raise JsonError("body is not a JSON object")
    return "&".join(object_parts(tree[1]))


def message(mode, body_bytes, time):
    if mode == "raw":
        return body_bytes + b"&time=" + time.encode("ascii")
    c = canonical(body_bytes)
    return (c + "&time=" + time if c else "time=" + time).encode("utf-8")


def sign(secret, msg_bytes):
    return hmac.new(secret.encode("utf-8"), msg_bytes, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------------------------
# The cases. `expect` is written by hand; the generator refuses to run if its walker disagrees.
# --------------------------------------------------------------------------------------------

S = "sck_QOoPSlHDSsgXYeNyTP2i0ug1HKLRjHw9Ug7mCc1Q0"
T = "1743060268000"

CASES = [
    dict(name="numbers-verbatim",
         note="number literals are copied exactly as written: exponents, signs, trailing zeros, "
              "a 30-digit integer, zero and minus zero",
         body='{"h":0.1e-2,"a":1E-7,"b":-0.5,"c":2000.00,"d":1e+30,'
              '"e":123456789012345678901234567890,"f":0,"g":-0}',
         expect="a=1E-7&b=-0.5&c=2000.00&d=1e+30&e=123456789012345678901234567890&f=0&g=-0"
                "&h=0.1e-2&time=" + T),
    dict(name="numbers-verbatim-raw",
         note="the same body in raw mode: the exact bytes",
         mode="raw",
         body='{"h":0.1e-2,"a":1E-7,"b":-0.5,"c":2000.00,"d":1e+30,'
              '"e":123456789012345678901234567890,"f":0,"g":-0}',
         expect='{"h":0.1e-2,"a":1E-7,"b":-0.5,"c":2000.00,"d":1e+30,'
                '"e":123456789012345678901234567890,"f":0,"g":-0}&time=' + T),
    dict(name="booleans",
         note="true/false are emitted as the words; the string \"true\" looks the same",
         body='{"refunded":false,"paid":true,"memo":"true"}',
         expect="memo=true&paid=true&refunded=false&time=" + T),
    dict(name="nested-object-in-object",
         note="nested objects are flattened in the parent key's position, keys sorted within "
              "each object, parent keys never appear",
         body='{"z":1,"meta":{"y":"2","b":{"d":4,"c":3}},"a":0}',
         expect="a=0&c=3&d=4&y=2&z=1&time=" + T),
    dict(name="nested-position-not-global-sort",
         note="nested pairs are NOT merged into one global sort: each object's pairs appear at "
              "the parent key's place",
         body='{"c":3,"b":{"z":1},"a":{"y":2}}',
         expect="y=2&z=1&c=3&time=" + T),
    dict(name="same-key-at-two-levels",
         note="a key may repeat across levels (it is not a duplicate): both pairs are emitted",
         body='{"detail":{"amount":"2"},"amount":"1"}',
         expect="amount=1&amount=2&time=" + T),
    dict(name="array-of-scalars",
         note="scalar array elements are emitted bare (no key=), in array order",
         body='{"tags":["x","y",3,true,1.50,false],"n":1}',
         expect="n=1&x&y&3&true&1.50&false&time=" + T),
    dict(name="array-nulls-and-nested-arrays",
         note="nulls inside arrays are skipped, nested arrays are flattened in order, objects "
              "inside arrays give their sorted pairs",
         body='{"m":null,"list":[null,"a",[1,[2,null,"b"]],{"nil":null,"k":"v"},[]],"z":"end"}',
         expect="a&1&2&b&k=v&z=end&time=" + T),
    dict(name="all-null-object",
         note="every value null: canonical is empty, message is time=<t> with no leading &",
         body='{"a":null,"b":null}',
         expect="time=" + T),
    dict(name="all-null-nested",
         note="nested containers holding only nulls contribute nothing",
         body='{"x":{"a":null},"y":[null,[null]],"z":null}',
         expect="time=" + T),
    dict(name="empty-nested-containers",
         note="empty objects and arrays contribute nothing and leave no stray &",
         body='{"a":"1","b":{},"c":[],"d":[{}],"e":[[],{}],"f":"2"}',
         expect="a=1&f=2&time=" + T),
    dict(name="whitespace-empty-object",
         note="an empty object with inner whitespace",
         body='{ \n }',
         expect="time=" + T),
    dict(name="unicode-keys-utf8-order",
         note="keys sort by the bytes of their UTF-8 encoding: Z < a < a b < ab < z < \u00e4 < "
              "\u00e9 < \uff21 (U+FF21) < \U0001F600 (U+1F600). UTF-16 order would wrongly put "
              "the emoji before U+FF21",
         body='{"\u00e9":1,"z":2,"Z":3,"a":4,"\u00e4":5,"\U0001F600":6,"\uff21":7,"ab":8,'
              '"a b":9}',
         expect="Z=3&a=4&a b=9&ab=8&z=2&\u00e4=5&\u00e9=1&\uff21=7&\U0001F600=6&time=" + T),
    dict(name="escaped-unicode-keys",
         note="keys written as \\u escapes sort by their decoded UTF-8 bytes and are emitted "
              "decoded",
         body='{"\\ud83d\\ude00":1,"\\uff21":2,"\\u00e9":3}',
         expect="\u00e9=3&\uff21=2&\U0001F600=1&time=" + T),
    dict(name="string-escapes-decoded",
         note="string values are emitted decoded and verbatim: quote, backslash, newline, tab, "
              "slash, \\u00e9, a surrogate pair; no re-escaping, no URL-encoding",
         body='{"s":"say \\"hi\\" \\\\ back\\nslash","e":"caf\\u00e9","smile":"\\ud83d\\ude00",'
              '"tab":"a\\tb","slash":"\\/x","amp":"a=b&c"}',
         expect='amp=a=b&c&e=caf\u00e9&s=say "hi" \\ back\nslash&slash=/x&smile=\U0001F600'
                '&tab=a\tb&time=' + T),
    dict(name="string-escapes-raw",
         note="raw mode signs the escapes as sent, undecoded",
         mode="raw",
         body='{"e":"caf\\u00e9","smile":"\\ud83d\\ude00","s":"a\\"b"}',
         expect='{"e":"caf\\u00e9","smile":"\\ud83d\\ude00","s":"a\\"b"}&time=' + T),
    dict(name="keys-with-escapes",
         note="keys containing escapes are decoded, then sorted by bytes: A < k\\nl < k\"q < k\\\\b",
         body='{"k\\"q":1,"k\\\\b":2,"\\u0041":3,"k\\nl":4}',
         expect='A=3&k\nl=4&k"q=1&k\\b=2&time=' + T),
    dict(name="empty-strings",
         note="empty string values give key= (also nested)",
         body='{"c":{"d":""},"a":"","b":"x"}',
         expect="a=&b=x&d=&time=" + T),
    dict(name="empty-string-array-element",
         note="an empty string inside an array is a scalar element: it is emitted bare, i.e. as an "
              "empty part, giving two & in a row",
         body='{"a":"1","b":["",""],"c":"2"}',
         expect="a=1&&&c=2&time=" + T),
    dict(name="non-ascii-secret",
         note="the HMAC key is the UTF-8 bytes of the secret exactly as given",
         secret="sck_t\u00ebst_\u043a\u043b\u044e\u0447_\U0001F511",
         body='{"orderNo":"OrderNo_1","amount":"10.50"}',
         expect="amount=10.50&orderNo=OrderNo_1&time=" + T),
    dict(name="non-ascii-secret-raw",
         note="non-ASCII secret, raw mode, non-ASCII body bytes",
         mode="raw",
         secret="\u5bc6\u94a5-sck_\u00e9",
         body='{"memo":"\u4ed8\u6b3e \u00e9","orderNo":"OrderNo_2"}',
         expect='{"memo":"\u4ed8\u6b3e \u00e9","orderNo":"OrderNo_2"}&time=' + T),
    dict(name="odd-whitespace-sorted",
         note="whitespace between tokens (space, tab, CR, LF) does not change the sorted message",
         body=' {\n\t"b" : 1 ,\r\n "a":[ 1 , "two" ,{ "c" :true } ] }\n',
         expect="1&two&c=true&b=1&time=" + T),
    dict(name="odd-whitespace-raw",
         note="raw mode signs the exact bytes, whitespace included",
         mode="raw",
         body=' {\n\t"b" : 1 ,\r\n "a":[ 1 , "two" ,{ "c" :true } ] }\n',
         expect=' {\n\t"b" : 1 ,\r\n "a":[ 1 , "two" ,{ "c" :true } ] }\n&time=' + T),
    dict(name="payout-event",
         note="the Payout example payload of contract section 4",
         time="1693212861016",
         body='{"custNo":"CustNo_2022140101","bizOrderNo":"B202505220012","id":8210003616,'
              '"symbol":"USDT","amount":"2000.00","status":"SUCCESS",'
              '"txId":"0x7614a9840d9422feaef4671e0ee98dd7092ebcba6e41076285f99d0b2b0de5fe",'
              '"network":"Ethereum","chainId":"1",'
              '"fromAddress":"0xa9e358e33a57e67c9b84618a52f0194c345c8e35",'
              '"toAddress":"0xa9e358E33a57E67c9B84618a52f0194C345C8e35","fee":"2","gasAmount":"1",'
              '"type":1,"createTime":1693212861016,"contractId":200910,"blockTime":1693212861016}',
         expect="amount=2000.00&bizOrderNo=B202505220012&blockTime=1693212861016&chainId=1"
                "&contractId=200910&createTime=1693212861016&custNo=CustNo_2022140101&fee=2"
                "&fromAddress=0xa9e358e33a57e67c9b84618a52f0194c345c8e35&gasAmount=1"
                "&id=8210003616&network=Ethereum&status=SUCCESS&symbol=USDT"
                "&toAddress=0xa9e358E33a57E67c9B84618a52f0194C345C8e35"
                "&txId=0x7614a9840d9422feaef4671e0ee98dd7092ebcba6e41076285f99d0b2b0de5fe"
                "&type=1&time=1693212861016"),
    dict(name="deep-nesting",
         note="objects in arrays in objects in arrays: everything flattened in document order "
              "with keys sorted inside each object",
         body='{"batch":[{"items":[{"sku":"B","qty":2},{"sku":"A","qty":1}],"id":7}],'
              '"count":1}',
         expect="id=7&qty=2&sku=B&qty=1&sku=A&count=1&time=" + T),
]


def build():
    vectors = []
    for case in CASES:
        mode = case.get("mode", "sorted")
        secret = case.get("secret", S)
        time = case.get("time", T)
        body = case["body"]
        msg = message(mode, body.encode("utf-8"), time)
        if msg.decode("utf-8") != case["expect"]:
            sys.exit("case %s: walker gives %r, hand-written expect is %r"
                     % (case["name"], msg.decode("utf-8"), case["expect"]))
        vectors.append({
            "name": case["name"],
            "note": case["note"],
            "mode": mode,
            "secret": secret,
            "time": time,
            "body": body,
            "message": msg.decode("utf-8"),
            "signature": sign(secret, msg),
        })
    names = [v["name"] for v in vectors]
    if len(set(names)) != len(names):
        sys.exit("duplicate vector names")
    return {
        "about": "Extra BlockATM-Signature-V2 conformance vectors (edge cases of contract "
                 "section 2), same format as vectors.json. Generated by gen_extra_vectors.py; "
                 "do not edit by hand.",
        "vectors": vectors,
    }


def self_check_against_base():
    with open(BASE, encoding="utf-8") as f:
        base = json.load(f)
    for v in base["vectors"]:
        msg = message(v["mode"], v["body"].encode("utf-8"), v["time"])
        if msg.decode("utf-8") != v["message"] or sign(v["secret"], msg) != v["signature"]:
            sys.exit("walker disagrees with spec/vectors.json on %s" % v["name"])


def self_check_rejects():
    bad = ['[1]', '"x"', '{"a":1,"a":2}', '{"a":01}', '{"a":1.}', '{"a":.5}', '{"a":1,}',
           '{"a":NaN}', '{"a":"\\ud800"}', '{"a":"\\udc00x"}', '{"a":"x\ty"}', '{"a":1}x',
           '\ufeff{}', '{"a":+1}', "{'a':1}", '{"a":tru}']
    for b in bad:
        try:
            canonical(b.encode("utf-8"))
        except (JsonError, UnicodeError):
            continue
        sys.exit("walker accepted invalid body %r" % b)


def render(doc):
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def main():
    self_check_against_base()
    self_check_rejects()
    text = render(build())
    if "--check" in sys.argv[1:]:
        with open(OUT, encoding="utf-8") as f:
            if f.read() != text:
                sys.exit("spec/vectors.extra.json is stale: run python3 spec/gen_extra_vectors.py")
        print("spec/vectors.extra.json is up to date")
        return
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print("wrote %s (%d vectors)" % (os.path.relpath(OUT), len(CASES)))


if __name__ == "__main__":
    main()
