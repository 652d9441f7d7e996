"""Processes for the kill tests: an orchestrator, or a runner double that stalls mid-task.

    python orch_proc.py orchestrator CONFIG.json   # serve until SIGTERM / SIGKILL
    python orch_proc.py runner CONFIG.json          # heartbeat, claim one task, hang

CONFIG holds the queue URL, the deployment, the gateway target and address, and the
registry roles the process's directory double knows; the process writes what it is (its
address and gRPC target, or the task it claimed) to CONFIG's `ready_file`.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

from orch_doubles import FakeDirectory, FakeRunner

from nox.crypto.eip712 import Domain
from nox.crypto.keys import EnclaveKey
from nox.orchestrator import GrpcGatewayStore, OrchestratorNode, OrchestratorSettings
from nox.queue import QueueSettings
from nox.rpc import create_channel
from nox.v1 import common_pb2


def _directory(config: dict[str, object]) -> FakeDirectory:
    directory = FakeDirectory()
    for address, role in dict(config["roles"]).items():  # type: ignore[call-overload]
        directory.roles[bytes.fromhex(address)] = int(role)
    return directory


def _deployment(config: dict[str, object]) -> common_pb2.Deployment:
    d = dict(config["deployment"])  # type: ignore[call-overload]
    return common_pb2.Deployment(
        chain_id=int(d["chain_id"]),
        registry_address=bytes.fromhex(d["registry"]),
        compute_address=bytes.fromhex(d["compute"]),
    )


def _write(config: dict[str, object], what: dict[str, str]) -> None:
    Path(str(config["ready_file"])).write_text(json.dumps(what))


async def orchestrator(config: dict[str, object]) -> None:
    key = EnclaveKey.generate()
    directory = _directory(config)
    directory.add(key, common_pb2.ROLE_ORCHESTRATOR)
    deployment = _deployment(config)
    domain = Domain(deployment.chain_id, deployment.registry_address)
    channel = create_channel(str(config["gateway_target"]))
    store = GrpcGatewayStore(
        channel,
        key=key,
        domain=domain,
        gateway_address=bytes.fromhex(str(config["gateway_address"])),
        directory=directory,
        clock=time.time,
    )
    queue = QueueSettings(
        servers=(str(config["nats_url"]),), ack_wait=1.0, max_deliver=3,
        user=str(config["nats_user"]), password=str(config["nats_password"]),
        inbox_prefix=str(config["nats_inbox_prefix"]),
    )  # fmt: skip
    node = OrchestratorNode(
        key=key,
        deployment=deployment,
        queue=queue,
        directory=directory,
        gateway=store,
        settings=OrchestratorSettings(heartbeat_interval=1, tick_interval=0.1, fetch_wait=0.5),
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await node.start()
    ready = {"address": key.address.hex(), "target": node.target}
    _write(config, ready)
    await stop.wait()
    await node.stop()


async def runner(config: dict[str, object]) -> None:
    key = EnclaveKey.from_bytes(bytes.fromhex(str(config["runner_secret"])))
    deployment = _deployment(config)
    r = FakeRunner(
        key,
        target=str(config["orchestrator_target"]),
        orchestrator=bytes.fromhex(str(config["orchestrator_address"])),
        domain=Domain(deployment.chain_id, deployment.registry_address),
        clock=time.time,
    )
    await r.heartbeat()
    claimed = await r.claim(wait=10)
    _write(config, {"task_id": claimed[0].assignment.task_id.hex() if claimed else ""})
    await asyncio.Event().wait()  # "executing": until killed


if __name__ == "__main__":
    role, path = sys.argv[1], sys.argv[2]
    cfg = json.loads(Path(path).read_text())
    asyncio.run(orchestrator(cfg) if role == "orchestrator" else runner(cfg))
