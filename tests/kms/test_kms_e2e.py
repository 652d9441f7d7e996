"""End to end: ECIES under the threshold PK (the gateway's side), decrypted via t partials."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from nox.cli import main
from nox.crypto import ecies
from nox.crypto.delegation import (
    RequesterKey,
    combine_partials,
    decrypt_delegated,
    delegation_context,
    make_sealed_partial,
)
from nox.crypto.exceptions import DecryptionFailed
from nox.crypto.threshold import deal
from nox.crypto.threshold_exceptions import QuorumNotReached
from nox.kms.keys import RawKek, load_public_file, load_share_file


@pytest.mark.parametrize("kind", ["secp256k1", "rsa"])
def test_encrypt_under_pk_decrypt_via_two_of_three(tmp_path: Path, kind: str) -> None:
    # The dealer ceremony, exactly as an operator runs it.
    kek_path, out = tmp_path / "kek", tmp_path / "kms"
    main(["kms", "new-kek", "--out", str(kek_path)])
    main(
        [
            "kms",
            "keygen",
            "--threshold",
            "2",
            "--shares",
            "3",
            "--out",
            str(out),
            "--kek-file",
            str(kek_path),
        ]
    )
    public = load_public_file(out / "public.json")
    kek = RawKek(kek_path.read_bytes())
    nodes = [load_share_file(out / f"share-{i}.json", kek, expected=public) for i in (1, 2, 3)]

    handle = os.urandom(32)
    plaintext = b"\x00" * 31 + b"\x2a"
    ct = ecies.encrypt(public.public_key, plaintext, handle)

    requester = (
        RequesterKey.generate_secp256k1() if kind == "secp256k1" else RequesterKey.generate_rsa()
    )
    context = delegation_context(epoch=public.epoch, request_id=b"task-1")
    answers = [
        make_sealed_partial(
            n.share,
            ct.ephemeral_public_key,
            requester.public,
            context=context,
            public_share=n.public.public_share(n.share.index),
        )
        for n in nodes
    ]
    for stopped in range(3):  # any one node down
        live = [a for i, a in enumerate(answers) if i != stopped]
        got = decrypt_delegated(public, ct, handle, live, context=context, requester_key=requester)
        assert got == plaintext

    # A lying node among three: named, and decryption still succeeds.
    lying = dataclasses.replace(answers[0], sealed=answers[1].sealed)
    combination = combine_partials(
        public,
        ct.ephemeral_public_key,
        [lying, *answers[1:]],
        context=context,
        requester_key=requester,
    )
    assert combination.bad_indices == (1,)
    assert ecies.decrypt_with_shared_point(combination.shared_point, ct, handle) == plaintext

    # The handle is the associated data: the rebuilt key does not open it under another handle.
    with pytest.raises(DecryptionFailed):
        decrypt_delegated(
            public, ct, os.urandom(32), answers, context=context, requester_key=requester
        )
    # One honest node alone is not enough.
    with pytest.raises(QuorumNotReached):
        decrypt_delegated(public, ct, handle, answers[:1], context=context, requester_key=requester)


def test_threshold_decryption_matches_the_undivided_key() -> None:
    """The same ciphertext opens with ecies.decrypt(x) and with the partials of x's shares."""
    secret = 0x1D_1E_C0DE
    dealing = deal(3, 5, secret=secret)
    handle = os.urandom(32)
    ct = ecies.encrypt(dealing.public.public_key, b"hello", handle)
    assert ecies.decrypt(secret.to_bytes(32, "big"), ct, handle) == b"hello"
    context = delegation_context(epoch=0, request_id=b"")
    key = RequesterKey.generate_secp256k1()
    answers = [
        make_sealed_partial(s, ct.ephemeral_public_key, key.public, context=context)
        for s in dealing.shares
    ]
    assert (
        decrypt_delegated(
            dealing.public, ct, handle, answers[2:], context=context, requester_key=key
        )
        == b"hello"
    )
