"""Delegation end to end over gRPC: three served nodes, the requester verifies and combines."""

from __future__ import annotations

import os

import grpc
import pytest
from conftest import PUBLIC_PREFIX, KmsNet, node_settings
from contracts_support import WORKLOAD_ID
from kms_service_support import delegate_payload, make_targets, open_answers

from nox.crypto.delegation import RequesterKey
from nox.crypto.replay import MemoryReplayCache
from nox.crypto.threshold import KeyShare
from nox.crypto.threshold_exceptions import QuorumNotReached
from nox.errors import NoxError
from nox.kms.keys import LoadedShare
from nox.kms.node import KmsNode
from nox.kms.server import build_server
from nox.kms.wire import public_key_from_proto
from nox.rpc import create_channel
from nox.v1 import kms_pb2, kms_pb2_grpc
from nox.v1.envelope_pb2 import SignedEnvelope

pytestmark = pytest.mark.integration


async def _ask(
    kms: KmsNet, payload: kms_pb2.DelegatePayload, nodes: list[int]
) -> list[SignedEnvelope]:
    answers = []
    for node in nodes:
        response = await kms.stub(node).Delegate(kms.actors.sign_for(node, payload))
        answers.append(response.envelope)
    return answers


async def test_each_node_serves_the_published_key_set(kms: KmsNet) -> None:
    for i in range(3):
        response = await kms.stub(i).GetPublicKey(kms_pb2.GetPublicKeyRequest())
        assert response.node_index == i + 1
        assert public_key_from_proto(response) == kms.keys.public
        assert response.node.enclave_address == kms.actors.kms[i].address
        assert response.node.deployment.chain_id == kms.actors.domain.chain_id
        # Ready, and what the registry records for it (on-chain, attested).
        record = kms.chain.view.require(kms.actors.kms[i].address, 4, kms.actors.now())
        assert response.node.ready is True
        assert response.node.workload_id == WORKLOAD_ID == record.workload_id
        assert response.node.registration_expires_at == record.expires_at


@pytest.mark.parametrize("kind", ["secp256k1", "rsa"])
async def test_runner_delegation_decrypts_ciphertexts_made_under_pk(kms: KmsNet, kind: str) -> None:
    requester = (
        RequesterKey.generate_secp256k1() if kind == "secp256k1" else RequesterKey.generate_rsa()
    )
    targets = make_targets(kms.keys.public, 3, producer=kms.actors)
    handles = [t.handle for t in targets]
    payload = delegate_payload(
        requester, targets, runner_request=kms.actors.runner_request(requester, handles)
    )
    answers = await _ask(kms, payload, [0, 1, 2])
    # Every answer is signed by its node, for the gateway, bound to this request.
    plaintexts, bad = open_answers(
        kms.actors, kms.keys.public, kms.chain.view, requester, targets, payload, answers
    )
    assert plaintexts == [t.plaintext for t in targets]
    assert bad == [(), (), ()]


async def test_any_two_nodes_agree_and_one_stopped_node_does_not_matter(kms: KmsNet) -> None:
    requester = RequesterKey.generate_secp256k1()
    targets = make_targets(kms.keys.public, 2, producer=kms.actors)
    payload = delegate_payload(
        requester,
        targets,
        runner_request=kms.actors.runner_request(requester, [t.handle for t in targets]),
    )
    pairs = await _ask(kms, payload, [0, 1])
    await kms.stop(kms.running[1])
    with pytest.raises(NoxError) as info:
        await _ask(kms, payload, [1])
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    answers = await _ask(kms, payload, [0, 2])
    for subset in (answers, pairs, [pairs[1], answers[1]]):
        plaintexts, _ = open_answers(
            kms.actors, kms.keys.public, kms.chain.view, requester, targets, payload, subset
        )
        assert plaintexts == [t.plaintext for t in targets]


async def test_a_node_serving_a_wrong_share_is_named(kms: KmsNet) -> None:
    # Node 3 is compromised: its registered enclave key, but a share that is not behind PK_3.
    # (`serve` refuses such a share file at start, so the liar's node is built directly.)
    await kms.stop(kms.running[2])
    wrong = LoadedShare(KeyShare(3, int.from_bytes(os.urandom(31), "big") + 1), kms.keys.public)
    lying = KmsNode(
        share=wrong,
        enclave_key=kms.actors.kms[2],
        domain=kms.actors.domain,
        registry=kms.chain.view,
        replay=MemoryReplayCache(),
        clock=kms.actors.now,
    )
    requester = RequesterKey.generate_secp256k1()
    targets = make_targets(kms.keys.public, 2, producer=kms.actors)
    payload = delegate_payload(
        requester,
        targets,
        runner_request=kms.actors.runner_request(requester, [t.handle for t in targets]),
    )
    honest = await _ask(kms, payload, [0, 1])
    settings = node_settings(kms.chain, kms.keys, 3)
    async with build_server(lying, settings) as server, create_channel(server.target) as channel:
        stub = kms_pb2_grpc.KmsServiceStub(channel)
        lie = (await stub.Delegate(kms.actors.sign_for(2, payload))).envelope
    plaintexts, bad = open_answers(
        kms.actors, kms.keys.public, kms.chain.view, requester, targets, payload, [lie, *honest]
    )
    assert plaintexts == [t.plaintext for t in targets]
    assert bad == [(3,), (3,)]
    with pytest.raises(QuorumNotReached) as info:
        open_answers(
            kms.actors,
            kms.keys.public,
            kms.chain.view,
            requester,
            targets,
            payload,
            [lie, honest[0]],
        )
    assert info.value.bad_nodes == (3,)


async def test_user_and_public_decryption(kms: KmsNet) -> None:
    requester = RequesterKey.generate_secp256k1()
    targets = make_targets(kms.keys.public, 2, producer=kms.actors)
    auth = kms.actors.user_authorization(requester, [t.handle for t in targets])
    payload = delegate_payload(requester, targets, user_authorization=auth)
    answers = await _ask(kms, payload, [2, 0])
    plaintexts, _ = open_answers(
        kms.actors, kms.keys.public, kms.chain.view, requester, targets, payload, answers
    )
    assert plaintexts == [t.plaintext for t in targets]

    (public,) = make_targets(kms.keys.public, 1, prefix=PUBLIC_PREFIX, producer=kms.actors)
    kms.public_handles.add(public.handle)
    payload = delegate_payload(
        requester, [public], public_decryption=kms_pb2.PublicDecryptionAuthorization()
    )
    answers = await _ask(kms, payload, [1, 2])
    plaintexts, _ = open_answers(
        kms.actors, kms.keys.public, kms.chain.view, requester, [public], payload, answers
    )
    assert plaintexts == [public.plaintext]
