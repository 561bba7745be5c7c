"""A thin layer over the generated stubs, only where they are painful to use raw.

- JSON bodies: :func:`to_value` / :func:`from_value` convert plain Python values to and
  from ``google.protobuf.Value``; :func:`json_request` builds an ``HttpRequest`` with a
  JSON body and :func:`json_body` reads a response's.
- :class:`Client`: one channel (plaintext or TLS, with an API key if given) with every
  service's stub, and short methods for the common job calls.
- :class:`JobqueueError`: what every failed call of those methods raises, with the
  ``google.rpc.BadRequest`` field violations the service sends for bad input.
- :meth:`Client.watch`: a watch that reconnects when the stream breaks and resumes from
  the last cursor, so no change is lost or seen twice.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Union

import grpc
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from jobqueue.v1 import (
    audit_pb2_grpc,
    chains_pb2_grpc,
    contracts_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    keys_pb2_grpc,
    queues_pb2_grpc,
    schedules_pb2_grpc,
    templates_pb2_grpc,
)

if TYPE_CHECKING:  # Python 3.11's typing.Self, for older Pythons too
    from typing_extensions import Self

__all__ = [
    "JSON",
    "Client",
    "FieldViolation",
    "JobqueueError",
    "from_value",
    "json_body",
    "json_request",
    "to_value",
]

log = logging.getLogger(__name__)

#: A JSON document as plain Python values.
JSON = Union[None, bool, int, float, str, list["JSON"], dict[str, "JSON"]]

# ---------------------------------------------------------------------------- JSON


def to_value(data: JSON) -> struct_pb2.Value:
    """``data`` (dicts with string keys, lists, str, int, float, bool, None) as a
    ``google.protobuf.Value``. Numbers become doubles, as JSON has them."""
    value = struct_pb2.Value()
    if data is None:
        value.null_value = struct_pb2.NULL_VALUE
    elif isinstance(data, bool):
        value.bool_value = data
    elif isinstance(data, (int, float)):
        value.number_value = data
    elif isinstance(data, str):
        value.string_value = data
    elif isinstance(data, (list, tuple)):
        value.list_value.values.extend(to_value(item) for item in data)
    elif isinstance(data, dict):
        value.struct_value.SetInParent()
        for key, item in data.items():
            value.struct_value.fields[key].CopyFrom(to_value(item))
    else:
        raise TypeError(f"not JSON: {type(data).__name__}")
    return value


def from_value(value: struct_pb2.Value) -> JSON:
    """A ``google.protobuf.Value`` as plain Python: dict, list, str, float, bool or None.
    Keys come sorted: a ``Struct`` keeps no order, and a stable one reads better."""
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        fields = value.struct_value.fields
        return {key: from_value(fields[key]) for key in sorted(fields)}
    if kind == "list_value":
        return [from_value(item) for item in value.list_value.values]
    if kind == "number_value":
        return value.number_value
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None


def json_request(
    url: str,
    body: JSON,
    *,
    method: str = "POST",
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
) -> jobs_pb2.HttpRequest:
    """An ``HttpRequest`` that sends ``body`` as JSON (``application/json``)."""
    return jobs_pb2.HttpRequest(
        method=method, url=url, headers=headers, params=params, json=to_value(body)
    )


def json_body(response: jobs_pb2.HttpResponse) -> JSON:
    """A response's JSON body as plain Python. Raises ``ValueError`` when the body is
    not JSON (it is text, bytes, truncated, or empty). For numbers exactly as sent,
    parse ``response.json_bytes`` instead."""
    if response.WhichOneof("body") != "json":
        raise ValueError(f"the body is not JSON: {response.WhichOneof('body') or 'empty'}")
    return from_value(response.json)


# ---------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: its path (``job.request.url``) and what was expected."""

    field: str
    description: str


class JobqueueError(Exception):
    """A call the service refused or could not answer.

    ``code`` is the gRPC status code, ``message`` the service's message,
    ``field_violations`` the bad fields of an ``INVALID_ARGUMENT`` (from
    ``google.rpc.BadRequest``), and ``retry_delay`` the seconds to wait before trying
    again when the service said so (``google.rpc.RetryInfo``).
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        field_violations: Sequence[FieldViolation] = (),
        retry_delay: float | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.field_violations = list(field_violations)
        self.retry_delay = retry_delay
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        # The service's message usually states each violation already.
        unsaid = [
            f"{v.field}: {v.description}"
            for v in self.field_violations
            if f"{v.field}: {v.description}" not in self.message
        ]
        return f"{text} [{'; '.join(unsaid)}]" if unsaid else text

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> JobqueueError:
        """The error a failed call raised, with the details the service attached."""
        if not isinstance(error, grpc.Call):
            return cls(grpc.StatusCode.UNKNOWN, str(error))
        code, message = error.code(), error.details() or ""
        violations: list[FieldViolation] = []
        retry_delay: float | None = None
        try:
            status = rpc_status.from_call(error)
        except ValueError:  # details that contradict the status itself: ignored
            status = None
        for detail in status.details if status is not None else []:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                retry_delay = retry.retry_delay.ToTimedelta().total_seconds()
        return cls(code, message, violations, retry_delay)


# ---------------------------------------------------------------------------- client


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class _BearerKey(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Sends ``authorization: Bearer <key>`` with every call, on plaintext as on TLS
    (call credentials would refuse plaintext, and a local server is often that)."""

    def __init__(self, key: str) -> None:
        self._header = ("authorization", f"Bearer {key}")

    def _with_key(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [*(details.metadata or ()), self._header]
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_key(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_key(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._with_key(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._with_key(details), requests)


class Client:
    """A connection to a jobqueue server.

    ``address`` is ``host:port``. ``api_key`` (``jq_...``) is presented with every call.
    TLS is used when ``tls`` is true or any of ``root_certificates`` (PEM; default: the
    system's), ``certificate_chain`` and ``private_key`` (PEM, for mTLS) is given.
    ``timeout`` bounds each unary call of the methods below, in seconds.

    The generated stubs are attributes, for everything the methods do not cover:
    ``jobs``, ``queues``, ``schedules``, ``chains``, ``contracts``, ``templates``,
    ``keys`` and ``audit``. Their calls raise ``grpc.RpcError``; the methods of this
    class raise :class:`JobqueueError`.
    """

    def __init__(
        self,
        address: str,
        *,
        api_key: str | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        certificate_chain: bytes | None = None,
        private_key: bytes | None = None,
        timeout: float | None = 30.0,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        # A restarted server is found again within a few seconds, not grpc's default
        # of up to two minutes: watches resume as soon as it serves.
        options = [("grpc.max_reconnect_backoff_ms", 5000), *options]
        if tls or root_certificates or certificate_chain or private_key:
            credentials = grpc.ssl_channel_credentials(
                root_certificates, private_key, certificate_chain
            )
            self.channel = grpc.secure_channel(address, credentials, options)
        else:
            self.channel = grpc.insecure_channel(address, options)
        channel: grpc.Channel = self.channel
        if api_key:
            channel = grpc.intercept_channel(channel, _BearerKey(api_key))
        self.timeout = timeout
        self.jobs = jobs_pb2_grpc.JobServiceStub(channel)
        self.queues = queues_pb2_grpc.QueueServiceStub(channel)
        self.schedules = schedules_pb2_grpc.ScheduleServiceStub(channel)
        self.chains = chains_pb2_grpc.ChainServiceStub(channel)
        self.contracts = contracts_pb2_grpc.ContractServiceStub(channel)
        self.templates = templates_pb2_grpc.TemplateServiceStub(channel)
        self.keys = keys_pb2_grpc.KeyServiceStub(channel)
        self.audit = audit_pb2_grpc.AuditServiceStub(channel)

    def close(self) -> None:
        """Closes the channel; open watches end."""
        self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: Callable[..., Any], request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise JobqueueError.from_rpc_error(error) from error

    def submit(self, job: jobs_pb2.JobSpec | jobs_pb2.HttpRequest) -> jobs_pb2.SubmitJobResponse:
        """Submits one job (a bare ``HttpRequest`` runs with every default); the answer
        carries its ``id``, its ``status`` and whether an idempotency key named an
        ``existing`` job."""
        if isinstance(job, jobs_pb2.HttpRequest):
            job = jobs_pb2.JobSpec(request=job)
        response: jobs_pb2.SubmitJobResponse = self._call(
            self.jobs.SubmitJob, jobs_pb2.SubmitJobRequest(job=job)
        )
        return response

    def submit_all(self, jobs: Sequence[jobs_pb2.JobSpec]) -> list[jobs_pb2.SubmitJobResponse]:
        """Submits up to 1000 jobs at once: all are stored, or none is. One answer per
        job, in order."""
        response: jobs_pb2.SubmitJobsResponse = self._call(
            self.jobs.SubmitJobs, jobs_pb2.SubmitJobsRequest(jobs=jobs)
        )
        return list(response.results)

    def get(self, job_id: str) -> jobs_pb2.Job:
        """The job as stored: status, attempts, times, the request as submitted."""
        job: jobs_pb2.Job = self._call(self.jobs.GetJob, jobs_pb2.GetJobRequest(id=job_id))
        return job

    def result(self, job_id: str) -> jobs_pb2.JobResult:
        """The job's outcome: its final attempt and every attempt (see :func:`json_body`)."""
        result: jobs_pb2.JobResult = self._call(
            self.jobs.GetJobResult, jobs_pb2.GetJobResultRequest(id=job_id)
        )
        return result

    def cancel(self, job_id: str) -> jobs_pb2.Job:
        """Cancels a queued or running job (a running call is aborted)."""
        job: jobs_pb2.Job = self._call(self.jobs.CancelJob, jobs_pb2.CancelJobRequest(id=job_id))
        return job

    def retry(self, job_id: str) -> jobs_pb2.Job:
        """Queues a failed or canceled job again with a fresh attempt budget."""
        job: jobs_pb2.Job = self._call(self.jobs.RetryJob, jobs_pb2.RetryJobRequest(id=job_id))
        return job

    def delete(self, job_id: str) -> None:
        """Removes a finished job and its result."""
        self._call(self.jobs.DeleteJob, jobs_pb2.DeleteJobRequest(id=job_id))

    def list_jobs(self, request: jobs_pb2.ListJobsRequest | None = None) -> Iterator[jobs_pb2.Job]:
        """Every job the filter in ``request`` matches, newest first, page after page."""
        page_request = jobs_pb2.ListJobsRequest()
        if request is not None:
            page_request.CopyFrom(request)
        while True:
            page: jobs_pb2.ListJobsResponse = self._call(self.jobs.ListJobs, page_request)
            yield from page.jobs
            if not page.next_page_token:
                return
            page_request.page_token = page.next_page_token

    def watch(
        self,
        request: jobs_pb2.WatchJobsRequest | Sequence[str],
        *,
        heartbeats: bool = False,
        reconnect: bool = True,
        give_up_after: float | None = 60.0,
    ) -> Iterator[jobs_pb2.JobEvent]:
        """The events of a ``WatchJobs`` stream; job ids alone watch those jobs with a
        snapshot first. It ends when the server ends the stream (a watch by ids ends
        once every job has finished); breaking out of the loop cancels the call.

        When the stream breaks (``UNAVAILABLE``: the server restarted or the connection
        dropped), it reconnects with growing pauses and resumes after the cursor of the
        last event it received, so no change is lost or repeated. Until the snapshot is
        known complete (a ``CHANGE`` or ``HEARTBEAT`` has arrived) it asks for the
        snapshot again instead, so snapshot events may then come twice. Heartbeats
        advance the cursor and are yielded only with ``heartbeats=True``. After
        ``give_up_after`` seconds without a working stream (``None``: never), or with
        ``reconnect=False``, the break is raised as :class:`JobqueueError`, as is any
        other error.
        """
        if isinstance(request, jobs_pb2.WatchJobsRequest):
            asked = request
        else:
            asked = jobs_pb2.WatchJobsRequest(ids=request, snapshot=True)
        cursor = asked.cursor
        snapshot_pending = asked.snapshot
        pause, broken_since = 0.1, None
        while True:
            attempt = jobs_pb2.WatchJobsRequest()
            attempt.CopyFrom(asked)
            if cursor and not snapshot_pending:
                attempt.cursor, attempt.snapshot = cursor, False
            stream = self.jobs.WatchJobs(attempt)
            try:
                for event in stream:
                    pause, broken_since = 0.1, None
                    cursor = event.cursor or cursor
                    if event.kind != jobs_pb2.JOB_EVENT_KIND_SNAPSHOT:
                        snapshot_pending = False
                    if event.kind != jobs_pb2.JOB_EVENT_KIND_HEARTBEAT or heartbeats:
                        yield event
                return
            except grpc.RpcError as rpc_error:
                error = JobqueueError.from_rpc_error(rpc_error)
                broken_since = broken_since or time.monotonic()
                waited = time.monotonic() - broken_since
                if (
                    not reconnect
                    or error.code != grpc.StatusCode.UNAVAILABLE
                    or (give_up_after is not None and waited > give_up_after)
                ):
                    raise error from rpc_error
                log.info("watch broken (%s); again in %.1fs after cursor %r", error, pause, cursor)
                time.sleep(pause)
                pause = min(pause * 2, 5.0)
            finally:
                stream.cancel()

    def wait(self, job_id: str) -> jobs_pb2.Job:
        """Waits until the job has finished (watching it, resuming as :meth:`watch`
        does) and returns it as stored then."""
        for _ in self.watch([job_id]):
            pass
        return self.get(job_id)
