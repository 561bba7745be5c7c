"""Watches a job through the installed jobqueue-client package while the test restarts
the server: submits a GET of TARGET_URL due in DUE_SECONDS, prints `watching` once the
stream is established (its first heartbeat), each event, and `ended` when the server
ends the stream.

Usage: client_resume.py SERVER_ADDR TARGET_URL DUE_SECONDS
"""

import datetime
import logging
import sys

from jobqueue.client import Client
from jobqueue.v1 import jobs_pb2


def main() -> None:
    # The client tells (on stderr) each time the stream broke and it reconnects.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    address, target, due_in = sys.argv[1], sys.argv[2], float(sys.argv[3])
    with Client(address) as client:
        due = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=due_in)
        job = jobs_pb2.JobSpec(
            request=jobs_pb2.HttpRequest(method="GET", url=target), schedule_time=due
        )
        job_id = client.submit(job).id
        print(f"submitted {job_id}", flush=True)
        request = jobs_pb2.WatchJobsRequest(
            ids=[job_id], snapshot=True, heartbeat_interval=datetime.timedelta(seconds=1)
        )
        watching = False
        for event in client.watch(request, heartbeats=True, give_up_after=30):
            if event.kind == jobs_pb2.JOB_EVENT_KIND_HEARTBEAT:
                if not watching:
                    print("watching", flush=True)
                    watching = True
                continue
            kind = jobs_pb2.JobEventKind.Name(event.kind).removeprefix("JOB_EVENT_KIND_")
            status = jobs_pb2.JobStatus.Name(event.status).removeprefix("JOB_STATUS_")
            print(f"event {kind} {status} {event.job_id} cursor {event.cursor}", flush=True)
        print("ended", flush=True)


if __name__ == "__main__":
    main()
