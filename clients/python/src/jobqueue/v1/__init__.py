"""The jobqueue.v1 API as generated from proto/jobqueue/v1 when the package was built:
``jobs_pb2`` (messages, with ``.pyi`` type stubs) and ``jobs_pb2_grpc`` (service stubs),
and the same for queues, schedules, chains, contracts, templates, keys and audit."""
