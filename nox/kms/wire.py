"""Conversions between the KMS protobuf messages (nox/v1/kms.proto) and `nox.crypto` types.

Shared by the service (node side) and the client (gateway, runner, SDK side), so both read
and write the same layout. Malformed input raises InvalidArgument subclasses.
"""

from __future__ import annotations

from nox.crypto.binding import Binding
from nox.crypto.delegation import (
    SEALED_SECP256K1_SIZE,
    RequesterKeyKind,
    RequesterPublicKey,
)
from nox.crypto.dleq import DleqProof
from nox.crypto.threshold import POINT_SIZE, SCALAR_SIZE, ThresholdPublicKey
from nox.crypto.threshold_exceptions import (
    DleqProofInvalid,
    InvalidRequesterKey,
    InvalidThresholdParameters,
)
from nox.v1 import common_pb2, kms_pb2

NONCE_SIZE = 12


def requester_key_from_proto(key: common_pb2.RequesterKey) -> RequesterPublicKey:
    """The requester key of a request; raises InvalidRequesterKey."""
    try:
        kind = RequesterKeyKind(key.kind)
    except ValueError:
        raise InvalidRequesterKey(f"unknown requester key kind {key.kind}") from None
    return RequesterPublicKey(kind, bytes(key.public_key))


def requester_key_to_proto(key: RequesterPublicKey) -> common_pb2.RequesterKey:
    """The protobuf form of a requester key."""
    return common_pb2.RequesterKey(kind=int(key.kind), public_key=key.data)  # type: ignore[arg-type]


def sealed_to_proto(kind: RequesterKeyKind, sealed: bytes) -> kms_pb2.EncryptedPartial:
    """Split a sealed partial into the proto's (ciphertext, ephemeral key, nonce) fields."""
    if kind == RequesterKeyKind.SECP256K1:
        return kms_pb2.EncryptedPartial(
            ephemeral_public_key=sealed[:POINT_SIZE],
            nonce=sealed[POINT_SIZE : POINT_SIZE + NONCE_SIZE],
            ciphertext=sealed[POINT_SIZE + NONCE_SIZE :],
        )
    return kms_pb2.EncryptedPartial(ciphertext=sealed)


def sealed_from_proto(kind: RequesterKeyKind, partial: kms_pb2.EncryptedPartial) -> bytes:
    """The sealed bytes `RequesterKey.open` takes (length is checked when opening)."""
    if kind == RequesterKeyKind.SECP256K1:
        sealed = partial.ephemeral_public_key + partial.nonce + partial.ciphertext
        if len(sealed) != SEALED_SECP256K1_SIZE:
            return b""  # does not open: the node is named by the caller
        return bytes(sealed)
    return bytes(partial.ciphertext)


def proof_to_proto(proof: DleqProof) -> kms_pb2.DleqProof:
    """(c, z) as two 32-byte big-endian fields."""
    raw = proof.to_bytes()
    return kms_pb2.DleqProof(challenge=raw[:SCALAR_SIZE], response=raw[SCALAR_SIZE:])


def proof_from_proto(proof: kms_pb2.DleqProof) -> DleqProof:
    """Strict parse; raises DleqProofInvalid."""
    if len(proof.challenge) != SCALAR_SIZE or len(proof.response) != SCALAR_SIZE:
        raise DleqProofInvalid("DLEQ proof fields must be 32 bytes each")
    return DleqProof.from_bytes(proof.challenge + proof.response)


def public_key_to_proto(
    public: ThresholdPublicKey, *, node_index: int, node: common_pb2.NodeInfo | None = None
) -> kms_pb2.GetPublicKeyResponse:
    """The GetPublicKey answer for `public`, from node `node_index`."""
    return kms_pb2.GetPublicKeyResponse(
        node=node,
        epoch=public.epoch,
        public_key=public.public_key,
        threshold=public.threshold,
        public_shares=[
            kms_pb2.PublicShare(node_index=i, public_key=p)
            for i, p in enumerate(public.public_shares, start=1)
        ],
        commitments=list(public.commitments),
        node_index=node_index,
    )


def public_key_from_proto(response: kms_pb2.GetPublicKeyResponse) -> ThresholdPublicKey:
    """The validated public set of a GetPublicKey answer (trust the registry's copy, though)."""
    indices = [s.node_index for s in response.public_shares]
    if indices != list(range(1, len(indices) + 1)):
        raise InvalidThresholdParameters("public shares must be listed in index order 1..n")
    public = ThresholdPublicKey(
        threshold=response.threshold,
        public_key=bytes(response.public_key),
        public_shares=tuple(bytes(s.public_key) for s in response.public_shares),
        commitments=tuple(bytes(c) for c in response.commitments),
        epoch=response.epoch,
    )
    public.validate()
    return public


def binding_to_proto(binding: Binding) -> common_pb2.HandleBinding:
    """The wire form of a producer binding (common.proto `HandleBinding`)."""
    return common_pb2.HandleBinding(
        ciphertext_hash=binding.ciphertext_hash,
        tag_commitment=binding.tag_commitment,
        task_id=binding.task_id,
        proof=list(binding.proof),
        signature=binding.signature,
        key_proof=binding.key_proof,
    )


def binding_from_proto(binding: common_pb2.HandleBinding) -> Binding:
    """A producer binding as read from the wire (its fields are checked when verified)."""
    return Binding(
        ciphertext_hash=bytes(binding.ciphertext_hash),
        tag_commitment=bytes(binding.tag_commitment),
        task_id=bytes(binding.task_id),
        proof=tuple(bytes(p) for p in binding.proof),
        signature=bytes(binding.signature),
        key_proof=bytes(binding.key_proof),
    )
