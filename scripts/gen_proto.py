"""Generate the retain-api Python package from proto/.

Copies the google.api annotations from the googleapis-common-protos wheel into
build/proto-deps (buf reads them from there, since no buf registry is
reachable), then runs grpcio-tools' protoc into the output folder and writes a
descriptor set with imports and source info for Envoy's JSON transcoder.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
DEPS = ROOT / "build" / "proto-deps"
DESCRIPTOR_SET = ROOT / "build" / "retain.binpb"
GOOGLE_API_FILES = ("annotations.proto", "http.proto", "httpbody.proto")


def copy_google_api() -> None:
    """Copy the google/api protos that our files import into DEPS."""
    source = resources.files("google.api")
    target = DEPS / "google" / "api"
    target.mkdir(parents=True, exist_ok=True)
    for name in GOOGLE_API_FILES:
        (target / name).write_bytes(source.joinpath(name).read_bytes())


def run_protoc(out: Path) -> None:
    """Compile every proto under PROTO into out, with gRPC stubs and type stubs."""
    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    well_known = resources.files("grpc_tools") / "_proto"
    if out.joinpath("retain").exists():
        shutil.rmtree(out / "retain")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO}",
        f"-I{DEPS}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        f"--descriptor_set_out={DESCRIPTOR_SET}",
        "--include_imports",
        "--include_source_info",
        *files,
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed; see the errors above")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    DESCRIPTOR_SET.parent.mkdir(parents=True, exist_ok=True)
    copy_google_api()
    run_protoc(options.out)
    # The generated tree is a namespace package; py.typed marks its stubs.
    (options.out / "retain" / "py.typed").write_text("")


if __name__ == "__main__":
    main()
