"""EncryptInput, GetHandleStatus, GetGatewayInfo and the public-call limits, over real gRPC."""

from __future__ import annotations

import grpc
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from gateway_servers import GatewayNet, start_gateway, stop_gateway
from gateway_support import (
    APP,
    BOOL,
    CHAIN_ID,
    COMPUTE,
    GATEWAY,
    ORCHESTRATOR,
    OWNER,
    RUNNER,
    UINT64,
    encrypt_request,
    expect,
    u64,
)

from nox.crypto import ecies
from nox.crypto.delegation import (
    RequesterKey,
    decrypt_delegated,
    delegation_context,
    make_sealed_partial,
)
from nox.crypto.hashing import keccak256
from nox.errors import NoxError
from nox.gateway.limits import RateLimit, RateLimiter, client_key
from nox.handles import Handle, value_tag
from nox.v1 import gateway_pb2


def threshold_decrypt(gw: GatewayNet, handle: bytes, ct: ecies.Ciphertext) -> bytes:
    """Decrypt with the dealt shares directly (2 of 3), as the KMS would."""
    dealing = gw.kms.dealing
    key = RequesterKey.generate_secp256k1()
    context = delegation_context(epoch=0, request_id=b"test")
    answers = [
        make_sealed_partial(s, ct.ephemeral_public_key, key.public, context=context)
        for s in dealing.shares[:2]
    ]
    return decrypt_delegated(
        dealing.public, ct, handle, answers, context=context, requester_key=key
    )


async def test_encrypt_input_stores_a_ciphertext_bound_to_its_handle(gw: GatewayNet) -> None:
    response = await gw.stub.EncryptInput(encrypt_request(gw.key.public_key))
    handle = Handle.from_bytes(response.handle)
    assert (handle.chain_id, handle.type_code, handle.version) == (CHAIN_ID, UINT64, 0)
    assert response.created_at == gw.clock.now
    (stored,) = await gw.ctx.store.require([response.handle])
    r = stored.record
    assert stored.is_input
    assert (r.owner, r.application) == (OWNER, APP)
    assert r.value_tag == value_tag(gw.actors.tag_key, response.handle, u64(42))
    assert r.value_tag != keccak256(response.handle, u64(42))  # keyed, not the old construction
    ct = ecies.Ciphertext(r.ciphertext, r.ephemeral_public_key, r.nonce)
    assert threshold_decrypt(gw, response.handle, ct) == u64(42)
    # the handle is the associated data: the same ciphertext under another handle fails
    with pytest.raises(NoxError):
        threshold_decrypt(gw, bytes(31) + b"\x01", ct)


async def test_input_proof_is_the_eip712_handle_proof_signed_by_the_gateway(
    gw: GatewayNet,
) -> None:
    response = await gw.stub.EncryptInput(encrypt_request(gw.key.public_key))
    proof = response.handle_proof
    assert len(proof) == 137
    assert proof[:20] == OWNER
    assert proof[20:40] == APP
    assert int.from_bytes(proof[40:72], "big") == response.created_at
    # Differential: eth_account's generic EIP-712 encoder over the same struct and domain.
    typed = encode_typed_data(
        full_message={
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "HandleProof": [
                    {"name": "handle", "type": "bytes32"},
                    {"name": "owner", "type": "address"},
                    {"name": "app", "type": "address"},
                    {"name": "createdAt", "type": "uint256"},
                ],
            },
            "primaryType": "HandleProof",
            "domain": {
                "name": "NoxCompute",
                "version": "1",
                "chainId": CHAIN_ID,
                "verifyingContract": "0x" + COMPUTE.hex(),
            },
            "message": {
                "handle": response.handle,
                "owner": "0x" + OWNER.hex(),
                "app": "0x" + APP.hex(),
                "createdAt": response.created_at,
            },
        }
    )
    signer = Account.recover_message(typed, signature=proof[72:])
    assert bytes.fromhex(signer[2:]) == gw.key.address


@pytest.mark.parametrize(
    ("overrides", "code", "reason"),
    [
        ({"chain_id": 1}, grpc.StatusCode.INVALID_ARGUMENT, "WRONG_CHAIN"),
        ({"type_code": None}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        ({"type_code": 100}, grpc.StatusCode.INVALID_ARGUMENT, "UNKNOWN_VALUE_TYPE"),
        ({"plaintext": u64(1)[1:]}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PLAINTEXT"),
        ({"plaintext": u64(1) + b"\x00"}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PLAINTEXT"),
        ({"plaintext": b""}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PLAINTEXT"),
        (
            {"type_code": BOOL, "plaintext": b"\x02"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_PLAINTEXT",
        ),
        ({"type_code": 3, "plaintext": b"\xff\xfe"}, grpc.StatusCode.INVALID_ARGUMENT,
         "INVALID_PLAINTEXT"),  # string: not UTF-8
        ({"type_code": 2, "plaintext": b""}, grpc.StatusCode.INVALID_ARGUMENT,
         "INVALID_PLAINTEXT"),  # bytes: empty
        ({"type_code": 2, "plaintext": b"x" * (64 * 1024 + 1)},
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PLAINTEXT"),  # over max_plaintext_bytes
        ({"type_code": 2, "plaintext": b"x" * (1024 * 1024)},
         grpc.StatusCode.RESOURCE_EXHAUSTED, "REQUEST_TOO_LARGE"),  # over the request limit
        ({"owner_address": OWNER[1:]}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        ({"application_address": bytes(20)}, grpc.StatusCode.INVALID_ARGUMENT,
         "INVALID_ARGUMENT"),
    ],
)  # fmt: skip
async def test_bad_inputs_are_refused_and_nothing_is_stored(
    gw: GatewayNet, overrides: dict[str, object], code: grpc.StatusCode, reason: str
) -> None:
    request = encrypt_request(
        gw.key.public_key, **{k: v for k, v in overrides.items() if v is not None}
    )
    if overrides.get("type_code", 0) is None:
        request.ClearField("type_code")
    error = await expect(gw.stub.EncryptInput(request), code, reason)
    assert await gw.ctx.store.count() == 0
    plaintext = overrides.get("plaintext")
    if isinstance(plaintext, bytes) and len(plaintext) >= 4:  # never echoed in an error
        assert plaintext.hex() not in str(error)
        assert all(plaintext.hex() not in v for v in error.metadata.values())


async def test_plaintext_inputs_only_with_the_dangerous_setting(gw: GatewayNet) -> None:
    bare = gateway_pb2.EncryptInputRequest(
        chain_id=CHAIN_ID, type_code=UINT64, plaintext=u64(5), owner_address=OWNER,
        application_address=APP,
    )  # fmt: skip
    error = await expect(
        gw.stub.EncryptInput(bare),
        grpc.StatusCode.FAILED_PRECONDITION,
        "PLAINTEXT_INPUT_REFUSED",
    )
    assert u64(5).hex() not in str(error)
    both = encrypt_request(gw.key.public_key)
    both.plaintext = u64(5)
    await expect(gw.stub.EncryptInput(both), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert await gw.ctx.store.count() == 0

    gw.ctx.dangerous_accept_plaintext_inputs = True  # a deliberately weakened gateway
    handle = (await gw.stub.EncryptInput(bare)).handle
    (stored,) = await gw.ctx.store.require([handle])
    r = stored.record
    ct = ecies.Ciphertext(r.ciphertext, r.ephemeral_public_key, r.nonce)
    assert threshold_decrypt(gw, handle, ct) == u64(5)


async def test_every_value_type_width_round_trips(gw: GatewayNet) -> None:
    cases = [(BOOL, b"\x01"), (1, OWNER), (4, b"\xff"), (35, b"\x01" * 32), (36, b"\x80"),
             (67, b"\xff" * 32), (68, b"\x7f"), (99, b"z" * 32), (2, b"any bytes"),
             (3, "héllo".encode())]  # fmt: skip
    for type_code, plaintext in cases:
        response = await gw.stub.EncryptInput(
            encrypt_request(gw.key.public_key, type_code=type_code, plaintext=plaintext)
        )
        assert response.handle[30] == type_code
        (stored,) = await gw.ctx.store.require([response.handle])
        r = stored.record
        ct = ecies.Ciphertext(r.ciphertext, r.ephemeral_public_key, r.nonce)
        assert threshold_decrypt(gw, response.handle, ct) == plaintext


async def test_handle_status_reports_inputs_and_absent_handles(gw: GatewayNet) -> None:
    stored = (await gw.stub.EncryptInput(encrypt_request(gw.key.public_key))).handle
    absent = bytes(26) + CHAIN_ID.to_bytes(4, "big") + bytes([UINT64, 0])
    response = await gw.stub.GetHandleStatus(
        gateway_pb2.GetHandleStatusRequest(handles=[absent, stored])
    )
    first, second = response.statuses
    assert (first.handle, first.stored, first.origin, first.created_at) == (absent, False, 0, 0)
    assert (second.handle, second.stored) == (stored, True)
    assert second.origin == gateway_pb2.HANDLE_ORIGIN_INPUT
    assert second.created_at == gw.clock.now
    assert second.task_id == b""


@pytest.mark.parametrize(
    ("handles", "code", "reason"),
    [
        ([], grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        ([b"\x01" * 31], grpc.StatusCode.INVALID_ARGUMENT, "INVALID_HANDLE"),
        ([bytes(26) + (1).to_bytes(4, "big") + b"\x0b\x00"], grpc.StatusCode.INVALID_ARGUMENT,
         "WRONG_CHAIN"),
        ([bytes(26) + CHAIN_ID.to_bytes(4, "big") + bytes([11, i % 256]) for i in range(257)],
         grpc.StatusCode.RESOURCE_EXHAUSTED, "BATCH_TOO_LARGE"),
    ],
)  # fmt: skip
async def test_bad_status_requests(
    gw: GatewayNet, handles: list[bytes], code: grpc.StatusCode, reason: str
) -> None:
    await expect(
        gw.stub.GetHandleStatus(gateway_pb2.GetHandleStatusRequest(handles=handles)), code, reason
    )


async def test_gateway_info(gw: GatewayNet) -> None:
    info = await gw.stub.GetGatewayInfo(gateway_pb2.GetGatewayInfoRequest())
    assert info.node.enclave_address == gw.key.address
    assert info.node.role == GATEWAY
    assert info.node.ready
    assert info.node.deployment.compute_address == COMPUTE
    assert info.kms_public_key == gw.public.public_key
    assert (info.kms_threshold, info.kms_epoch) == (2, 0)
    assert info.max_batch_handles == 256
    assert info.max_authorization_seconds == 3600
    assert info.enclave_public_key == gw.key.public_key


async def test_public_calls_are_rate_limited_per_client(
    store_url: str,
    clock,
    registry,
    acl,
    kms,  # type: ignore[no-untyped-def]
) -> None:
    net = await start_gateway(
        store_url=store_url, clock=clock, registry=registry, acl=acl, kms=kms,
        key=registry.enrol(GATEWAY), orchestrator=registry.enrol(ORCHESTRATOR),
        runner=registry.enrol(RUNNER), rate_limit=RateLimit(rate=1.0, burst=2),
    )  # fmt: skip
    try:
        await net.stub.EncryptInput(encrypt_request(net.key.public_key))
        await net.stub.GetHandleStatus(
            gateway_pb2.GetHandleStatusRequest(
                handles=[bytes(26) + bytes([0, 0, 0x7A, 0x69, 11, 0])]
            )
        )
        error = await expect(
            net.stub.EncryptInput(encrypt_request(net.key.public_key)),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "RATE_LIMITED",
        )
        assert float(error.metadata["retry_after_seconds"]) > 0
        assert await net.ctx.store.count() == 1
        clock.now += 1  # one token back
        await net.stub.EncryptInput(encrypt_request(net.key.public_key))
        assert await net.ctx.store.count() == 2
    finally:
        await stop_gateway(net)


def test_token_bucket_refills_and_keys_clients_by_address() -> None:
    now = [0.0]
    limiter = RateLimiter(RateLimit(rate=2.0, burst=3), clock=lambda: now[0], max_clients=2)
    for _ in range(3):
        limiter.check("a")
    with pytest.raises(NoxError):
        limiter.check("a")
    limiter.check("b")  # another client has its own bucket
    now[0] = 0.5  # +1 token
    limiter.check("a")
    with pytest.raises(NoxError):
        limiter.check("a")
    limiter.check("c")  # evicts the least recently used bucket ("b")
    assert len(limiter) == 2
    assert client_key("ipv4:10.0.0.1:5555") == client_key("ipv4:10.0.0.1:6666") == "ipv4:10.0.0.1"
    assert client_key("ipv6:[::1]:5555") == "ipv6:::/64"
    assert client_key("unix:/tmp/sock") == "unix:/tmp/sock"


async def test_per_method_metrics_are_recorded(gw: GatewayNet) -> None:
    await gw.stub.EncryptInput(encrypt_request(gw.key.public_key))
    with pytest.raises(NoxError):
        await gw.stub.EncryptInput(encrypt_request(gw.key.public_key, chain_id=5))
    sample = gw.server.metrics.registry.get_sample_value
    labels = {"service": "nox.v1.GatewayService", "method": "EncryptInput"}
    assert sample("nox_rpc_requests_total", {**labels, "code": "OK"}) == 1
    assert sample("nox_rpc_requests_total", {**labels, "code": "INVALID_ARGUMENT"}) == 1
