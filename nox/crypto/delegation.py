"""Decryption delegation (DESIGN §6): partials from KMS nodes, sealed to the requester, combined.

Node side: `make_sealed_partial` computes `D_i = x_i·K`, a DLEQ proof against `PK_i` bound
to the request's context, and seals `D_i` to the requester's key. Requester side:
`combine_partials` opens each sealed partial, verifies each proof against the published
public share, names every node whose answer fails, and combines any t valid partials into
`S = x·K`; `decrypt_delegated` then opens the ciphertext with `S`.

Sealing `D_i` (the proof stays in the clear: it is a hash and a uniformly random response,
and reveals nothing about `D_i` beyond letting a guess be checked, which CDH makes useless):
- secp256k1 (default): ephemeral e, `E = e·G`, IKM = x(e·R), AES-256 key =
  HKDF-SHA256(IKM, salt = E ‖ R, info = "NOX:KMS:PARTIAL:v1"); AES-256-GCM, random 12-byte
  nonce, associated data = info ‖ node index (u32) ‖ K. Sealed = E ‖ nonce ‖ ct‖tag (94 bytes).
  The info string differs from the data ECIES's, so the two key schedules never collide.
- RSA-OAEP (browsers' WebCrypto): OAEP with SHA-256 and MGF1-SHA-256, label = the same
  associated data, over the 33-byte `D_i`; RSA keys of 2048 to 16384 bits.
The associated data stops a relaying gateway from moving one node's sealed partial to
another node's slot or to another ciphertext.
"""

from __future__ import annotations

import enum
import functools
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from coincurve import PrivateKey, PublicKey
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from nox.crypto.dleq import DleqProof, prove_dleq, verify_dleq
from nox.crypto.ecies import Ciphertext, decrypt_with_shared_point
from nox.crypto.threshold import (
    POINT_SIZE,
    KeyShare,
    Rand,
    ThresholdPublicKey,
    combine_points,
    mul,
    mul_g,
    parse_point,
    point_bytes,
    random_scalar,
    scalar_to_bytes,
)
from nox.crypto.threshold_exceptions import (
    DleqProofInvalid,
    InvalidPartial,
    InvalidPoint,
    InvalidRequesterKey,
    QuorumNotReached,
)
from nox.errors import InvalidArgument

PARTIAL_INFO = b"NOX:KMS:PARTIAL:v1"
CONTEXT_TAG = b"NOX:KMS:DELEGATE:v1"
NONCE_SIZE = 12
TAG_SIZE = 16
SEALED_SECP256K1_SIZE = POINT_SIZE + NONCE_SIZE + POINT_SIZE + TAG_SIZE
RSA_MIN_BITS = 2048
RSA_MAX_BITS = 16384
_OAEP_HASH = hashes.SHA256


def delegation_context(*, epoch: int, request_id: bytes) -> bytes:
    """The DLEQ context of one delegation request: tag ‖ epoch (u64) ‖ request id.

    The requester chooses `request_id` (e.g. its envelope nonce) and checks proofs under the
    same context, so a node's proof cannot be replayed into another request or key epoch.
    """
    if not 0 <= epoch < 2**64 or len(request_id) > 255:
        raise InvalidArgument("epoch must fit 64 bits and request id 255 bytes")
    return CONTEXT_TAG + epoch.to_bytes(8, "big") + bytes([len(request_id)]) + request_id


def _associated_data(node_index: int, base: bytes) -> bytes:
    return PARTIAL_INFO + node_index.to_bytes(4, "big") + base


class RequesterKeyKind(enum.IntEnum):
    """How a partial is sealed to the requester (same numbers in the protos)."""

    SECP256K1 = 1
    RSA_OAEP_SHA256 = 2


@dataclass(frozen=True)
class RequesterPublicKey:
    """The requester's public key: a compressed secp256k1 point or an RSA SPKI DER key."""

    kind: RequesterKeyKind
    data: bytes

    def __post_init__(self) -> None:
        _ = self.parsed  # validate once, at construction

    @functools.cached_property
    def parsed(self) -> PublicKey | rsa.RSAPublicKey:
        """The parsed key (cached); raises InvalidRequesterKey when malformed or too weak."""
        if self.kind == RequesterKeyKind.SECP256K1:
            try:
                return parse_point(self.data, "requester key")
            except InvalidPoint as exc:
                raise InvalidRequesterKey(exc.message) from None
        if self.kind == RequesterKeyKind.RSA_OAEP_SHA256:
            try:
                key = serialization.load_der_public_key(self.data)
            except (ValueError, TypeError):
                raise InvalidRequesterKey("requester key is not an SPKI DER public key") from None
            if not isinstance(key, rsa.RSAPublicKey):
                raise InvalidRequesterKey("requester key is not an RSA key")
            if not RSA_MIN_BITS <= key.key_size <= RSA_MAX_BITS:
                raise InvalidRequesterKey(
                    f"RSA requester key must have {RSA_MIN_BITS}..{RSA_MAX_BITS} bits"
                )
            return key
        raise InvalidRequesterKey(f"unknown requester key kind {self.kind!r}")


class RequesterKey:
    """The requester's private key for opening sealed partials. Never printable."""

    __slots__ = ("_private", "public")

    def __init__(self, private: PrivateKey | rsa.RSAPrivateKey, public: RequesterPublicKey):
        self._private = private
        self.public = public

    def __repr__(self) -> str:
        return f"RequesterKey(kind={self.public.kind.name}, secret=<redacted>)"

    __str__ = __repr__

    @classmethod
    def generate_secp256k1(cls, rand: Rand = secrets.token_bytes) -> RequesterKey:
        """A fresh ephemeral secp256k1 key (runners make one per task)."""
        private = PrivateKey(scalar_to_bytes(random_scalar(rand)))
        data: bytes = private.public_key.format(compressed=True)
        return cls(private, RequesterPublicKey(RequesterKeyKind.SECP256K1, data))

    @classmethod
    def generate_rsa(cls, bits: int = RSA_MIN_BITS) -> RequesterKey:
        """A fresh RSA key (e = 65537), as a browser's WebCrypto would make."""
        if not RSA_MIN_BITS <= bits <= RSA_MAX_BITS:
            raise InvalidRequesterKey(f"RSA key must have {RSA_MIN_BITS}..{RSA_MAX_BITS} bits")
        private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        der = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(private, RequesterPublicKey(RequesterKeyKind.RSA_OAEP_SHA256, der))

    def open(self, sealed: bytes, *, node_index: int, base: bytes) -> bytes:
        """Open node `node_index`'s sealed partial for ciphertext key `base`; returns `D_i`.

        Raises InvalidPartial naming the node when it does not open (wrong key, tampered,
        moved to another node's slot or another K).
        """
        ad = _associated_data(node_index, base)
        if isinstance(self._private, PrivateKey):
            partial = self._open_secp256k1(sealed, ad)
        else:
            try:
                partial = self._private.decrypt(sealed, _oaep(ad))
            except ValueError:
                partial = None
        if partial is None:
            raise InvalidPartial(node_index, "sealed partial does not open")
        return partial

    def _open_secp256k1(self, sealed: bytes, ad: bytes) -> bytes | None:
        assert isinstance(self._private, PrivateKey)
        if len(sealed) != SEALED_SECP256K1_SIZE:
            return None
        ephemeral = sealed[:POINT_SIZE]
        nonce = sealed[POINT_SIZE : POINT_SIZE + NONCE_SIZE]
        try:
            shared = parse_point(ephemeral, "ephemeral key").multiply(self._private.secret)
        except InvalidPoint:
            return None
        key = _partial_key(point_bytes(shared)[1:], ephemeral, self.public.data)
        try:
            return AESGCM(key).decrypt(nonce, sealed[POINT_SIZE + NONCE_SIZE :], ad)
        except InvalidTag:
            return None


def _oaep(label: bytes) -> padding.OAEP:
    return padding.OAEP(
        mgf=padding.MGF1(algorithm=_OAEP_HASH()), algorithm=_OAEP_HASH(), label=label
    )


def _partial_key(shared_x: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=PARTIAL_INFO
    ).derive(shared_x)


def seal_partial(
    requester: RequesterPublicKey,
    partial: bytes,
    *,
    node_index: int,
    base: bytes,
    rand: Rand = secrets.token_bytes,
) -> bytes:
    """Encrypt `D_i` to the requester's key, bound to (node index, K)."""
    ad = _associated_data(node_index, base)
    parsed = requester.parsed
    if isinstance(parsed, PublicKey):
        e = random_scalar(rand)
        ephemeral = point_bytes(mul_g(e))
        shared_x = point_bytes(mul(parsed, e))[1:]
        nonce = rand(NONCE_SIZE)
        key = _partial_key(shared_x, ephemeral, requester.data)
        return ephemeral + nonce + AESGCM(key).encrypt(nonce, partial, ad)
    return parsed.encrypt(partial, _oaep(ad))


@dataclass(frozen=True, repr=False)
class PartialDecryption:
    """Node `index`'s opened partial `D_i` and its proof. `D_i` is secret: t of them decrypt."""

    index: int
    point: bytes = field(repr=False)
    proof: DleqProof
    # The DLEQ context this answer was made under, when it differs per answer (each KMS
    # response names its own request hash); None means the context given to the verifier.
    context: bytes | None = None

    def __repr__(self) -> str:
        return f"PartialDecryption(index={self.index}, point=<redacted>)"


@dataclass(frozen=True)
class SealedPartial:
    """Node `index`'s answer as it travels: `D_i` sealed to the requester, and the proof."""

    index: int
    sealed: bytes
    proof: DleqProof
    context: bytes | None = None  # as in PartialDecryption


def make_partial(
    share: KeyShare,
    base: bytes,
    *,
    context: bytes,
    public_share: bytes | None = None,
    rand: Rand = secrets.token_bytes,
) -> PartialDecryption:
    """Node side: `D_i = x_i·K` with its DLEQ proof under `context`."""
    point, proof = prove_dleq(share.value, base, context=context, public=public_share, rand=rand)
    return PartialDecryption(share.index, point, proof)


def make_sealed_partial(
    share: KeyShare,
    base: bytes,
    requester: RequesterPublicKey,
    *,
    context: bytes,
    public_share: bytes | None = None,
    rand: Rand = secrets.token_bytes,
) -> SealedPartial:
    """Node side, the whole answer for one K: partial, proof, and `D_i` sealed to the requester."""
    partial = make_partial(share, base, context=context, public_share=public_share, rand=rand)
    sealed = seal_partial(requester, partial.point, node_index=share.index, base=base, rand=rand)
    return SealedPartial(share.index, sealed, partial.proof)


def verify_partial(
    public: ThresholdPublicKey, base: bytes, partial: PartialDecryption, *, context: bytes
) -> None:
    """Check node `partial.index`'s proof against its published `PK_i`; raises InvalidPartial.

    The proof is checked under `partial.context` when the partial carries one, else `context`.
    """
    if not 1 <= partial.index <= public.n:
        raise InvalidPartial(partial.index, "unknown node index")
    if partial.context is not None:
        context = partial.context
    try:
        verify_dleq(
            public.public_share(partial.index), base, partial.point, partial.proof, context=context
        )
    except DleqProofInvalid as exc:
        raise InvalidPartial(partial.index, exc.message) from None


@dataclass(frozen=True)
class BadNode:
    """A node whose answer was rejected, and why (never any secret)."""

    index: int
    why: str


@dataclass(frozen=True, repr=False)
class Combination:
    """The rebuilt shared point `S = x·K` (secret), the nodes used and the nodes named bad."""

    shared_point: bytes = field(repr=False)
    used: tuple[int, ...]
    bad_nodes: tuple[BadNode, ...]

    @property
    def bad_indices(self) -> tuple[int, ...]:
        """Indices of the nodes whose answers were rejected."""
        return tuple(b.index for b in self.bad_nodes)

    def __repr__(self) -> str:
        return f"Combination(used={self.used}, bad_nodes={self.bad_nodes}, shared_point=<redacted>)"


def combine_partials(
    public: ThresholdPublicKey,
    base: bytes,
    partials: Iterable[PartialDecryption | SealedPartial],
    *,
    context: bytes,
    requester_key: RequesterKey | None = None,
    stop_at_threshold: bool = False,
) -> Combination:
    """Verify the partials for ciphertext key `base`, name the bad ones, combine t valid ones.

    Every partial is checked (so every lying node is named) unless `stop_at_threshold`,
    which stops at the first t valid ones: the cheapest path when all nodes are honest.
    Raises QuorumNotReached (listing the bad nodes) when fewer than t are valid, and
    InvalidArgument when `base` is malformed or a sealed partial comes without a key.
    """
    parse_point(base, "ciphertext key K")
    valid: dict[int, bytes] = {}
    bad: list[BadNode] = []
    seen: set[int] = set()
    for item in partials:
        if stop_at_threshold and len(valid) >= public.threshold:
            break
        if item.index in seen:
            bad.append(BadNode(item.index, "duplicate answer for this node"))
            continue
        seen.add(item.index)
        try:
            partial = _opened(item, base, requester_key)
            verify_partial(public, base, partial, context=context)
        except InvalidPartial as exc:
            bad.append(BadNode(exc.node_index, exc.why))
            continue
        valid[partial.index] = partial.point
    if len(valid) < public.threshold:
        raise QuorumNotReached(public.threshold, len(valid), [b.index for b in bad])
    chosen = dict(sorted(valid.items())[: public.threshold])
    return Combination(
        shared_point=combine_points(chosen), used=tuple(chosen), bad_nodes=tuple(bad)
    )


def _opened(
    item: PartialDecryption | SealedPartial, base: bytes, requester_key: RequesterKey | None
) -> PartialDecryption:
    if isinstance(item, PartialDecryption):
        return item
    if requester_key is None:
        raise InvalidArgument("sealed partials need the requester key to open them")
    point = requester_key.open(item.sealed, node_index=item.index, base=base)
    return PartialDecryption(item.index, point, item.proof, item.context)


def decrypt_delegated(
    public: ThresholdPublicKey,
    ciphertext: Ciphertext,
    handle: bytes,
    partials: Iterable[PartialDecryption | SealedPartial],
    *,
    context: bytes,
    requester_key: RequesterKey | None = None,
    stop_at_threshold: bool = True,
) -> bytes:
    """Rebuild `S` from t verified partials and open the handle's ciphertext with it.

    Stops at the first t valid partials by default (the hot path); call `combine_partials`
    directly to audit every answer and get the list of bad nodes.
    """
    combination = combine_partials(
        public,
        ciphertext.ephemeral_public_key,
        partials,
        context=context,
        requester_key=requester_key,
        stop_at_threshold=stop_at_threshold,
    )
    return decrypt_with_shared_point(combination.shared_point, ciphertext, handle)
