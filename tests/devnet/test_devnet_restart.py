"""`ProcessDevnet.kill` and `restart`, the tools of the chaos harness (tests/chaos): a kill is
a real signal to the child process; a restarted child comes back on its port with a new
enclave key that it registers itself (KMS nodes and gateway included); and the network still
carries transfers from the contract call afterwards, with RA-TLS on the KMS and orchestrator
channels and every service's collateral fetched from the devnet's PCCS.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from attestation.binding import Role
from nox.devnet.config import DevnetSettings
from nox.devnet.exceptions import DevnetStartFailed
from nox.devnet.load import TokenLoad
from nox.devnet.processes import ProcessDevnet
from nox.rpc.ratls import attested_channel

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]


def _address(net: ProcessDevnet, name: str) -> bytes:
    return next(e.address for e in net.endpoints if e.name == name)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.timeout(600)
async def test_kill_and_restart_children_and_the_network_still_works(tmp_path: Path) -> None:
    net = ProcessDevnet(DevnetSettings(state_dir=tmp_path / "devnet", runners=1))
    async with net:
        assert net.chain is not None
        assert net.child_names == [
            "kms-1", "kms-2", "kms-3", "gateway", "orchestrator", "ingestor", "runner-1",
        ]  # fmt: skip
        assert all(net.alive(name) for name in net.child_names)

        # a real SIGKILL: the process is gone and reports it
        pid = net.pid("runner-1")
        old_runner = _address(net, "runner-1")
        assert await net.kill("runner-1") == -signal.SIGKILL
        assert not net.alive("runner-1")
        assert _gone(pid)
        assert await net.kill("runner-1") is None  # not running: nothing to kill

        # a runner comes back with a new enclave key, registered as a runner
        await net.restart("runner-1")
        assert net.alive("runner-1")
        assert net.pid("runner-1") != pid
        assert net.restarts("runner-1") == 1
        new_runner = _address(net, "runner-1")
        assert new_runner != old_runner
        net.chain.views.require(new_runner, int(Role.RUNNER), int(time.time()))

        # a KMS node and the gateway come back with new enclave keys, registered again
        kms, gateway = _address(net, "kms-2"), _address(net, "gateway")
        await net.restart("kms-2")
        await net.restart("gateway", signal.SIGTERM)  # an operator's restart
        assert _address(net, "kms-2") != kms
        assert _address(net, "gateway") != gateway
        now = int(time.time())
        net.chain.views.require(_address(net, "kms-2"), int(Role.KMS), now)
        net.chain.views.require(_address(net, "gateway"), int(Role.GATEWAY), now)

        # the orchestrator exits when the gateway does not answer at its start ...
        await net.kill("gateway")
        with pytest.raises(DevnetStartFailed, match="exited"):
            await net.restart("orchestrator", attempts=1)
        # ... and, like under a supervisor, is started again until the gateway is back
        retrying = asyncio.create_task(net.restart("orchestrator", attempts=60))
        deadline = time.monotonic() + 120
        # the counter lives in the devnet: poll it (the failed restart above counted none)
        while net.crashes("orchestrator") < 1 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        assert net.crashes("orchestrator") >= 1
        await net.restart("gateway")
        await retrying
        assert net.alive("orchestrator")
        orchestrator = _address(net, "orchestrator")
        net.chain.views.require(orchestrator, int(Role.ORCHESTRATOR), int(time.time()))

        # the runner (started before this orchestrator) finds its new address, and every
        # transfer goes through and decrypts right
        async with net.client() as nox:
            load = await TokenLoad.prepare(net, nox, pairs=1, transfers=3, seed=1)
            try:
                await load.send()
                await load.wait_stored(180)
                report = await load.verify()
            finally:
                load.close()
        assert report.ok, report.summary()
        assert report.tasks_stored == 3
        log = (net.state_dir / "logs" / "runner-1.log").read_text()
        assert "runner.orchestrator_changed" in log
        # production shape: RA-TLS from the runner to the restarted orchestrator (dialled and
        # verified again) and from the gateway to the KMS nodes, collateral from the PCCS
        assert "rpc.peer_redialled" in log
        for name, role in (("kms-2", Role.KMS), ("orchestrator", Role.ORCHESTRATOR)):
            target = next(e.target for e in net.endpoints if e.name == name)
            channel, peer = await attested_channel(
                target, net.chain.views, int(role), domain=net.chain.domain,
                now=int(time.time()), expected_address=_address(net, name),
            )  # fmt: skip
            await channel.close(None)
            assert peer.endpoint == target
        assert any(path.endswith("/tcb") for path in net.pccs_requests())
