"""The proofs the gateway signs for contracts: input proofs and public-decryption proofs.

Both are EIP-712 signatures in the NoxCompute domain {name "NoxCompute", version "1",
chainId, verifyingContract NoxCompute}:

- input proof (137 bytes) = owner(20) ‖ app(20) ‖ createdAt(32, uint256 BE) ‖ signature(65)
  over `HandleProof(bytes32 handle,address owner,address app,uint256 createdAt)`, exactly
  what `NoxCompute.validateInputProof` rebuilds (registry_contracts/src/NoxCompute.sol);
- decryption proof = signature(65) ‖ plaintext over
  `DecryptionProof(bytes32 handle,bytes plaintext)` (nox/v1/decryption.proto).

Fixed layouts, so the struct hashes are written out (a test checks them against
eth_account's generic encoder and the input proof against the contract itself).
"""

from __future__ import annotations

from nox.crypto.eip712 import Domain
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey
from nox.errors import InvalidArgument

HANDLE_PROOF_TYPE = "HandleProof(bytes32 handle,address owner,address app,uint256 createdAt)"
HANDLE_PROOF_TYPEHASH = keccak256(HANDLE_PROOF_TYPE.encode())
DECRYPTION_PROOF_TYPE = "DecryptionProof(bytes32 handle,bytes plaintext)"
DECRYPTION_PROOF_TYPEHASH = keccak256(DECRYPTION_PROOF_TYPE.encode())
INPUT_PROOF_SIZE = 137
_ZERO12 = bytes(12)


def handle_proof_digest(
    domain: Domain, handle: bytes, owner: bytes, app: bytes, created_at: int
) -> bytes:
    """The EIP-712 digest of a HandleProof."""
    if len(handle) != 32 or len(owner) != 20 or len(app) != 20:
        raise InvalidArgument("handle must be 32 bytes, owner and app 20 bytes")
    if not 0 <= created_at < 2**256:
        raise InvalidArgument("createdAt must fit uint256")
    struct_hash = keccak256(
        HANDLE_PROOF_TYPEHASH, handle, _ZERO12, owner, _ZERO12, app, created_at.to_bytes(32, "big")
    )
    return keccak256(b"\x19\x01", domain.separator, struct_hash)


def make_input_proof(
    key: EnclaveKey, domain: Domain, handle: bytes, owner: bytes, app: bytes, created_at: int
) -> bytes:
    """owner ‖ app ‖ createdAt ‖ the gateway's signature: what the user hands the contract."""
    signature = key.sign_digest(handle_proof_digest(domain, handle, owner, app, created_at))
    return owner + app + created_at.to_bytes(32, "big") + signature


def decryption_proof_digest(domain: Domain, handle: bytes, plaintext: bytes) -> bytes:
    """The EIP-712 digest of a DecryptionProof."""
    if len(handle) != 32:
        raise InvalidArgument("handle must be 32 bytes")
    struct_hash = keccak256(DECRYPTION_PROOF_TYPEHASH, handle, keccak256(plaintext))
    return keccak256(b"\x19\x01", domain.separator, struct_hash)


def make_decryption_proof(
    key: EnclaveKey, domain: Domain, handle: bytes, plaintext: bytes
) -> bytes:
    """The gateway's signature followed by the plaintext (what a contract checks)."""
    return key.sign_digest(decryption_proof_digest(domain, handle, plaintext)) + plaintext
