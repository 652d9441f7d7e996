"""Key files: encrypted keystores that open only with their passphrase, never plaintext."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from eth_account import Account

from nox.crypto.keys import EnclaveKey
from nox.sdk.exceptions import KeyfileInvalid
from nox.sdk.keyfile import load_keyfile, read_passphrase, write_keyfile

# scrypt n = 2^4: a throw-away test key, so the suite stays fast (the default is 2^18).
FAST = 16


def test_round_trip_and_geth_compatibility(tmp_path: Path) -> None:
    key = EnclaveKey.generate()
    path = tmp_path / "key.json"
    write_keyfile(path, key, "correct horse", iterations=FAST)
    assert load_keyfile(path, "correct horse").address == key.address
    # The file is a standard v3 keystore: eth_account (geth, Foundry) opens it too.
    document = json.loads(path.read_text())
    assert document["version"] == 3
    assert bytes(Account.decrypt(document, "correct horse")) == key.secret_bytes()
    assert key.secret_bytes().hex() not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_wrong_passphrase_and_malformed_files_are_refused(tmp_path: Path) -> None:
    key = EnclaveKey.generate()
    path = tmp_path / "key.json"
    write_keyfile(path, key, "right", iterations=FAST)
    with pytest.raises(KeyfileInvalid, match="does not open") as info:
        load_keyfile(path, "wrong")
    assert key.secret_bytes().hex() not in str(info.value)
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"private_key": "0x" + "11" * 32}))
    with pytest.raises(KeyfileInvalid, match="not an encrypted keystore"):
        load_keyfile(plain, "right")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("not json")
    with pytest.raises(KeyfileInvalid, match="not JSON"):
        load_keyfile(garbage, "right")


def test_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    write_keyfile(path, EnclaveKey.generate(), "pw", iterations=FAST)
    before = path.read_bytes()
    with pytest.raises(KeyfileInvalid, match="refusing to overwrite"):
        write_keyfile(path, EnclaveKey.generate(), "pw", iterations=FAST)
    assert path.read_bytes() == before


def test_empty_passphrase_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyfileInvalid, match="unprotected"):
        write_keyfile(tmp_path / "k.json", EnclaveKey.generate(), "")
    assert not (tmp_path / "k.json").exists()


def test_passphrase_sources(tmp_path: Path) -> None:
    file = tmp_path / "pass"
    file.write_text("from file\nignored second line\n")
    assert read_passphrase(passphrase_file=file, environ={"NOX_KEY_PASSPHRASE": "env"}) == (
        "from file"
    )
    assert read_passphrase(environ={"NOX_KEY_PASSPHRASE": "env"}) == "env"
    assert read_passphrase(passphrase_env="OTHER", environ={"OTHER": "x"}) == "x"
    with pytest.raises(KeyfileInvalid, match="NOX_KEY_PASSPHRASE"):
        read_passphrase(environ={})
    with pytest.raises(KeyfileInvalid, match="cannot read"):
        read_passphrase(passphrase_file=tmp_path / "missing")
