"""Scrapes a jobqueue metrics endpoint in both exposition formats and parses each
with the Prometheus project's own Python parsers; prints the samples as JSON.

Usage: metrics_check.py HOST:PORT
Output: {"text": [[name, labels, value], ...], "openmetrics": [...]}
"""

import json
import sys
import urllib.request

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text


def scrape(addr, accept):
    request = urllib.request.Request(
        f"http://{addr}/metrics?scraped_by=test", headers={"Accept": accept}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Content-Type"], response.read().decode()


def samples(families):
    out = []
    for family in families:
        for s in family.samples:
            out.append([s.name, dict(s.labels), s.value, family.type])
    return out


def main():
    addr = sys.argv[1]
    text_type, text = scrape(addr, "text/plain;version=0.0.4")
    assert text_type.startswith("text/plain; version=0.0.4"), text_type
    om_type, om = scrape(
        addr,
        "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
    )
    assert om_type.startswith("application/openmetrics-text"), om_type
    assert om.endswith("# EOF\n"), om[-200:]
    print(
        json.dumps(
            {
                "text": samples(parse_text(text)),
                "openmetrics": samples(parse_openmetrics(om)),
            }
        )
    )


if __name__ == "__main__":
    main()
