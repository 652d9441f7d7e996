"""Issue 14, point 5: bounded resources, attacked the way an outsider or a registered node would.

The gateway, its SQLite store and the three KMS nodes are real, over real gRPC
(tests/gateway/service/gateway_servers.py); the registry and the ACL are dictionaries
behind the same interfaces. Requests are sent as raw bytes on a raw gRPC channel, so the
server, not a client library, decides what is refused and why. Registered attackers use
their real, enrolled keys.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway" / "service"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "devnet"))
from devnet_support import RunningDevnet
from gateway_servers import GatewayNet, Kms, start_gateway, start_kms, stop_gateway, stop_kms
from gateway_support import (
    DOMAIN,
    GATEWAY,
    NOW,
    ORCHESTRATOR,
    RUNNER,
    Clock,
    FakeAcl,
    FakeRegistry,
    encrypt_request,
    result_handle,
    u64,
)

from nox.chain.contracts import KmsKeys
from nox.crypto.delegation import RequesterKey
from nox.crypto.envelope import sign_envelope, verify_envelope
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache, SignerRate, SqlReplayCache
from nox.crypto.threshold import ThresholdPublicKey, feldman_public_share, parse_point
from nox.crypto.threshold import point_bytes as to_bytes
from nox.errors import NoxError
from nox.gateway.expiry import sweep_once
from nox.gateway.limits import client_key
from nox.kms.exceptions import PublicKeyMismatch
from nox.kms.wire import public_key_to_proto
from nox.rpc import ServiceSpec, create_server
from nox.rpc.client import ChannelSettings, create_channel, error_info
from nox.rpc.server import RpcServer, ServerSettings
from nox.sdk import NoxClient
from nox.v1 import common_pb2, envelope_pb2, gateway_pb2, kms_pb2, kms_pb2_grpc

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
GW = "/nox.v1.GatewayService/"
TASK = bytes.fromhex("7a" * 32)
BYTES_TYPE = 2  # a dynamic-size type: its plaintext is up to max_plaintext_bytes


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def acl() -> FakeAcl:
    return FakeAcl()


@pytest.fixture
async def kms(registry: FakeRegistry, clock: Clock, acl: FakeAcl) -> AsyncIterator[Kms]:
    network = await start_kms(registry, clock, acl.is_publicly_decryptable)
    try:
        yield network
    finally:
        await stop_kms(network)


@pytest.fixture
async def gw(
    tmp_path: Path, clock: Clock, registry: FakeRegistry, acl: FakeAcl, kms: Kms
) -> AsyncIterator[GatewayNet]:
    net = await start_gateway(
        store_url=f"sqlite:///{tmp_path / 'gateway.sqlite3'}",
        clock=clock,
        registry=registry,
        acl=acl,
        kms=kms,
        key=registry.enrol(GATEWAY),
        orchestrator=registry.enrol(ORCHESTRATOR),
        runner=registry.enrol(RUNNER),
    )
    try:
        yield net
    finally:
        await stop_gateway(net)


@pytest.fixture
async def raw(gw: GatewayNet) -> AsyncIterator[grpc.aio.Channel]:
    """A plain channel that sends whatever bytes it is given (up to 16 MiB)."""
    channel = create_channel(gw.server.target, ChannelSettings(typed_errors=False))
    try:
        yield channel
    finally:
        await channel.close(None)


def stored_rows(gw: GatewayNet) -> set[bytes]:
    """The handles in the gateway's real SQLite file, read as its operator would."""
    with sqlite3.connect(gw.store_url.removeprefix("sqlite:///")) as db:
        return {bytes(h) for (h,) in db.execute("SELECT handle FROM gateway_handles")}


async def send_raw(channel: grpc.aio.Channel, method: str, body: bytes) -> grpc.aio.AioRpcError:
    call = channel.unary_unary(GW + method)  # no serializers: bytes in, bytes out
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(body)
    return info.value


def reason(err: grpc.aio.AioRpcError) -> str | None:
    info = error_info(err)
    return None if info is None else info.reason


# ---- size limits on the raw bytes, before parsing ----------------------------------------


async def test_an_oversized_public_request_is_refused_by_its_size_before_parsing(
    gw: GatewayNet, raw: grpc.aio.Channel
) -> None:
    before = stored_rows(gw)
    # Garbage that would not even parse (0xff is an invalid field tag): a parse error would
    # be INVALID_ARGUMENT. Below the server's transport cap, the method's own limit answers.
    err = await send_raw(raw, "EncryptInput", b"\xff" * MIB)
    assert (err.code(), reason(err)) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "REQUEST_TOO_LARGE")
    assert error_info(err).metadata["limit"] == str(gw.ctx.limits.max_public_request_bytes)
    # 15 MiB, above every method's limit: the transport refuses it from the frame header.
    err = await send_raw(raw, "EncryptInput", b"\xff" * (15 * MIB))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stored_rows(gw) == before  # nothing stored
    # and the gateway still serves a normal request
    assert len((await gw.stub.EncryptInput(encrypt_request(gw.key.public_key))).handle) == 32


def junk_envelope(gw: GatewayNet, size: int) -> envelope_pb2.SignedEnvelope:
    """A well-formed envelope around `size` bytes of junk, with a random signature."""
    return envelope_pb2.SignedEnvelope(
        payload=os.urandom(size),
        payload_type="nox.v1.GetOperandsPayload",
        audience=gw.key.address,
        issued_at=NOW,
        expires_at=NOW + 60,
        nonce=os.urandom(32),
        signature=os.urandom(32) + (1).to_bytes(32, "big") + b"\x1b",
    )


async def test_junk_8_mib_signed_envelopes_are_refused_before_any_signature_work(
    gw: GatewayNet, raw: grpc.aio.Channel
) -> None:
    # Just under the old 8 MiB limit, such an envelope was parsed, hashed, its signature
    # recovered and its (random) signer looked up in the registry: 43 ms of CPU each.
    calls = gw.registry.calls
    junk = junk_envelope(gw, 8 * MIB - 64 * 1024)
    for method, request in (
        ("GetOperands", gateway_pb2.GetOperandsRequest(envelope=junk)),
        ("StoreResults", gateway_pb2.StoreResultsRequest(envelope=junk)),
    ):
        err = await send_raw(raw, method, request.SerializeToString())
        # above the server's transport cap (its largest method limit): refused by size
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, method
    # 2 MiB: under the transport cap, over GetOperands' own limit
    request = gateway_pb2.GetOperandsRequest(envelope=junk_envelope(gw, 2 * MIB))
    err = await send_raw(raw, "GetOperands", request.SerializeToString())
    assert (err.code(), reason(err)) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "REQUEST_TOO_LARGE")
    assert gw.registry.calls == calls  # no signer was ever recovered nor looked up


# ---- per-signer limits --------------------------------------------------------------------


async def test_a_flooding_registered_runner_is_rate_limited_while_another_is_served(
    gw: GatewayNet, clock: Clock
) -> None:
    gw.ctx.replay = SqlReplayCache(gw.ctx.store.engine, signer_rate=SignerRate(rate=1, burst=3))
    (a,) = [
        (await gw.stub.EncryptInput(encrypt_request(gw.key.public_key, plaintext=u64(7)))).handle
    ]
    flooder, honest = gw.registry.enrol(RUNNER), gw.registry.enrol(RUNNER)

    def request(runner: EnclaveKey) -> gateway_pb2.GetOperandsRequest:
        assignment = gw.actors.assignment(TASK, [a], [result_handle(5)], runner=runner)
        key = RequesterKey.generate_secp256k1()
        return gw.actors.operands_request(assignment, [a], key, task_id=TASK, runner=runner)

    for _ in range(3):  # its burst: each a valid, freshly signed request, served
        await gw.stub.GetOperands(request(flooder))
    with pytest.raises(NoxError) as info:
        await gw.stub.GetOperands(request(flooder))
    assert (info.value.code, info.value.reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "SIGNER_RATE_LIMITED",
    )
    assert info.value.metadata["signer"] == "0x" + flooder.address.hex()
    # another registered runner is still served at once
    assert (await gw.stub.GetOperands(request(honest))).envelope.signature
    clock.now += 2  # the flooder's bucket refills with time
    assert (await gw.stub.GetOperands(request(flooder))).envelope.signature


def test_a_signer_filling_its_replay_quota_leaves_room_for_the_others() -> None:
    # What the orchestrator verifies runners' envelopes with: one in-memory cache for all.
    cache = MemoryReplayCache(max_entries=64, max_entries_per_signer=4)
    flooder, honest = EnclaveKey.generate(), EnclaveKey.generate()
    me = EnclaveKey.generate().address

    def verify(signer: EnclaveKey) -> None:
        payload = common_pb2.NodeInfo(enclave_address=signer.address)
        env = sign_envelope(signer, payload, domain=DOMAIN, audience=me, now=NOW, ttl=3600)
        verify_envelope(env, common_pb2.NodeInfo, domain=DOMAIN, audience=me, now=NOW, replay=cache)

    for _ in range(4):
        verify(flooder)
    with pytest.raises(NoxError) as info:
        verify(flooder)  # with its real key, long-lived envelopes: it used to fill the cache
    assert (info.value.code, info.value.reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "SIGNER_REPLAY_QUOTA_EXCEEDED",
    )
    for _ in range(4):
        verify(honest)  # the others still get through


# ---- input quota per IPv4 address and IPv6 /64 --------------------------------------------


def test_every_address_of_an_ipv6_64_shares_one_bucket() -> None:
    peers = [f"ipv6:[2001:db8:1:2:{i:x}::{j:x}]:{40000 + i}" for i in range(50) for j in range(3)]
    assert {client_key(p) for p in peers} == {"ipv6:2001:db8:1:2::/64"}
    assert client_key("ipv6:[2001:db8:1:3::1]:1") == "ipv6:2001:db8:1:3::/64"
    assert (
        client_key("ipv6:[::ffff:10.1.2.3]:9") == client_key("ipv4:10.1.2.3:7") == "ipv4:10.1.2.3"
    )


async def test_64_kib_inputs_from_one_client_stop_at_its_input_quota(
    gw: GatewayNet, clock: Clock
) -> None:
    before = stored_rows(gw)

    def big() -> gateway_pb2.EncryptInputRequest:
        return encrypt_request(
            gw.key.public_key, type_code=BYTES_TYPE, plaintext=os.urandom(64 * 1024)
        )

    stored = 0
    refused: NoxError | None = None
    for _ in range(500):  # what the author sent: all 500 were stored in 1.3 s
        try:
            await gw.stub.EncryptInput(big())
        except NoxError as err:
            refused = err
            break
        stored += 1
    assert refused is not None
    assert (refused.code, refused.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    assert refused.metadata["quota"] == "input bytes"
    assert 0 < stored < 20  # about 1 MiB at once (the default burst), not 32 MiB
    assert len(stored_rows(gw) - before) == stored
    clock.now += 5  # 16 KiB/s sustained: after 5 s, room for one more 64 KiB input
    await gw.stub.EncryptInput(big())
    assert len(stored_rows(gw) - before) == stored + 1


# ---- input expiry -------------------------------------------------------------------------


async def test_an_unused_input_is_deleted_after_expiry_and_a_used_one_kept(
    gw: GatewayNet, acl: FakeAcl, clock: Clock
) -> None:
    used, unused, kept_on_chain = [
        (await gw.stub.EncryptInput(encrypt_request(gw.key.public_key, plaintext=u64(v)))).handle
        for v in (1, 2, 3)
    ]
    assignment = gw.actors.assignment(TASK, [used], [result_handle(5)])
    key = RequesterKey.generate_secp256k1()
    await gw.stub.GetOperands(gw.actors.operands_request(assignment, [used], key, task_id=TASK))
    acl.viewers.add(
        (kept_on_chain, encrypt_request(gw.key.public_key).application_address)
    )  # a contract kept it

    clock.now += gw.ctx.limits.input_ttl_seconds - 1
    assert await sweep_once(gw.ctx, clock.now) == 0  # not yet
    clock.now += 2
    assert await sweep_once(gw.ctx, clock.now) == 1
    rows = stored_rows(gw)
    assert unused not in rows
    assert {used, kept_on_chain} <= rows
    assert await sweep_once(gw.ctx, clock.now + 10**6) == 0  # the kept ones never expire


# ---- the SDK and the registry's KMS key set -----------------------------------------------


@dataclass
class PublishedKeys:
    """NoxRegistry's KMS key set (what `RegistryClient.kms_keys` returns)."""

    public: ThresholdPublicKey

    def kms_keys(self) -> KmsKeys:
        p = self.public
        return KmsKeys(p.public_key, list(p.public_shares), p.threshold)


class ForgedKms(kms_pb2_grpc.KmsServiceServicer):
    """A man in the middle answering GetPublicKey: the real PK (so the gateway's info agrees)
    with public shares of its own choosing (consistent Feldman commitments)."""

    def __init__(self, real: ThresholdPublicKey) -> None:
        slope = EnclaveKey.generate().public_key
        commitments = [parse_point(real.public_key), parse_point(slope)]
        self.forged = ThresholdPublicKey(
            threshold=2,
            public_key=real.public_key,
            public_shares=tuple(to_bytes(feldman_public_share(commitments, i)) for i in (1, 2, 3)),
            commitments=(real.public_key, slope),
            epoch=real.epoch,
        )

    async def GetPublicKey(self, request: object, context: object) -> kms_pb2.GetPublicKeyResponse:
        return public_key_to_proto(self.forged, node_index=1)


@pytest.fixture
async def forged_kms(kms: Kms) -> AsyncIterator[tuple[RpcServer, ForgedKms]]:
    servicer = ForgedKms(kms.dealing.public)
    spec = ServiceSpec("nox.v1.KmsService", kms_pb2_grpc.add_KmsServiceServicer_to_server, servicer)
    server = create_server([spec], settings=ServerSettings(graceful_shutdown_seconds=0))
    await server.start()
    try:
        yield server, servicer
    finally:
        await server.stop(0)


async def test_the_sdk_refuses_a_kms_key_set_the_registry_does_not_hold(
    gw: GatewayNet, kms: Kms, forged_kms: tuple[RpcServer, ForgedKms]
) -> None:
    server, forged = forged_kms
    forged.forged.validate()  # a well-formed set, with the gateway's own PK
    registry = PublishedKeys(kms.dealing.public)
    async with NoxClient(gw.server.target, kms_target=server.target, kms_registry=registry) as nox:
        with pytest.raises(PublicKeyMismatch):
            await nox.kms_public()
    async with NoxClient(gw.server.target, kms_target=server.target) as nox:
        with pytest.raises(NoxError):  # no registry to check against: refused, not trusted
            await nox.kms_public()
    # the real node's answer is accepted
    async with NoxClient(
        gw.server.target, kms_target=kms.servers[0].target, kms_registry=registry
    ) as nox:
        assert (await nox.kms_public()).public_shares == kms.dealing.public.public_shares


# ---- state files --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevnet]:
    running = RunningDevnet(tmp_path_factory.mktemp("devnet") / "state")
    running.start()
    try:
        yield running
    finally:
        running.close()


@pytest.mark.e2e
@pytest.mark.slow
def test_every_devnet_state_file_is_0600_and_every_folder_0700(devnet: RunningDevnet) -> None:
    state = devnet.net.state_dir
    assert (state / "gateway.sqlite3").exists()
    assert (state / "ingestor.sqlite3").exists()
    wrong = []
    checked = 0
    for root, dirs, files in os.walk(state):
        for name in dirs + files:
            path = Path(root) / name
            if path.parent == state / "nats" / "ports":
                continue  # written by nats-server itself, inside a 0700 folder
            want = 0o700 if path.is_dir() else 0o600
            checked += 1
            if stat.S_IMODE(path.lstat().st_mode) != want:
                wrong.append(f"{oct(stat.S_IMODE(path.lstat().st_mode))} {path.relative_to(state)}")
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "nats" / "ports").stat().st_mode) == 0o700
    assert checked > 20
    assert wrong == []
