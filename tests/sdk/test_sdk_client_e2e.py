"""NoxClient end to end over real gRPC: the real gateway and three real KMS nodes (2-of-3),
one of which lies (it signs answers made with a wrong share); see sdk_support."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from eth_account.messages import encode_typed_data
from sdk_support import CHAIN, FakeRegistry, Net, running_network

from nox.crypto.delegation import RequesterKeyKind
from nox.crypto.exceptions import UnexpectedSigner
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey, checksum, recover_address
from nox.crypto.threshold import deal
from nox.crypto.threshold_exceptions import QuorumNotReached
from nox.gateway.exceptions import AclDenied
from nox.gateway.proofs import handle_proof_digest
from nox.handles import BOOL, Handle, int_, new_input_handle, uint
from nox.kms.exceptions import PublicKeyMismatch
from nox.sdk.client import ClientSettings, GatewayInfo, NoxClient
from nox.sdk.exceptions import ResultTimeout

pytestmark = pytest.mark.integration

LYING_NODE = 1
APP = os.urandom(20)


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    async with running_network(tmp_path, lying_node=LYING_NODE) as network:
        yield network


async def test_encrypt_decrypt_names_the_lying_node_and_refuses_strangers(net: Net) -> None:
    user, stranger, app = EnclaveKey.generate(), EnclaveKey.generate(), os.urandom(20)
    async with NoxClient(
        net.gateway_target, directory=net.registry, kms_public=net.dealing.public
    ) as nox:
        inputs = [
            await nox.encrypt_input(2**64 - 1, uint(64), owner=user.address, application=app),
            await nox.encrypt_input(True, BOOL, owner=user.address, application=app),
            await nox.encrypt_input(-1234, int_(16), owner=user.address, application=app),
        ]
        for encrypted in inputs:
            net.acl.viewers.add((encrypted.handle, user.address))
            assert encrypted.proof[:20] == user.address
            assert encrypted.proof[20:40] == app
        result = await nox.decrypt_detailed([i.handle for i in inputs], user_key=user)
        assert result.values == {
            inputs[0].handle: 2**64 - 1,
            inputs[1].handle: True,
            inputs[2].handle: -1234,
        }
        assert {b.index for b in result.bad_nodes} == {LYING_NODE}
        assert "<redacted>" in repr(result)
        assert "1234" not in repr(result)

        # Each handle once, whatever the caller passed; nothing asked, nothing sent.
        twice = [inputs[1].handle, inputs[1].handle]
        assert await nox.decrypt(twice, user_key=user) == {inputs[1].handle: True}
        assert await nox.decrypt([], user_key=user) == {}

        with pytest.raises(AclDenied):
            await nox.decrypt([inputs[0].handle], user_key=stranger)


async def test_quorum_not_reached_names_the_bad_node(net: Net) -> None:
    user = EnclaveKey.generate()
    async with NoxClient(
        net.gateway_target, directory=net.registry, kms_public=net.dealing.public
    ) as nox:
        encrypted = await nox.encrypt_input(7, uint(8), owner=user.address, application=APP)
        net.acl.viewers.add((encrypted.handle, user.address))
        await net.kms_servers[2].stop(0)  # node 3 down: only the liar and node 2 answer
        with pytest.raises(QuorumNotReached) as info:
            await nox.decrypt([encrypted.handle], user_key=user)
        assert info.value.bad_nodes == (LYING_NODE,)


async def test_rsa_requester_key_and_key_set_from_a_kms_node(net: Net) -> None:
    user = EnclaveKey.generate()
    settings = ClientSettings(requester_key_kind=RequesterKeyKind.RSA_OAEP_SHA256)
    async with NoxClient(
        net.gateway_target, directory=net.registry, kms_target=net.kms_targets[1], settings=settings
    ) as nox:
        encrypted = await nox.encrypt_input(
            bytes(range(20)), 1, owner=user.address, application=APP
        )
        net.acl.viewers.add((encrypted.handle, user.address))
        assert await nox.decrypt([encrypted.handle], user_key=user) == {
            encrypted.handle: bytes(range(20))
        }


async def test_a_key_set_other_than_the_gateways_is_refused(net: Net) -> None:
    user = EnclaveKey.generate()
    async with NoxClient(
        net.gateway_target, directory=net.registry, kms_public=deal(2, 3).public
    ) as nox:
        encrypted = await nox.encrypt_input(1, uint(8), owner=user.address, application=APP)
        net.acl.viewers.add((encrypted.handle, user.address))
        with pytest.raises(PublicKeyMismatch):
            await nox.decrypt([encrypted.handle], user_key=user)


async def test_public_decrypt_proof_is_the_gateways_eip712_signature(net: Net) -> None:
    async with NoxClient(net.gateway_target, directory=net.registry) as nox:
        encrypted = await nox.encrypt_input(
            2**200 + 5, uint(256), owner=os.urandom(20), application=os.urandom(20)
        )
        net.acl.public.add(encrypted.handle)
        value = await nox.public_decrypt(encrypted.handle)
        assert value.value == 2**200 + 5
        # Differential: the proof recovers to the gateway under eth_account's encoding of
        # DecryptionProof(bytes32 handle, bytes plaintext) in the NoxCompute domain.
        typed = encode_typed_data(
            full_message={
                "types": {
                    "EIP712Domain": [
                        {"name": "name", "type": "string"},
                        {"name": "version", "type": "string"},
                        {"name": "chainId", "type": "uint256"},
                        {"name": "verifyingContract", "type": "address"},
                    ],
                    "DecryptionProof": [
                        {"name": "handle", "type": "bytes32"},
                        {"name": "plaintext", "type": "bytes"},
                    ],
                },
                "primaryType": "DecryptionProof",
                "domain": {
                    "name": "NoxCompute",
                    "version": "1",
                    "chainId": CHAIN,
                    "verifyingContract": checksum(net.compute_address),
                },
                "message": {"handle": encrypted.handle, "plaintext": value.plaintext},
            }
        )
        digest = keccak256(b"\x19" + typed.version + typed.header + typed.body)
        assert recover_address(digest, value.proof[:65]) == net.gateway_address
        assert value.proof[65:] == (2**200 + 5).to_bytes(32, "big")


async def test_input_proof_from_another_signer_is_refused(net: Net) -> None:
    async with NoxClient(net.gateway_target, directory=net.registry) as nox:
        info = await nox.info()
        assert info.address == net.gateway_address
        nox._info = dataclasses.replace(info, address=os.urandom(20))  # a client told otherwise

        async def real_key(info: GatewayInfo) -> bytes:  # still seal to the real gateway
            return net_key

        net_key = info.enclave_public_key
        nox._sealing_key = real_key  # type: ignore[method-assign]
        with pytest.raises(UnexpectedSigner):
            await nox.encrypt_input(1, uint(8), owner=os.urandom(20), application=os.urandom(20))


async def test_handle_status_and_wait_for_result(net: Net) -> None:
    clock = [0.0]
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    async with NoxClient(
        net.gateway_target,
        directory=net.registry,
        settings=ClientSettings(poll_interval_seconds=2.0),
        monotonic=lambda: clock[0],
        sleep=fake_sleep,
    ) as nox:
        encrypted = await nox.encrypt_input(3, uint(16), owner=os.urandom(20), application=APP)
        status = await nox.wait_for_result(encrypted.handle, timeout=5)
        assert (status.stored, status.origin, status.task_id) == (True, "input", None)
        assert sleeps == []

        missing = new_input_handle(CHAIN, uint(16)).to_bytes()
        (absent,) = await nox.handle_status([missing])
        assert (absent.stored, absent.origin, absent.created_at) == (False, None, None)
        with pytest.raises(ResultTimeout):
            await nox.wait_for_result(missing, timeout=5)
        assert sleeps == [2.0, 2.0, 1.0]
        assert Handle.from_bytes(missing).chain_id == CHAIN


async def test_kms_directory_requires_registered_kms_signers(net: Net) -> None:
    user = EnclaveKey.generate()
    async with NoxClient(
        net.gateway_target,
        directory=net.registry,
        kms_public=net.dealing.public,
        kms_directory=net.registry,
    ) as nox:
        encrypted = await nox.encrypt_input(9, uint(32), owner=user.address, application=APP)
        net.acl.viewers.add((encrypted.handle, user.address))
        assert await nox.decrypt([encrypted.handle], user_key=user) == {encrypted.handle: 9}
    # A directory in which no KMS node is registered: every answer is refused.
    async with NoxClient(
        net.gateway_target, kms_public=net.dealing.public, kms_directory=FakeRegistry()
    ) as nox:
        with pytest.raises(QuorumNotReached) as info:
            await nox.decrypt([encrypted.handle], user_key=user)
        assert info.value.valid == 0
        assert info.value.bad_nodes == (0, 0, 0)  # three answers refused whole


async def test_a_stale_gateway_key_is_learnt_again_and_checked(net: Net) -> None:
    """As after a gateway restart: the cached enclave key no longer opens; the client
    refreshes GetGatewayInfo, checks the new key against the registry, and seals again."""
    old = EnclaveKey.generate()
    net.registry.roles[old.address] = 3  # the previous, still registered gateway key
    async with NoxClient(net.gateway_target, directory=net.registry) as nox:
        info = await nox.info()
        nox._info = dataclasses.replace(
            info, address=old.address, enclave_public_key=old.public_key
        )
        encrypted = await nox.encrypt_input(5, uint(8), owner=os.urandom(20), application=APP)
        assert (await nox.info()).address == net.gateway_address
        assert (
            recover_address(
                handle_proof_digest(
                    info.compute_domain,
                    encrypted.handle,
                    encrypted.proof[:20],
                    APP,
                    encrypted.created_at,
                ),
                encrypted.proof[72:],
            )
            == net.gateway_address
        )
