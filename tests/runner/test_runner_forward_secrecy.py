"""Forward secrecy, as a test (issue 7).

Every message of a task is recorded (assignment, GetOperands request and answer with the
KMS nodes' responses, SubmitResult). Afterwards an attacker holds the runner's long-term
enclave key, everything the gateway stores and the recording; the operand material must
still not decrypt: the operands are encrypted to the KMS key, the KMS partials are sealed
to the per-task key, and that key is gone. A control run, whose runner is made to keep its
per-task key, shows the same attack then succeeds: the test is not vacuous, and the
per-task key is exactly what the attacker is missing.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field

import pytest
from coincurve import PrivateKey
from runner_support import (
    DOMAIN,
    NOW,
    Deployment,
    assign,
    make_deployment,
    serve_operands,
    transfer_task,
)

from nox.crypto import ecies
from nox.crypto.delegation import RequesterKey, RequesterKeyKind, RequesterPublicKey
from nox.crypto.exceptions import DecryptionFailed
from nox.crypto.threshold_exceptions import InvalidPartial, QuorumNotReached
from nox.kms.client import collect_partials, combine_targets
from nox.v1 import gateway_pb2, kms_pb2, task_pb2
from nox.v1.envelope_pb2 import SignedEnvelope


@dataclass
class Recording:
    assignment: SignedEnvelope | None = None
    requests: list[gateway_pb2.GetOperandsRequest] = field(default_factory=list)
    responses: list[gateway_pb2.GetOperandsResponse] = field(default_factory=list)
    results: list[task_pb2.TaskResult] = field(default_factory=list)


def _record_task(dep: Deployment, *, keep: list[RequesterKey] | None = None) -> Recording:
    """Run one confidential transfer, recording every message. With `keep`, the runner's
    key factory also hands the per-task key to the test (the control run)."""
    tx, _ = transfer_task(dep, 30, 100, 5)
    env = assign(dep, tx)
    rec = Recording(assignment=env)

    def factory() -> RequesterKey:
        key = RequesterKey.generate_secp256k1()
        if keep is not None:
            keep.append(key)
        return key

    executor = dep.executor(key_factory=factory)

    def fetch(request: gateway_pb2.GetOperandsRequest) -> gateway_pb2.GetOperandsResponse:
        rec.requests.append(request)
        response = serve_operands(dep, request)
        rec.responses.append(response)
        return response

    outcome = executor.run_task(
        executor.open_assignment(env, now=NOW),
        fetch,
        gateway=dep.gateway.address,
        clock=lambda: NOW,
    )
    assert outcome.result.WhichOneof("outcome") == "outputs"
    rec.results.append(outcome.result)
    return rec


def _operands(rec: Recording) -> list[tuple[bytes, ecies.Ciphertext]]:
    payload = gateway_pb2.GetOperandsResponsePayload.FromString(rec.responses[0].envelope.payload)
    return [
        (o.handle, ecies.Ciphertext(o.ciphertext, o.ephemeral_public_key, o.nonce))
        for o in payload.operands
    ]


def _attack(dep: Deployment, rec: Recording, key: RequesterKey) -> list[bytes]:
    """Everything an attacker can do with the recording and a candidate requester key:
    open the recorded KMS partials, combine them, decrypt the recorded operands."""
    payload = gateway_pb2.GetOperandsResponsePayload.FromString(rec.responses[0].envelope.payload)
    operands = _operands(rec)
    targets = [(h, ct.ephemeral_public_key) for h, ct in operands]
    collected = collect_partials(
        payload.kms_delegations,
        targets=targets,
        public=dep.dealing.public,
        requester_kind=RequesterKeyKind.SECP256K1,
        domain=DOMAIN,
        audience=dep.gateway.address,
        registry=dep.registry,
        now=NOW,
    )
    assert not collected.rejected  # the recording itself is complete and valid
    combos = combine_targets(
        collected, targets=targets, public=dep.dealing.public, requester_key=key
    )
    return [
        ecies.decrypt_with_shared_point(c.shared_point, ct, h)
        for c, (h, ct) in zip(combos, operands, strict=True)
    ]


def _enclave_as_requester(dep: Deployment) -> RequesterKey:
    secret = dep.runner.secret_bytes()
    public = RequesterPublicKey(RequesterKeyKind.SECP256K1, dep.runner.public_key)
    return RequesterKey(PrivateKey(secret), public)


def test_recorded_operands_do_not_decrypt_with_the_enclave_key_and_the_gateway_store() -> None:
    dep = make_deployment()
    rec = _record_task(dep)
    enclave_secret = dep.runner.secret_bytes()

    # 1. The operands (as recorded, and as the gateway stores them) are encrypted to the KMS
    #    key: the runner's enclave key does not open them.
    for handle, ct in [*_operands(rec), *dep.store.items()]:
        with pytest.raises(DecryptionFailed):
            ecies.decrypt(enclave_secret, ct, handle)

    # 2. The KMS partials are sealed to the per-task key named in the recorded request, which
    #    is not the enclave key, and the enclave key cannot open a single one of them.
    request = gateway_pb2.GetOperandsPayload.FromString(rec.requests[0].envelope.payload)
    ephemeral_public = request.requester_key.public_key
    assert ephemeral_public != dep.runner.public_key
    with pytest.raises(QuorumNotReached) as info:
        _attack(dep, rec, _enclave_as_requester(dep))
    assert set(info.value.bad_nodes) == {1, 2, 3}  # every node's partial failed to open
    payload = gateway_pb2.GetOperandsResponsePayload.FromString(rec.responses[0].envelope.payload)
    for kms_env in payload.kms_delegations:
        answer = kms_pb2.DelegateResponsePayload.FromString(kms_env.payload)
        for delegation in answer.delegations:
            sealed = (
                delegation.encrypted_partial.ephemeral_public_key
                + delegation.encrypted_partial.nonce
                + delegation.encrypted_partial.ciphertext
            )
            with pytest.raises(InvalidPartial):
                _enclave_as_requester(dep).open(
                    sealed, node_index=answer.node_index, base=delegation.ephemeral_public_key
                )

    # 3. The per-task key is gone: no live object in the process holds it any more.
    gc.collect()
    alive = [
        o
        for o in gc.get_objects()
        if isinstance(o, RequesterKey) and o.public.data == ephemeral_public
    ]
    assert alive == []

    # 4. Each task gets its own key: a second task's key differs from the first's.
    second = _record_task(dep)
    again = gateway_pb2.GetOperandsPayload.FromString(second.requests[0].envelope.payload)
    assert again.requester_key.public_key not in (ephemeral_public, dep.runner.public_key)


def test_control_the_same_attack_succeeds_with_the_per_task_key() -> None:
    dep = make_deployment()
    kept: list[RequesterKey] = []
    rec = _record_task(dep, keep=kept)
    (key,) = kept
    request = gateway_pb2.GetOperandsPayload.FromString(rec.requests[0].envelope.payload)
    assert key.public.data == request.requester_key.public_key
    plaintexts = _attack(dep, rec, key)
    assert [int.from_bytes(p, "big") for p in plaintexts] == [30, 100, 5]
