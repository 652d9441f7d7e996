"""bench/_floor.py: the crypto floor does the work its table lists, right, and really checks.

No timing is asserted. What is: a floor task decrypts the operands it was given and stores
outputs that decrypt (through the real threshold path) to what a Python model of `transfer`
computes; every operation of the table is called exactly as often as the table says
(counted by spying on the functions the floor calls, not by the floor's own bookkeeping);
`measure_floor` reports exactly the table's operations and restores the CPU affinity; and a
lying KMS node, a tampered sealed partial or a relayed answer altered on the way each stop
the task, so the floor cannot be made faster by skipping a check.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import _floor
from _floor import _Floor, floor_operations, measure_floor

import nox.crypto.binding
from nox.chain.exceptions import NodeNotAuthorized
from nox.crypto.delegation import (
    RequesterKey,
    decrypt_delegated,
    delegation_context,
    make_partial,
    seal_partial,
)
from nox.crypto.dleq import prove_dleq
from nox.crypto.ecies import Ciphertext
from nox.crypto.envelope import sign_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.threshold import N
from nox.crypto.threshold_exceptions import InvalidPartial
from nox.handles import value_tag
from nox.kms.wire import proof_to_proto, requester_key_from_proto, sealed_to_proto
from nox.v1 import kms_pb2
from nox.v1.envelope_pb2 import SignedEnvelope

MAX256 = 2**256 - 1


def _transfer(amount: int, balance_from: int, balance_to: int) -> list[int]:
    """DESIGN §7: (newBalanceFrom, newBalanceTo, transferred), capped silently."""
    moved = min(amount, balance_from, MAX256 - balance_to)
    return [balance_from - moved, balance_to + moved, moved]


def _threshold_decrypt(floor: _Floor, ct: Ciphertext, handle: bytes) -> bytes:
    """Decrypt as any requester would: t partials with proofs, checked and combined."""
    context = delegation_context(epoch=floor.public.epoch, request_id=b"test")
    partials = [
        make_partial(share, ct.ephemeral_public_key, context=context)
        for share in floor.dealing.shares[: floor.public.threshold]
    ]
    return decrypt_delegated(floor.public, ct, handle, partials, context=context)


def test_floor_tasks_decrypt_their_operands_and_store_the_right_transfer() -> None:
    floor = _Floor()
    for _ in range(4):
        record = floor.task()
        assert record.opened == record.values
        amount, balance_from, balance_to = (int.from_bytes(v, "big") for v in record.values)
        expected = _transfer(amount, balance_from, balance_to)
        assert [int.from_bytes(p, "big") for p in record.output_plaintexts] == expected
        for out, value in zip(record.outputs, expected, strict=True):
            ct = Ciphertext(out.ciphertext, out.ephemeral_public_key, out.nonce)
            plaintext = _threshold_decrypt(floor, ct, out.handle)
            assert int.from_bytes(plaintext, "big") == value
            assert out.value_tag == value_tag(floor.tag_key, out.handle, plaintext)
            assert out.value_tag != keccak256(out.handle, plaintext)
    floor.check_counts()  # every proof was verified, every message signed and checked


def test_the_docstring_table_is_the_operations_table() -> None:
    rows = [
        [cell.strip() for cell in line.split("|")[1:3]]
        for line in (_floor.__doc__ or "").splitlines()
        if line.startswith("| ") and not line.startswith(("| operation", "| -"))
    ]
    assert [(name, int(count)) for name, count in rows] == [
        (name, count) for name, count, _ in floor_operations()
    ]


def _spy(counts: Counter[str], name: str, real: Callable[..., Any]) -> Callable[..., Any]:
    def spy(*args: Any, **kwargs: Any) -> Any:
        counts[name] += 1
        return real(*args, **kwargs)

    return spy


def test_every_operation_of_the_table_is_called_as_often_as_the_table_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ops = {name: count for name, count, _ in floor_operations()}
    called: Counter[str] = Counter()
    for attribute, name in [
        ("sign_envelope", _floor.SIGN),
        ("verify_envelope", _floor.VERIFY),
        ("make_partial", _floor.PARTIAL),
        ("seal_partial", _floor.SEAL),
        ("verify_partial", _floor.CHECK_PROOF),
        ("combine_points", _floor.COMBINE),
        ("decrypt_with_shared_point", _floor.DECRYPT),
        ("encrypt_keeping_scalar", _floor.ENCRYPT),  # the stored operands: ecies.encrypt
        ("value_tag", _floor.TAG),
        ("keccak256", _floor.BIND),
        ("sign_bindings", _floor.SIGN_BINDING),
        ("recover_address", _floor.VERIFY_BINDING),  # the gateway's check of the outputs
        ("prove_key", _floor.PROVE_KEY),
        ("verify_key_proof", _floor.VERIFY_KEY),
    ]:
        monkeypatch.setattr(_floor, attribute, _spy(called, name, getattr(_floor, attribute)))
    # the KMS nodes' binding checks (nox.crypto.binding recovers each signer once)
    recover = nox.crypto.binding.recover_address
    monkeypatch.setattr(
        nox.crypto.binding, "recover_address", _spy(called, _floor.VERIFY_BINDING, recover)
    )
    generate, open_ = RequesterKey.generate_secp256k1, RequesterKey.open
    monkeypatch.setattr(
        RequesterKey, "generate_secp256k1", _spy(called, _floor.REQUESTER_KEY, generate)
    )
    monkeypatch.setattr(RequesterKey, "open", _spy(called, _floor.OPEN, open_))
    floor = _Floor()
    for _ in range(2):
        floor.task()
    assert set(called) == set(ops)
    assert dict(called) == {name: 2 * count for name, count in ops.items()}
    assert floor.counts == called  # the floor's own bookkeeping agrees with the spies
    assert ops[_floor.SIGN] == 12
    assert ops[_floor.VERIFY] == 16
    assert ops[_floor.PARTIAL] == ops[_floor.CHECK_PROOF] == 2 * 3  # t nodes, 3 operands
    assert ops[_floor.VERIFY_BINDING] == 2 * 3 + 1  # t nodes per operand, the gateway once


def test_measure_floor_reports_the_table_and_restores_the_affinity() -> None:
    before = os.sched_getaffinity(0)
    result = measure_floor(0.2, pin_core=True)
    assert os.sched_getaffinity(0) == before
    assert list(result.breakdown_ms) == [name for name, _, _ in floor_operations()]
    assert all(ms > 0 for ms in result.breakdown_ms.values())
    assert result.tasks >= 3
    assert result.tasks_per_s == pytest.approx(result.tasks / result.seconds)
    assert result.ms_per_task == pytest.approx(1000 / result.tasks_per_s)
    assert sum(result.breakdown_ms.values()) == pytest.approx(result.ms_per_task)


class _Liar(_Floor):
    """A floor whose first KMS node asked lies in the way `how` names (re-signing its lie,
    as a compromised node can), or whose answer the relaying gateway alters (`relay`)."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.liar_index = 0

    def _kms_answer(self, node: int, env: SignedEnvelope, now: int) -> SignedEnvelope:
        good = super()._kms_answer(node, env, now)
        if node != self.tasks % _floor.NODES:  # the first node the gateway asked
            return good
        self.liar_index = self.dealing.shares[node].index
        if self.how == "relay":
            altered = SignedEnvelope()
            altered.CopyFrom(good)
            altered.payload = good.payload[:-1] + bytes([good.payload[-1] ^ 1])
            return altered
        answer = kms_pb2.DelegateResponsePayload.FromString(good.payload)
        request = kms_pb2.DelegatePayload.FromString(env.payload)
        delegation = answer.delegations[0]
        if self.how == "sealed":
            body = delegation.encrypted_partial.ciphertext  # flip a bit of the AES-GCM tag
            delegation.encrypted_partial.ciphertext = body[:-1] + bytes([body[-1] ^ 1])
        else:  # "partial": D_i from another share, with an honest proof for that share
            wrong = (self.dealing.shares[node].value + 1) % N
            context = delegation_context(epoch=self.public.epoch, request_id=keccak256(env.payload))
            k_point = delegation.ephemeral_public_key
            point, proof = prove_dleq(wrong, k_point, context=context)
            requester = requester_key_from_proto(request.requester_key)
            sealed = seal_partial(requester, point, node_index=self.liar_index, base=k_point)
            delegation.encrypted_partial.CopyFrom(sealed_to_proto(requester.kind, sealed))
            delegation.proof.CopyFrom(proof_to_proto(proof))
        return sign_envelope(self.kms_keys[node], answer, domain=self.domain,
                             audience=self.gateway.address, now=now)  # fmt: skip


@pytest.mark.parametrize(
    ("how", "why"),
    [("partial", "DLEQ proof does not verify"), ("sealed", "sealed partial does not open")],
)
def test_a_lying_kms_node_is_caught_and_named(how: str, why: str) -> None:
    floor = _Liar(how)
    with pytest.raises(InvalidPartial) as caught:
        floor.task()
    assert caught.value.node_index == floor.liar_index
    assert why in caught.value.why


def test_a_kms_answer_altered_by_the_relay_is_refused() -> None:
    with pytest.raises(NodeNotAuthorized) as caught:
        _Liar("relay").task()
    assert caught.value.reason == "SIGNER_NOT_REGISTERED"
