"""Verifies requests a target received with the Standard Webhooks reference
library (PyPI `standardwebhooks`), independently of jobqueue's own code.

Reads a JSON list of cases from stdin, each {"secret", "headers", "body_b64"},
and prints a JSON list with "valid" or "invalid: <why>" for each, in order.
"""

import base64
import json
import sys

from standardwebhooks.webhooks import Webhook


def main():
    verdicts = []
    for case in json.load(sys.stdin):
        body = base64.b64decode(case["body_b64"])
        try:
            Webhook(case["secret"]).verify(body, case["headers"], json_parse=False)
            verdicts.append("valid")
        except Exception as error:  # the library raises its own verification error
            verdicts.append(f"invalid: {error}")
    json.dump(verdicts, sys.stdout)


if __name__ == "__main__":
    main()
