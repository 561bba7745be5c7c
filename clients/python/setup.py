"""Builds jobqueue-client with its gRPC stubs generated from the repository's proto/.

The stubs are generated at build time, never committed, so a build always matches the
contract beside it. Only jobqueue/v1 is generated: google.api.field_behavior (vendored
in proto/google for the compiler) and google.rpc come from googleapis-common-protos.
"""

from __future__ import annotations

import os
import shutil
from glob import glob
from importlib import metadata

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = os.path.dirname(os.path.abspath(__file__))
# An sdist carries a copy of the protos beside this file; a checkout reads the repository's.
PROTO_ROOTS = [os.path.join(HERE, "proto"), os.path.join(HERE, "..", "..", "proto")]
PACKAGE = os.path.join("jobqueue", "v1")


def proto_root() -> str:
    for root in PROTO_ROOTS:
        if glob(os.path.join(root, PACKAGE, "*.proto")):
            return root
    raise RuntimeError(f"no {PACKAGE}/*.proto under any of {PROTO_ROOTS}")


def runtime_requirements() -> list[str]:
    """The generated code refuses a grpcio older than the grpcio-tools that made it,
    and a protobuf outside the range that grpcio-tools names."""
    tools = metadata.version("grpcio-tools")
    protobuf = [r for r in metadata.requires("grpcio-tools") or [] if r.startswith("protobuf")]
    return [
        f"grpcio>={tools}",
        *(protobuf or ["protobuf"]),
        "googleapis-common-protos>=1.56",
        "grpcio-status>=1.56",
    ]


class BuildPyWithStubs(build_py):
    """build_py that also runs protoc over proto/jobqueue/v1 into the built package."""

    def run(self) -> None:
        super().run()
        # An editable install imports from src/, so the stubs go there (git ignores them).
        out = os.path.join(HERE, "src") if self.editable_mode else self.build_lib
        generate(out)


def generate(out: str) -> None:
    import grpc_tools
    from grpc_tools import protoc

    root = proto_root()
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    protos = sorted(
        os.path.relpath(path, root) for path in glob(os.path.join(root, PACKAGE, "*.proto"))
    )
    os.makedirs(os.path.join(out, PACKAGE), exist_ok=True)
    # A build folder reused from an earlier build must not keep a removed proto's stubs.
    for stale in glob(os.path.join(out, PACKAGE, "*_pb2*.py*")):
        os.remove(stale)
    args = [
        "grpc_tools.protoc",
        f"-I{root}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {protos} under {root}")


class SdistWithProtos(sdist):
    """sdist that carries the protos, so it builds away from the repository."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        root = proto_root()
        for path in glob(os.path.join(root, "**", "*.proto"), recursive=True):
            copy = os.path.join(base_dir, "proto", os.path.relpath(path, root))
            os.makedirs(os.path.dirname(copy), exist_ok=True)
            shutil.copyfile(path, copy)


setup(
    install_requires=runtime_requirements(),
    cmdclass={"build_py": BuildPyWithStubs, "sdist": SdistWithProtos},
)
