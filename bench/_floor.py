"""The crypto floor: the least cryptography one confidential transfer needs, back to back.

One transfer is one task of one `transfer` operation: 3 input handles (amount, balanceFrom,
balanceTo), 3 output handles, a 2-of-3 KMS, every message signed (DESIGN §4, §6, §8). The
floor counts each signature once and each verification once, by the one receiver that must
make it; claims and heartbeats (amortized over many tasks) are left out, and so are the
gateway's own checks of KMS answers (the requester must check them; the gateway may, to name
a liar early, but that is a choice, not a need).

Per task (`floor_operations()` returns this table):
- sign an envelope, 11: ingestor (transaction); orchestrator (assignment, StoreResults
  request); runner (operand request, result); gateway (2 KMS requests, GetOperands and
  StoreResults answers); KMS nodes (2 answers);
- verify an envelope (recover, registry role, window, replay), 18: orchestrator
  (transaction, result, gateway answer); runner (assignment, the transaction inside it,
  gateway answer, 2 KMS answers); gateway (operand request, assignment, StoreResults
  request, the result inside it); KMS nodes (gateway request, runner request, assignment:
  3 each, 2 nodes);
- a per-task requester key (secp256k1), 1: runner;
- a partial `D_i = x_i·K` with its DLEQ proof, sealed to the requester, 6: 2 KMS nodes ×
  3 operands;
- open a sealed partial and verify its proof, 6, and combine t = 2 partials, 3: runner;
- AES-GCM decrypt an operand, 3: runner;
- ECIES encrypt a result to `PK` bound to its handle, with its value tag, 3: runner.

Everything runs through the project's own functions (`nox.crypto`), on real protobuf
payloads, with fresh random keys per task where the protocol has them, and checks itself:
the operands decrypt to what was encrypted.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nox.crypto.delegation import (
    RequesterKey,
    SealedPartial,
    combine_partials,
    delegation_context,
    make_sealed_partial,
)
from nox.crypto.ecies import Ciphertext, decrypt_with_shared_point, encrypt
from nox.crypto.eip712 import Domain
from nox.crypto.envelope import sign_envelope, verify_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache
from nox.crypto.threshold import Dealing, deal
from nox.v1 import task_pb2

SIGNS, VERIFIES, OPERANDS, OUTPUTS, THRESHOLD, NODES = 11, 18, 3, 3, 2, 3


def floor_operations() -> list[tuple[str, int, str]]:
    """(operation, count per task, who): the table of the module docstring."""
    return [
        ("sign envelope", SIGNS, "ingestor, orchestrator, runner, gateway, KMS nodes"),
        ("verify envelope", VERIFIES, "orchestrator, runner, gateway, KMS nodes"),
        ("requester key", 1, "runner"),
        ("partial + DLEQ proof", THRESHOLD * OPERANDS, "KMS nodes"),
        ("seal partial", THRESHOLD * OPERANDS, "KMS nodes"),
        ("open partial + verify DLEQ + combine", THRESHOLD * OPERANDS, "runner"),
        ("AES-GCM decrypt operand", OPERANDS, "runner"),
        ("ECIES encrypt result", OUTPUTS, "runner"),
        ("value tag", OUTPUTS, "runner"),
    ]


@dataclass(frozen=True)
class FloorResult:
    """What `measure_floor` measured."""

    tasks: int
    seconds: float
    tasks_per_s: float
    ms_per_task: float
    breakdown_ms: dict[str, float]
    """CPU per task by operation kind (ms), summing to about `ms_per_task`."""


class _Floor:
    """Keys and a realistic transaction, made once; `task()` does one task's cryptography."""

    def __init__(self) -> None:
        self.dealing: Dealing = deal(THRESHOLD, NODES)
        self.domain = Domain(chain_id=31337, verifying_contract=os.urandom(20))
        self.keys = {role: EnclaveKey.generate() for role in ("ingestor", "orch", "runner", "gw")}
        self.kms = [EnclaveKey.generate() for _ in range(NODES)]
        registered = {k.address for k in [*self.keys.values(), *self.kms]}

        def authorize(signer: bytes) -> None:  # a registry lookup (cached view)
            if signer not in registered:
                raise PermissionError("unregistered signer")

        self.authorize: Callable[[bytes], None] = authorize
        self.replay = MemoryReplayCache()
        handles = [os.urandom(26) + (31337).to_bytes(4, "big") + bytes([11, 0]) for _ in range(6)]
        self.inputs, self.outputs = handles[:3], handles[3:]
        self.tx = task_pb2.TransactionMessage(
            chain_id=31337, block_number=1, block_hash=os.urandom(32), block_timestamp=1,
            transaction_hash=os.urandom(32), compute_address=os.urandom(20),
            operations=[task_pb2.Operation(
                log_index=0, operator=24, caller=os.urandom(20),
                input_handles=self.inputs, output_handles=self.outputs,
            )],
        )  # fmt: skip
        self.times: dict[str, float] = defaultdict(float)
        # the operands as the gateway stores them (encrypted to PK, bound to their handles):
        # made by EncryptInput or an earlier task, not by this one
        self.values = [secrets.token_bytes(8) for _ in range(OPERANDS)]
        self.stored = [
            encrypt(self.dealing.public.public_key, v, h)
            for v, h in zip(self.values, self.inputs, strict=True)
        ]

    @contextmanager
    def timed(self, kind: str) -> Iterator[None]:
        start = time.process_time()
        yield
        self.times[kind] += time.process_time() - start

    def task(self) -> None:
        now = int(time.time())
        public = self.dealing.public
        values, stored = self.values, self.stored
        with self.timed("sign envelope"):
            envs = [
                sign_envelope(self.keys["ingestor"], self.tx, domain=self.domain,
                              audience=self.kms[i % NODES].address, now=now)
                for i in range(SIGNS)
            ]  # fmt: skip
        with self.timed("verify envelope"):
            for i in range(VERIFIES):
                # a receiver's own replay cache sees each envelope once: a fresh one per lap
                if i % SIGNS == 0:
                    self.replay = MemoryReplayCache()
                env = envs[i % SIGNS]
                verify_envelope(
                    env, task_pb2.TransactionMessage, domain=self.domain,
                    audience=env.audience, now=now, replay=self.replay, authorize=self.authorize,
                )  # fmt: skip
        with self.timed("requester key"):
            requester = RequesterKey.generate_secp256k1()
        context = delegation_context(epoch=public.epoch, request_id=keccak256(envs[0].payload))
        answers: list[list[SealedPartial]] = [[] for _ in range(OPERANDS)]
        with self.timed("KMS: partial, DLEQ proof, seal"):
            for share in self.dealing.shares[:THRESHOLD]:
                for slot, ct in zip(answers, stored, strict=True):
                    slot.append(
                        make_sealed_partial(
                            share, ct.ephemeral_public_key, requester.public,
                            context=context, public_share=public.public_shares[share.index - 1],
                        )
                    )  # fmt: skip
        with self.timed("runner: open, verify DLEQ, combine"):
            shared = [
                combine_partials(
                    public, ct.ephemeral_public_key, slot, context=context,
                    requester_key=requester, stop_at_threshold=True,
                ).shared_point
                for slot, ct in zip(answers, stored, strict=True)
            ]  # fmt: skip
        with self.timed("AES-GCM decrypt operand"):
            opened = [
                decrypt_with_shared_point(s, ct, h)
                for s, ct, h in zip(shared, stored, self.inputs, strict=True)
            ]
        if opened != values:
            raise AssertionError("the floor decrypted wrong values")
        with self.timed("ECIES encrypt result + value tag"):
            for v, h in zip(values, self.outputs, strict=True):
                result: Ciphertext = encrypt(public.public_key, v, h)
                keccak256(h, v)
            del result


def measure_floor(seconds: float = 3.0, *, pin_core: bool = True) -> FloorResult:
    """Run the floor back to back for about `seconds` of CPU, pinned to one core."""
    previous = os.sched_getaffinity(0) if pin_core and hasattr(os, "sched_getaffinity") else None
    if previous is not None:
        os.sched_setaffinity(0, {min(previous)})
    try:
        floor = _Floor()
        floor.task()  # warm caches (precomputed tables, first-use imports)
        floor.times.clear()
        tasks, start = 0, time.process_time()
        while time.process_time() - start < seconds or tasks < 3:
            floor.task()
            tasks += 1
        spent = time.process_time() - start
    finally:
        if previous is not None:
            os.sched_setaffinity(0, previous)
    return FloorResult(
        tasks=tasks,
        seconds=spent,
        tasks_per_s=tasks / spent,
        ms_per_task=spent * 1000 / tasks,
        breakdown_ms={k: v * 1000 / tasks for k, v in floor.times.items()},
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="CPU seconds to run")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    result = measure_floor(args.seconds)
    if args.json:
        print(json.dumps(result.__dict__))
        return 0
    for name, count, who in floor_operations():
        print(f"{count:>3}  {name:<40} {who}")
    print(
        f"floor: {result.tasks_per_s:.1f} transfers/s on one core, {result.ms_per_task:.2f} ms each"
    )
    for kind, ms in result.breakdown_ms.items():
        print(f"  {kind:<40} {ms:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
