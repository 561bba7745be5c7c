"""A job the service refuses, through the installed jobqueue-client package: the
error's code and each bad field, one line each.

Usage: client_errors.py SERVER_ADDR
"""

import datetime
import sys

from jobqueue.client import Client, JobqueueError, json_request
from jobqueue.v1 import jobs_pb2


def main() -> None:
    with Client(sys.argv[1]) as client:
        job = jobs_pb2.JobSpec(
            request=json_request("ftp://x", {"n": 1}),
            max_attempts=0,
            ttl=datetime.timedelta(seconds=-5),
        )
        try:
            client.submit(job)
        except JobqueueError as error:
            print(f"code {error.code.name}")
            for violation in error.field_violations:
                print(f"field {violation.field}: {violation.description}")
            print(f"str {error}")
            return
        sys.exit("the bad job was accepted")


if __name__ == "__main__":
    main()
