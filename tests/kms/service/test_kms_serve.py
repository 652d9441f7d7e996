"""Settings, start-up refusals, a replay store that survives a restart, `noxctl serve kms`,
and logs that never show a share."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import grpc
import pytest
from conftest import Chain, KeyFiles, KmsNet, node_settings, run_keygen
from contracts_support import ENDPOINT
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kms_service_support import KMS, Actors, delegate_payload, enclave_key, make_targets

from nox.chain.contracts import to_bytes20
from nox.crypto.delegation import RequesterKey
from nox.crypto.eip712 import Domain
from nox.crypto.keys import EnclaveKey
from nox.errors import FailedPrecondition, NoxError
from nox.kms.config import InvalidKmsSettings, KmsSettings
from nox.kms.exceptions import PublicKeyMismatch, ShareUnsealFailed
from nox.kms.server import StaticDirectory, load_share, serve
from nox.kms.service import SERVICE_NAME
from nox.rpc import create_channel
from nox.v1 import kms_pb2, kms_pb2_grpc

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


def test_settings_come_from_the_environment_and_a_file(
    keys: KeyFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "kms.toml"
    config.write_text(
        "[kms]\n"
        f'share_file = "{keys.share(1)}"\n'
        f'kek_file = "{keys.keks[0]}"\n'
        'registry_address = "0x' + "11" * 20 + '"\n'
        "max_batch = 10\n"
    )
    monkeypatch.setenv("NOX_KMS_MAX_BATCH", "32")
    monkeypatch.setenv("NOX_KMS_PORT", "0")
    settings = KmsSettings.load(config)
    assert settings.max_batch == 32  # the environment overrides the file
    assert settings.port == 0
    assert settings.node_settings().max_batch == 32
    assert settings.domain == Domain(chain_id=31337, verifying_contract=b"\x11" * 20)
    assert load_share(settings).share.index == 1

    monkeypatch.setenv("NOX_KMS_KEK_PASSPHRASE", "correct horse battery staple")
    with pytest.raises(InvalidKmsSettings) as info:
        KmsSettings.load(config)  # a KEK file and a passphrase
    assert "correct horse" not in str(info.value)
    monkeypatch.setenv("NOX_KMS_REGISTRY_ADDRESS", "0x1234")
    with pytest.raises(InvalidKmsSettings, match="registry_address"):
        KmsSettings.load(config)
    monkeypatch.delenv("NOX_KMS_REGISTRY_ADDRESS")
    monkeypatch.delenv("NOX_KMS_KEK_FILE", raising=False)
    no_file = KmsSettings.load(None, share_file=keys.share(1), registry_address="0x" + "11" * 20)
    assert "correct horse" not in repr(no_file)


async def test_a_node_refuses_to_start_on_a_wrong_key_set_kek_or_no_registry(
    chain: Chain, keys: KeyFiles, tmp_path: Path
) -> None:
    (tmp_path / "other").mkdir()
    other = run_keygen(tmp_path / "other")
    network = KmsNet(chain, keys)
    with pytest.raises(PublicKeyMismatch):
        await network.start(1, public_file=other.directory / "public.json")
    with pytest.raises(ShareUnsealFailed):
        await network.start(1, kek_file=keys.keks[1])
    with pytest.raises(FailedPrecondition, match="no registry"):
        await serve(node_settings(chain, keys, 1), stop=asyncio.Event(), signals=())


async def test_seen_nonces_survive_a_restart_with_a_database(
    chain: Chain, keys: KeyFiles, tmp_path: Path
) -> None:
    chain.actors.clock[0] = chain.net.backend.now()
    network = KmsNet(chain, keys)
    database = {"replay_database_url": f"sqlite:///{tmp_path / 'nonces.db'}"}
    requester = RequesterKey.generate_secp256k1()
    targets = make_targets(keys.public, 1, producer=chain.actors)
    payload = delegate_payload(
        requester,
        targets,
        runner_request=chain.actors.runner_request(requester, [targets[0].handle]),
    )
    request = chain.actors.sign_for(0, payload)
    try:
        network.running.append(await network.start(1, **database))
        await network.stub(0).Delegate(request)
        await network.stop(network.running.pop())
        network.running.append(await network.start(1, **database))
        with pytest.raises(NoxError) as info:
            await network.stub(0).Delegate(request)
        assert (info.value.code, info.value.reason) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "NONCE_REPLAYED",
        )
    finally:
        for channel in network.channels:
            await channel.close(None)
        for running in network.running:
            await network.stop(running)


async def test_no_share_ever_reaches_a_log_or_an_error(
    chain: Chain,
    keys: KeyFiles,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    chain.actors.clock[0] = chain.net.backend.now()
    network = KmsNet(chain, keys)
    actors = chain.actors
    texts: list[str] = []
    try:
        for index in (1, 2, 3):
            network.running.append(await network.start(index))
        requester = RequesterKey.generate_secp256k1()
        targets = make_targets(keys.public, 2, producer=actors)
        handles = [t.handle for t in targets]
        good = delegate_payload(
            requester, targets, runner_request=actors.runner_request(requester, handles)
        )
        bad_requests = [
            actors.sign_for(0, delegate_payload(requester, targets)),
            actors.sign_for(0, good, signer=EnclaveKey.generate()),
            actors.sign_for(
                0,
                delegate_payload(
                    requester,
                    targets,
                    runner_request=actors.runner_request(requester, handles, inputs=[]),
                ),
            ),
        ]
        for node in range(3):
            await network.stub(node).Delegate(actors.sign_for(node, good))
        for request in bad_requests:
            with pytest.raises(NoxError) as info:
                await network.stub(0).Delegate(request)
            texts += [str(info.value), repr(info.value), repr(info.value.metadata)]
        texts += [repr(r.node) for r in network.running]
        texts += [repr(r.server.grpc_server) for r in network.running]
    finally:
        for channel in network.channels:
            await channel.close(None)
        for running in network.running:
            await network.stop(running)
    captured = capfd.readouterr()
    text = "\n".join([caplog.text, captured.out, captured.err, *texts])
    assert "kms.delegated" in text  # the served requests were logged...
    for index in (1, 2, 3):  # ...and no form of any share appears anywhere
        share = load_share(node_settings(chain, keys, index)).share
        secret = share.secret_bytes()
        for form in (secret.hex(), secret.hex().upper(), str(share.value), secret[:16].hex()):
            assert form not in text


async def test_a_node_serves_only_while_it_is_registered(chain: Chain, keys: KeyFiles) -> None:
    net, actors = chain.net, chain.actors
    actors.clock[0] = net.backend.now()
    enclave = net.new_enclave()  # funded, not registered yet
    network = KmsNet(chain, keys)
    try:
        running = await network.start(
            2, enclave=enclave_key(enclave), registration_check_seconds=0.1
        )
        network.running.append(running)
        # Delegations go to this node's address: sign for it.
        actors_here = Actors(
            actors.domain,
            actors.gateway,
            actors.runner,
            actors.orchestrator,
            [enclave_key(enclave)],
            actors.clock,
        )
        requester = RequesterKey.generate_secp256k1()
        targets = make_targets(keys.public, 1, producer=actors_here)
        payload = delegate_payload(
            requester,
            targets,
            runner_request=actors_here.runner_request(requester, [targets[0].handle]),
        )
        stub = network.stub(0)
        info = await stub.GetPublicKey(kms_pb2.GetPublicKeyRequest())
        assert info.node.ready is False
        health = health_pb2_grpc.HealthStub(network.channels[0])
        status = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(NoxError) as refused:
            await stub.Delegate(actors_here.sign_for(0, payload))
        assert (refused.value.code, refused.value.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            "NODE_NOT_READY",
        )
        # It registers (a bound simulated-TDX quote); the node notices and serves.
        operator = net.backend.accounts[1]
        quote = net.bound_quote(to_bytes20(enclave.address), KMS, to_bytes20(operator.address))
        net.registry.register(quote, KMS, operator.address, ENDPOINT, enclave)
        for _ in range(600):
            if running.node.ready:
                break
            await asyncio.sleep(0.05)
        status = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        response = await stub.Delegate(actors_here.sign_for(0, payload))
        assert len(response.envelope.signature) == 65
    finally:
        for channel in network.channels:
            await channel.close(None)
        for running in network.running:
            await network.stop(running)


def test_static_directory_answers_like_the_registry(tmp_path: Path) -> None:
    gateway, runner = EnclaveKey.generate(), EnclaveKey.generate()
    path = tmp_path / "registry.json"
    path.write_text(
        json.dumps({"0x" + gateway.address.hex(): "gateway", "0x" + runner.address.hex(): 2})
    )
    directory = StaticDirectory.from_file(path)
    directory.require(gateway.address, 3, 0)
    directory.require(runner.address, 2, 0)
    for address, role, reason in [
        (runner.address, 3, "ROLE_MISMATCH"),
        (EnclaveKey.generate().address, 3, "SIGNER_NOT_REGISTERED"),
    ]:
        with pytest.raises(NoxError) as info:
            directory.require(address, role, 0)
        assert (info.value.code, info.value.reason) == (grpc.StatusCode.PERMISSION_DENIED, reason)
    path.write_text(json.dumps({"0x1234": "gateway"}))
    with pytest.raises(InvalidKmsSettings):
        StaticDirectory.from_file(path)


@pytest.mark.e2e
async def test_noxctl_serve_kms_serves_a_signed_delegation(keys: KeyFiles, tmp_path: Path) -> None:
    """The command an operator runs: settings from the environment, a (dev) static registry."""
    gateway, orchestrator, runner = (EnclaveKey.generate() for _ in range(3))
    node_key = EnclaveKey.generate()
    key_file = tmp_path / "enclave.key"
    key_file.write_text(node_key.secret_bytes().hex())
    registry = tmp_path / "registry.json"
    registry.write_text(
        json.dumps(
            {
                "0x" + gateway.address.hex(): "gateway",
                "0x" + orchestrator.address.hex(): "orchestrator",
                "0x" + runner.address.hex(): "runner",
                "0x" + node_key.address.hex(): "kms",
            }
        )
    )
    domain = Domain(chain_id=31337, verifying_contract=b"\x22" * 20)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOX_KMS_")}
    env |= {
        "NOX_KMS_PORT": "0",
        "NOX_KMS_REGISTRY_ADDRESS": "0x" + "22" * 20,
        "NOX_KMS_SHARE_FILE": str(keys.share(2)),
        "NOX_KMS_KEK_FILE": str(keys.keks[1]),
        "NOX_KMS_PUBLIC_FILE": str(keys.directory / "public.json"),
        "NOX_KMS_DANGEROUS_STATIC_REGISTRY_FILE": str(registry),
        "NOX_KMS_DANGEROUS_ENCLAVE_KEY_FILE": str(key_file),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nox.cli",
        "serve",
        "kms",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
        listening = json.loads(line)
        assert listening["node_index"] == 2
        assert listening["enclave_address"] == "0x" + node_key.address.hex()
        actors = Actors(domain, gateway, runner, orchestrator, [node_key], [int(time.time())])
        requester = RequesterKey.generate_secp256k1()
        targets = make_targets(keys.public, 1, producer=actors)
        payload = delegate_payload(
            requester,
            targets,
            runner_request=actors.runner_request(requester, [targets[0].handle]),
        )
        async with create_channel(listening["target"]) as channel:
            stub = kms_pb2_grpc.KmsServiceStub(channel)
            info = await stub.GetPublicKey(kms_pb2.GetPublicKeyRequest(), wait_for_ready=True)
            assert info.node_index == 2
            assert info.public_key == keys.public.public_key
            response = await stub.Delegate(actors.sign_for(0, payload))
            assert len(response.envelope.signature) == 65
            with pytest.raises(NoxError) as refused:
                await stub.Delegate(actors.sign_for(0, payload, signer=EnclaveKey.generate()))
            assert refused.value.reason == "SIGNER_NOT_REGISTERED"
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, err
    assert b"kms.delegated" in err
