"""Plain value objects the store takes and returns (no ORM objects escape the store)."""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from nox.gateway.exceptions import InvalidRecord

HANDLE_SIZE = 32
EPHEMERAL_KEY_SIZE = 33
NONCE_SIZE = 12
VALUE_TAG_SIZE = 32
ADDRESS_SIZE = 20
MAX_TASK_ID_SIZE = 64


def _require_len(name: str, value: bytes, size: int) -> None:
    if not isinstance(value, bytes) or len(value) != size:
        got = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
        raise InvalidRecord(f"{name} must be {size} bytes, got {got}", metadata={"field": name})


def check_task_id(task_id: bytes) -> None:
    """Raise InvalidRecord unless `task_id` is 1..64 bytes."""
    if not isinstance(task_id, bytes) or not 0 < len(task_id) <= MAX_TASK_ID_SIZE:
        raise InvalidRecord(
            f"task id must be 1..{MAX_TASK_ID_SIZE} bytes", metadata={"field": "task_id"}
        )


def chain_id_of(handle: bytes) -> int:
    """Chain id field of a handle (bytes 26..30, uint32 big-endian; DESIGN §5)."""
    return int.from_bytes(handle[26:30], "big")


def type_code_of(handle: bytes) -> int:
    """Type code field of a handle (byte 30; DESIGN §5)."""
    return handle[30]


@dataclass(frozen=True, slots=True)
class RowBinding:
    """What a row keeps of its producer binding (nox.crypto.binding): the tag-commitment
        salt, the producer's signature, the Merkle siblings of the row's leaf and, for a runner's
    output, its proof that it made K. The other
        parts of the signed digest are recomputed from the row itself."""

    salt: bytes
    signature: bytes
    proof: tuple[bytes, ...] = ()
    key_proof: bytes = b""

    def __post_init__(self) -> None:
        _require_len("binding_salt", self.salt, 32)
        if self.key_proof:
            _require_len("binding_key_proof", self.key_proof, 65)
        _require_len("binding_signature", self.signature, 65)
        for sibling in self.proof:
            _require_len("binding_proof", sibling, 32)


@dataclass(frozen=True, slots=True)
class HandleRecord:
    """What the gateway stores under one handle: an ECIES ciphertext and its value tag.

    The chain id and type code are not separate fields: they are read from the handle bytes
    (DESIGN §5), so a record cannot disagree with its own handle. `owner` and `application`
    are the input's owner and application contract (inputs only; None for results).
    """

    handle: bytes
    ciphertext: bytes
    ephemeral_public_key: bytes
    nonce: bytes
    value_tag: bytes
    owner: bytes | None = None
    application: bytes | None = None
    binding: RowBinding | None = None
    """The producer binding; None only for rows stored before bindings existed."""

    def __post_init__(self) -> None:
        _require_len("handle", self.handle, HANDLE_SIZE)
        _require_len("ephemeral_public_key", self.ephemeral_public_key, EPHEMERAL_KEY_SIZE)
        _require_len("nonce", self.nonce, NONCE_SIZE)
        _require_len("value_tag", self.value_tag, VALUE_TAG_SIZE)
        if not isinstance(self.ciphertext, bytes) or not self.ciphertext:
            raise InvalidRecord(
                "ciphertext must be non-empty bytes", metadata={"field": "ciphertext"}
            )
        if self.owner is not None:
            _require_len("owner", self.owner, ADDRESS_SIZE)
        if self.application is not None:
            _require_len("application", self.application, ADDRESS_SIZE)

    @property
    def chain_id(self) -> int:
        """The chain id encoded in the handle."""
        return chain_id_of(self.handle)

    @property
    def type_code(self) -> int:
        """The type code encoded in the handle."""
        return type_code_of(self.handle)

    def __repr__(self) -> str:
        # Ciphertexts are not secret, but a repr full of them is useless in logs.
        return (
            f"HandleRecord(handle=0x{self.handle.hex()}, ciphertext=<{len(self.ciphertext)} bytes>)"
        )


@dataclass(frozen=True, slots=True)
class StoredHandle:
    """A record as read back, with where it came from and when it was stored."""

    record: HandleRecord
    origin_task: bytes | None
    """The id of the task that published it, or None for a user input."""
    created_at: int
    """Unix seconds at which the gateway stored it."""
    expires_at: int | None = None
    """When this input is deleted unless a task references it; None once referenced."""

    @property
    def is_input(self) -> bool:
        """True for a user input (EncryptInput), False for a task's output."""
        return self.origin_task is None


@dataclass(frozen=True, slots=True)
class HandleStatus:
    """Existence metadata of a stored handle, without its ciphertext (public status calls)."""

    handle: bytes
    type_code: int
    chain_id: int
    origin_task: bytes | None
    created_at: int


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A published task: its outputs in handle order and the digest of (handle, tag) pairs."""

    task_id: bytes
    result_digest: bytes
    handles: tuple[bytes, ...]
    stored_at: int
    evidence: bytes | None


class PublishOutcome(enum.Enum):
    """What `publish_task` did."""

    CREATED = "created"
    """Every output was stored by this call."""
    UNCHANGED = "unchanged"
    """The same task with the same value tags was stored before; nothing was written."""


def result_digest(records: Iterable[HandleRecord]) -> bytes:
    """SHA-256 over the task's (handle ‖ value tag) pairs sorted by handle.

    It identifies a task's outputs independently of their ciphertexts, which differ between
    re-executions while the value tags do not (DESIGN §5). Both parts have fixed sizes, so the
    concatenation is unambiguous. It is a store-internal fingerprint, not a protocol hash.
    """
    h = hashlib.sha256()
    for handle, tag in sorted((r.handle, r.value_tag) for r in records):
        h.update(handle)
        h.update(tag)
    return h.digest()
