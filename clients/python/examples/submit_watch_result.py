"""Submits a job that POSTs a JSON body, watches it to its end and prints its result.

    python3 examples/submit_watch_result.py localhost:50051 http://127.0.0.1:8080/hook

With JOBQUEUE_KEY set, every call presents that API key (scopes: submit and read).
"""

from __future__ import annotations

import os
import sys

from jobqueue.client import JSON, Client, JobqueueError, json_body, json_request
from jobqueue.v1 import jobs_pb2


def status_name(status: int) -> str:
    return jobs_pb2.JobStatus.Name(status).removeprefix("JOB_STATUS_")


def main(address: str, target_url: str) -> None:
    with Client(address, api_key=os.environ.get("JOBQUEUE_KEY")) as client:
        body: JSON = {"greeting": "hello", "items": [1, 2], "nested": {"ok": True}}
        job = jobs_pb2.JobSpec(
            request=json_request(target_url, body),
            max_attempts=3,
            tags=["example"],
        )
        job_id = client.submit(job).id
        print(f"submitted {job_id}")

        for event in client.watch([job_id]):
            print(f"status {status_name(event.status)} attempt {event.attempt}")

        final = client.result(job_id).final_attempt
        if not final.HasField("response"):
            sys.exit(f"no response: {final.error_message}")
        print(f"response {final.response.status_code}")
        print(f"body {json_body(final.response)!r}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} ADDRESS TARGET_URL")
    try:
        main(sys.argv[1], sys.argv[2])
    except JobqueueError as error:
        sys.exit(f"jobqueue: {error}")
