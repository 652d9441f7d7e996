"""Issue 14, value tags: the gateway database's holder cannot read values from their tags.

The attacker holds the gateway's PostgreSQL database (raw SQL on the real store) and knows
the handles, the types and every public value of the deployment. Before issue 14 a tag was
keccak256(handle ‖ plaintext): a bool fell in one hash, a balance of 877 by a short search.
Now it is HMAC-SHA256 under a key derived through the threshold KMS (x·P_tag) that only
attested enclaves hold (docs/kms.md, "Tag key"). Shown here, on a real gateway over gRPC
with a real 2-of-3 KMS:

- the dictionary search over the stored tags finds nothing, for keccak256(handle ‖ guess)
  and for the other key-less constructions, while the key holder's check does find the value;
- runners that fetch the key independently (GatewayService.GetTagKey, relayed to the KMS)
  tag alike: redundant executions agree, an identical re-publication is UNCHANGED;
- a KMS node refuses the tag-key point to anyone but a registered gateway or runner, and
  refuses any other point under the tag-key authorization; a database writer who puts P_tag
  as a handle's K gets nothing through a user's Decrypt;
- the key is never in the database, the logs or the files.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from bindfix import SALT, bind_task
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from tagkeys import tag_key_of

import nox.gateway.tagkey
from nox.chain.exceptions import RoleMismatch, SignerNotRegistered
from nox.crypto import ecies
from nox.crypto.binding import prove_key
from nox.crypto.delegation import RequesterKey
from nox.crypto.eip712 import Domain
from nox.crypto.envelope import sign_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache, SqlReplayCache
from nox.crypto.sealing import seal_input
from nox.crypto.tags import TAG_KEY_HANDLE, TagKey, tag_point
from nox.crypto.threshold import Dealing, deal
from nox.errors import NoxError
from nox.gateway.context import Deployment, GatewayContext
from nox.gateway.kms import KmsFanout, KmsNodeEndpoint
from nox.gateway.limits import RateLimit
from nox.gateway.server import create_gateway_server
from nox.gateway.store import AsyncHandleStore, HandleStore, StoreSettings
from nox.gateway.tagkey import derive_tag_key
from nox.handles import value_tag
from nox.kms.authorization import authorization_digest
from nox.kms.keys import LoadedShare
from nox.kms.service import SERVICE_NAME as KMS_SERVICE
from nox.kms.service import KmsServicer
from nox.kms.wire import requester_key_to_proto
from nox.rpc import ServerSettings, ServiceSpec, create_channel, create_server
from nox.rpc.logging import bind_logger, build_processors
from nox.rpc.server import RpcServer
from nox.runner.executor import ExecutorConfig, TaskExecutor
from nox.runner.tagkey import open_tag_key_response, tag_key_request
from nox.v1 import decryption_pb2, gateway_pb2, gateway_pb2_grpc, kms_pb2, kms_pb2_grpc
from nox.v1.common_pb2 import TypedCiphertext
from nox.v1.envelope_pb2 import SignedEnvelope
from nox.v1.orchestrator_pb2 import SubmitResultPayload
from nox.v1.task_pb2 import TaskAssignment, TaskLimits, TaskOutputs, TaskResult

pytestmark = pytest.mark.integration  # real gRPC servers, PostgreSQL

POSTGRES_URL = os.environ.get(
    "NOX_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
NOW = 1_800_000_000
CHAIN_ID = 31337
REGISTRY = bytes.fromhex("11" * 20)
COMPUTE = bytes.fromhex("22" * 20)
DOMAIN = Domain(chain_id=CHAIN_ID, verifying_contract=REGISTRY)
ORCHESTRATOR, RUNNER, GATEWAY, KMS = 1, 2, 3, 4
BOOL, UINT64 = 0, 11
OWNER, APP = bytes.fromhex("aa" * 20), bytes.fromhex("bb" * 20)
BALANCE = 877


@dataclass
class Registry:
    """address -> role, answering like RegistryView.require for active, attested nodes."""

    roles: dict[bytes, int] = field(default_factory=dict)

    def require(self, address: bytes, role: int, now: int) -> None:
        del now
        known = self.roles.get(address)
        if known is None:
            raise SignerNotRegistered("signer is not registered")
        if known != role:
            raise RoleMismatch("signer has another role")

    def require_producer(self, address: bytes, role: int, now: int) -> None:
        """RegistryView's rule for producers of stored rows (nobody expires here)."""
        self.require(address, role, now)

    def enrol(self, role: int) -> EnclaveKey:
        key = EnclaveKey.generate()
        self.roles[key.address] = role
        return key


@dataclass
class Acl:
    viewers: set[tuple[bytes, bytes]] = field(default_factory=set)

    def is_viewer(self, handle: bytes, account: bytes) -> bool:
        return (handle, account) in self.viewers

    def is_publicly_decryptable(self, handle: bytes) -> bool:
        del handle
        return False


@dataclass
class Net:
    registry: Registry
    acl: Acl
    dealing: Dealing
    kms_keys: list[EnclaveKey]
    kms_stubs: list[kms_pb2_grpc.KmsServiceStub]
    gateway: EnclaveKey
    orchestrator: EnclaveKey
    ctx: GatewayContext
    stub: gateway_pb2_grpc.GatewayServiceStub
    pg_url: str
    log: io.StringIO


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL on a schema private to this test (dropped afterwards)."""
    schema = f"nox_tags_{uuid.uuid4().hex[:16]}"
    admin = create_engine(POSTGRES_URL, poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
async def net(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Net]:
    """A gateway over PostgreSQL and a 2-of-3 KMS, over real gRPC; the gateway derived its
    tag key through the KMS before serving, as `nox.gateway.server.build_gateway` does.
    The KMS nodes and the gateway's tag-key step log, as in production, into `Net.log`."""
    log = io.StringIO()

    def logger(name: str) -> object:
        return bind_logger(build_processors(json=True), log).bind(logger=name)

    monkeypatch.setattr(nox.gateway.tagkey, "_log", logger("nox.gateway.tagkey"))
    registry, acl = Registry(), Acl()
    dealing = deal(2, 3)
    kms_keys = [registry.enrol(KMS) for _ in range(3)]
    servers: list[RpcServer] = []
    channels: list[grpc.aio.Channel] = []
    for share, key in zip(dealing.shares, kms_keys, strict=True):
        servicer = KmsServicer(
            share=LoadedShare(share, dealing.public), enclave_key=key, domain=DOMAIN,
            registry=registry, replay=MemoryReplayCache(), clock=lambda: NOW,
            logger=logger("nox.kms"),
        )  # fmt: skip
        spec = ServiceSpec(KMS_SERVICE, kms_pb2_grpc.add_KmsServiceServicer_to_server, servicer)
        server = create_server([spec], settings=ServerSettings(graceful_shutdown_seconds=0))
        await server.start()
        servers.append(server)
        channels.append(create_channel(server.target))
    kms_stubs = [kms_pb2_grpc.KmsServiceStub(c) for c in channels]
    gateway, orchestrator = registry.enrol(GATEWAY), registry.enrol(ORCHESTRATOR)
    store = AsyncHandleStore(
        HandleStore.open(StoreSettings(url=pg_url, pool_size=4), clock=lambda: NOW)
    )
    endpoints = [
        KmsNodeEndpoint(i, key.address, stub.Delegate)
        for i, (key, stub) in enumerate(zip(kms_keys, kms_stubs, strict=True), 1)
    ]
    ctx = GatewayContext(
        key=gateway,
        deployment=Deployment(CHAIN_ID, REGISTRY, COMPUTE),
        store=store,
        directory=registry,
        acl=acl,
        kms=KmsFanout(endpoints, key=gateway, domain=DOMAIN, public=dealing.public,
                      directory=registry, clock=lambda: NOW),
        replay=SqlReplayCache(store.engine),
        clock=lambda: NOW,
    )  # fmt: skip
    await derive_tag_key(ctx)
    server, _ = create_gateway_server(
        ctx,
        server_settings=ServerSettings(graceful_shutdown_seconds=0),
        rate_limit=RateLimit(1000.0, 1000),
    )
    await server.start()
    servers.append(server)
    channels.append(create_channel(server.target))
    try:
        yield Net(
            registry, acl, dealing, kms_keys, kms_stubs, gateway, orchestrator, ctx,
            gateway_pb2_grpc.GatewayServiceStub(channels[-1]), pg_url, log,
        )  # fmt: skip
    finally:
        for channel in channels:
            await channel.close(None)
        for server in servers:
            await server.stop(0)
        await store.close()


async def encrypt_input(net: Net, type_code: int, plaintext: bytes) -> bytes:
    """EncryptInput as the SDK sends it: the plaintext sealed to the gateway's enclave key."""
    sealed = seal_input(
        net.gateway.public_key, plaintext, chain_id=CHAIN_ID, type_code=type_code,
        owner=OWNER, application=APP,
    )  # fmt: skip
    response = await net.stub.EncryptInput(
        gateway_pb2.EncryptInputRequest(
            chain_id=CHAIN_ID, type_code=type_code, sealed_plaintext=sealed,
            owner_address=OWNER, application_address=APP,
        )
    )  # fmt: skip
    return bytes(response.handle)


def raw_rows(net: Net) -> dict[bytes, tuple[bytes, bytes]]:
    """What the database holder reads: handle -> (value_tag, K), by raw SQL."""
    engine = create_engine(net.pg_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT handle, value_tag, ephemeral_public_key FROM gateway_handles")
            ).all()
    finally:
        engine.dispose()
    return {bytes(h): (bytes(t), bytes(k)) for h, t, k in rows}


def keyless_tags(handle: bytes, plaintext: bytes) -> set[bytes]:
    """Every key-less construction the attacker tries: the old tag first."""
    return {
        keccak256(handle, plaintext),  # the tag of DESIGN §5 before issue 14
        keccak256(plaintext, handle),
        keccak256(plaintext),
        hashlib.sha256(handle + plaintext).digest(),
        hashlib.sha3_256(handle + plaintext).digest(),
        hashlib.blake2b(handle + plaintext, digest_size=32).digest(),
        hmac.new(handle, plaintext, hashlib.sha256).digest(),
        hmac.new(b"", handle + plaintext, hashlib.sha256).digest(),
        hmac.new(bytes(32), handle + plaintext, hashlib.sha256).digest(),
    }


def search(handle: bytes, tag: bytes, guesses: range, size: int) -> list[int]:
    return [g for g in guesses if tag in keyless_tags(handle, g.to_bytes(size, "big"))]


async def test_the_database_holder_cannot_read_a_bool_or_a_balance_from_its_tag(
    net: Net,
) -> None:
    flag = await encrypt_input(net, BOOL, b"\x01")
    balance = await encrypt_input(net, UINT64, BALANCE.to_bytes(8, "big"))
    rows = raw_rows(net)
    flag_tag, balance_tag = rows[flag][0], rows[balance][0]
    # The attack: every guess under every key-less construction. Nothing matches.
    assert search(flag, flag_tag, range(2), 1) == []
    assert search(balance, balance_tag, range(100_000), 8) == []
    # Control: the search itself is sound; the key's holder finds both values at once.
    key = tag_key_of(net.dealing, DOMAIN)
    assert [g for g in range(2) if value_tag(key, flag, bytes([g])) == flag_tag] == [1]
    found = [g for g in range(1000) if value_tag(key, balance, g.to_bytes(8, "big")) == balance_tag]
    assert found == [BALANCE]


def runner_executor(net: Net, key: EnclaveKey) -> TaskExecutor:
    config = ExecutorConfig(domain=DOMAIN, kms_public=net.dealing.public, compute_address=COMPUTE)
    return TaskExecutor(key=key, config=config, directory=net.registry, replay=MemoryReplayCache())


async def fetch_runner_tag_key(net: Net, executor: TaskExecutor) -> TagKey:
    """What a runner agent does at start: GetTagKey through the gateway, open the answer."""
    request, requester = tag_key_request(executor, gateway=net.gateway.address, now=NOW)
    response = await net.stub.GetTagKey(request)
    assert response.kms_epoch == net.dealing.public.epoch
    return open_tag_key_response(
        executor, response, requester_key=requester, gateway=net.gateway.address, now=NOW
    )


def assignment(
    net: Net, task_id: bytes, outputs: list[bytes], runner: EnclaveKey
) -> SignedEnvelope:
    payload = TaskAssignment(
        task_id=task_id, output_handles=outputs, runner_address=runner.address,
        assigned_at=NOW, lease_expires_at=NOW + 300, attempt=1, redundancy=2,
        limits=TaskLimits(max_operations=16, max_input_handles=16, max_output_handles=16,
                          max_ciphertext_bytes=4096, max_execution_seconds=60),
    )  # fmt: skip
    return sign_envelope(
        net.orchestrator, payload, domain=DOMAIN, audience=runner.address, now=NOW, ttl=600
    )


def execution(
    net: Net, runner: EnclaveKey, tag_key: TagKey, assigned: SignedEnvelope, task_id: bytes,
    outputs: list[tuple[bytes, bytes]],
) -> gateway_pb2.SignedExecution:  # fmt: skip
    """One runner's signed result: fresh ciphertexts, tags under the runner's tag key, the
    runner's binding of its outputs (as `nox.runner.executor` makes them)."""
    ciphertexts, rows = [], []
    for handle, plaintext in outputs:
        ct, scalar = ecies.encrypt_keeping_scalar(net.dealing.public.public_key, plaintext, handle)
        tag = value_tag(tag_key, handle, plaintext)
        rows.append((handle, ct, tag))
        ciphertexts.append(
            TypedCiphertext(
                handle=handle, ciphertext=ct.ciphertext, nonce=ct.nonce,
                ephemeral_public_key=ct.ephemeral_public_key, value_tag=tag,
                value_tag_salt=SALT, ephemeral_key_proof=prove_key(DOMAIN, handle, scalar),
            )
        )  # fmt: skip
    signature = bind_task(runner, DOMAIN, task_id, rows)[0].signature
    result = SubmitResultPayload(
        result=TaskResult(
            task_id=task_id,
            assignment_hash=keccak256(assigned.payload),
            outputs=TaskOutputs(ciphertexts=ciphertexts, binding_signature=signature),
        )
    )
    signed = sign_envelope(
        runner, result, domain=DOMAIN, audience=net.orchestrator.address, now=NOW
    )
    return gateway_pb2.SignedExecution(assignment=assigned, result=signed)


def store_request(
    net: Net, task_id: bytes, executions: list[gateway_pb2.SignedExecution]
) -> gateway_pb2.StoreResultsRequest:
    payload = gateway_pb2.StoreResultsPayload(task_id=task_id, executions=executions)
    envelope = sign_envelope(
        net.orchestrator, payload, domain=DOMAIN, audience=net.gateway.address, now=NOW
    )
    return gateway_pb2.StoreResultsRequest(envelope=envelope)


async def test_redundant_runners_agree_and_a_republication_is_unchanged(net: Net) -> None:
    a, b = net.registry.enrol(RUNNER), net.registry.enrol(RUNNER)
    key_a = await fetch_runner_tag_key(net, runner_executor(net, a))
    key_b = await fetch_runner_tag_key(net, runner_executor(net, b))
    assert key_a == key_b == net.ctx.tag_key  # each runner combined its own partials
    task_id = os.urandom(32)
    handle = os.urandom(26) + CHAIN_ID.to_bytes(4, "big") + bytes([UINT64, 0])
    outputs = [(handle, BALANCE.to_bytes(8, "big"))]
    runs = [
        execution(net, r, k, assignment(net, task_id, [handle], r), task_id, outputs)
        for r, k in ((a, key_a), (b, key_b))
    ]
    answer = await net.stub.StoreResults(store_request(net, task_id, runs))
    assert answer.envelope.payload  # signed answer; its outcome below
    payload = gateway_pb2.StoreResultsResponsePayload.FromString(answer.envelope.payload)
    assert [h.outcome for h in payload.stored_handles] == [gateway_pb2.STORE_OUTCOME_CREATED]
    # A re-execution after a crash: new ciphertexts, same tags -> UNCHANGED.
    again = [
        execution(net, r, k, assignment(net, task_id, [handle], r), task_id, outputs)
        for r, k in ((a, key_a), (b, key_b))
    ]
    assert again[0].result.payload != runs[0].result.payload
    answer = await net.stub.StoreResults(store_request(net, task_id, again))
    payload = gateway_pb2.StoreResultsResponsePayload.FromString(answer.envelope.payload)
    assert [h.outcome for h in payload.stored_handles] == [gateway_pb2.STORE_OUTCOME_UNCHANGED]


def tag_key_delegate(
    signer: EnclaveKey, node: EnclaveKey, *, point: bytes,
    runner_request: SignedEnvelope | None = None, requester: RequesterKey | None = None,
) -> kms_pb2.DelegateRequest:  # fmt: skip
    requester = requester or RequesterKey.generate_secp256k1()
    payload = kms_pb2.DelegatePayload(
        epoch=0,
        requester_key=requester_key_to_proto(requester.public),
        targets=[kms_pb2.DelegationTarget(handle=TAG_KEY_HANDLE, ephemeral_public_key=point)],
        tag_key=kms_pb2.TagKeyAuthorization(runner_request=runner_request)
        if runner_request is not None
        else kms_pb2.TagKeyAuthorization(),
    )
    envelope = sign_envelope(signer, payload, domain=DOMAIN, audience=node.address, now=NOW)
    return kms_pb2.DelegateRequest(envelope=envelope)


async def refused(call: object, reason: str) -> None:
    with pytest.raises(NoxError) as info:
        await call  # type: ignore[misc]
    assert info.value.reason == reason, str(info.value)


async def test_a_kms_node_serves_p_tag_only_to_enclaves_and_only_p_tag(net: Net) -> None:
    p_tag = tag_point(DOMAIN)
    node, stub = net.kms_keys[0], net.kms_stubs[0]
    # Positive control: the registered gateway gets it.
    ok = await stub.Delegate(tag_key_delegate(net.gateway, node, point=p_tag))
    assert ok.envelope.payload
    # A key that is no enclave, and a user's own account key, asking directly.
    for outsider in (EnclaveKey.generate(), EnclaveKey.generate()):
        await refused(
            stub.Delegate(tag_key_delegate(outsider, node, point=p_tag)), "SIGNER_NOT_REGISTERED"
        )
    # Another enclave role (an orchestrator) is not a gateway.
    await refused(
        stub.Delegate(tag_key_delegate(net.orchestrator, node, point=p_tag)), "ROLE_MISMATCH"
    )
    # A user relayed as if a runner: the relayed request's signer must be a registered runner.
    user = EnclaveKey.generate()
    requester = RequesterKey.generate_secp256k1()
    forged = sign_envelope(
        user,
        gateway_pb2.GetTagKeyPayload(requester_key=requester_key_to_proto(requester.public)),
        domain=DOMAIN, audience=net.gateway.address, now=NOW,
    )  # fmt: skip
    await refused(
        stub.Delegate(
            tag_key_delegate(
                net.gateway, node, point=p_tag, runner_request=forged, requester=requester
            )
        ),
        "SIGNER_NOT_REGISTERED",
    )  # fmt: skip
    # The same user at the gateway's GetTagKey.
    await refused(
        net.stub.GetTagKey(gateway_pb2.GetTagKeyRequest(envelope=forged)), "SIGNER_NOT_REGISTERED"
    )
    # The tag-key authorization for any other point (here a stored value's K) is refused.
    handle = await encrypt_input(net, UINT64, BALANCE.to_bytes(8, "big"))
    k_point = raw_rows(net)[handle][1]
    await refused(
        stub.Delegate(tag_key_delegate(net.gateway, node, point=k_point)), "TAG_KEY_TARGET_INVALID"
    )


async def test_p_tag_written_as_a_handles_k_does_not_leak_the_key_through_decrypt(
    net: Net,
) -> None:
    """The database writer puts P_tag as the K of a handle a user may view, then asks for a
    normal user decryption. The gateway refuses the row (its K is not the one its producer
    bound), and every KMS node, asked directly, refuses P_tag outside the tag-key
    authorization."""
    user = EnclaveKey.generate()
    handle = await encrypt_input(net, UINT64, BALANCE.to_bytes(8, "big"))
    net.acl.viewers.add((handle, user.address))
    engine = create_engine(net.pg_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE gateway_handles SET ephemeral_public_key = :k WHERE handle = :h"),
            {"k": tag_point(DOMAIN), "h": handle},
        )
    engine.dispose()
    requester = RequesterKey.generate_secp256k1()
    auth = decryption_pb2.DecryptionAuthorization(
        chain_id=CHAIN_ID, user_address=user.address,
        requester_key=requester_key_to_proto(requester.public), handles=[handle],
        not_before=NOW - 10, expires_at=NOW + 600,
    )  # fmt: skip
    auth.signature = user.sign_digest(authorization_digest(DOMAIN, auth))
    await refused(
        net.stub.Decrypt(gateway_pb2.DecryptRequest(handles=[handle], authorization=auth)),
        "STORED_RECORD_TAMPERED",
    )
    # And what each node answers, asked directly with that request: the documented reason.
    payload = kms_pb2.DelegatePayload(
        epoch=0, requester_key=auth.requester_key, user_authorization=auth,
        targets=[kms_pb2.DelegationTarget(handle=handle, ephemeral_public_key=tag_point(DOMAIN))],
    )  # fmt: skip
    for node, stub in zip(net.kms_keys, net.kms_stubs, strict=True):
        envelope = sign_envelope(
            net.gateway, payload, domain=DOMAIN, audience=node.address, now=NOW
        )
        await refused(
            stub.Delegate(kms_pb2.DelegateRequest(envelope=envelope)), "TAG_KEY_TARGET_INVALID"
        )


async def test_the_tag_key_is_never_in_the_database_the_logs_or_the_files(
    net: Net, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    runner = net.registry.enrol(RUNNER)
    executor = runner_executor(net, runner)
    key = await fetch_runner_tag_key(net, executor)
    await encrypt_input(net, UINT64, BALANCE.to_bytes(8, "big"))
    secret = key._key  # the test looks inside; nothing else does
    assert key == net.ctx.tag_key
    assert "redacted" in repr(key)
    assert secret.hex() not in repr(key) + repr(net.ctx)
    # The database: every column of every table of the gateway's schema, as raw bytes.
    engine = create_engine(net.pg_url, poolclass=NullPool)
    with engine.connect() as conn:
        tables = conn.execute(
            text(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema()"
            )
        ).scalars().all()  # fmt: skip
        dump = b""
        for table in tables:
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):  # noqa: S608 - own names
                dump += b"|".join(v if isinstance(v, bytes) else str(v).encode() for v in row)
    engine.dispose()
    assert tables
    assert dump
    assert secret not in dump
    assert secret.hex().encode() not in dump
    # The logs: the KMS nodes' and the gateway's tag-key step (which did log, here), and
    # whatever else this process wrote to stdout and stderr.
    logged = net.log.getvalue()
    assert '"authorization": "tag_key"' in logged
    assert "gateway.tag_key_derived" in logged
    out, err = capfd.readouterr()
    for text_ in (logged, out, err):
        assert secret.hex() not in text_
    # The files: nothing written anywhere under the test's directory holds it.
    for path in tmp_path.rglob("*"):  # noqa: ASYNC240 - a test reading its own directory
        if path.is_file():
            data = path.read_bytes()
            assert secret not in data
            assert secret.hex().encode() not in data
