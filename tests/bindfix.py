"""Producer bindings for tests that store or delegate ciphertexts (`nox.crypto.binding`).

A test plays the producer with a registered key: a gateway for an input (task id empty) or
a runner for a task's outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

from nox.crypto import ecies
from nox.crypto.binding import Binding, BoundRow, sign_bindings
from nox.crypto.eip712 import Domain
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey
from nox.kms.wire import binding_to_proto
from nox.v1 import common_pb2

SALT = bytes(32)


def bind(
    key: EnclaveKey,
    domain: Domain,
    handle: bytes,
    ct: ecies.Ciphertext,
    *,
    value_tag: bytes | None = None,
    salt: bytes = SALT,
) -> Binding:
    """The binding `key` (a gateway) signs for one input stored as (handle, ct)."""
    return bind_task(key, domain, b"", [(handle, ct, value_tag or keccak256(handle))], salt=salt)[0]


def bind_task(
    key: EnclaveKey,
    domain: Domain,
    task_id: bytes,
    rows: Sequence[tuple[bytes, ecies.Ciphertext, bytes]],
    *,
    salt: bytes = SALT,
) -> list[Binding]:
    """One signature by `key` over (handle, ciphertext, value tag) rows, as a producer
    of `task_id` (empty: a gateway's input) signs them."""
    bound = [
        BoundRow(h, ct.ephemeral_public_key, ct.nonce, ct.ciphertext, tag, salt)
        for h, ct, tag in rows
    ]
    return sign_bindings(key, domain, task_id, bound)


def bound_proto(
    key: EnclaveKey, domain: Domain, handle: bytes, ct: ecies.Ciphertext
) -> common_pb2.HandleBinding:
    """`bind` in its wire form (DelegationTarget.binding)."""
    return binding_to_proto(bind(key, domain, handle, ct))
