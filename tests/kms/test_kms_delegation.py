"""Delegation, client side and node side: sealing to the requester, naming liars, combining."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

import pytest
from coincurve import PrivateKey, PublicKey
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nox.crypto.delegation import (
    SEALED_SECP256K1_SIZE,
    PartialDecryption,
    RequesterKey,
    RequesterKeyKind,
    RequesterPublicKey,
    SealedPartial,
    combine_partials,
    delegation_context,
    make_partial,
    make_sealed_partial,
    seal_partial,
    verify_partial,
)
from nox.crypto.dleq import DleqProof
from nox.crypto.threshold import Dealing, N, deal, scalar_to_bytes
from nox.crypto.threshold_exceptions import (
    InvalidPartial,
    InvalidRequesterKey,
    QuorumNotReached,
)
from nox.errors import InvalidArgument

SECRET = 0x5EC12E7_0F_7E57_0B3_5EC12E7
CONTEXT = delegation_context(epoch=0, request_id=b"request-1")


@pytest.fixture(scope="module")
def dealing() -> Dealing:
    return deal(2, 3, secret=SECRET, rand=random.Random(5).randbytes)


@pytest.fixture(scope="module")
def rsa_key() -> RequesterKey:
    return RequesterKey.generate_rsa()


@pytest.fixture(params=["secp256k1", "rsa"])
def requester(request: pytest.FixtureRequest, rsa_key: RequesterKey) -> RequesterKey:
    return RequesterKey.generate_secp256k1() if request.param == "secp256k1" else rsa_key


def k_point(scalar: int = 424242) -> bytes:
    return PrivateKey(scalar_to_bytes(scalar)).public_key.format()


def expected_shared(base: bytes) -> bytes:
    return PublicKey(base).multiply(scalar_to_bytes(SECRET)).format()


def sealed_all(dealing: Dealing, base: bytes, requester: RequesterKey) -> list[SealedPartial]:
    return [make_sealed_partial(s, base, requester.public, context=CONTEXT) for s in dealing.shares]


def test_sealed_partials_from_all_nodes_combine_to_x_times_k(
    dealing: Dealing, requester: RequesterKey
) -> None:
    base = k_point()
    result = combine_partials(
        dealing.public,
        base,
        sealed_all(dealing, base, requester),
        context=CONTEXT,
        requester_key=requester,
    )
    assert result.shared_point == expected_shared(base)
    assert result.bad_nodes == ()
    assert result.used == (1, 2)


def test_any_two_of_three_suffice(dealing: Dealing, requester: RequesterKey) -> None:
    base = k_point(7)
    answers = sealed_all(dealing, base, requester)
    for left_out in range(3):  # one node stopped
        subset = [a for i, a in enumerate(answers) if i != left_out]
        result = combine_partials(
            dealing.public, base, subset, context=CONTEXT, requester_key=requester
        )
        assert result.shared_point == expected_shared(base)


def _wrong_partial(
    item: SealedPartial, dealing: Dealing, base: bytes, key: RequesterKey
) -> SealedPartial:
    """A node that returns x'·K for a wrong x' but a proof valid for x' (a real liar)."""
    liar = make_partial(dataclasses.replace(dealing.shares[0], value=12345), base, context=CONTEXT)
    sealed = seal_partial(key.public, liar.point, node_index=item.index, base=base)
    return SealedPartial(item.index, sealed, liar.proof)


def _wrong_proof(
    item: SealedPartial, dealing: Dealing, base: bytes, key: RequesterKey
) -> SealedPartial:
    del dealing, base, key
    return dataclasses.replace(
        item, proof=DleqProof(item.proof.challenge, item.proof.response % (N - 1) + 1)
    )


def _wrong_context(
    item: SealedPartial, dealing: Dealing, base: bytes, key: RequesterKey
) -> SealedPartial:
    other = delegation_context(epoch=0, request_id=b"another request")
    share = dealing.shares[item.index - 1]
    return make_sealed_partial(share, base, key.public, context=other)


def _garbled_seal(
    item: SealedPartial, dealing: Dealing, base: bytes, key: RequesterKey
) -> SealedPartial:
    del dealing, base, key
    sealed = bytearray(item.sealed)
    sealed[-1] ^= 1
    return dataclasses.replace(item, sealed=bytes(sealed))


def _other_k(
    item: SealedPartial, dealing: Dealing, base: bytes, key: RequesterKey
) -> SealedPartial:
    """An honest answer for another ciphertext, replayed by a relay."""
    del base
    share = dealing.shares[item.index - 1]
    return make_sealed_partial(share, k_point(99), key.public, context=CONTEXT)


Liar = Callable[[SealedPartial, Dealing, bytes, RequesterKey], SealedPartial]


@pytest.mark.parametrize(
    "lie", [_wrong_partial, _wrong_proof, _wrong_context, _garbled_seal, _other_k]
)
@pytest.mark.parametrize("liar_index", [1, 2, 3])
def test_a_lying_node_is_named_and_the_honest_two_still_decrypt(
    dealing: Dealing, requester: RequesterKey, lie: Liar, liar_index: int
) -> None:
    base = k_point(31337)
    answers = sealed_all(dealing, base, requester)
    answers[liar_index - 1] = lie(answers[liar_index - 1], dealing, base, requester)
    result = combine_partials(
        dealing.public, base, answers, context=CONTEXT, requester_key=requester
    )
    assert result.bad_indices == (liar_index,)
    assert result.shared_point == expected_shared(base)
    assert liar_index not in result.used
    # With only the liar and one honest node, the quorum fails and names the liar.
    honest = next(a for a in answers if a.index != liar_index)
    with pytest.raises(QuorumNotReached) as info:
        combine_partials(
            dealing.public,
            base,
            [answers[liar_index - 1], honest],
            context=CONTEXT,
            requester_key=requester,
        )
    assert info.value.bad_nodes == (liar_index,)
    assert info.value.metadata["bad_nodes"] == str(liar_index)


def test_verify_partial_raises_naming_the_node(dealing: Dealing) -> None:
    base = k_point(5)
    good = make_partial(dealing.shares[1], base, context=CONTEXT)
    verify_partial(dealing.public, base, good, context=CONTEXT)
    moved = dataclasses.replace(good, index=3)  # node 2's partial claimed as node 3's
    with pytest.raises(InvalidPartial) as info:
        verify_partial(dealing.public, base, moved, context=CONTEXT)
    assert info.value.node_index == 3
    assert info.value.metadata["node_index"] == "3"
    with pytest.raises(InvalidPartial) as info:
        verify_partial(dealing.public, base, dataclasses.replace(good, index=9), context=CONTEXT)
    assert info.value.node_index == 9


def test_a_sealed_partial_moved_to_another_slot_does_not_open(
    dealing: Dealing, requester: RequesterKey
) -> None:
    base = k_point(8)
    answer = sealed_all(dealing, base, requester)[0]
    with pytest.raises(InvalidPartial) as info:
        requester.open(answer.sealed, node_index=2, base=base)
    assert info.value.node_index == 2
    with pytest.raises(InvalidPartial):
        requester.open(answer.sealed, node_index=1, base=k_point(9))
    assert (
        requester.open(answer.sealed, node_index=1, base=base)
        == PublicKey(base).multiply(dealing.shares[0].secret_bytes()).format()
    )


def test_another_requesters_key_does_not_open_it(dealing: Dealing) -> None:
    base = k_point(8)
    alice, eve = RequesterKey.generate_secp256k1(), RequesterKey.generate_secp256k1()
    answer = sealed_all(dealing, base, alice)[0]
    assert len(answer.sealed) == SEALED_SECP256K1_SIZE
    with pytest.raises(InvalidPartial):
        eve.open(answer.sealed, node_index=1, base=base)


def test_t_minus_one_valid_partials_raise_quorum_not_reached(dealing: Dealing) -> None:
    base = k_point(10)
    one = make_partial(dealing.shares[2], base, context=CONTEXT)
    with pytest.raises(QuorumNotReached) as info:
        combine_partials(dealing.public, base, [one], context=CONTEXT)
    assert (info.value.valid, info.value.threshold, info.value.bad_nodes) == (1, 2, ())


def test_duplicates_are_not_counted_twice(dealing: Dealing) -> None:
    base = k_point(11)
    one = make_partial(dealing.shares[0], base, context=CONTEXT)
    with pytest.raises(QuorumNotReached) as info:
        combine_partials(dealing.public, base, [one, one], context=CONTEXT)
    assert info.value.bad_nodes == (1,)


def test_stop_at_threshold_checks_only_what_it_needs(dealing: Dealing) -> None:
    base = k_point(12)
    good = [make_partial(s, base, context=CONTEXT) for s in dealing.shares[:2]]
    bogus = dataclasses.replace(good[0], index=3)
    result = combine_partials(
        dealing.public, base, [*good, bogus], context=CONTEXT, stop_at_threshold=True
    )
    assert result.bad_nodes == ()  # node 3's answer was never looked at
    full = combine_partials(dealing.public, base, [*good, bogus], context=CONTEXT)
    assert full.bad_indices == (3,)
    assert result.shared_point == full.shared_point == expected_shared(base)


def test_sealed_partials_without_a_key_are_a_caller_error(dealing: Dealing) -> None:
    base = k_point(13)
    answers = sealed_all(dealing, base, RequesterKey.generate_secp256k1())
    with pytest.raises(InvalidArgument):
        combine_partials(dealing.public, base, answers, context=CONTEXT)


def test_malformed_k_is_invalid_argument(dealing: Dealing) -> None:
    with pytest.raises(InvalidArgument):
        combine_partials(dealing.public, b"\x02" + b"\xff" * 32, [], context=CONTEXT)


def test_requester_public_keys_are_validated() -> None:
    # A deliberately weak key, to show it is refused.
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()  # noqa: S505
    weak_der = weak.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    p256 = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    cases = [
        (RequesterKeyKind.RSA_OAEP_SHA256, weak_der),
        (RequesterKeyKind.RSA_OAEP_SHA256, p256),
        (RequesterKeyKind.RSA_OAEP_SHA256, b"not der"),
        (RequesterKeyKind.SECP256K1, b"\x02" + b"\xff" * 32),
        (RequesterKeyKind.SECP256K1, bytes(33)),
    ]
    for kind, data in cases:
        with pytest.raises(InvalidRequesterKey):
            RequesterPublicKey(kind, data)
    with pytest.raises(InvalidRequesterKey):
        RequesterKey.generate_rsa(1024)


def test_rsa_sealing_interoperates_with_plain_oaep_sha256(rsa_key: RequesterKey) -> None:
    """What a browser does with WebCrypto: RSA-OAEP, SHA-256, label = the associated data."""
    base = k_point(3)
    partial = k_point(4)
    sealed = seal_partial(rsa_key.public, partial, node_index=2, base=base)
    assert len(sealed) == 256
    assert rsa_key.open(sealed, node_index=2, base=base) == partial


def test_context_binds_epoch_and_request_id() -> None:
    a = delegation_context(epoch=0, request_id=b"r")
    assert a != delegation_context(epoch=1, request_id=b"r")
    assert a != delegation_context(epoch=0, request_id=b"s")
    with pytest.raises(InvalidArgument):
        delegation_context(epoch=-1, request_id=b"")
    with pytest.raises(InvalidArgument):
        delegation_context(epoch=0, request_id=bytes(256))


def test_nothing_secret_in_reprs_or_errors(dealing: Dealing, requester: RequesterKey) -> None:
    base = k_point(14)
    answers = sealed_all(dealing, base, requester)
    answers[0] = _garbled_seal(answers[0], dealing, base, requester)
    result = combine_partials(
        dealing.public, base, answers, context=CONTEXT, requester_key=requester
    )
    opened = make_partial(dealing.shares[1], base, context=CONTEXT)
    texts = [repr(result), repr(requester), repr(opened), str(requester)]
    with pytest.raises(QuorumNotReached) as info:
        combine_partials(
            dealing.public, base, answers[:2], context=CONTEXT, requester_key=requester
        )
    texts += [str(info.value), repr(info.value), repr(info.value.metadata)]
    secrets_hex = [result.shared_point.hex(), opened.point.hex(), format(SECRET, "x")]
    secrets_hex += [s.secret_bytes().hex() for s in dealing.shares]
    for text in texts:
        for secret in secrets_hex:
            assert secret not in text
    assert isinstance(opened, PartialDecryption)
