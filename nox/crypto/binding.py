"""Handle bindings: a producer enclave's signed commitment to what it stored under a handle.

A KMS node answers `x_i·K` for the point K it is shown; without a binding nothing ties K to
the handle whose authorization was checked, so whoever writes the gateway's database could
copy one handle's K into the row of another (issue 14). A binding closes that: the enclave
that produced a ciphertext (the gateway for an input, the runner that computed a task for
its outputs) signs, under the envelope domain {Nox, 1, chainId, NoxRegistry}, a commitment
to every row it produced, and every reader checks it.

Per row, a leaf (an EIP-712 struct hash):

    HandleBinding(bytes32 handle,bytes ephemeralPublicKey,bytes32 ciphertextHash,
                  bytes32 tagCommitment)
    ciphertextHash = keccak256(nonce ‖ ciphertext)          (12-byte nonce, fixed size)
    tagCommitment  = keccak256(salt ‖ valueTag)             (32-byte random salt)

The salt hides the value tag from whoever sees a binding on the wire (the tag of a bool is
one of two hashes); only the row (gateway, auditors) holds it. Per producer action, one
signature over the Merkle root of its leaves:

    HandleBindings(bytes32 taskId,bytes32 root)   (its own type hash: never an Envelope)

`taskId` is the task's id for a runner's outputs and zero for a gateway's input. The tree
hashes sorted pairs, `keccak256(min(a, b) ‖ max(a, b))`, an odd node moves up unchanged,
so a proof is just the siblings (OpenZeppelin's `MerkleProof.verify` checks it on-chain);
one input is a one-leaf tree (root = leaf, empty proof). Leaves are hashed from 128 bytes
and inner nodes from 64, so an inner node cannot pass for a leaf.

A runner's output also carries a key proof: a Schnorr proof of knowledge of the ECIES
scalar k of K = k·G, its challenge keccak256("nox.v1.HandleKeyProof" ‖ domainSeparator ‖
handle ‖ K ‖ R) bound to the handle (65 bytes, R ‖ z, z·G = R + c·K). ECIES discards k,
so a runner cannot bind another handle's K to its own output: it would need that K's k.
The proof is not part of the signed digest (it binds itself to the handle and K).

The producer's role follows from `taskId`: zero means ROLE_GATEWAY, otherwise ROLE_RUNNER.
A binding is valid when its signature recovers to an enclave registered in that role with a
verified quote, never revoked; an expired registration still counts (what it produced while
registered stays good), see `ProducerDirectory`.

`BindingVerifier` checks a batch: one ecrecover per distinct (digest, signature) and an LRU
of recent ones, so the operands of one task, bound by one runner signature, cost one
recovery together; the registry is asked on every check (revocation is immediate).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from coincurve import PrivateKey, PublicKey

from nox.crypto.eip712 import Domain
from nox.crypto.exceptions import BadSignature, BindingInvalid, BindingMissing, SignatureMalformed
from nox.crypto.hashing import keccak256
from nox.crypto.keys import SECP256K1_ORDER, EnclaveKey, recover_address
from nox.errors import NoxError

__all__ = [
    "BINDINGS_TYPE",
    "BINDINGS_TYPEHASH",
    "LEAF_TYPE",
    "LEAF_TYPEHASH",
    "ROLE_GATEWAY",
    "ROLE_RUNNER",
    "SALT_SIZE",
    "Binding",
    "BindingVerifier",
    "BoundRow",
    "ProducerDirectory",
    "bindings_digest",
    "ciphertext_hash",
    "leaf_hash",
    "merkle_proofs",
    "merkle_root",
    "producer_role",
    "prove_key",
    "root_from_proof",
    "sign_bindings",
    "tag_commitment",
    "verify_key_proof",
]

LEAF_TYPE = (
    "HandleBinding(bytes32 handle,bytes ephemeralPublicKey,bytes32 ciphertextHash,"
    "bytes32 tagCommitment)"
)
BINDINGS_TYPE = "HandleBindings(bytes32 taskId,bytes32 root)"
LEAF_TYPEHASH = keccak256(LEAF_TYPE.encode())
BINDINGS_TYPEHASH = keccak256(BINDINGS_TYPE.encode())
# NoxRegistry role codes (common.proto `Role`), repeated here so nox.crypto needs no proto.
ROLE_RUNNER = 2
ROLE_GATEWAY = 3
SALT_SIZE = 32
SIGNATURE_SIZE = 65
MAX_PROOF_LENGTH = 32  # a tree of up to 2^32 leaves; a longer proof is malformed
_ZERO32 = bytes(32)


def ciphertext_hash(nonce: bytes, ciphertext: bytes) -> bytes:
    """keccak256(nonce ‖ ciphertext): the leaf's commitment to the stored ciphertext."""
    return keccak256(nonce, ciphertext)


def tag_commitment(salt: bytes, value_tag: bytes) -> bytes:
    """keccak256(salt ‖ valueTag): the leaf's hiding commitment to the value tag."""
    return keccak256(salt, value_tag)


def leaf_hash(
    handle: bytes, ephemeral_public_key: bytes, ct_hash: bytes, tag_commit: bytes
) -> bytes:
    """The EIP-712 struct hash of one row's HandleBinding."""
    return keccak256(LEAF_TYPEHASH, handle, keccak256(ephemeral_public_key), ct_hash, tag_commit)


def _pair(a: bytes, b: bytes) -> bytes:
    return keccak256(a, b) if a <= b else keccak256(b, a)


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The root of the sorted-pair tree over `leaves` (in the given order)."""
    if not leaves:
        raise ValueError("a binding covers at least one leaf")
    level = list(leaves)
    while len(level) > 1:
        level = [
            _pair(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
    return level[0]


def merkle_proofs(leaves: Sequence[bytes]) -> list[tuple[bytes, ...]]:
    """For each leaf, the siblings that lead from it to `merkle_root(leaves)`."""
    proofs: list[list[bytes]] = [[] for _ in leaves]
    positions = list(range(len(leaves)))  # leaf -> its node's index in the current level
    level = list(leaves)
    while len(level) > 1:
        for leaf, pos in enumerate(positions):
            sibling = pos ^ 1
            if sibling < len(level):
                proofs[leaf].append(level[sibling])
            positions[leaf] = pos // 2
        level = [
            _pair(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
    return [tuple(p) for p in proofs]


def root_from_proof(leaf: bytes, proof: Iterable[bytes]) -> bytes:
    """The root a leaf and its siblings lead to."""
    node = leaf
    for sibling in proof:
        node = _pair(node, sibling)
    return node


def bindings_digest(domain: Domain, task_id: bytes, root: bytes) -> bytes:
    """The 32-byte EIP-712 digest a producer signs: HandleBindings(taskId, root)."""
    struct_hash = keccak256(BINDINGS_TYPEHASH, task_id or _ZERO32, root)
    return keccak256(b"\x19\x01", domain.separator, struct_hash)


KEY_PROOF_TAG = b"nox.v1.HandleKeyProof"
KEY_PROOF_SIZE = 65


def _key_challenge(domain: Domain, handle: bytes, k_point: bytes, r_point: bytes) -> int:
    digest = keccak256(KEY_PROOF_TAG, domain.separator, handle, k_point, r_point)
    return int.from_bytes(digest, "big") % SECP256K1_ORDER


def prove_key(
    domain: Domain,
    handle: bytes,
    scalar: bytes,
    *,
    rand: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """A Schnorr proof of knowledge of k for K = k·G, its challenge bound to `handle` (and
    the deployment): R ‖ z, 65 bytes. Only the encryptor knows k (ECIES discards it)."""
    k_point = PrivateKey(scalar).public_key.format(compressed=True)
    while True:
        r = int.from_bytes(rand(32), "big")
        if 0 < r < SECP256K1_ORDER:
            break
    r_point = PrivateKey(r.to_bytes(32, "big")).public_key.format(compressed=True)
    c = _key_challenge(domain, handle, k_point, r_point)
    z = (r + c * int.from_bytes(scalar, "big")) % SECP256K1_ORDER
    return r_point + z.to_bytes(32, "big")


def verify_key_proof(domain: Domain, handle: bytes, k_point: bytes, proof: bytes) -> bool:
    """Whether `proof` shows knowledge of K's scalar for this handle (z·G = R + c·K)."""
    if len(proof) != KEY_PROOF_SIZE:
        return False
    z = int.from_bytes(proof[33:], "big")
    if not 0 < z < SECP256K1_ORDER:
        return False
    try:
        r_point, k = PublicKey(proof[:33]), PublicKey(k_point)
    except ValueError:
        return False
    c = _key_challenge(domain, handle, k_point, proof[:33])
    if c == 0:
        return False
    try:
        expected = PublicKey.combine_keys([r_point, k.multiply(c.to_bytes(32, "big"))])
    except ValueError:  # R = −c·K: the sum is the point at infinity
        return False
    return PrivateKey(z.to_bytes(32, "big")).public_key.format() == expected.format()


def producer_role(task_id: bytes) -> int:
    """ROLE_GATEWAY for an input (no task), ROLE_RUNNER for a task's output."""
    return ROLE_RUNNER if task_id else ROLE_GATEWAY


@dataclass(frozen=True, slots=True)
class Binding:
    """The evidence of one row that travels (DelegationTarget, TypedCiphertext): everything
    needed, besides the handle and K, to recompute the signed digest from the row's leaf."""

    ciphertext_hash: bytes
    tag_commitment: bytes
    task_id: bytes
    proof: tuple[bytes, ...]
    signature: bytes
    # A runner output's proof of knowledge of K's scalar (`prove_key`); empty for an input.
    key_proof: bytes = b""

    def digest(self, domain: Domain, handle: bytes, ephemeral_public_key: bytes) -> bytes:
        """The digest the producer signed, if this binding covers (handle, K); raises
        BindingInvalid when a field is malformed."""
        if len(self.ciphertext_hash) != 32 or len(self.tag_commitment) != 32:
            raise BindingInvalid("binding hashes must be 32 bytes")
        if len(self.task_id) not in (0, 32) or self.task_id == _ZERO32:
            raise BindingInvalid("a binding's task id is empty (input) or 32 bytes")
        if len(self.proof) > MAX_PROOF_LENGTH or any(len(p) != 32 for p in self.proof):
            raise BindingInvalid("a binding's proof is at most 32 hashes of 32 bytes")
        if len(self.signature) != SIGNATURE_SIZE:
            raise BindingInvalid("a binding's signature is 65 bytes")
        leaf = leaf_hash(handle, ephemeral_public_key, self.ciphertext_hash, self.tag_commitment)
        return bindings_digest(domain, self.task_id, root_from_proof(leaf, self.proof))


@dataclass(frozen=True, slots=True)
class BoundRow:
    """What a producer binds for one row (the verifier needs only `Binding`)."""

    handle: bytes
    ephemeral_public_key: bytes
    nonce: bytes
    ciphertext: bytes
    value_tag: bytes
    salt: bytes
    key_proof: bytes = b""

    def leaf(self) -> bytes:
        return leaf_hash(
            self.handle,
            self.ephemeral_public_key,
            ciphertext_hash(self.nonce, self.ciphertext),
            tag_commitment(self.salt, self.value_tag),
        )


def sign_bindings(
    key: EnclaveKey, domain: Domain, task_id: bytes, rows: Sequence[BoundRow]
) -> list[Binding]:
    """One signature over all of `rows` (a task's outputs, in order, or one input);
    returns each row's Binding."""
    leaves = [r.leaf() for r in rows]
    signature = key.sign_digest(bindings_digest(domain, task_id, merkle_root(leaves)))
    return [
        Binding(
            ciphertext_hash=ciphertext_hash(r.nonce, r.ciphertext),
            tag_commitment=tag_commitment(r.salt, r.value_tag),
            task_id=task_id,
            proof=proof,
            signature=signature,
            key_proof=r.key_proof,
        )
        for r, proof in zip(rows, merkle_proofs(leaves), strict=True)
    ]


class ProducerDirectory(Protocol):
    """Who may have produced a ciphertext (the chain layer's `RegistryView.require_producer`)."""

    def require_producer(self, address: bytes, role: int, now: int) -> object:
        """Raise (PermissionDenied) unless `address` is or was registered in `role` with a
        verified quote and was never revoked; an expired registration is accepted."""
        ...


class BindingVerifier:
    """Checks bindings against a producer directory, with an LRU of recovered signers.

    Thread-safe. The cache holds (digest, signature) -> signer only: recovery is the costly
    part; the producer's registration is looked up on every check.
    """

    def __init__(self, domain: Domain, directory: ProducerDirectory, *, cache_size: int = 4096):
        self._domain = domain
        self._directory = directory
        self._cache: OrderedDict[tuple[bytes, bytes], bytes] = OrderedDict()
        self._cache_size = cache_size
        self._key_proofs: OrderedDict[tuple[bytes, bytes, bytes], None] = OrderedDict()
        self._lock = threading.Lock()
        self.recoveries = 0  # ecrecovers done (benchmarks and tests count them)

    def recover(
        self, handle: bytes, ephemeral_public_key: bytes, binding: Binding | None
    ) -> tuple[bytes, int]:
        """(signer, role) of the binding of (handle, K); raises BindingMissing/BindingInvalid.

        Does not consult the registry: `verify` does.
        """
        if binding is None or not binding.signature:
            raise BindingMissing("no producer binding", metadata={"handle": "0x" + handle.hex()})
        digest = binding.digest(self._domain, handle, ephemeral_public_key)
        key = (digest, binding.signature)
        with self._lock:
            signer = self._cache.get(key)
            if signer is not None:
                self._cache.move_to_end(key)
        if signer is None:
            try:
                signer = recover_address(digest, binding.signature)
            except (SignatureMalformed, BadSignature):
                raise BindingInvalid(
                    "binding signature is malformed", metadata={"handle": "0x" + handle.hex()}
                ) from None
            with self._lock:
                self.recoveries += 1
                self._cache[key] = signer
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return signer, producer_role(binding.task_id)

    def _require_key_proof(self, handle: bytes, k_point: bytes, proof: bytes) -> None:
        """A runner's output: its K must come with a proof that the runner made it."""
        key = (handle, k_point, proof)
        with self._lock:
            if key in self._key_proofs:
                self._key_proofs.move_to_end(key)
                return
        if not verify_key_proof(self._domain, handle, k_point, proof):
            raise BindingInvalid(
                "the output's key proof does not show its producer made K",
                metadata={"handle": "0x" + handle.hex(), "why": "KEY_PROOF_INVALID"},
            )
        with self._lock:
            self._key_proofs[key] = None
            if len(self._key_proofs) > self._cache_size:
                self._key_proofs.popitem(last=False)

    def verify(
        self,
        targets: Sequence[tuple[bytes, bytes, Binding | None]],
        *,
        now: int,
    ) -> list[bytes]:
        """Check every (handle, K, binding); return each target's producer.

        Each distinct (digest, signature) is recovered once, each distinct producer looked
        up once. Raises BindingMissing or BindingInvalid (metadata: the handle, and why).
        """
        producers: list[bytes] = []
        checked: dict[tuple[bytes, int], None] = {}
        for handle, k, binding in targets:
            signer, role = self.recover(handle, k, binding)
            if (signer, role) not in checked:
                try:
                    self._directory.require_producer(signer, role, now)
                except NoxError as exc:
                    # An altered row recovers to a random address: SIGNER_NOT_REGISTERED.
                    raise BindingInvalid(
                        "binding is not signed by a registered producer",
                        metadata={"handle": "0x" + handle.hex(), "why": exc.reason},
                    ) from None
                checked[(signer, role)] = None
            if role == ROLE_RUNNER:
                assert binding is not None  # recover() refused a missing one
                self._require_key_proof(handle, k, binding.key_proof)
            producers.append(signer)
        return producers
