"""The task executor with real crypto: ECIES, a real 2-of-3 threshold key, real KMS nodes
with DLEQ proofs, real envelopes. Registry and gateway are doubles (runner_support)."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from runner_support import (
    ADD,
    DOMAIN,
    GATEWAY,
    KMS_SECRET,
    NOW,
    TRANSFER,
    WIDE_LIMITS,
    Deployment,
    assign,
    kms_decrypt,
    make_deployment,
    operation,
    outputs_of,
    serve_operands,
    transaction,
    transfer_task,
)
from tagkeys import tag_key_from_secret

from nox.compute import Operator, Value, execute
from nox.crypto.envelope import verify_envelope
from nox.crypto.exceptions import WrongAudience
from nox.crypto.hashing import keccak256
from nox.crypto.replay import MemoryReplayCache
from nox.errors import PermissionDenied
from nox.handles import BOOL, uint, value_tag
from nox.runner.exceptions import LeaseExpired
from nox.runner.executor import RunnerLimits, TaskExecutor, TaskOutcome
from nox.v1 import gateway_pb2, orchestrator_pb2, task_pb2
from nox.v1.envelope_pb2 import SignedEnvelope

Fetch = Callable[[gateway_pb2.GetOperandsRequest], gateway_pb2.GetOperandsResponse]


@pytest.fixture(scope="module")
def dep() -> Deployment:
    return make_deployment()


def _run(
    dep: Deployment, env: SignedEnvelope, *, executor: TaskExecutor | None = None, **serve: object
) -> TaskOutcome:
    executor = executor or dep.executor()
    assignment = executor.open_assignment(env, now=NOW)

    def fetch(request: gateway_pb2.GetOperandsRequest) -> gateway_pb2.GetOperandsResponse:
        return serve_operands(dep, request, **serve)  # type: ignore[arg-type]

    return executor.run_task(assignment, fetch, gateway=dep.gateway.address, clock=lambda: NOW)


TAG_KEY = tag_key_from_secret(KMS_SECRET, DOMAIN)


def _decrypted(outcome: TaskOutcome) -> list[int]:
    assert outcome.result.WhichOneof("outcome") == "outputs", outcome.result.failure
    values = []
    for ct in outcome.result.outputs.ciphertexts:
        plaintext = kms_decrypt(ct, ct.handle)
        assert ct.value_tag == value_tag(TAG_KEY, ct.handle, plaintext)
        assert ct.value_tag != keccak256(ct.handle, plaintext)  # keyed, not guessable
        values.append(int.from_bytes(plaintext, "big"))
    return values


def _failure(outcome: TaskOutcome) -> task_pb2.TaskFailure:
    assert outcome.result.WhichOneof("outcome") == "failure"
    assert not outcome.result.outputs.ciphertexts  # never a partial result
    return outcome.result.failure


# ---------------------------------------------------------------------- success


@pytest.mark.parametrize(
    ("amount", "balance_from", "balance_to"),
    [(30, 100, 5), (500, 100, 5), (10, 100, 2**64 - 4)],  # plain, capped by balance, by MAX
)
def test_confidential_transfer(
    dep: Deployment, amount: int, balance_from: int, balance_to: int
) -> None:
    tx, _ = transfer_task(dep, amount, balance_from, balance_to)
    env = assign(dep, tx)
    outcome = _run(dep, env)
    vt = uint(64)
    expected = execute(
        Operator.TRANSFER, [Value.of(vt, v) for v in (amount, balance_from, balance_to)]
    )
    moved = min(amount, balance_from, 2**64 - 1 - balance_to)
    assert _decrypted(outcome) == [v.value for v in expected]
    assert _decrypted(outcome) == [balance_from - moved, balance_to + moved, moved]
    result = outcome.result
    assert [c.handle for c in result.outputs.ciphertexts] == list(tx.operations[0].output_handles)
    assert result.task_id == task_pb2.TaskAssignment.FromString(env.payload).task_id
    assert result.assignment_hash == keccak256(env.payload)
    assert outcome.bad_kms_nodes == ()
    assert outcome.timings.crypto > 0
    assert outcome.timings.compute > 0


def test_outputs_of_earlier_ops_feed_later_ops_without_a_fetch(dep: Deployment) -> None:
    vt = uint(32)
    inputs = [dep.store_input(vt, v) for v in (7, 50, 1)]
    transfer_out = outputs_of(TRANSFER, inputs, [vt, vt, vt])
    add_out = outputs_of(ADD, [transfer_out[1], transfer_out[2]], [vt])
    p2e_out = outputs_of(Operator.PLAINTEXT_TO_ENCRYPTED, [(1).to_bytes(32, "big")], [BOOL])
    tx = transaction(
        [
            operation(1, TRANSFER, inputs, transfer_out),
            operation(2, ADD, [transfer_out[1], transfer_out[2]], add_out),
            operation(3, Operator.PLAINTEXT_TO_ENCRYPTED, [], p2e_out, b"\x01"),
        ]
    )
    env = assign(dep, tx)
    assert list(task_pb2.TaskAssignment.FromString(env.payload).input_handles) == inputs
    assert _decrypted(_run(dep, env)) == [43, 8, 7, 15, 1]


def test_submit_request_is_signed_by_the_runner_for_the_orchestrator(dep: Deployment) -> None:
    tx, _ = transfer_task(dep, 1, 2, 3)
    executor = dep.executor()
    outcome = _run(dep, assign(dep, tx), executor=executor)
    request = executor.submit_request(
        outcome.result, orchestrator=dep.orchestrator.address, now=NOW
    )
    verified = verify_envelope(
        request.envelope,
        orchestrator_pb2.SubmitResultPayload,
        domain=DOMAIN,
        audience=dep.orchestrator.address,
        now=NOW,
        replay=MemoryReplayCache(),
    )
    assert verified.signer == dep.runner.address
    assert verified.message.result == outcome.result


# ---------------------------------------------------------------------- KMS nodes that lie


def test_one_lying_kms_node_is_named_and_t_honest_nodes_suffice(dep: Deployment) -> None:
    tx, _ = transfer_task(dep, 30, 100, 5)
    outcome = _run(dep, assign(dep, tx), lying=[0])
    assert _decrypted(outcome) == [70, 35, 30]
    assert outcome.bad_kms_nodes == (1,)  # node index 1 is the first node (0-based 0)


def test_fewer_than_t_honest_kms_nodes_fail_the_task(dep: Deployment) -> None:
    tx, _ = transfer_task(dep, 30, 100, 5)
    failure = _failure(_run(dep, assign(dep, tx), lying=[0, 2]))
    assert failure.reason == "KMS_QUORUM_NOT_REACHED"
    assert failure.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert failure.retryable  # the orchestrator runs it again rather than parking it
    assert not failure.HasField("operation_index")


def test_a_single_honest_node_is_not_enough(dep: Deployment) -> None:
    tx, _ = transfer_task(dep, 30, 100, 5)
    assert _failure(_run(dep, assign(dep, tx), nodes=[1])).reason == "KMS_QUORUM_NOT_REACHED"


# ---------------------------------------------------------------------- failures


def test_tampered_operand_fails_with_binding_invalid(dep: Deployment) -> None:
    """A ciphertext altered on the way no longer matches its producer binding: the runner
    refuses it before any decryption."""
    tx, _ = transfer_task(dep, 30, 100, 5)

    def flip(payload: gateway_pb2.GetOperandsResponsePayload) -> None:
        body = bytearray(payload.operands[1].ciphertext)
        body[0] ^= 1
        payload.operands[1].ciphertext = bytes(body)

    failure = _failure(_run(dep, assign(dep, tx), tamper=flip))
    assert failure.reason == "BINDING_INVALID"
    assert failure.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert not failure.retryable


def test_operand_moved_to_another_handle_fails(dep: Deployment) -> None:
    tx, inputs = transfer_task(dep, 30, 100, 5)
    # The storage swaps two operands' ciphertexts (same type): the handle is the AAD.
    dep.store[inputs[1]], dep.store[inputs[2]] = dep.store[inputs[2]], dep.store[inputs[1]]
    # With each binding moved along, the KMS nodes refuse (K is bound to the other handle)...
    dep.bindings[inputs[1]], dep.bindings[inputs[2]] = (
        dep.bindings[inputs[2]],
        dep.bindings[inputs[1]],
    )
    assert _failure(_run(dep, assign(dep, tx))).reason == "BINDING_INVALID"
    # ... and with the bindings left in place, K does not match them: refused as well.
    dep.bindings[inputs[1]], dep.bindings[inputs[2]] = (
        dep.bindings[inputs[2]],
        dep.bindings[inputs[1]],
    )
    assert _failure(_run(dep, assign(dep, tx))).reason == "BINDING_INVALID"


def test_mismatched_types_fail_with_type_mismatch(dep: Deployment) -> None:
    amount = dep.store_input(uint(32), 5)
    balances = [dep.store_input(uint(64), v) for v in (100, 5)]
    inputs = [amount, *balances]
    outs = outputs_of(TRANSFER, inputs, [uint(64)] * 3)
    tx = transaction([operation(4, TRANSFER, inputs, outs)])
    failure = _failure(_run(dep, assign(dep, tx)))
    assert failure.reason == "TYPE_MISMATCH"
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert failure.operation_index == 0


def test_output_handle_of_the_wrong_type_fails(dep: Deployment) -> None:
    vt = uint(16)
    inputs = [dep.store_input(vt, v) for v in (1, 2)]
    outs = outputs_of(ADD, inputs, [uint(32)])  # add of uint16 yields uint16
    failure = _failure(_run(dep, assign(dep, transaction([operation(0, ADD, inputs, outs)]))))
    assert failure.reason == "TYPE_MISMATCH"


@pytest.mark.parametrize(
    ("declared", "local", "limit"),
    [
        ({"max_operations": 0}, {}, "max_operations"),
        ({"max_input_handles": 2}, {}, "max_input_handles"),
        ({"max_output_handles": 2}, {}, "max_output_handles"),
        ({}, {"max_input_handles": 2}, "max_input_handles"),  # the runner's own cap
    ],
)
def test_over_limit_task_fails_with_task_limit_exceeded(
    dep: Deployment, declared: dict[str, int], local: dict[str, int], limit: str
) -> None:
    tx, _ = transfer_task(dep, 30, 100, 5)
    limits = task_pb2.TaskLimits()
    limits.CopyFrom(WIDE_LIMITS)
    for name, value in declared.items():
        setattr(limits, name, value)
    executor = dep.executor(limits=RunnerLimits(**local))
    served: list[object] = []
    outcome = _run(dep, assign(dep, tx, limits=limits), executor=executor, tamper=served.append)
    failure = _failure(outcome)
    assert failure.reason == "TASK_LIMIT_EXCEEDED"
    assert failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert f"({limit})" in failure.message
    assert served == []  # refused before any operand was fetched


def test_oversized_operand_fails_with_task_limit_exceeded(dep: Deployment) -> None:
    tx, _ = transfer_task(dep, 30, 100, 5, vt=uint(256))
    limits = task_pb2.TaskLimits()
    limits.CopyFrom(WIDE_LIMITS)
    limits.max_ciphertext_bytes = 40  # a uint256 ciphertext is 32 + 16 bytes
    failure = _failure(_run(dep, assign(dep, tx, limits=limits)))
    assert failure.reason == "TASK_LIMIT_EXCEEDED"
    assert "(max_ciphertext_bytes)" in failure.message


def test_gateway_answer_to_another_request_is_rejected(dep: Deployment) -> None:
    tx, _ = transfer_task(dep, 30, 100, 5)

    def rebind(payload: gateway_pb2.GetOperandsResponsePayload) -> None:
        payload.request_hash = bytes(32)

    assert _failure(_run(dep, assign(dep, tx), tamper=rebind)).reason == "INVALID_ARGUMENT"


# ---------------------------------------------------------------------- refusals


def test_task_signed_by_a_non_orchestrator_is_refused(dep: Deployment) -> None:
    tx, _ = transfer_task(dep, 30, 100, 5)
    for signer in (dep.gateway, dep.runner):  # registered, but not as orchestrators
        with pytest.raises(PermissionDenied) as info:
            dep.executor().open_assignment(assign(dep, tx, signer=signer), now=NOW)
        assert info.value.reason == "ROLE_MISMATCH"
    stranger = type(dep.orchestrator).generate()
    with pytest.raises(PermissionDenied) as info:
        dep.executor().open_assignment(assign(dep, tx, signer=stranger), now=NOW)
    assert info.value.reason == "SIGNER_NOT_REGISTERED"
    assert dep.registry.roles[dep.gateway.address] == GATEWAY


def test_assignment_for_another_runner_is_refused(dep: Deployment) -> None:
    tx, _ = transfer_task(dep, 30, 100, 5)
    other = type(dep.runner).generate().address
    with pytest.raises(WrongAudience):
        dep.executor().open_assignment(assign(dep, tx, runner=other), now=NOW)


def test_expired_lease_is_refused(dep: Deployment) -> None:
    tx, _ = transfer_task(dep, 30, 100, 5)
    env = assign(dep, tx)
    with pytest.raises(LeaseExpired) as info:
        dep.executor().open_assignment(env, now=NOW + 61)
    assert info.value.reason == "LEASE_EXPIRED"


def test_the_task_key_is_dropped_after_the_task(dep: Deployment) -> None:
    tx, _ = transfer_task(dep, 30, 100, 5)
    executor = dep.executor()
    assignment = executor.open_assignment(assign(dep, tx), now=NOW)
    run = executor.prepare(assignment, now=NOW)
    request = run.operands_request(gateway=dep.gateway.address, now=NOW)
    run.execute(serve_operands(dep, request), now=NOW)
    assert run.holds_key
    run.close()
    assert not run.holds_key
    assert "redacted" in repr(run)


def test_output_handle_not_derived_by_nox_compute_fails(dep: Deployment) -> None:
    vt = uint(64)
    inputs = [dep.store_input(vt, v) for v in (30, 100, 5)]
    outs = outputs_of(TRANSFER, inputs, [vt] * 3)
    outs[2] = outputs_of(TRANSFER, inputs, [vt] * 3, timestamp=NOW)[2]  # another block's
    served: list[object] = []
    outcome = _run(dep, assign(dep, transaction([operation(0, TRANSFER, inputs, outs)])),
                   tamper=served.append)  # fmt: skip
    failure = _failure(outcome)
    assert failure.reason == "OUTPUTS_MISMATCH"
    assert failure.operation_index == 0
    assert served == []


@pytest.mark.parametrize(
    ("max_execution_seconds", "elapsed", "reason"),
    [(30, 31, "TASK_LIMIT_EXCEEDED"), (120, 61, "LEASE_EXPIRED")],  # the lease is 60 s
)
def test_task_past_its_deadline_fails(
    dep: Deployment, max_execution_seconds: int, elapsed: int, reason: str
) -> None:
    """The operands arrive after the task's time (or its lease) ran out."""
    tx, _ = transfer_task(dep, 30, 100, 5)
    limits = task_pb2.TaskLimits()
    limits.CopyFrom(WIDE_LIMITS)
    limits.max_execution_seconds = max_execution_seconds
    executor = dep.executor()
    assignment = executor.open_assignment(assign(dep, tx, limits=limits), now=NOW)
    clock = [NOW]

    def slow_fetch(request: gateway_pb2.GetOperandsRequest) -> gateway_pb2.GetOperandsResponse:
        response = serve_operands(dep, request)
        clock[0] = NOW + elapsed  # the gateway took that long
        return response

    outcome = executor.run_task(
        assignment, slow_fetch, gateway=dep.gateway.address, clock=lambda: clock[0]
    )
    assert _failure(outcome).reason == reason
