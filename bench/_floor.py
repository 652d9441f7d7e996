"""The crypto floor: the least cryptography one confidential transfer needs, back to back.

One transfer is one task of one `transfer` operation (DESIGN §7): 3 input handles (amount,
balanceFrom, balanceTo: euint256 as `bench/e2e.py` sends them, values below 2^64), 3 output
handles, a 2-of-3 KMS (§6), every message a signed envelope (§4), flowing as §1, §8 and
docs/api.md ("The flows in messages") say. `bench/e2e.py` divides the network's tasks/s by
this floor's tasks/s. The floor counts what the protocol needs, not what the code happens to
do: each message is signed once by its sender and verified once by the receiver that acts on
it, exactly t = 2 KMS nodes are asked, each DLEQ proof is checked once, by the requester.

| operation                        | /task | who
| -------------------------------- | ----: | -------------------------------------------------
| sign envelope                    |    12 | ingestor 1, orchestrator 3, runner 2, gateway 4, KMS 2
| verify envelope                  |    16 | orchestrator 3, runner 5, gateway 2, KMS 6
| make requester key               |     1 | runner (per-task secp256k1 key)
| partial D_i = x_i*K + DLEQ proof |     6 | KMS (2 nodes × 3 operands)
| seal partial to requester key    |     6 | KMS (e, e·G, e·R, HKDF, AES-GCM)
| open sealed partial              |     6 | runner
| verify DLEQ proof                |     6 | runner (against the published PK_i)
| Lagrange combine                 |     3 | runner (S = Σ λ_i·D_i over t = 2 partials)
| AES-GCM decrypt operand          |     3 | runner (HKDF of x(S), handle as AD)
| ECIES encrypt output             |     3 | runner (k, k·G, k·PK, HKDF, AES-GCM)
| value tag                        |     3 | runner (HMAC-SHA256(tag key, handle ‖ plaintext))
| keccak256 binding                |    11 | orchestrator 4, runner 3, gateway 2, KMS 2
| sign handle binding              |     1 | runner (one signature over its 3 outputs' leaves)
| verify handle binding            |     7 | KMS 6 (2 nodes × 3 operands), gateway 1 (outputs)
| prove K (key proof)              |     3 | runner (Schnorr proof it made each output's K)
| verify key proof                 |     3 | gateway (the outputs; the operands are inputs)

The messages (sender → receiver, who verifies it):
 1. TransactionMessage, ingestor → orchestrator through JetStream (which derives the task id,
    a hash);
 2. TaskAssignment, orchestrator → runner (the orchestrator keeps its hash);
 3. GetOperands, runner → gateway, carrying the per-task requester key;
 4. Delegate, gateway → each of the t nodes asked (2 signatures, one audience each); each
    node verifies it and re-checks the runner's GetOperands inside and the assignment inside
    that (§6, "the node re-checks the signatures"): 3 verifications a node, and it hashes
    the request (its DLEQ context);
 5. Delegate answers, KMS nodes → gateway → runner: the runner verifies both;
 6. GetOperands answer, gateway → runner (request hash: made by one, checked by the other);
 7. SubmitResult, runner → orchestrator (the runner hashes its assignment);
 8. SubmitResult answer, orchestrator → runner (request hash);
 9. StoreResults (assignment and result inside, a SignedExecution), orchestrator → gateway;
10. StoreResults answer, gateway → orchestrator (request hash); then the ack.
Signatures: ingestor 1; orchestrator 2, 8, 9; runner 3, 7; gateway 4 (twice), 6, 10; KMS 5.
Verifications: orchestrator 1, 7, 10; runner 2, 5 (twice), 6, 8; gateway 3, 9; KMS 4 (×3).

Not counted, though the code as built does them (22 verifications a task, not 16): the
gateway's check of each KMS answer (2; it relays them to the runner, who must check them
anyway; the gateway does it to name a liar early); its check of the assignment inside
GetOperands (1; every KMS node checks it before delegating, and the ciphertexts alone are
under PK); the runner's check of the TransactionMessage in its assignment (1; the
orchestrator verified it and signs the assignment carrying it); the gateway's checks of the
runner's SubmitResult and the assignment inside StoreResults (2; the orchestrator verified
the one, signed the other, and signs the request carrying both); the runner's re-derivation
of the output handles (3 keccak256); the gateway's re-check of each operand's handle binding
when it reads the row (3; every KMS node checks the same binding before delegating) and the
runner's (3; likewise); the gateway's binding of each input at EncryptInput (before the
task). Each operand here has a binding of its own (the worst case: three inputs from three
EncryptInput calls); operands bound by one runner signature cost one check together, and
the verifiers' caches make a re-read free. ClaimTasks and heartbeats (signed both ways) are left
out: a claim leases a batch of tasks, a heartbeat comes every few seconds. The operands exist
before the task (EncryptInput, earlier tasks), as in `bench/e2e.py`, so their encryption is
not the task's. Nor is the value-tag key (docs/kms.md, "Tag key"): a runner fetches it once
when it starts, through one GetTagKey, and keeps it for every task. Registry lookups are a
cached view's (a dictionary); replay caches are in memory, one per receiver.

Everything runs through the project's own functions (`nox.crypto`, `nox.kms.wire`,
`nox.handles`) on the real protobuf payloads, each party working on what it received, with
fresh values, handles and per-task keys every task. The floor's time is the CPU time
(`time.process_time`, ~1 µs of timer per timed block) of the operations above; building
payload objects and the transfer's arithmetic are not cryptography and are left out. Each
task checks itself (the operands decrypt to the values encrypted) and `measure_floor` checks
that every operation ran as often as the table says.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from google.protobuf.message import Message

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nox.chain.exceptions import NodeNotAuthorized
from nox.compute import Op, Operator, Value, run_ops
from nox.crypto import ecies, threshold
from nox.crypto.binding import (
    Binding,
    BindingVerifier,
    BoundRow,
    bindings_digest,
    ciphertext_hash,
    merkle_root,
    prove_key,
    sign_bindings,
    tag_commitment,
    verify_key_proof,
)
from nox.crypto.delegation import (
    PartialDecryption,
    RequesterKey,
    RequesterKeyKind,
    delegation_context,
    make_partial,
    seal_partial,
    verify_partial,
)
from nox.crypto.ecies import Ciphertext, decrypt_with_shared_point, encrypt_keeping_scalar
from nox.crypto.eip712 import Domain
from nox.crypto.envelope import Verified, sign_envelope, verify_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey, recover_address
from nox.crypto.replay import RELAYED, MemoryReplayCache, ReplayCache
from nox.crypto.tags import tag_key_from_point, tag_point
from nox.crypto.threshold import Dealing, combine_points, deal
from nox.handles import Handle, result_handle, uint, value_tag
from nox.kms.wire import (
    binding_from_proto,
    binding_to_proto,
    proof_from_proto,
    proof_to_proto,
    requester_key_from_proto,
    requester_key_to_proto,
    sealed_from_proto,
    sealed_to_proto,
)
from nox.v1 import common_pb2, gateway_pb2, kms_pb2, orchestrator_pb2, task_pb2
from nox.v1.envelope_pb2 import SignedEnvelope

__all__ = ["FloorResult", "floor_operations", "measure_floor"]

M = TypeVar("M", bound=Message)

CHAIN_ID = 31337
THRESHOLD, NODES, OPERANDS, OUTPUTS = 2, 3, 3, 3
EUINT256 = uint(256)
TRANSFER = int(Operator.TRANSFER)
INGESTOR, ORCHESTRATOR, RUNNER = (common_pb2.ROLE_INGESTOR, common_pb2.ROLE_ORCHESTRATOR,
                                  common_pb2.ROLE_RUNNER)  # fmt: skip
GATEWAY, KMS = common_pb2.ROLE_GATEWAY, common_pb2.ROLE_KMS
TTL = 60  # seconds: the services' envelope TTL
TX_TTL, TX_MAX_TTL = 7 * 86400, 30 * 86400  # transaction messages live as long as the stream

SIGN, VERIFY, REQUESTER_KEY = "sign envelope", "verify envelope", "make requester key"
PARTIAL, SEAL = "partial D_i = x_i*K + DLEQ proof", "seal partial to requester key"
OPEN, CHECK_PROOF = "open sealed partial", "verify DLEQ proof"
COMBINE, DECRYPT = "Lagrange combine", "AES-GCM decrypt operand"
ENCRYPT, TAG, BIND = "ECIES encrypt output", "value tag", "keccak256 binding"
SIGN_BINDING, VERIFY_BINDING = "sign handle binding", "verify handle binding"
PROVE_KEY, VERIFY_KEY = "prove K (key proof)", "verify key proof"

_OPERATIONS: tuple[tuple[str, int, str], ...] = (
    (SIGN, 12, "ingestor 1, orchestrator 3, runner 2, gateway 4, KMS nodes 2 (1 each)"),
    (VERIFY, 16, "orchestrator 3, runner 5, gateway 2, KMS nodes 6 (3 each)"),
    (REQUESTER_KEY, 1, "runner (per-task secp256k1 key)"),
    (PARTIAL, THRESHOLD * OPERANDS, "KMS nodes (2 nodes × 3 operands)"),
    (SEAL, THRESHOLD * OPERANDS, "KMS nodes"),
    (OPEN, THRESHOLD * OPERANDS, "runner"),
    (CHECK_PROOF, THRESHOLD * OPERANDS, "runner (against the published PK_i)"),
    (COMBINE, OPERANDS, "runner (S = Σ λ_i·D_i over t = 2 partials)"),
    (DECRYPT, OPERANDS, "runner (HKDF of x(S), AES-256-GCM, handle as AD)"),
    (ENCRYPT, OUTPUTS, "runner (ECIES under PK, handle as AD)"),
    (TAG, OUTPUTS, "runner (HMAC-SHA256(tag key, handle ‖ plaintext))"),
    (BIND, 11, "orchestrator 4, runner 3, gateway 2, KMS nodes 2 (task id, request hashes)"),
    (SIGN_BINDING, 1, "runner (one signature over its outputs' Merkle root)"),
    (VERIFY_BINDING, THRESHOLD * OPERANDS + 1, "KMS nodes 6 (per operand), gateway 1 (outputs)"),
    (PROVE_KEY, OUTPUTS, "runner (Schnorr proof that it made each output's K)"),
    (VERIFY_KEY, OUTPUTS, "gateway (the outputs; a transfer's operands here are inputs)"),
)


def floor_operations() -> list[tuple[str, int, str]]:
    """(operation, count per task, who does it): the table of the module docstring."""
    return list(_OPERATIONS)


@dataclass(frozen=True)
class FloorResult:
    """What `measure_floor` measured (CPU time of the floor's operations, one core)."""

    tasks: int
    seconds: float
    tasks_per_s: float
    ms_per_task: float
    breakdown_ms: dict[str, float]
    """CPU ms per task by operation (the names of `floor_operations`); sums to ms_per_task."""


@dataclass(frozen=True)
class TaskRecord:
    """What one floor task saw, for checks: operands in and decrypted, outputs stored."""

    inputs: list[bytes]
    values: list[bytes]
    opened: list[bytes]
    outputs: list[common_pb2.TypedCiphertext]
    output_plaintexts: list[bytes]


class _Registry:
    """The registry as a service's cached view answers it: address -> role (a dictionary)."""

    def __init__(self) -> None:
        self.roles: dict[bytes, int] = {}

    def role(self, role: int) -> Callable[[bytes], None]:
        def require(signer: bytes) -> None:
            found = self.roles.get(signer)
            if found is None:
                raise NodeNotAuthorized("node is not registered", reason="SIGNER_NOT_REGISTERED")
            if found != role:
                raise NodeNotAuthorized(f"node has role {found}", reason="ROLE_MISMATCH")

        return require

    def require_producer(self, address: bytes, role: int, now: int) -> None:
        """A producer of handle bindings (a gateway or runner; expiry does not apply)."""
        del now
        self.role(role)(address)


class _Floor:
    """The parties' long-lived state (enclave keys, KMS shares, replay caches, registry);
    `task()` runs one transfer's cryptography through every party, timed by operation."""

    def __init__(self) -> None:
        self.dealing: Dealing = deal(THRESHOLD, NODES)
        self.public = self.dealing.public
        self.domain = Domain(chain_id=CHAIN_ID, verifying_contract=os.urandom(20))
        # The runner's value-tag key, fetched once at its start (not a per-task operation,
        # so not through this module's counted `combine_points`).
        p_tag = threshold.parse_point(tag_point(self.domain))
        self.tag_key = tag_key_from_point(
            threshold.combine_points({
                s.index: threshold.point_bytes(threshold.mul(p_tag, s.value))
                for s in self.dealing.shares[:THRESHOLD]
            }),
            self.domain,
        )  # fmt: skip
        self.compute_address = os.urandom(20)
        self.ingestor, self.orchestrator, self.runner, self.gateway = (
            EnclaveKey.generate() for _ in range(4)
        )
        self.kms_keys = [EnclaveKey.generate() for _ in range(NODES)]
        self.registry = _Registry()
        for key, role in [(self.ingestor, INGESTOR), (self.orchestrator, ORCHESTRATOR),
                          (self.runner, RUNNER), (self.gateway, GATEWAY),
                          *((k, KMS) for k in self.kms_keys)]:  # fmt: skip
            self.registry.roles[key.address] = role
        # a seen-nonce cache per receiver of top-level envelopes (DESIGN §4)
        self.replay: dict[str, ReplayCache] = {
            name: MemoryReplayCache() for name in ("orchestrator", "runner", "gateway")
        }
        self.kms_replay = [MemoryReplayCache() for _ in range(NODES)]
        # each KMS node's binding verifier (operands are fresh every task: no cache hits)
        self.kms_bindings = [BindingVerifier(self.domain, self.registry) for _ in range(NODES)]
        self.bound: dict[bytes, Binding] = {}
        self.times: dict[str, float] = defaultdict(float)
        self.counts: Counter[str] = Counter()
        self.tasks = 0

    @contextmanager
    def timed(self, kind: str, calls: int = 1) -> Iterator[None]:
        """CPU time of the block goes to `kind`, which the block does `calls` times."""
        start = time.process_time()
        try:
            yield
        finally:
            self.times[kind] += time.process_time() - start
            self.counts[kind] += calls

    def reset(self) -> None:
        """Forget the times and counts so far (after the warm-up task)."""
        self.times.clear()
        self.counts.clear()
        self.tasks = 0

    def check_counts(self) -> None:
        """Raise unless every operation ran as often as the table says: a floor that skips
        work is not a floor."""
        for name, count, _ in _OPERATIONS:
            if self.counts[name] != count * self.tasks:
                raise RuntimeError(f"{name}: {self.counts[name]} calls in {self.tasks} tasks")

    def _sign(
        self, key: EnclaveKey, payload: Message, audience: bytes, now: int, ttl: int = TTL
    ) -> SignedEnvelope:
        return sign_envelope(key, payload, domain=self.domain, audience=audience, now=now, ttl=ttl)

    def _verify(
        self, env: SignedEnvelope, message_type: type[M], audience: bytes, role: int, now: int,
        replay: ReplayCache = RELAYED, signer: bytes | None = None, max_ttl: int = 3600,
    ) -> Verified[M]:  # fmt: skip
        """Verify as a receiver does: relayed credentials (and JetStream's transaction
        messages) with RELAYED, top-level envelopes with the receiver's replay cache."""
        return verify_envelope(
            env, message_type, domain=self.domain, audience=audience, now=now, replay=replay,
            max_ttl=max_ttl, expected_signer=signer, authorize=self.registry.role(role),
        )  # fmt: skip

    # ------------------------------------------------------------------ one task

    def task(self) -> TaskRecord:
        """One transfer through every party; raises if anything fails to verify or decrypt."""
        now = int(time.time())
        # Before the task, not timed: the operands as stored (EncryptInput, earlier tasks)
        # and the chain's transaction, with fresh handles and values every task.
        values = [secrets.randbelow(2**64).to_bytes(32, "big") for _ in range(OPERANDS)]
        inputs = [Handle(secrets.token_bytes(26), CHAIN_ID, EUINT256.code).to_bytes()
                  for _ in range(OPERANDS)]  # fmt: skip
        stored = [  # ecies.encrypt: the task's own `encrypt` calls are the runner's, counted
            ecies.encrypt(self.public.public_key, v, h) for v, h in zip(values, inputs, strict=True)
        ]
        bindings = [self._input_binding(h, c) for h, c in zip(inputs, stored, strict=True)]
        caller = secrets.token_bytes(20)
        outputs = [result_handle(TRANSFER, inputs, self.compute_address, caller, now, i, CHAIN_ID,
                                 EUINT256).to_bytes() for i in range(OUTPUTS)]  # fmt: skip
        tx = task_pb2.TransactionMessage(
            chain_id=CHAIN_ID, block_number=self.tasks + 1, block_hash=secrets.token_bytes(32),
            block_timestamp=now, transaction_hash=secrets.token_bytes(32),
            compute_address=self.compute_address,
            operations=[task_pb2.Operation(log_index=0, operator=TRANSFER, caller=caller,
                                           input_handles=inputs, output_handles=outputs)],
        )  # fmt: skip
        self.tasks += 1
        env_tx = self._ingest(tx, now)
        env_asg, asg_hash = self._lease(env_tx, now)
        assignment, requester, env_req = self._request_operands(env_asg, now)
        by_handle = dict(zip(inputs, stored, strict=True))  # the gateway's store
        self.bound = dict(zip(inputs, bindings, strict=True))
        delegates = self._delegate(env_req, by_handle, now)
        answers = [self._kms_answer(node, env, now) for node, env in delegates]
        env_gop = self._operands_answer(env_req, by_handle, answers, now)
        opened, plain, result, env_sub = self._execute(assignment, env_asg, env_req, env_gop,
                                                       requester, now)  # fmt: skip
        if opened != values:
            raise RuntimeError("the floor decrypted other operands than were encrypted")
        env_ack, env_store = self._submit(env_sub, asg_hash, env_asg, now)
        self._submitted(env_ack, env_sub, now)
        self._stored(self._store(env_store, now), env_store, now)
        return TaskRecord(inputs, values, opened, list(result.outputs.ciphertexts), plain)

    def _input_binding(self, handle: bytes, ct: Ciphertext) -> Binding:
        """The gateway's binding of an operand as EncryptInput stored it (before the task;
        its value tag stands for the real one, which the floor never checks)."""
        row = BoundRow(handle, ct.ephemeral_public_key, ct.nonce, ct.ciphertext, bytes(32),
                       bytes(32))  # fmt: skip
        signature = self.gateway.sign_digest(bindings_digest(self.domain, b"", row.leaf()))
        return Binding(ciphertext_hash(ct.nonce, ct.ciphertext),
                       tag_commitment(bytes(32), bytes(32)), b"", (), signature)  # fmt: skip

    def _ingest(self, tx: task_pb2.TransactionMessage, now: int) -> SignedEnvelope:
        """Ingestor: sign the transaction's message for JetStream."""
        with self.timed(SIGN):
            return self._sign(self.ingestor, tx, self.compute_address, now, ttl=TX_TTL)

    def _lease(self, env_tx: SignedEnvelope, now: int) -> tuple[SignedEnvelope, bytes]:
        """Orchestrator: verify the queued message, derive the task id, sign the assignment."""
        with self.timed(VERIFY):
            tx = self._verify(env_tx, task_pb2.TransactionMessage, self.compute_address,
                              INGESTOR, now, max_ttl=TX_MAX_TTL).message  # fmt: skip
        with self.timed(BIND):
            task_id = keccak256(f"{tx.chain_id}:0x{tx.transaction_hash.hex()}".encode())
        op = tx.operations[0]
        assignment = task_pb2.TaskAssignment(
            task_id=task_id, transaction=env_tx, input_handles=op.input_handles,
            output_handles=op.output_handles, runner_address=self.runner.address,
            assigned_at=now, lease_expires_at=now + TTL, attempt=1, redundancy=1,
            limits=task_pb2.TaskLimits(max_operations=64, max_input_handles=256,
                                       max_output_handles=256, max_ciphertext_bytes=4096,
                                       max_execution_seconds=60),
        )  # fmt: skip
        with self.timed(SIGN):
            env_asg = self._sign(self.orchestrator, assignment, self.runner.address, now)
        with self.timed(BIND):
            return env_asg, keccak256(env_asg.payload)

    def _request_operands(
        self, env_asg: SignedEnvelope, now: int
    ) -> tuple[task_pb2.TaskAssignment, RequesterKey, SignedEnvelope]:
        """Runner: verify the assignment, make the per-task key, sign GetOperands."""
        with self.timed(VERIFY):
            assignment = self._verify(env_asg, task_pb2.TaskAssignment, self.runner.address,
                                      ORCHESTRATOR, now).message  # fmt: skip
        with self.timed(REQUESTER_KEY):
            requester = RequesterKey.generate_secp256k1()
        payload = gateway_pb2.GetOperandsPayload(
            task_id=assignment.task_id,
            assignment=env_asg,
            handles=assignment.input_handles,
            requester_key=requester_key_to_proto(requester.public),
        )
        with self.timed(SIGN):
            env_req = self._sign(self.runner, payload, self.gateway.address, now)
        return assignment, requester, env_req

    def _delegate(
        self, env_req: SignedEnvelope, stored: dict[bytes, Ciphertext], now: int
    ) -> list[tuple[int, SignedEnvelope]]:
        """Gateway: verify GetOperands, sign a Delegate request for each of the t nodes."""
        with self.timed(VERIFY):
            request = self._verify(env_req, gateway_pb2.GetOperandsPayload, self.gateway.address,
                                   RUNNER, now, self.replay["gateway"]).message  # fmt: skip
        payload = kms_pb2.DelegatePayload(
            epoch=self.public.epoch, requester_key=request.requester_key, runner_request=env_req,
            targets=[kms_pb2.DelegationTarget(handle=h,
                                              ephemeral_public_key=stored[h].ephemeral_public_key,
                                              binding=binding_to_proto(self.bound[h]))
                     for h in request.handles],
        )  # fmt: skip
        chosen = [(self.tasks + i) % NODES for i in range(THRESHOLD)]  # rotating, as the gateway
        with self.timed(SIGN, THRESHOLD):
            return [(n, self._sign(self.gateway, payload, self.kms_keys[n].address, now))
                    for n in chosen]  # fmt: skip

    def _kms_answer(self, node: int, env: SignedEnvelope, now: int) -> SignedEnvelope:
        """KMS node `node` (0-based): verify the request and the two credentials inside it;
        per target a partial and its proof, sealed to the requester; sign the answer."""
        with self.timed(VERIFY, 3):
            outer = self._verify(env, kms_pb2.DelegatePayload, self.kms_keys[node].address,
                                 GATEWAY, now, self.kms_replay[node])  # fmt: skip
            runner = self._verify(outer.message.runner_request, gateway_pb2.GetOperandsPayload,
                                  outer.signer, RUNNER, now)  # fmt: skip
            assignment = self._verify(runner.message.assignment, task_pb2.TaskAssignment,
                                      runner.signer, ORCHESTRATOR, now).message  # fmt: skip
        payload = outer.message
        if (
            assignment.runner_address != runner.signer
            or assignment.task_id != runner.message.task_id
            or payload.requester_key != runner.message.requester_key
            or not {t.handle for t in payload.targets} <= set(assignment.input_handles)
        ):
            raise RuntimeError("the delegation request is not authorized")
        with self.timed(VERIFY_BINDING, len(payload.targets)):
            self.kms_bindings[node].verify(
                [(bytes(t.handle), bytes(t.ephemeral_public_key), binding_from_proto(t.binding))
                 for t in payload.targets], now=now)  # fmt: skip
        with self.timed(BIND):
            request_hash = keccak256(env.payload)
        context = delegation_context(epoch=self.public.epoch, request_id=request_hash)
        share = self.dealing.shares[node]
        public_share = self.public.public_share(share.index)
        bases = [bytes(t.ephemeral_public_key) for t in payload.targets]
        with self.timed(PARTIAL, len(bases)):
            partials = [make_partial(share, k, context=context, public_share=public_share)
                        for k in bases]  # fmt: skip
        with self.timed(SEAL, len(bases)):
            key = requester_key_from_proto(payload.requester_key)  # parses the point once
            sealed = [seal_partial(key, p.point, node_index=share.index, base=k)
                      for p, k in zip(partials, bases, strict=True)]  # fmt: skip
        answer = kms_pb2.DelegateResponsePayload(
            request_hash=request_hash, node_index=share.index, epoch=self.public.epoch,
            delegations=[kms_pb2.Delegation(handle=t.handle, ephemeral_public_key=k,
                                            encrypted_partial=sealed_to_proto(key.kind, s),
                                            proof=proof_to_proto(p.proof))
                         for t, k, s, p in zip(payload.targets, bases, sealed, partials,
                                               strict=True)],
        )  # fmt: skip
        with self.timed(SIGN):
            return self._sign(self.kms_keys[node], answer, outer.signer, now)

    def _operands_answer(
        self, env_req: SignedEnvelope, stored: dict[bytes, Ciphertext],
        answers: list[SignedEnvelope], now: int,
    ) -> SignedEnvelope:  # fmt: skip
        """Gateway: the ciphertexts and the KMS answers (relayed unchanged), signed."""
        with self.timed(BIND):
            request_hash = keccak256(env_req.payload)
        payload = gateway_pb2.GetOperandsResponsePayload(
            request_hash=request_hash, kms_delegations=answers, kms_threshold=THRESHOLD,
            kms_epoch=self.public.epoch,
            operands=[common_pb2.TypedCiphertext(handle=h, ciphertext=c.ciphertext, nonce=c.nonce,
                                                 ephemeral_public_key=c.ephemeral_public_key)
                      for h, c in stored.items()],
        )  # fmt: skip
        with self.timed(SIGN):
            return self._sign(self.gateway, payload, self.runner.address, now)

    def _execute(
        self, assignment: task_pb2.TaskAssignment, env_asg: SignedEnvelope,
        env_req: SignedEnvelope, env_gop: SignedEnvelope, requester: RequesterKey, now: int,
    ) -> tuple[list[bytes], list[bytes], task_pb2.TaskResult, SignedEnvelope]:  # fmt: skip
        """Runner: verify the answer and the KMS answers in it; open, check, combine and
        decrypt; transfer; encrypt and tag the outputs; sign the result."""
        with self.timed(VERIFY, 1 + THRESHOLD):
            answer = self._verify(env_gop, gateway_pb2.GetOperandsResponsePayload,
                                  self.runner.address, GATEWAY, now, self.replay["runner"],
                                  signer=self.gateway.address).message  # fmt: skip
            kms = [self._verify(e, kms_pb2.DelegateResponsePayload, self.gateway.address, KMS,
                                now).message for e in answer.kms_delegations]  # fmt: skip
        with self.timed(BIND):
            if answer.request_hash != keccak256(env_req.payload):
                raise RuntimeError("the gateway answered another request")
        cts = [(bytes(o.handle), Ciphertext(o.ciphertext, o.ephemeral_public_key, o.nonce))
               for o in answer.operands]  # fmt: skip
        if len(kms) != THRESHOLD or any(len(k.delegations) != len(cts) for k in kms):
            raise RuntimeError("the KMS answers do not cover the operands")
        # per operand, per node: (node index, sealed D_i, proof, the node's DLEQ context)
        secp = RequesterKeyKind.SECP256K1
        slots = [[(k.node_index, sealed_from_proto(secp, k.delegations[j].encrypted_partial),
                   proof_from_proto(k.delegations[j].proof),
                   delegation_context(epoch=k.epoch, request_id=k.request_hash)) for k in kms]
                 for j in range(len(cts))]  # fmt: skip
        with self.timed(OPEN, THRESHOLD * len(cts)):
            points = [[requester.open(s, node_index=i, base=ct.ephemeral_public_key)
                       for i, s, _, _ in slot]
                      for slot, (_, ct) in zip(slots, cts, strict=True)]  # fmt: skip
        with self.timed(CHECK_PROOF, THRESHOLD * len(cts)):
            for slot, pts, (_, ct) in zip(slots, points, cts, strict=True):
                for (i, _, proof, ctx), d in zip(slot, pts, strict=True):
                    verify_partial(self.public, ct.ephemeral_public_key,
                                   PartialDecryption(i, d, proof, ctx), context=ctx)  # fmt: skip
        with self.timed(COMBINE, len(cts)):
            shared = [combine_points({s[0]: d for s, d in zip(slot, pts, strict=True)})
                      for slot, pts in zip(slots, points, strict=True)]  # fmt: skip
        with self.timed(DECRYPT, len(cts)):
            opened = [decrypt_with_shared_point(s, ct, h)
                      for s, (h, ct) in zip(shared, cts, strict=True)]  # fmt: skip
        op = Op.from_event(TRANSFER, [h for h, _ in cts], assignment.output_handles)
        values = {
            h: Value.from_plaintext(EUINT256, v) for (h, _), v in zip(cts, opened, strict=True)
        }
        plain = [(h, v.to_plaintext()) for h, v in run_ops([op], values).items()]
        with self.timed(ENCRYPT, len(plain)):
            made = [encrypt_keeping_scalar(self.public.public_key, p, h) for h, p in plain]
        out = [c for c, _ in made]
        with self.timed(PROVE_KEY, len(plain)):
            key_proofs = [prove_key(self.domain, h, k)
                          for (h, _), (_, k) in zip(plain, made, strict=True)]  # fmt: skip
        with self.timed(TAG, len(plain)):
            tags = [value_tag(self.tag_key, h, p) for h, p in plain]
        salts = [os.urandom(32) for _ in plain]
        with self.timed(SIGN_BINDING):
            signature = sign_bindings(
                self.runner, self.domain, assignment.task_id,
                [BoundRow(h, c.ephemeral_public_key, c.nonce, c.ciphertext, t, salt)
                 for (h, _), c, t, salt in zip(plain, out, tags, salts, strict=True)],
            )[0].signature  # fmt: skip
        with self.timed(BIND):
            asg_hash = keccak256(env_asg.payload)
        result = task_pb2.TaskResult(
            task_id=assignment.task_id, assignment_hash=asg_hash,
            outputs=task_pb2.TaskOutputs(binding_signature=signature, ciphertexts=[
                common_pb2.TypedCiphertext(handle=h, ciphertext=c.ciphertext, nonce=c.nonce,
                                           ephemeral_public_key=c.ephemeral_public_key,
                                           value_tag=t, value_tag_salt=salt,
                                           ephemeral_key_proof=kp)
                for (h, _), c, t, salt, kp in zip(plain, out, tags, salts, key_proofs,
                                                  strict=True)]),
        )  # fmt: skip
        with self.timed(SIGN):
            env_sub = self._sign(self.runner, orchestrator_pb2.SubmitResultPayload(result=result),
                                 self.orchestrator.address, now)  # fmt: skip
        return opened, [p for _, p in plain], result, env_sub

    def _submit(
        self, env_sub: SignedEnvelope, asg_hash: bytes, env_asg: SignedEnvelope, now: int
    ) -> tuple[SignedEnvelope, SignedEnvelope]:
        """Orchestrator: verify the result, answer it, sign StoreResults for the gateway."""
        with self.timed(VERIFY):
            result = self._verify(env_sub, orchestrator_pb2.SubmitResultPayload,
                                  self.orchestrator.address, RUNNER, now,
                                  self.replay["orchestrator"]).message.result  # fmt: skip
        if result.assignment_hash != asg_hash or len(result.outputs.ciphertexts) != OUTPUTS:
            raise RuntimeError("the result does not answer the assignment")
        with self.timed(BIND):
            request_hash = keccak256(env_sub.payload)
        ack = orchestrator_pb2.SubmitResultResponsePayload(
            request_hash=request_hash, task_id=result.task_id, state=task_pb2.TASK_STATE_SUBMITTED
        )
        execution = gateway_pb2.SignedExecution(assignment=env_asg, result=env_sub)
        store = gateway_pb2.StoreResultsPayload(task_id=result.task_id, executions=[execution])
        with self.timed(SIGN, 2):
            return (self._sign(self.orchestrator, ack, self.runner.address, now),
                    self._sign(self.orchestrator, store, self.gateway.address, now))  # fmt: skip

    def _submitted(self, env_ack: SignedEnvelope, env_sub: SignedEnvelope, now: int) -> None:
        """Runner: verify the orchestrator's answer to its SubmitResult."""
        with self.timed(VERIFY):
            ack = self._verify(env_ack, orchestrator_pb2.SubmitResultResponsePayload,
                               self.runner.address, ORCHESTRATOR, now, self.replay["runner"],
                               signer=self.orchestrator.address).message  # fmt: skip
        with self.timed(BIND):
            if ack.request_hash != keccak256(env_sub.payload):
                raise RuntimeError("the orchestrator answered another request")

    def _store(self, env_store: SignedEnvelope, now: int) -> SignedEnvelope:
        """Gateway: verify StoreResults, store the outputs, sign the answer."""
        with self.timed(VERIFY):
            payload = self._verify(env_store, gateway_pb2.StoreResultsPayload,
                                   self.gateway.address, ORCHESTRATOR, now,
                                   self.replay["gateway"]).message  # fmt: skip
        # the orchestrator's signature covers both credentials inside (module docstring)
        execution = payload.executions[0]
        result = orchestrator_pb2.SubmitResultPayload.FromString(execution.result.payload).result
        handles = task_pb2.TaskAssignment.FromString(execution.assignment.payload).output_handles
        if [c.handle for c in result.outputs.ciphertexts] != list(handles):
            raise RuntimeError("the outputs are not the assignment's")
        runner = task_pb2.TaskAssignment.FromString(execution.assignment.payload).runner_address
        with self.timed(VERIFY_BINDING):
            rows = [BoundRow(c.handle, c.ephemeral_public_key, c.nonce, c.ciphertext, c.value_tag,
                             c.value_tag_salt) for c in result.outputs.ciphertexts]  # fmt: skip
            digest = bindings_digest(
                self.domain, result.task_id, merkle_root([row.leaf() for row in rows])
            )
            if recover_address(digest, result.outputs.binding_signature) != runner:
                raise RuntimeError("the outputs are not bound by their runner")
        with self.timed(VERIFY_KEY, len(rows)):
            if not all(verify_key_proof(self.domain, c.handle, c.ephemeral_public_key,
                                        c.ephemeral_key_proof)
                       for c in result.outputs.ciphertexts):  # fmt: skip
                raise RuntimeError("an output's key proof does not verify")
        with self.timed(BIND):
            request_hash = keccak256(env_store.payload)
        created = gateway_pb2.STORE_OUTCOME_CREATED
        answer = gateway_pb2.StoreResultsResponsePayload(
            request_hash=request_hash, task_id=payload.task_id,
            stored_handles=[gateway_pb2.StoredHandle(handle=h, outcome=created) for h in handles],
        )  # fmt: skip
        with self.timed(SIGN):
            return self._sign(self.gateway, answer, self.orchestrator.address, now)

    def _stored(self, env_stored: SignedEnvelope, env_store: SignedEnvelope, now: int) -> None:
        """Orchestrator: verify the gateway's answer (then it acknowledges the message)."""
        with self.timed(VERIFY):
            answer = self._verify(env_stored, gateway_pb2.StoreResultsResponsePayload,
                                  self.orchestrator.address, GATEWAY, now,
                                  self.replay["orchestrator"],
                                  signer=self.gateway.address).message  # fmt: skip
        with self.timed(BIND):
            if answer.request_hash != keccak256(env_store.payload):
                raise RuntimeError("the gateway answered another request")


def measure_floor(seconds: float = 3.0, *, pin_core: bool = True) -> FloorResult:
    """Run floor tasks back to back for about `seconds` of CPU (at least 3, after a warm-up
    task), the calling thread pinned to one core unless `pin_core` is False (its affinity is
    restored afterwards). Raises if a task fails or the counts stray from the table."""
    previous = os.sched_getaffinity(0) if pin_core and hasattr(os, "sched_setaffinity") else None
    if previous is not None:
        os.sched_setaffinity(0, {min(previous)})
    try:
        floor = _Floor()
        floor.task()  # warm-up: first-use imports, OpenSSL and libsecp256k1 contexts
        floor.reset()
        start = time.process_time()
        while floor.tasks < 3 or time.process_time() - start < seconds:
            floor.task()
    finally:
        if previous is not None:
            os.sched_setaffinity(0, previous)
    floor.check_counts()
    spent = sum(floor.times.values())
    return FloorResult(
        tasks=floor.tasks,
        seconds=spent,
        tasks_per_s=floor.tasks / spent,
        ms_per_task=spent * 1000 / floor.tasks,
        breakdown_ms={name: floor.times[name] * 1000 / floor.tasks for name, _, _ in _OPERATIONS},
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="CPU seconds to run")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    result = measure_floor(args.seconds)
    if args.json:
        figures = asdict(result)
        figures["operations"] = [
            {"operation": name, "per_task": count, "who": who}
            for name, count, who in floor_operations()
        ]
        print(json.dumps(figures))
        return 0
    print(f"{'operation':<34} {'/task':>5} {'ms/task':>8}  who")
    for name, count, who in floor_operations():
        print(f"{name:<34} {count:>5} {result.breakdown_ms[name]:>8.3f}  {who}")
    print(
        f"crypto floor: {result.tasks_per_s:.1f} transfers/s on one core, "
        f"{result.ms_per_task:.3f} ms each ({result.tasks} tasks, {result.seconds:.2f} s CPU)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
