"""Generate nox/v1 (Python, gRPC stubs, mypy stubs) from protos/; `--check` fails when stale.

Generated files are committed so the runtime needs no protoc; CI runs `--check` so they can
never drift from the .proto sources.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT_PACKAGE = Path("nox") / "v1"
DESCRIPTOR_SET = "descriptor_set.binpb"
INIT_TEXT = (
    '"""Generated protobuf and gRPC code for the nox.v1 API (do not edit; see protos/)."""\n'
)


def generate(out_root: Path) -> None:
    protos = sorted(
        str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / OUT_PACKAGE).glob("*.proto")
    )
    (out_root / OUT_PACKAGE).mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={out_root}",
            f"--grpc_python_out={out_root}",
            f"--mypy_out={out_root}",
            f"--mypy_grpc_out={out_root}",
            # With comments, for a reflection service that lets `grpcurl describe` show them
            # (the *_pb2.py descriptors carry no source info).
            "--include_source_info",
            f"--descriptor_set_out={out_root / OUT_PACKAGE / DESCRIPTOR_SET}",
            *protos,
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        # protoc finds the protoc-gen-mypy plugins next to this interpreter.
        env={
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        },
    )
    if result.returncode != 0:  # the plugins' progress chatter is shown only on failure
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"protoc failed with status {result.returncode}")
    (out_root / OUT_PACKAGE / "__init__.py").write_text(INIT_TEXT)
    (out_root / OUT_PACKAGE / "py.typed").write_text("")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if nox/v1 is stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh, current = Path(tmp) / OUT_PACKAGE, ROOT / OUT_PACKAGE
        if args.check:
            cmp = filecmp.dircmp(fresh, current, ignore=["__pycache__"])
            stale = cmp.left_only + cmp.right_only + cmp.diff_files
            if stale:
                print(
                    f"nox/v1 is stale ({', '.join(sorted(stale))}): run scripts/gen_protos.py",
                    file=sys.stderr,
                )
                return 1
            return 0
        shutil.rmtree(current, ignore_errors=True)
        shutil.copytree(fresh, current)
    return 0


if __name__ == "__main__":
    sys.exit(main())
