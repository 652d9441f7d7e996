"""Real processes killed with SIGKILL: an orchestrator instance, a runner in mid-task.

The killed processes run `orch_proc.py` (the real OrchestratorNode; a runner double that
claims a task and stalls). What must survive: the task completes elsewhere, stored once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from natsfix import open_queue
from orch_doubles import Harness, publish, tx_message

from nox.crypto.keys import EnclaveKey
from nox.v1 import common_pb2, task_pb2

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]
S = task_pb2.TaskState
HERE = Path(__file__).resolve().parent


def _config(h: Harness, tmp: Path, name: str, **extra: object) -> tuple[Path, Path]:
    ready = tmp / f"{name}.ready"
    config = {
        "nats_url": h.queue.servers[0],
        "nats_user": h.queue.user,
        "nats_password": h.queue.password,  # a test server's throw-away password
        "nats_inbox_prefix": h.queue.inbox_prefix,
        "deployment": {
            "chain_id": h.deployment.chain_id,
            "registry": h.deployment.registry_address.hex(),
            "compute": h.deployment.compute_address.hex(),
        },
        "gateway_target": h.gateway_target,
        "gateway_address": h.gateway_key.address.hex(),
        "roles": {a.hex(): r for a, r in h.directory.roles.items()},
        "ready_file": str(ready),
        **extra,
    }
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(config))
    return path, ready


@contextmanager
def _process(kind: str, config: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "orch_proc.py"), kind, str(config)], env=env
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


async def _ready(path: Path, proc: subprocess.Popen[bytes]) -> dict[str, str]:
    for _ in range(300):
        text = _read(path)
        if text:
            return dict(json.loads(text))
        assert proc.poll() is None, "process died before it was ready"
        await asyncio.sleep(0.05)
    pytest.fail(f"{path.name} never appeared")


async def test_orchestrator_killed_another_instance_finishes(
    harness: Harness, tmp_path: Path
) -> None:
    h = harness
    survivor = await h.orchestrator()
    r1_key = h.directory.add(EnclaveKey.generate(), common_pb2.ROLE_RUNNER)
    config, ready = _config(h, tmp_path, "orch")
    with _process("orchestrator", config) as proc:
        info = await _ready(ready, proc)
        h.directory.add_address(bytes.fromhex(info["address"]), common_pb2.ROLE_ORCHESTRATOR)
        async with open_queue(h.queue) as conn:
            task_id = await publish(
                conn, h.ingestor, h.domain, tx_message(h.deployment, 50), int(h.clock())
            )
            # a runner of the doomed instance takes the task ...
            doomed_runner = h.runner_for(r1_key, info["target"], bytes.fromhex(info["address"]))
            await doomed_runner.heartbeat()
            [held] = await doomed_runner.claim(wait=5)
            assert held.assignment.task_id == task_id
            # ... and the instance is killed outright
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            r2 = h.runner(survivor)
            await r2.heartbeat()
            [again] = await r2.claim(wait=10)
            assert again.assignment.task_id == task_id
            assert again.signer == survivor.address
            assert await r2.submit(again) == S.TASK_STATE_STORED
            assert h.gateway.calls == [task_id]


async def test_runner_killed_mid_task_completes_on_another(
    harness: Harness, tmp_path: Path
) -> None:
    h = harness
    node = await h.orchestrator(lease_seconds=3, runner_lost_after=2.0)
    victim = h.directory.add(EnclaveKey.generate(), common_pb2.ROLE_RUNNER)
    config, ready = _config(
        h, tmp_path, "runner",
        runner_secret=victim.secret_bytes().hex(),
        orchestrator_target=node.target,
        orchestrator_address=node.address.hex(),
    )  # fmt: skip
    async with open_queue(h.queue) as conn:
        task_id = await publish(
            conn, h.ingestor, h.domain, tx_message(h.deployment, 51), int(h.clock())
        )
        with _process("runner", config) as proc:
            info = await _ready(ready, proc)
            assert info["task_id"] == task_id.hex()  # the victim holds the lease
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        other = h.runner(node)
        await other.heartbeat()
        [again] = await other.claim(wait=10)
        assert again.assignment.task_id == task_id
        assert again.assignment.attempt == 2
        assert await other.submit(again) == S.TASK_STATE_STORED
        assert h.gateway.calls == [task_id]
        assert node.scheduler is not None
        assert victim.address not in node.scheduler.runners  # dropped from the pool
