"""Verify requests blockhook sent with the official Standard Webhooks library (PyPI
`standardwebhooks`), as a merchant would.

Usage: python verify.py CASES.json

CASES.json is a list of {"name", "secret", "headers": {name: value}, "body_b64", "expect"}; each
request is verified with `Webhook(secret).verify(body, headers)` and must pass (expect true) or
be refused (expect false). Prints one line per case; exits 1 if any case went the other way.
"""

import base64
import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        cases = json.load(f)
    wrong = 0
    for case in cases:
        body = base64.b64decode(case["body_b64"])
        try:
            Webhook(case["secret"]).verify(body, case["headers"])
            verified, why = True, "verified"
        except WebhookVerificationError as e:
            verified, why = False, f"refused: {e}"
        ok = verified == case["expect"]
        wrong += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {case['name']}: {why}")
    print(f"{len(cases) - wrong} of {len(cases)} cases as expected")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
