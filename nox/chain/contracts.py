"""Typed clients of NoxRegistry, ACL and NoxCompute (one thin class per contract).

Addresses are accepted as 20 raw bytes or hex strings and returned as raw bytes; handles and
workload ids are 32 raw bytes. Writes are signed with a `LocalAccount` and return the receipt;
reverts raise `ContractReverted` carrying the custom error's name and arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract.contract import Contract
from web3.logs import DISCARD
from web3.types import TxReceipt

from nox.chain.artifacts import load_artifact
from nox.chain.backend import ChainBackend
from nox.crypto.hashing import keccak256

Address = bytes | str
DOMAIN_TYPEHASH = keccak256(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
REGISTER_PERMIT_TYPEHASH = keccak256(
    b"RegisterPermit(bytes32 quoteHash,uint256 nonce,uint256 deadline)"
)
HANDLE_PROOF_TYPEHASH = keccak256(
    b"HandleProof(bytes32 handle,address owner,address app,uint256 createdAt)"
)


def to_checksum(address: Address) -> str:
    if isinstance(address, bytes):
        if len(address) != 20:
            raise ValueError("address must be 20 bytes")
        return Web3.to_checksum_address(address)
    return Web3.to_checksum_address(address)


def to_bytes20(address: Address) -> bytes:
    # 20 raw bytes are already the answer: the checksum round trip (a keccak of the hex) is
    # needed only to parse a string, and was a measurable share of every registry check.
    if isinstance(address, bytes):
        if len(address) != 20:
            raise ValueError("address must be 20 bytes")
        return bytes(address)
    return bytes.fromhex(to_checksum(address)[2:])


def domain_separator(name: str, version: str, chain_id: int, contract: Address) -> bytes:
    return keccak256(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                DOMAIN_TYPEHASH,
                keccak256(name.encode()),
                keccak256(version.encode()),
                chain_id,
                to_checksum(contract),
            ],
        )
    )


def _typed_digest(separator: bytes, struct_hash: bytes) -> bytes:
    return keccak256(b"\x19\x01", separator, struct_hash)


@dataclass(frozen=True)
class NodeRecord:
    """A NoxRegistry entry as stored on-chain."""

    address: bytes
    role: int
    revoked: bool
    operator: bytes
    registered_at: int
    expires_at: int
    workload_id: bytes
    quote_hash: bytes
    endpoint: str


@dataclass(frozen=True)
class KmsKeys:
    public_key: bytes
    public_shares: list[bytes]
    threshold: int


class _Client:
    artifact_name = ""

    def __init__(self, backend: ChainBackend, address: Address) -> None:
        self.backend = backend
        self.address = to_checksum(address)
        self.contract: Contract = backend.contract(load_artifact(self.artifact_name), self.address)

    @property
    def fn(self) -> Any:
        return self.contract.functions

    def _tx(self, call: Any, sender: LocalAccount | None) -> TxReceipt:
        return self.backend.transact(call, sender)

    def _view(self, call: Any) -> Any:
        return self.backend.call(call)


class RegistryClient(_Client):
    """NoxRegistry: registration, governance and views."""

    artifact_name = "NoxRegistry"

    # --- registration
    def register(
        self, quote: bytes, role: int, operator: Address, endpoint: str, sender: LocalAccount
    ) -> TxReceipt:
        """Register `sender` itself (the enclave key pays gas)."""
        return self._tx(self.fn.register(quote, role, to_checksum(operator), endpoint), sender)

    def permit_digest(self, quote: bytes, nonce: int, deadline: int) -> bytes:
        struct = keccak256(
            abi_encode(
                ["bytes32", "bytes32", "uint256", "uint256"],
                [REGISTER_PERMIT_TYPEHASH, keccak256(quote), nonce, deadline],
            )
        )
        return _typed_digest(
            domain_separator("Nox", "1", self.backend.chain_id, self.address), struct
        )

    def register_with_permit(
        self,
        quote: bytes,
        role: int,
        operator: Address,
        endpoint: str,
        *,
        enclave: Address,
        sign_digest: Callable[[bytes], bytes],
        deadline: int,
        sender: LocalAccount,
    ) -> TxReceipt:
        """Register `enclave` with its signature (`sign_digest`, e.g. EnclaveKey.sign_digest);
        `sender` (the operator) pays gas."""
        nonce = int(self._view(self.fn.permitNonces(to_checksum(enclave))))
        signature = sign_digest(self.permit_digest(quote, nonce, deadline))
        call = self.fn.registerWithPermit(
            quote, role, to_checksum(operator), endpoint, deadline, signature
        )
        return self._tx(call, sender)

    # --- governance
    def allow_workload(self, role: int, workload_id: bytes, sender: LocalAccount) -> TxReceipt:
        return self._tx(self.fn.allowWorkload(role, workload_id), sender)

    def disallow_workload(self, role: int, workload_id: bytes, sender: LocalAccount) -> TxReceipt:
        return self._tx(self.fn.disallowWorkload(role, workload_id), sender)

    def revoke_enclave(self, enclave: Address, sender: LocalAccount) -> TxReceipt:
        return self._tx(self.fn.revokeEnclave(to_checksum(enclave)), sender)

    def set_max_attestation_age(self, seconds: int, sender: LocalAccount) -> TxReceipt:
        return self._tx(self.fn.setMaxAttestationAge(seconds), sender)

    def set_kms_keys(
        self,
        public_key: bytes,
        public_shares: Sequence[bytes],
        threshold: int,
        sender: LocalAccount,
    ) -> TxReceipt:
        return self._tx(self.fn.setKmsKeys(public_key, list(public_shares), threshold), sender)

    def transfer_ownership(self, new_owner: Address, sender: LocalAccount) -> TxReceipt:
        return self._tx(self.fn.transferOwnership(to_checksum(new_owner)), sender)

    def accept_ownership(self, sender: LocalAccount) -> TxReceipt:
        return self._tx(self.fn.acceptOwnership(), sender)

    # --- views
    def owner(self) -> bytes:
        return to_bytes20(self._view(self.fn.owner()))

    def pending_owner(self) -> bytes:
        return to_bytes20(self._view(self.fn.pendingOwner()))

    def max_attestation_age(self) -> int:
        return int(self._view(self.fn.maxAttestationAge()))

    def workload_allowed(self, role: int, workload_id: bytes) -> bool:
        return bool(self._view(self.fn.workloadAllowed(role, workload_id)))

    def workload_id_of(self, quote: bytes) -> bytes:
        return bytes(self._view(self.fn.workloadIdOf(quote)))

    def node(self, enclave: Address) -> NodeRecord | None:
        raw = self._view(self.fn.getNode(to_checksum(enclave)))
        role, revoked, operator, registered_at, expires_at, wid, quote_hash, endpoint = raw
        if role == 0:
            return None
        return NodeRecord(
            to_bytes20(enclave),
            role,
            revoked,
            to_bytes20(operator),
            registered_at,
            expires_at,
            bytes(wid),
            bytes(quote_hash),
            endpoint,
        )

    def is_active(self, enclave: Address) -> bool:
        return bool(self._view(self.fn.isActive(to_checksum(enclave))))

    def require_active(self, enclave: Address, role: int) -> None:
        """Raises ContractReverted (NodeNotRegistered, WrongRole, EnclaveRevoked, NodeExpired,
        WorkloadRevoked) unless active in `role`."""
        self._view(self.fn.requireActive(to_checksum(enclave), role))

    def active_nodes(self, role: int, page_size: int = 100) -> list[bytes]:
        """Every active node of `role`, fetched page by page."""
        total = int(self._view(self.fn.memberCount(role)))
        found: list[bytes] = []
        cursor = 0
        while cursor < total:
            page, cursor = self._view(self.fn.activeNodes(role, cursor, page_size))
            found.extend(to_bytes20(a) for a in page)
        return found

    def kms_keys(self) -> KmsKeys:
        return KmsKeys(
            bytes(self._view(self.fn.kmsPublicKey())),
            [bytes(s) for s in self._view(self.fn.kmsPublicShares())],
            int(self._view(self.fn.kmsThreshold())),
        )


class AclClient(_Client):
    """ACL: admin, transient, viewer and public permissions on handles."""

    artifact_name = "ACL"

    def allow(self, handle: bytes, account: Address, sender: LocalAccount) -> TxReceipt:
        return self._tx(self.fn.allow(handle, to_checksum(account)), sender)

    def allow_transient(self, handle: bytes, account: Address, sender: LocalAccount) -> TxReceipt:
        return self._tx(self.fn.allowTransient(handle, to_checksum(account)), sender)

    def add_viewer(self, handle: bytes, viewer: Address, sender: LocalAccount) -> TxReceipt:
        return self._tx(self.fn.addViewer(handle, to_checksum(viewer)), sender)

    def allow_public_decryption(self, handle: bytes, sender: LocalAccount) -> TxReceipt:
        return self._tx(self.fn.allowPublicDecryption(handle), sender)

    def is_allowed(self, handle: bytes, account: Address) -> bool:
        return bool(self._view(self.fn.isAllowed(handle, to_checksum(account))))

    def is_viewer(self, handle: bytes, viewer: Address) -> bool:
        return bool(self._view(self.fn.isViewer(handle, to_checksum(viewer))))

    def is_publicly_decryptable(self, handle: bytes) -> bool:
        return bool(self._view(self.fn.isPubliclyDecryptable(handle)))


@dataclass(frozen=True)
class OperationEvent:
    """One NoxCompute `Operation` event: what the off-chain pipeline must compute."""

    caller: bytes
    operator: int
    inputs: list[bytes]
    outputs: list[bytes]
    block_number: int
    tx_hash: bytes
    log_index: int


class ComputeClient(_Client):
    """NoxCompute: input proofs and computation events."""

    artifact_name = "NoxCompute"

    def domain_separator(self) -> bytes:
        return domain_separator("NoxCompute", "1", self.backend.chain_id, self.address)

    def handle_proof_digest(
        self, handle: bytes, owner: Address, app: Address, created_at: int
    ) -> bytes:
        struct = keccak256(
            abi_encode(
                ["bytes32", "bytes32", "address", "address", "uint256"],
                [HANDLE_PROOF_TYPEHASH, handle, to_checksum(owner), to_checksum(app), created_at],
            )
        )
        return _typed_digest(self.domain_separator(), struct)

    def make_input_proof(
        self,
        handle: bytes,
        owner: Address,
        app: Address,
        created_at: int,
        sign_digest: Callable[[bytes], bytes],
    ) -> bytes:
        """owner(20) ‖ app(20) ‖ createdAt(32) ‖ signature(65), signed by a gateway key."""
        signature = sign_digest(self.handle_proof_digest(handle, owner, app, created_at))
        return to_bytes20(owner) + to_bytes20(app) + created_at.to_bytes(32, "big") + signature

    def proof_expiration_duration(self) -> int:
        return int(self._view(self.fn.proofExpirationDuration()))

    def operations(self, receipt: TxReceipt) -> list[OperationEvent]:
        """The Operation events of one transaction, in log order."""
        return [
            self._event(e)
            for e in self.contract.events.Operation().process_receipt(receipt, errors=DISCARD)
        ]

    def operation_events(
        self, from_block: int, to_block: int | str = "latest"
    ) -> list[OperationEvent]:
        logs = self.contract.events.Operation().get_logs(from_block=from_block, to_block=to_block)
        return [self._event(e) for e in logs]

    @staticmethod
    def _event(e: Any) -> OperationEvent:
        return OperationEvent(
            caller=to_bytes20(e.args.caller),
            operator=int(e.args.operator),
            inputs=[bytes(h) for h in e.args.inputs],
            outputs=[bytes(h) for h in e.args.outputs],
            block_number=int(e.blockNumber),
            tx_hash=bytes(e.transactionHash),
            log_index=int(e.logIndex),
        )
