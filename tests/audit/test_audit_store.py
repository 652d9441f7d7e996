"""`noxctl audit store` against anvil: a row replaced in the gateway's database is found."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from contracts_support import Net, make_net
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from attestation.providers.simulated import SimulatedTdx
from nox.chain.anvil import AnvilProcess
from nox.chain.contracts import to_bytes20
from nox.cli import main
from nox.crypto import ecies
from nox.crypto.binding import BoundRow, prove_key, sign_bindings
from nox.crypto.eip712 import Domain
from nox.crypto.keys import EnclaveKey
from nox.crypto.tags import TagKey
from nox.crypto.threshold import deal
from nox.gateway.bindings import bind_input, bind_outputs
from nox.gateway.store import HandleRecord, HandleStore, StoreSettings
from nox.handles import value_tag

pytestmark = pytest.mark.integration

RUNNER, GATEWAY = 2, 3
TASK = b"\x0c" * 32
TAG_KEY = TagKey(b"\x7a" * 32)  # any key: the audit checks bindings, not tags


def _record(public_key: bytes, value: int) -> tuple[HandleRecord, bytes]:
    """A record and the scalar k of its K."""
    handle = os.urandom(26) + (31337).to_bytes(4, "big") + bytes([11, 0])
    plaintext = value.to_bytes(8, "big")
    ct, k = ecies.encrypt_keeping_scalar(public_key, plaintext, handle)
    record = HandleRecord(
        handle,
        ct.ciphertext,
        ct.ephemeral_public_key,
        ct.nonce,
        value_tag(TAG_KEY, handle, plaintext),
    )
    return record, k


def test_audit_store_finds_a_replaced_row(
    anvil: AnvilProcess, sim_tdx: SimulatedTdx, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net: Net = make_net(anvil.backend(), sim_tdx)
    gateway = EnclaveKey.from_bytes(bytes(net.register_node(GATEWAY).key))
    runner = EnclaveKey.from_bytes(bytes(net.register_node(RUNNER).key))
    domain = Domain(net.backend.chain_id, to_bytes20(net.registry.address))
    pk = deal(2, 3).public.public_key
    url = f"sqlite:///{tmp_path / 'gateway.sqlite3'}"
    store = HandleStore.open(StoreSettings(url=url))
    alice = bind_input(gateway, domain, _record(pk, 877)[0])
    mallory = bind_input(gateway, domain, _record(pk, 1)[0])
    store.put_input(alice)
    store.put_input(mallory)
    made = [_record(pk, 5), _record(pk, 6)]
    outputs = [r for r, _ in made]
    key_proofs = [prove_key(domain, r.handle, k) for r, k in made]
    salts = [os.urandom(32) for _ in outputs]
    rows = [
        BoundRow(r.handle, r.ephemeral_public_key, r.nonce, r.ciphertext, r.value_tag, s)
        for r, s in zip(outputs, salts, strict=True)
    ]
    signature = sign_bindings(runner, domain, TASK, rows)[0].signature
    bound = bind_outputs(domain, TASK, outputs, salts, signature, runner.address, key_proofs)
    store.publish_task(TASK, bound)
    store.close()
    root, collateral = tmp_path / "dev-root.der", tmp_path / "collateral.json"
    root.write_bytes(net.sim.root_der)
    collateral.write_text(net.sim.collateral().to_json())
    argv = [
        "audit", "store", "--store", url, "--rpc", anvil.url,
        "--registry", net.registry.address, "--root", str(root),
        "--collateral", str(collateral), "--at", str(net.backend.now()), "--json",
    ]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out) == {"rows": 4, "failing": []}

    # the database writer copies Alice's K into Mallory's row
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE gateway_handles SET ephemeral_public_key = :k WHERE handle = :h"),
            {"k": alice.ephemeral_public_key, "h": mallory.handle},
        )
    engine.dispose()
    assert main(argv) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 4
    assert [(f["handle"], f["reason"]) for f in report["failing"]] == [
        ("0x" + mallory.handle.hex(), "SIGNER_NOT_REGISTERED")
    ]
    assert main(argv[:-1]) == 1
    assert f"FAIL 0x{mallory.handle.hex()} SIGNER_NOT_REGISTERED" in capsys.readouterr().out
