"""docs/sdk.md's runnable examples run, unchanged, against a real gateway and KMS nodes.

Every Python block marked `<!-- sdk-example -->` is run as its own program, with
NOX_GATEWAY, NOX_GATEWAY_ADDRESS and NOX_KMS pointing at the in-process network of
sdk_support (its ACL lets everyone view everything, as a contract would have granted).
Each must exit 0 and print what the docs say it prints.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest
from sdk_support import FakeAcl, running_network

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"
MARKER = re.compile(r"<!-- sdk-example -->\n```python\n(.*?)```", re.DOTALL)

# What each example, in document order, must print.
EXPECTED = [
    re.compile(r"handle: 0x[0-9a-f]{64}\nproof:  137 bytes, signed by gateway 0x"),
    re.compile(r"value: -42\nKMS nodes whose answers were rejected: \[\]"),
    re.compile(r"stored: True origin: input at: \d+"),
    re.compile(
        r'"payloadType": "nox.v1.HeartbeatPayload"[\s\S]*signed by 0x[0-9a-f]{40} capacity 4'
    ),
]


def examples() -> list[str]:
    return MARKER.findall(DOC.read_text(encoding="utf-8"))


def test_the_docs_have_the_examples_this_test_expects() -> None:
    assert len(examples()) == len(EXPECTED)


async def test_every_marked_example_runs(tmp_path: Path) -> None:
    async with running_network(tmp_path, acl=FakeAcl(open_to_all=True)) as net:
        env = {
            **os.environ,
            "NOX_GATEWAY": net.gateway_target,
            "NOX_GATEWAY_ADDRESS": "0x" + net.gateway_address.hex(),
            "NOX_KMS": net.kms_targets[0],
        }

        async def run(index: int, code: str) -> tuple[int, int | None, str, str]:
            script = tmp_path / f"example_{index}.py"
            script.write_text(code, encoding="utf-8")
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(script),
                cwd=tmp_path,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 120)
            return index, proc.returncode, out.decode(), err.decode()

        results = await asyncio.gather(*(run(i, c) for i, c in enumerate(examples())))
    for index, code, out, err in results:
        assert code == 0, f"example {index} failed:\n{err}"
        assert EXPECTED[index].search(out), f"example {index} printed:\n{out}"
