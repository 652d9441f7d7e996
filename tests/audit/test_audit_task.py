"""`audit_task` over evidence stored the way the gateway's StoreResults stores it: a genuine
task verifies end to end (signatures, registrations, attestations, links, gateway store,
chain); each broken link is reported with its own reason."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from audit_support import tampered_node
from contracts_support import Net
from task_support import RUNNER, Task, key_of, make_task

from nox.audit import CollateralSet, NodeVerdict, audit_registry
from nox.audit.task import TaskAudit, audit_task
from nox.crypto.keys import EnclaveKey
from nox.gateway.store import HandleStore, StoreSettings
from nox.v1.envelope_pb2 import SignedEnvelope
from nox.v1.task_pb2 import TransactionMessage


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HandleStore]:
    s = HandleStore.open(StoreSettings(url=f"sqlite:///{tmp_path / 'gw.sqlite3'}"))
    yield s
    s.close()


@pytest.fixture
def task(net: Net) -> Task:
    return make_task(net)


def _nodes(net: Net) -> dict[bytes, NodeVerdict]:
    verdicts = audit_registry(
        net.backend,
        net.registry.address,
        trusted_roots=[net.sim.root_der],
        collateral_for=CollateralSet([net.sim.collateral()]),
        now=net.backend.now(),
    )
    return {v.address: v for v in verdicts}


def _audit(task: Task, evidence: bytes, store: HandleStore | None = None) -> TaskAudit:
    stored = None
    if store is not None:
        task.store(store, evidence)
        stored = store.task(task.task_id)
        assert stored is not None
        assert stored.evidence == evidence
    return audit_task(
        task.task_id,
        evidence,
        domain=task.domain,
        nodes=_nodes(task.net),
        stored=stored,
        chain=task.net.backend,
    )


def _failed(audit: TaskAudit) -> dict[str, str | None]:
    return {f.check: f.reason for f in audit.findings if not f.ok}


def test_genuine_task_verifies_end_to_end(task: Task, store: HandleStore) -> None:
    audit = _audit(task, task.evidence(), store)
    assert _failed(audit) == {}
    assert audit.ok
    assert audit.runners == [task.runner.address]
    assert audit.orchestrator == task.orchestrator.address
    assert audit.gateway == task.gateway.address
    message = TransactionMessage.FromString(task.transaction.payload)
    assert audit.transaction_hash == message.transaction_hash
    assert audit.block_number == message.block_number
    assert audit.output_handles == [bytes(h) for h in task.assignment.output_handles]
    signers = {s.what: s.signer for s in audit.signatures}
    assert signers == {
        "store request": task.orchestrator.address,
        "assignment #1": task.orchestrator.address,
        "result #1": task.runner.address,
        "transaction #1": task.ingestor.address,
    }
    assert all(s.node is not None and s.node.ok for s in audit.signatures)
    checks = {f.check for f in audit.findings}
    assert {"gateway store holds these outputs", "chain: Operation events"} <= checks


def test_result_signed_by_unregistered_key(task: Task) -> None:
    stranger = EnclaveKey.generate()
    task.assignment.runner_address = stranger.address
    assignment = task.sign_assignment()
    audit = _audit(task, task.evidence(assignment, task.sign_result(assignment, stranger)))
    assert _failed(audit) == {"result #1: signer attested": "SIGNER_NOT_REGISTERED"}
    assert not audit.ok


def test_result_signed_by_another_registered_runner(task: Task) -> None:
    other = key_of(task.net.register_node(RUNNER))
    assignment = task.sign_assignment()
    audit = _audit(task, task.evidence(assignment, task.sign_result(assignment, other)))
    assert _failed(audit) == {"assignment #1: runner": "RUNNER_MISMATCH"}


def test_runner_whose_quote_was_tampered_on_chain(task: Task) -> None:
    bad = key_of(tampered_node(task.net, RUNNER))
    task.assignment.runner_address = bad.address
    assignment = task.sign_assignment()
    audit = _audit(task, task.evidence(assignment, task.sign_result(assignment, bad)))
    assert _failed(audit) == {"result #1: signer attested": "SIGNATURE_INVALID"}


def test_envelope_modified_after_signing(task: Task) -> None:
    assignment = task.sign_assignment()
    result = task.sign_result(assignment)
    forged = SignedEnvelope()
    forged.CopyFrom(result)
    forged.issued_at += 1  # the signature now recovers some other address
    audit = _audit(task, task.evidence(assignment, forged))
    failed = _failed(audit)
    assert failed["result #1: signer attested"] == "SIGNER_NOT_REGISTERED"
    assert failed["assignment #1: runner"] == "RUNNER_MISMATCH"


def test_evidence_of_another_task(task: Task) -> None:
    audit = _audit(task, task.evidence(task_id=bytes(32)))
    assert _failed(audit) == {"store request: task id": "TASK_ID_MISMATCH"}


def test_outputs_not_produced_on_chain(task: Task) -> None:
    bogus = bytes(reversed(task.outputs[0].handle))
    task.assignment.output_handles[0] = bogus
    task.outputs[0].handle = bogus
    audit = _audit(task, task.evidence())
    assert _failed(audit) == {"chain: Operation events": "OUTPUTS_NOT_ON_CHAIN"}


def test_store_holds_other_values(task: Task, store: HandleStore) -> None:
    evidence = task.evidence()
    task.outputs[0].value_tag = bytes(32)  # what the gateway stored differs from the evidence
    audit = _audit(task, evidence, store)
    assert _failed(audit) == {"gateway store holds these outputs": "STORED_OUTPUTS_MISMATCH"}
