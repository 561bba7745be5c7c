"""Runs a two-step chain with jobqueue from Python: a contract for what the first
call answers, a check of the wiring before anything runs, the chain itself, a
watch to its end, and what each step sent and got back.

    python3 examples/chain.py localhost:50051 http://127.0.0.1:8080

The second argument is a target that echoes what it receives, such as
examples/echo_target.py. The client is built from proto/ with grpcio-tools
(pip install grpcio grpcio-tools). With JOBQUEUE_KEY set, every call presents
that API key (it needs the scopes registry.admin, submit and read).
"""

import collections
import json
import os
import sys
import tempfile

import grpc
import grpc_tools
from grpc_tools import protoc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_client(out):
    """Generates the Python client from proto/ into `out`."""
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    protos = ["jobs", "contracts", "chains"]
    code = protoc.main(
        ["protoc", f"-I{os.path.join(ROOT, 'proto')}", f"-I{well_known}",
         f"--python_out={out}", f"--grpc_python_out={out}"]
        + [f"jobqueue/v1/{name}.proto" for name in protos]
    )
    if code != 0:
        sys.exit(f"protoc failed with {code}")
    sys.path.insert(0, out)


class _CallDetails(
    collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                            "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


class WithKey(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Sends `authorization: Bearer <key>` with every call."""

    def __init__(self, key):
        self.key = key

    def _details(self, details):
        metadata = list(details.metadata or []) + [("authorization", f"Bearer {self.key}")]
        return _CallDetails(details.method, details.timeout, metadata, details.credentials,
                            details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)


def main():
    server, target = sys.argv[1], sys.argv[2].rstrip("/")
    with tempfile.TemporaryDirectory() as out:
        build_client(out)
        from google.protobuf import json_format
        from jobqueue.v1 import chains_pb2 as chains
        from jobqueue.v1 import chains_pb2_grpc as chains_rpc
        from jobqueue.v1 import contracts_pb2 as contracts
        from jobqueue.v1 import contracts_pb2_grpc as contracts_rpc

        channel = grpc.insecure_channel(server)
        if os.environ.get("JOBQUEUE_KEY"):
            channel = grpc.intercept_channel(channel, WithKey(os.environ["JOBQUEUE_KEY"]))
        registry = contracts_rpc.ContractServiceStub(channel)
        client = chains_rpc.ChainServiceStub(channel)

        # What the echo target promises to answer: its method and path, always.
        contract = contracts.Contract(name="echo-reply", description="what the echo target answers")
        contract.output_schema.struct_value.update({
            "type": "object",
            "required": ["method", "path"],
            "properties": {"method": {"type": "string"}, "path": {"type": "string"}},
        })
        try:
            version = registry.CreateContract(contracts.CreateContractRequest(contract=contract)).version
        except grpc.RpcError as error:
            sys.exit(f"creating the contract: {error.details()}")

        def chain_with(reference):
            spec = json_format.ParseDict({
                "input": {"customer": "Ada"},
                "steps": [
                    {"id": "create", "contract": {"name": "echo-reply", "version": version},
                     "request": {"method": "POST", "url": f"{target}/customers",
                                 "json": {"name": "{{ input.customer }}"}}},
                    {"id": "welcome",
                     "request": {"method": "POST", "url": f"{target}/welcome",
                                 "json": {"created_at": reference, "customer": "{{ input.customer }}"}}},
                ],
            }, chains.ChainSpec())
            return spec

        # A property the contract does not promise: the check says no, and why.
        report = client.CheckChain(chains.CheckChainRequest(chain=chain_with("{{ steps.create.output.body.id }}")))
        print(f"check: accepted={report.accepted}")
        for wire in report.wires:
            finding = wire.findings[0].expected if wire.findings else ""
            print(f"  {wire.step} {wire.field}{wire.pointer} {{{{ {wire.reference} }}}}: "
                  f"{chains.WireVerdict.Name(wire.verdict)} {finding}")
        assert not report.accepted

        # One it does promise: submitted, then watched to its end.
        chain = client.SubmitChain(chains.SubmitChainRequest(chain=chain_with("{{ steps.create.output.body.path }}")))
        print(f"submitted {chain.id}")
        # The chain as it stands, each step's moves, and the chain as it ended.
        for event in client.WatchChain(chains.WatchChainRequest(id=chain.id), timeout=60):
            if event.kind == chains.CHAIN_EVENT_KIND_ENDED:
                chain = event.chain
        print(f"chain {chains.ChainStatus.Name(chain.status)}")
        for step in chain.steps:
            sent = json_format.MessageToDict(step.request.json) if step.request.HasField("json") else None
            got = step.attempts[-1].response
            body = json_format.MessageToDict(got.json) if got.HasField("json") else None
            print(f"  {step.id} {chains.StepStatus.Name(step.status)}: sent {json.dumps(sent, sort_keys=True)}")
            print(f"    and got {got.status_code} {json.dumps(body, sort_keys=True)}")
        assert chain.status == chains.CHAIN_STATUS_SUCCEEDED, chain


if __name__ == "__main__":
    main()
