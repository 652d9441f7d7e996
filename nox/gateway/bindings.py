"""The gateway's side of handle bindings (`nox.crypto.binding`, docs/kms.md "Handle bindings").

- EncryptInput: the gateway is the producer; it signs one binding per input (`bind_input`).
- StoreResults: the runner is the producer; its one signature per task (TaskOutputs
  `binding_signature`) must recover, over the outputs as submitted, to the runner that
  signed the result, and each output must come with the runner's proof that it made K
  (`ephemeral_key_proof`) (BINDING_INVALID otherwise); each output row keeps the signature,
  its salt, its Merkle siblings and its key proof (`bind_outputs`).
- Every read that serves a row (GetOperands, Decrypt, PublicDecrypt) first checks that the
  row still matches its binding (`check_stored`): ciphertext, K, nonce, value tag, origin
  task, and a signature that recovers to a registered, never revoked producer. A row that
  does not (replaced, altered, moved, binding removed) is never served: STORED_RECORD_TAMPERED
  (DATA_LOSS), logged as `gateway.stored_record_tampered`. The binding then travels with the
  row to the KMS (DelegationTarget.binding) and to the runner or user (TypedCiphertext).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from nox.crypto.binding import (
    Binding,
    BindingVerifier,
    BoundRow,
    ciphertext_hash,
    merkle_proofs,
    merkle_root,
    sign_bindings,
    tag_commitment,
    verify_key_proof,
)
from nox.crypto.binding import bindings_digest as _digest
from nox.crypto.eip712 import Domain
from nox.crypto.exceptions import BadSignature, BindingInvalid, SignatureMalformed
from nox.crypto.keys import EnclaveKey, recover_address
from nox.errors import NoxError
from nox.gateway.exceptions import StoredRecordTampered
from nox.gateway.store import HandleRecord, RowBinding, StoredHandle
from nox.kms.wire import binding_to_proto
from nox.rpc.logging import get_logger
from nox.v1 import common_pb2

_log = get_logger("nox.gateway.bindings")


def bind_input(
    key: EnclaveKey,
    domain: Domain,
    record: HandleRecord,
    rand: Callable[[int], bytes] = os.urandom,
) -> HandleRecord:
    """`record` with the gateway's own binding (one signature, a one-leaf tree)."""
    salt = rand(32)
    row = BoundRow(
        record.handle,
        record.ephemeral_public_key,
        record.nonce,
        record.ciphertext,
        record.value_tag,
        salt,
    )
    (binding,) = sign_bindings(key, domain, b"", [row])
    return _with(record, RowBinding(salt, binding.signature, binding.proof))


def bind_outputs(
    domain: Domain,
    task_id: bytes,
    records: Sequence[HandleRecord],
    salts: Sequence[bytes],
    signature: bytes,
    runner: bytes,
    key_proofs: Sequence[bytes],
) -> list[HandleRecord]:
    """The task's output records with the runner's binding; BINDING_INVALID unless
    `signature` is `runner`'s over exactly these outputs (one ecrecover per task) and each
    output's key proof shows the runner made its K."""
    if any(len(s) != 32 for s in salts) or len(salts) != len(records):
        raise BindingInvalid("every output needs a 32-byte value_tag_salt")
    if len(key_proofs) != len(records):
        raise BindingInvalid("every output needs its key proof")
    for r, key_proof in zip(records, key_proofs, strict=True):
        if not verify_key_proof(domain, r.handle, r.ephemeral_public_key, key_proof):
            raise BindingInvalid(
                "an output's key proof does not show the runner made its K",
                metadata={"handle": "0x" + r.handle.hex(), "why": "KEY_PROOF_INVALID"},
            )
    rows = [
        BoundRow(r.handle, r.ephemeral_public_key, r.nonce, r.ciphertext, r.value_tag, s)
        for r, s in zip(records, salts, strict=True)
    ]
    leaves = [r.leaf() for r in rows]
    digest = _digest(domain, task_id, merkle_root(leaves))
    try:
        signer = recover_address(digest, signature)
    except (SignatureMalformed, BadSignature):
        raise BindingInvalid("the outputs' binding signature is malformed") from None
    if signer != runner:
        raise BindingInvalid("the outputs' binding is not the runner's signature")
    return [
        _with(r, RowBinding(s, signature, proof, key_proof))
        for r, s, proof, key_proof in zip(
            records, salts, merkle_proofs(leaves), key_proofs, strict=True
        )
    ]


def evidence(stored: StoredHandle) -> Binding | None:
    """The Binding a stored row claims, recomputed from the row (None: it has none)."""
    r = stored.record
    if r.binding is None:
        return None
    return Binding(
        ciphertext_hash=ciphertext_hash(r.nonce, r.ciphertext),
        tag_commitment=tag_commitment(r.binding.salt, r.value_tag),
        task_id=stored.origin_task or b"",
        proof=r.binding.proof,
        signature=r.binding.signature,
        key_proof=r.binding.key_proof,
    )


def check_stored(
    verifier: BindingVerifier, stored: Sequence[StoredHandle], *, now: int
) -> list[common_pb2.HandleBinding]:
    """Each row's binding as sent on the wire, once every row is checked against it.

    Raises StoredRecordTampered (logged with the handle and why) for the first row that
    does not match its binding.
    """
    bindings = [evidence(s) for s in stored]
    try:
        verifier.verify(
            [
                (s.record.handle, s.record.ephemeral_public_key, b)
                for s, b in zip(stored, bindings, strict=True)
            ],
            now=now,
        )
    except NoxError as exc:
        handle = exc.metadata.get("handle", "")
        why = exc.metadata.get("why", exc.reason)
        _log.error("gateway.stored_record_tampered", handle=handle, why=why)
        raise StoredRecordTampered(
            "a stored row does not match its producer binding; it is not served",
            metadata={"handle": handle, "why": why},
        ) from None
    return [binding_to_proto(b) for b in bindings if b is not None]


def _with(record: HandleRecord, binding: RowBinding) -> HandleRecord:
    return HandleRecord(
        handle=record.handle,
        ciphertext=record.ciphertext,
        ephemeral_public_key=record.ephemeral_public_key,
        nonce=record.nonce,
        value_tag=record.value_tag,
        owner=record.owner,
        application=record.application,
        binding=binding,
    )
