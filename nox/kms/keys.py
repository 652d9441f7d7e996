"""KMS share files: one per node, the share sealed at rest under an operator-supplied KEK.

A share file is JSON:

    {"version": 1, "kind": "nox-kms-share", "node_index": i, "threshold": t, "n": n,
     "epoch": e, "public_key": "0x…", "public_shares": [...], "commitments": [...],
     "sealed_share": {"kek": "raw" | "scrypt", "scrypt": {"salt", "n", "r", "p"} (scrypt only),
                      "nonce": "0x…", "ciphertext": "0x…"}}

The 32-byte share is sealed with AES-256-GCM under the KEK (a raw 32-byte key, or one derived
by scrypt from a passphrase with a per-file salt). The associated data binds every public
field (version, index, t, n, epoch, PK, public shares, commitments), so none of them can be
changed without the share failing to open. Loading checks the public set's consistency,
opens the share, checks it against the Feldman commitments and its public share, and, when
the caller passes the published set (registry), that the file's set equals it; any failure
raises and the node must not serve.

What this does not do, and a TDX deployment must add, is in docs/kms.md: the KEK should come
from the TD's sealing key or from a key-release service bound to the workload id, not from a
file on the same disk.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from nox.crypto.threshold import (
    KeyShare,
    N,
    Rand,
    ThresholdPublicKey,
    verify_share,
)
from nox.kms.exceptions import InvalidKek, PublicKeyMismatch, ShareFileMalformed, ShareUnsealFailed

FILE_VERSION = 1
FILE_KIND = "nox-kms-share"
AD_TAG = b"NOX:KMS:SHARE-FILE:v1"
KEK_SIZE = 32
NONCE_SIZE = 12
SALT_SIZE = 16
# Bounds accepted when reading scrypt parameters back from a file (a tampered file must not
# make loading take minutes or gigabytes; a weak one cannot be produced by this code).
SCRYPT_MIN_LOG_N = 14
SCRYPT_MAX_LOG_N = 20


@dataclass(frozen=True)
class ScryptParams:
    """scrypt cost: N = 2^log_n, r, p. Default 2^15·8·128 B = 32 MiB of memory per derivation."""

    log_n: int = 15
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        if not SCRYPT_MIN_LOG_N <= self.log_n <= SCRYPT_MAX_LOG_N:
            raise InvalidKek(f"scrypt log_n must be in [{SCRYPT_MIN_LOG_N}, {SCRYPT_MAX_LOG_N}]")
        if not (1 <= self.r <= 32 and 1 <= self.p <= 16):
            raise InvalidKek("scrypt r must be in [1, 32] and p in [1, 16]")


class RawKek:
    """A raw 32-byte key-encryption key (from a key file or a key-release service)."""

    kind = "raw"
    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEK_SIZE:
            raise InvalidKek(f"a raw KEK must be {KEK_SIZE} bytes")
        self._key = bytes(key)

    def __repr__(self) -> str:
        return "RawKek(<redacted>)"

    def derive(self, record: dict[str, Any]) -> bytes:
        """The AES key for a sealed record (the raw key itself)."""
        del record
        return self._key


class PassphraseKek:
    """A KEK derived by scrypt from an operator's passphrase, with a per-file random salt."""

    kind = "scrypt"
    __slots__ = ("_passphrase", "params")

    def __init__(self, passphrase: bytes, params: ScryptParams | None = None) -> None:
        if not passphrase:
            raise InvalidKek("the passphrase is empty")
        self._passphrase = bytes(passphrase)
        self.params = params or ScryptParams()

    def __repr__(self) -> str:
        return f"PassphraseKek(params={self.params!r}, passphrase=<redacted>)"

    def derive(self, record: dict[str, Any]) -> bytes:
        """The AES key for a sealed record, from the record's salt and scrypt parameters."""
        try:
            sp = record["scrypt"]
            params = ScryptParams(log_n=_int(sp["log_n"]), r=_int(sp["r"]), p=_int(sp["p"]))
            salt = _unhex(sp["salt"], "scrypt salt")
        except (KeyError, TypeError):
            raise ShareFileMalformed("sealed share lacks valid scrypt parameters") from None
        if len(salt) != SALT_SIZE:
            raise ShareFileMalformed(f"scrypt salt must be {SALT_SIZE} bytes")
        kdf = Scrypt(salt=salt, length=KEK_SIZE, n=2**params.log_n, r=params.r, p=params.p)
        return kdf.derive(self._passphrase)

    def new_record(self, rand: Rand) -> dict[str, Any]:
        """The scrypt part of a fresh sealed record (new salt, this KEK's parameters)."""
        return {
            "salt": _hex(rand(SALT_SIZE)),
            "log_n": self.params.log_n,
            "r": self.params.r,
            "p": self.params.p,
        }


Kek = RawKek | PassphraseKek


def load_kek_file(path: Path) -> RawKek:
    """Read a raw KEK file: exactly 32 bytes, or 64 hex characters (surrounding space allowed)."""
    data = path.read_bytes()
    if len(data) == KEK_SIZE:
        return RawKek(data)
    try:
        key = bytes.fromhex(data.decode("ascii").strip().removeprefix("0x"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidKek(f"{path.name}: not a 32-byte key or 64 hex characters") from None
    return RawKek(key)


def write_kek_file(path: Path, *, rand: Rand = secrets.token_bytes) -> None:
    """Create a new random 32-byte KEK file, mode 0600; refuses to overwrite."""
    _write_private(path, rand(KEK_SIZE), overwrite=False)


@dataclass(frozen=True, repr=False)
class LoadedShare:
    """A node's verified share and the public set it belongs to. Never printable."""

    share: KeyShare
    public: ThresholdPublicKey

    def __repr__(self) -> str:
        return f"LoadedShare(index={self.share.index}, public_key=0x{self.public.public_key.hex()})"


def _associated_data(index: int, public: ThresholdPublicKey) -> bytes:
    return (
        AD_TAG
        + FILE_VERSION.to_bytes(2, "big")
        + index.to_bytes(4, "big")
        + public.threshold.to_bytes(4, "big")
        + public.n.to_bytes(4, "big")
        + public.epoch.to_bytes(8, "big")
        + public.public_key
        + b"".join(public.public_shares)
        + b"".join(public.commitments)
    )


def seal_share(
    share: KeyShare, public: ThresholdPublicKey, kek: Kek, *, rand: Rand = secrets.token_bytes
) -> dict[str, Any]:
    """The JSON object of a share file (the share checked against `public` first)."""
    verify_share(share, public)
    record: dict[str, Any] = {"kek": kek.kind}
    if isinstance(kek, PassphraseKek):
        record["scrypt"] = kek.new_record(rand)
    nonce = rand(NONCE_SIZE)
    ciphertext = AESGCM(kek.derive(record)).encrypt(
        nonce, share.secret_bytes(), _associated_data(share.index, public)
    )
    record["nonce"] = _hex(nonce)
    record["ciphertext"] = _hex(ciphertext)
    public_json = public.to_json()
    del public_json["version"]
    header = {"version": FILE_VERSION, "kind": FILE_KIND, "node_index": share.index}
    return header | public_json | {"sealed_share": record}


def open_share(
    document: dict[str, Any], kek: Kek, *, expected: ThresholdPublicKey | None = None
) -> LoadedShare:
    """Check and open a share file's JSON object. Raises; never returns an unchecked share.

    Order: structure, public-set consistency, registry match (`expected`), unseal,
    Feldman/public-share check.
    """
    if not isinstance(document, dict) or document.get("kind") != FILE_KIND:
        raise ShareFileMalformed("not a Nox KMS share file")
    if document.get("version") != FILE_VERSION:
        raise ShareFileMalformed(f"unknown share file version {document.get('version')!r}")
    try:
        index = _int(document["node_index"])
        record = document["sealed_share"]
        public_part = {k: document[k] for k in ("threshold", "n", "public_key", "public_shares")}
        public_part |= {"commitments": document["commitments"], "epoch": document["epoch"]}
    except (KeyError, TypeError):
        raise ShareFileMalformed("share file lacks a required field") from None
    public = ThresholdPublicKey.from_json(public_part | {"version": 1})
    if expected is not None and expected != public:
        raise PublicKeyMismatch("the share file's public key set differs from the published one")
    if not 1 <= index <= public.n:
        raise ShareFileMalformed(f"node index {index} is not in [1, {public.n}]")
    if not isinstance(record, dict) or record.get("kek") != kek.kind:
        raise ShareUnsealFailed(f"share {index} was not sealed with a {kek.kind} KEK")
    try:
        nonce = _unhex(record["nonce"], "nonce")
        ciphertext = _unhex(record["ciphertext"], "ciphertext")
    except (KeyError, TypeError):
        raise ShareFileMalformed("sealed share lacks nonce or ciphertext") from None
    if len(nonce) != NONCE_SIZE:
        raise ShareFileMalformed(f"nonce must be {NONCE_SIZE} bytes")
    try:
        plain = AESGCM(kek.derive(record)).decrypt(
            nonce, ciphertext, _associated_data(index, public)
        )
    except InvalidTag:
        raise ShareUnsealFailed(f"share {index} does not open: wrong KEK or tampered") from None
    value = int.from_bytes(plain, "big")
    if len(plain) != 32 or not 0 < value < N:
        raise ShareUnsealFailed(f"share {index} is out of range")
    share = KeyShare(index, value)
    verify_share(share, public)
    return LoadedShare(share, public)


def require_published(
    loaded: LoadedShare,
    *,
    public_key: bytes,
    public_shares: Sequence[bytes],
    threshold: int,
) -> None:
    """Refuse (PublicKeyMismatch) unless the on-chain key, shares and threshold equal the file's.

    The registry publishes PK, the public shares and t (not necessarily the commitments);
    a node calls this at start with what the registry holds, after `load_share_file`.
    """
    public = loaded.public
    if (
        public.public_key != bytes(public_key)
        or public.public_shares != tuple(bytes(p) for p in public_shares)
        or public.threshold != threshold
    ):
        raise PublicKeyMismatch(
            f"node {loaded.share.index}: the registry's KMS key set differs from the share file's"
        )


def write_share_file(
    path: Path,
    share: KeyShare,
    public: ThresholdPublicKey,
    kek: Kek,
    *,
    rand: Rand = secrets.token_bytes,
    overwrite: bool = False,
) -> None:
    """Seal `share` under `kek` and write it to `path` (mode 0600, atomically)."""
    document = seal_share(share, public, kek, rand=rand)
    _write_private(path, (json.dumps(document, indent=2) + "\n").encode(), overwrite=overwrite)


def load_share_file(
    path: Path, kek: Kek, *, expected: ThresholdPublicKey | None = None
) -> LoadedShare:
    """Read, open and check a share file (see `open_share`); the start-up check of a node."""
    try:
        document = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ShareFileMalformed(f"{path.name} is not JSON") from None
    return open_share(document, kek, expected=expected)


def write_public_file(path: Path, public: ThresholdPublicKey, *, overwrite: bool = False) -> None:
    """Write public.json: the set to publish on-chain (no secret in it)."""
    public.validate()
    data = (json.dumps(public.to_json(), indent=2) + "\n").encode()
    _write_atomic(path, data, mode=0o600, overwrite=overwrite)  # public, but state: 0600


def load_public_file(path: Path) -> ThresholdPublicKey:
    """Read and validate public.json."""
    try:
        document = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ShareFileMalformed(f"{path.name} is not JSON") from None
    if not isinstance(document, dict):
        raise ShareFileMalformed(f"{path.name} is not a JSON object")
    return ThresholdPublicKey.from_json(document)


def _write_private(path: Path, data: bytes, *, overwrite: bool) -> None:
    _write_atomic(path, data, mode=0o600, overwrite=overwrite)


def _write_atomic(path: Path, data: bytes, *, mode: int, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _unhex(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ShareFileMalformed(f"{what} must be a 0x-prefixed hex string")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise ShareFileMalformed(f"{what} is not valid hex") from None


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("expected an integer")
    return value
