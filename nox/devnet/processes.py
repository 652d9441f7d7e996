"""`noxctl devnet --multi-process`: every service in its own process, as production runs them.

The same ten steps as the single-process devnet (`nox.devnet.network`), but the chain is an
anvil process (JSON-RPC, shared by every process) and each service is `noxctl serve …` in a
child process configured through its `NOX_*` environment variables, with its output in
`DIR/logs/<name>.log`. Every service, KMS nodes and gateway included, generates its enclave
key in memory at start, never writes it anywhere, and registers it itself
(`nox.chain.registrar`): the devnet passes no enclave key file, only each service's own
operator account (`DIR/keys/operator-N`: concurrent registrations from one account would race
on its nonce), and waits until each new enclave address is registered.

For the reliability harness (tests/chaos) a child can be killed (`kill`, a real signal) and
started again (`restart`) with the same environment and port, so its peers reconnect to it:
every restarted service comes back with a new enclave key that it registers on-chain again
(a KMS node with its sealed share unchanged); its peers learn the new address from its
public info call (the gateway's KMS client, the runners and the orchestrator re-ask).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from attestation.binding import Role
from attestation.providers.pccs import SimulatedPccs
from nox.chain.anvil import AnvilProcess
from nox.chain.backend import ChainBackend
from nox.chain.deploy import Deployment, deploy_all
from nox.chain.exceptions import NodeNotAuthorized
from nox.devnet.exceptions import DevnetStartFailed
from nox.devnet.network import Devnet, Endpoint
from nox.files import private_dir, private_file

_ADDRESS = re.compile(r"0x([0-9a-fA-F]{40})")
# anvil's funded accounts: 0 governs and owns the token, 2-5 are the demo's users; the
# others pay for the services' own registrations, one account each.
_GATEWAY_ACCOUNT, _ORCHESTRATOR_ACCOUNT, _INGESTOR_ACCOUNT, _FIRST_RUNNER_ACCOUNT = 1, 6, 7, 8
_FIRST_KMS_ACCOUNT = 10
_CLOCK_LEAD = 3  # seconds anvil's clock runs ahead of the wall clock (see _deploy)


@dataclass
class _Child:
    """One `noxctl serve` process and what it takes to start it again."""

    service: str
    env: dict[str, str]
    ready: str
    log_path: Path
    log: IO[bytes]
    proc: subprocess.Popen[bytes]
    role: int | None = None
    """The registry role of a self-registering service (waited for after a restart)."""
    restarts: int = 0
    crashes: int = 0
    """Starts after a restart that exited before they were ready."""


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class ProcessDevnet(Devnet):
    """A devnet whose services are child processes around an anvil chain."""

    chain_label = "anvil (JSON-RPC, shared by every process)"
    gateway_attested_tls = True
    enclave_keys_note = "in memory only, each registered by its own service"

    _anvil: AnvilProcess | None = field(default=None, init=False)
    _children: dict[str, _Child] = field(default_factory=dict, init=False)
    _orchestrator_target: str = field(default="", init=False)
    _pccs: SimulatedPccs | None = field(default=None, init=False)

    # ------------------------------------------------------------------ chain

    def _deploy(self) -> tuple[Deployment, ChainBackend]:
        if self.settings.runners > 10 - _FIRST_RUNNER_ACCOUNT:
            raise DevnetStartFailed("anvil has operator accounts for at most 2 runners")
        self._anvil = AnvilProcess(accounts=_FIRST_KMS_ACCOUNT + self.settings.kms_nodes).start()
        backend = self._anvil.backend()
        deployment = deploy_all(backend, with_token=True)
        # anvil's clock can run a second behind the gateway's, which stamps input proofs
        # with the wall clock: NoxCompute (and anvil's gas estimate) would refuse a proof
        # from the future (ProofNotYetValid). Run the chain a few seconds ahead instead.
        backend.w3.provider.make_request("evm_increaseTime", [_CLOCK_LEAD])  # type: ignore[arg-type]
        backend.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        self.services.append("anvil")
        return deployment, backend

    @property
    def _anvil_url(self) -> str:
        assert self._anvil is not None
        return self._anvil.url

    def _key_file(self, name: str, secret: bytes) -> Path:
        path = self.state_dir / "keys" / name
        private_dir(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secret.hex())
        return path

    def _operator_file(self, account: int) -> Path:
        assert self._anvil is not None
        key = self._anvil.private_keys[account]
        return self._key_file(f"operator-{account}", bytes.fromhex(key.removeprefix("0x")))

    # ------------------------------------------------------------------ children

    async def _spawn(
        self, name: str, service: str, env: dict[str, str], ready: str, role: int | None = None
    ) -> str:
        """Start `noxctl serve <service>` and return its first output line matching `ready`."""
        log_path = private_file(private_dir(self.state_dir / "logs") / f"{name}.log")
        log = log_path.open("wb")
        proc = await asyncio.to_thread(self._popen, service, env, log)
        self._children[name] = _Child(service, env, ready, log_path, log, proc, role)
        return await self._ready(name, 0)

    @staticmethod
    def _popen(service: str, env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "nox.cli", "serve", service],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        )

    async def _ready(self, name: str, offset: int) -> str:
        """The first line after byte `offset` of `name`'s log matching its ready pattern."""
        child = self._children[name]
        pattern = re.compile(child.ready)
        deadline = time.monotonic() + self.settings.ready_timeout
        while time.monotonic() < deadline:
            with child.log_path.open("rb") as fh:
                fh.seek(offset)
                text = fh.read().decode(errors="replace")
            for line in text.splitlines():
                if pattern.search(line):
                    return line
            if child.proc.poll() is not None:
                raise DevnetStartFailed(
                    f"{name} exited with {child.proc.returncode}; see {child.log_path}"
                )
            await asyncio.sleep(0.1)
        raise DevnetStartFailed(f"{name} not ready in time; see {child.log_path}")

    # ------------------------------------------------------------------ faults (tests/chaos)

    @property
    def child_names(self) -> list[str]:
        """Every child process by name, in start order (kms-1…, gateway, orchestrator,
        ingestor, runner-1…)."""
        return list(self._children)

    def alive(self, name: str) -> bool:
        """Whether child `name` is running."""
        return self._children[name].proc.poll() is None

    def restarts(self, name: str) -> int:
        """How many times child `name` was started again."""
        return self._children[name].restarts

    def crashes(self, name: str) -> int:
        """How many of `name`'s restarts exited before they were ready (and were retried)."""
        return self._children[name].crashes

    def pid(self, name: str) -> int:
        """The process id of child `name`'s current process (a new one after a restart)."""
        return self._children[name].proc.pid

    async def kill(self, name: str, signum: int = signal.SIGKILL) -> int | None:
        """Send `signum` to child `name` (a real signal; SIGKILL by default) and wait for it
        to exit; its exit status (None if it was not running)."""
        proc = self._children[name].proc
        if proc.poll() is not None:
            return None
        proc.send_signal(signum)
        return await asyncio.to_thread(proc.wait, self.settings.ready_timeout)

    async def restart(self, name: str, signum: int = signal.SIGKILL, attempts: int = 10) -> str:
        """Start child `name` again with its environment (same port, operator key file), after
        killing it with `signum` if it still runs; wait until it is ready and, for a service
        that registers itself, until its new enclave key is registered. Returns its ready
        line.

        Like a supervisor (systemd `Restart=on-failure`), a child that exits before it is
        ready is started again, up to `attempts` times, a second apart: the orchestrator,
        for one, exits when the gateway does not answer at its start (`crashes` counts
        these)."""
        child = self._children[name]
        await self.kill(name, signum)
        child.restarts += 1
        for attempt in range(attempts):
            offset = child.log_path.stat().st_size
            marker = f"--- devnet: restart {child.restarts}, attempt {attempt + 1} ---\n"
            child.log.write(marker.encode())
            child.log.flush()
            child.proc = await asyncio.to_thread(self._popen, child.service, child.env, child.log)
            try:
                line = await self._ready(name, offset)
                break
            except DevnetStartFailed:
                if child.proc.poll() is None or attempt + 1 == attempts:
                    raise
                child.crashes += 1
                await asyncio.sleep(1.0)
        if child.role is not None:
            address = _address_in(line)
            await self._registered(address, child.role, name)
            for endpoint in self.endpoints:
                if endpoint.name == name:
                    endpoint.address = address
        return line

    @property
    def pccs_url(self) -> str:
        """The local PCCS every service fetches its peers' collateral from (started on
        first use: the simulated PKI's collateral, over HTTP as from Intel's PCS)."""
        if self._pccs is None:
            sim = self._chain().sim
            self._pccs = SimulatedPccs(lambda _fmspc: sim.collateral()).start()
            self.services.append("PCCS (simulated collateral)")
            self.progress(f"        PCCS serving the simulated collateral on {self._pccs.url}")
        return self._pccs.url

    def pccs_requests(self) -> list[str]:
        """The paths the PCCS was asked for so far (empty before it started)."""
        return list(self._pccs.requests) if self._pccs is not None else []

    def to_json(self) -> dict[str, Any]:
        return super().to_json() | {"pccs_url": self._pccs.url if self._pccs else None}

    def _common_env(self, prefix: str, account: int) -> dict[str, str]:
        chain = self._chain()
        tdx = self.state_dir / "tdx"
        assert self.queue is not None
        assert self.nats is not None
        nats: dict[str, str] = {}
        role = {"NOX_INGESTOR_": "ingestor", "NOX_ORCHESTRATOR_": "orchestrator"}.get(prefix)
        if role is not None:  # each service connects as its NATS role (docs/queue.md)
            user = self.nats.user(role)
            nats = {
                f"{prefix}NATS_USER": user.user,
                f"{prefix}NATS_PASSWORD_FILE": str(user.password_file),
            }
        return nats | {
            f"{prefix}CHAIN_RPC_URL": self._anvil_url,
            f"{prefix}REGISTRY_ADDRESS": chain.deployment.registry,
            f"{prefix}COMPUTE_ADDRESS": chain.deployment.compute,
            f"{prefix}ACL_ADDRESS": chain.deployment.acl,
            f"{prefix}OPERATOR_KEY_FILE": str(self._operator_file(account)),
            f"{prefix}NATS_SERVERS": ",".join(self.queue.servers),
            f"{prefix}DANGEROUS_SIMULATED_TDX_DIR": str(tdx),
            f"{prefix}PCCS_URL": self.pccs_url,
        }

    def _self_registering_env(self, prefix: str, account: int) -> dict[str, str]:
        """What a KMS node or the gateway needs to register itself: its operator account and
        the simulated TD its quotes come from (development only)."""
        return {
            f"{prefix}OPERATOR_KEY_FILE": str(self._operator_file(account)),
            f"{prefix}DANGEROUS_SIMULATED_TDX_DIR": str(self.state_dir / "tdx"),
            f"{prefix}PCCS_URL": self.pccs_url,
        }

    async def _start_kms(self, shares: list[Path]) -> None:
        chain, host = self._chain(), self.settings.host
        for position, share_path in enumerate(shares):
            index = share_path.stem.split("-")[1]
            port = _free_port(host)
            target = f"{host}:{port}"
            env = self._self_registering_env("NOX_KMS_", _FIRST_KMS_ACCOUNT + position) | {
                "NOX_KMS_HOST": host,
                "NOX_KMS_PORT": str(port),
                "NOX_KMS_CHAIN_ID": str(chain.chain_id),
                "NOX_KMS_REGISTRY_ADDRESS": chain.deployment.registry,
                "NOX_KMS_ACL_ADDRESS": chain.deployment.acl,
                "NOX_KMS_CHAIN_RPC_URL": self._anvil_url,
                "NOX_KMS_SHARE_FILE": str(share_path),
                "NOX_KMS_KEK_FILE": str(share_path.parent / f"kek-{index}"),
                "NOX_KMS_PUBLIC_FILE": str(share_path.parent / "public.json"),
                "NOX_KMS_ATTESTED_TLS": "true",
            }
            name = f"kms-{index}"
            line = await self._spawn(name, "kms", env, r'"target"', int(Role.KMS))
            address = _address_in(line)
            await self._registered(address, int(Role.KMS), name)
            self.kms_targets.append(target)
            self.endpoints.append(Endpoint(name, "kms", target, address))
        self.services.append(f"kms x{len(shares)} ({self.settings.kms_threshold}-of-{len(shares)})")

    async def _start_gateway(self) -> bytes:
        chain, host = self._chain(), self.settings.host
        port = _free_port(host)
        target = f"{host}:{port}"
        env = self._self_registering_env("NOX_GATEWAY_", _GATEWAY_ACCOUNT) | {
            "NOX_GATEWAY_HOST": host,
            "NOX_GATEWAY_PORT": str(port),
            "NOX_GATEWAY_STORE_URL": self.settings.store_url
            or f"sqlite:///{self.state_dir / 'gateway.sqlite3'}",
            "NOX_GATEWAY_CHAIN_ID": str(chain.chain_id),
            "NOX_GATEWAY_CHAIN_RPC_URL": self._anvil_url,
            "NOX_GATEWAY_REGISTRY_ADDRESS": chain.deployment.registry,
            "NOX_GATEWAY_COMPUTE_ADDRESS": chain.deployment.compute,
            "NOX_GATEWAY_ACL_ADDRESS": chain.deployment.acl,
            "NOX_GATEWAY_KMS_ENDPOINTS": json.dumps(self.kms_targets),
            "NOX_GATEWAY_DANGEROUS_SIMULATED_TDX_DIR": str(self.state_dir / "tdx"),
            "NOX_GATEWAY_REGISTRY_REFRESH_SECONDS": "0.5",
            "NOX_GATEWAY_KMS_ATTESTED_TLS": "true",
            "NOX_GATEWAY_ATTESTED_TLS": "true",
        }
        line = await self._spawn("gateway", "gateway", env, r"serving on", int(Role.GATEWAY))
        address = _address_in(line)
        await self._registered(address, int(Role.GATEWAY), "gateway")
        self.gateway_target = target
        self.endpoints.append(Endpoint("gateway", "gateway", target, address))
        self.services.append("gateway")
        return address

    async def _start_orchestrator(self, gateway: bytes) -> bytes:
        del gateway  # the orchestrator asks the gateway for its identity
        host = self.settings.host
        port = _free_port(host)
        env = self._common_env("NOX_ORCHESTRATOR_", _ORCHESTRATOR_ACCOUNT) | {
            "NOX_ORCHESTRATOR_HOST": host,
            "NOX_ORCHESTRATOR_PORT": str(port),
            "NOX_ORCHESTRATOR_GATEWAY_ENDPOINT": self.gateway_target,
            "NOX_ORCHESTRATOR_HEARTBEAT_INTERVAL": "2",
            "NOX_ORCHESTRATOR_RUNNER_LOST_AFTER": "8",
            "NOX_ORCHESTRATOR_ATTESTED_TLS": "true",
            "NOX_ORCHESTRATOR_GATEWAY_ATTESTED_TLS": "true",
        }
        line = await self._spawn(
            "orchestrator", "orchestrator", env, r"^orchestrator 0x", int(Role.ORCHESTRATOR)
        )
        address = _address_in(line)
        self._orchestrator_target = f"{host}:{port}"
        self.endpoints.append(
            Endpoint("orchestrator", "orchestrator", self._orchestrator_target, address)
        )
        self.services.append("orchestrator")
        return address

    async def _start_ingestor(self) -> None:
        env = self._common_env("NOX_INGESTOR_", _INGESTOR_ACCOUNT) | {
            "NOX_INGESTOR_DATABASE_URL": f"sqlite:///{self.state_dir / 'ingestor.sqlite3'}",
            "NOX_INGESTOR_INITIAL_BLOCK": "0",
            "NOX_INGESTOR_CONFIRMATIONS": "0",
            "NOX_INGESTOR_POLL_INTERVAL": "0.2",
        }
        line = await self._spawn("ingestor", "ingestor", env, r"^ingestor 0x", int(Role.INGESTOR))
        self.endpoints.append(Endpoint("ingestor", "ingestor", "-", _address_in(line)))
        self.services.append("ingestor")

    async def _start_runners(self, orchestrator: bytes, gateway: bytes) -> None:
        del orchestrator, gateway  # each runner asks GetOrchestratorInfo / GetGatewayInfo
        public = self.state_dir / "kms" / "public.json"
        for i in range(1, self.settings.runners + 1):
            account = _FIRST_RUNNER_ACCOUNT + i - 1
            env = self._common_env("NOX_RUNNER_", account) | {
                "NOX_RUNNER_ORCHESTRATOR_ENDPOINT": self._orchestrator_target,
                "NOX_RUNNER_GATEWAY_ENDPOINT": self.gateway_target,
                "NOX_RUNNER_KMS_PUBLIC_FILE": str(public),
                "NOX_RUNNER_CAPACITY": str(self.settings.runner_capacity),
                "NOX_RUNNER_CLAIM_WAIT_SECONDS": "1",
                "NOX_RUNNER_HEARTBEAT_SECONDS": "2",
                "NOX_RUNNER_ORCHESTRATOR_ATTESTED_TLS": "true",
                "NOX_RUNNER_GATEWAY_ATTESTED_TLS": "true",
            }
            for unused in ("NOX_RUNNER_NATS_SERVERS", "NOX_RUNNER_ACL_ADDRESS"):
                env.pop(unused)
            line = await self._spawn(f"runner-{i}", "runner", env, r"^runner 0x", int(Role.RUNNER))
            address = _address_in(line)
            await self._registered(address, int(Role.RUNNER), f"runner-{i}")
            self.endpoints.append(Endpoint(f"runner-{i}", "runner", "(outbound)", address))
        self.services.append(f"runner x{self.settings.runners} (processes)")

    async def _registered(self, address: bytes, role: int, name: str) -> None:
        """Wait until `address` is an active, attested node of `role` (it registers itself)."""
        chain = self._chain()
        deadline = time.monotonic() + self.settings.ready_timeout
        while True:
            try:
                await asyncio.to_thread(chain.views.require, address, role, int(time.time()))
                return
            except NodeNotAuthorized:
                if time.monotonic() > deadline:
                    raise DevnetStartFailed(f"{name} did not register in time") from None
                await asyncio.sleep(0.2)

    @property
    def chain_rpc_url(self) -> str | None:
        return self._anvil.url if self._anvil is not None else None

    def align_chain_clock(self) -> None:
        """Give the next block its own timestamp, ahead of the wall clock.

        Two transactions mined in the same second that ask NoxCompute for the same
        `plaintextToEncrypted` from the same contract (the token's zero balance of a new
        holder) get the same result handle, and the gateway refuses the second task's
        output as HANDLE_EXISTS; anvil, unlike py-evm, mines blocks with equal timestamps."""
        chain = self._chain()
        with chain.lock:
            target = max(chain.backend.now() + 1, int(time.time()) + _CLOCK_LEAD)
            chain.backend.w3.provider.make_request(
                "evm_setNextBlockTimestamp",  # type: ignore[arg-type]
                [target],
            )

    async def stop(self) -> None:
        await super().stop()
        children = list(reversed(self._children.values()))
        for child in children:
            if child.proc.poll() is None:
                child.proc.terminate()
        for child in children:
            try:
                await asyncio.to_thread(child.proc.wait, 15)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                await asyncio.to_thread(child.proc.wait)
            child.log.close()
        self._children = {}
        if self._pccs is not None:
            self._pccs.stop()
            self._pccs = None
        if self._anvil is not None:
            await asyncio.to_thread(self._anvil.stop)
            self._anvil = None


def _address_in(line: str) -> bytes:
    match = _ADDRESS.search(line)
    if match is None:
        raise DevnetStartFailed(f"no enclave address in {line!r}")
    return bytes.fromhex(match.group(1))
