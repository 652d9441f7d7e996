"""`noxctl kms`: the dealer ceremony writes loadable, sealed shares and a public set; no leaks."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from nox.cli import main
from nox.kms.keys import PassphraseKek, RawKek, load_public_file, load_share_file


def test_keygen_with_one_kek_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    kek_path, out = tmp_path / "kek", tmp_path / "ceremony"
    assert main(["kms", "new-kek", "--out", str(kek_path)]) == 0
    assert stat.S_IMODE(kek_path.stat().st_mode) == 0o600
    argv = ["kms", "keygen", "--threshold", "2", "--shares", "3", "--out", str(out)]
    assert main([*argv, "--kek-file", str(kek_path)]) == 0
    printed = capsys.readouterr().out

    public = load_public_file(out / "public.json")
    assert (public.threshold, public.n) == (2, 3)
    assert public.public_key.hex() in printed
    kek = RawKek(kek_path.read_bytes())
    shares = [load_share_file(out / f"share-{i}.json", kek, expected=public) for i in (1, 2, 3)]
    assert [s.share.index for s in shares] == [1, 2, 3]
    for loaded in shares:
        assert stat.S_IMODE((out / f"share-{loaded.share.index}.json").stat().st_mode) == 0o600
        secret_hex = loaded.share.secret_bytes().hex()
        assert secret_hex not in printed
        assert secret_hex not in caplog.text
        assert secret_hex not in (out / f"share-{loaded.share.index}.json").read_text()

    assert (
        main(
            [
                "kms",
                "check-share",
                str(out / "share-2.json"),
                "--kek-file",
                str(kek_path),
                "--public",
                str(out / "public.json"),
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["node_index"] == 2
    assert summary["public_share"] == "0x" + public.public_shares[1].hex()

    with pytest.raises(SystemExit, match="--force"):
        main([*argv, "--kek-file", str(kek_path)])
    assert load_public_file(out / "public.json") == public  # untouched


def test_keygen_with_a_kek_per_node_and_check_share_refuses_a_wrong_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keks = []
    for i in (1, 2, 3):
        keks.append(tmp_path / f"kek-{i}")
        main(["kms", "new-kek", "--out", str(keks[-1])])
    out = tmp_path / "out"
    argv = ["kms", "keygen", "--threshold", "3", "--shares", "3", "--out", str(out)]
    for kek in keks:
        argv += ["--kek-file", str(kek)]
    assert main(argv) == 0
    capsys.readouterr()
    check = ["kms", "check-share", str(out / "share-2.json"), "--kek-file"]
    assert main([*check, str(keks[1])]) == 0
    assert main([*check, str(keks[0])]) == 1
    assert "SHARE_UNSEAL_FAILED" in capsys.readouterr().err


def test_keygen_with_a_passphrase_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOX_TEST_KEK", "ceremony passphrase")
    out = tmp_path / "out"
    argv = ["kms", "keygen", "--threshold", "1", "--shares", "2", "--out", str(out)]
    assert main([*argv, "--passphrase-env", "NOX_TEST_KEK"]) == 0
    loaded = load_share_file(out / "share-1.json", PassphraseKek(b"ceremony passphrase"))
    assert loaded.public.threshold == 1


def test_keygen_rejects_bad_parameters(tmp_path: Path) -> None:
    kek = tmp_path / "kek"
    main(["kms", "new-kek", "--out", str(kek)])
    base = ["kms", "keygen", "--out", str(tmp_path / "o"), "--kek-file", str(kek)]
    with pytest.raises(SystemExit):
        main([*base, "--threshold", "4", "--shares", "3"])
    with pytest.raises(SystemExit, match="once or 3 times"):
        main([*base, "--kek-file", str(kek), "--threshold", "2", "--shares", "3"])
    assert not (tmp_path / "o" / "public.json").exists()
