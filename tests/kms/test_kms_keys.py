"""Share files: round trip, wrong KEK, tamper, commitment check, registry match, no leaks."""

from __future__ import annotations

import json
import logging
import random
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nox.crypto.threshold import Dealing, KeyShare, N, deal
from nox.crypto.threshold_exceptions import (
    InvalidThresholdParameters,
    ShareCommitmentMismatch,
)
from nox.kms.exceptions import InvalidKek, PublicKeyMismatch, ShareFileMalformed, ShareUnsealFailed
from nox.kms.keys import (
    PassphraseKek,
    RawKek,
    ScryptParams,
    load_kek_file,
    load_public_file,
    load_share_file,
    open_share,
    require_published,
    seal_share,
    write_kek_file,
    write_public_file,
    write_share_file,
)

FAST_SCRYPT = ScryptParams(log_n=14, r=8, p=1)


@pytest.fixture(scope="module")
def dealing() -> Dealing:
    return deal(2, 3, rand=random.Random(11).randbytes)


@pytest.fixture
def kek() -> RawKek:
    return RawKek(bytes(range(32)))


def test_raw_kek_round_trip(tmp_path: Path, dealing: Dealing, kek: RawKek) -> None:
    for share in dealing.shares:
        path = tmp_path / f"share-{share.index}.json"
        write_share_file(path, share, dealing.public, kek)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        loaded = load_share_file(path, kek, expected=dealing.public)
        assert loaded.share == share
        assert loaded.public == dealing.public


def test_passphrase_kek_round_trip_and_wrong_passphrase(tmp_path: Path, dealing: Dealing) -> None:
    path = tmp_path / "share.json"
    kek = PassphraseKek(b"correct horse battery staple", FAST_SCRYPT)
    write_share_file(path, dealing.shares[0], dealing.public, kek)
    assert load_share_file(path, kek).share == dealing.shares[0]
    with pytest.raises(ShareUnsealFailed):
        load_share_file(path, PassphraseKek(b"correct horse battery stable", FAST_SCRYPT))
    with pytest.raises(ShareUnsealFailed):  # a raw KEK for a passphrase-sealed file
        load_share_file(path, RawKek(bytes(32)))


def test_wrong_raw_kek_fails(tmp_path: Path, dealing: Dealing, kek: RawKek) -> None:
    path = tmp_path / "share.json"
    write_share_file(path, dealing.shares[1], dealing.public, kek)
    with pytest.raises(ShareUnsealFailed):
        load_share_file(path, RawKek(bytes(32)))


def _sealed(dealing: Dealing, kek: RawKek, index: int = 1) -> dict[str, Any]:
    return seal_share(dealing.shares[index - 1], dealing.public, kek)


def test_any_flipped_ciphertext_or_nonce_bit_fails(dealing: Dealing, kek: RawKek) -> None:
    document = _sealed(dealing, kek)
    for field in ("ciphertext", "nonce"):
        value = bytes.fromhex(document["sealed_share"][field][2:])
        for position in range(len(value)):
            tampered = bytearray(value)
            tampered[position] ^= 0x01
            doc = json.loads(json.dumps(document))
            doc["sealed_share"][field] = "0x" + tampered.hex()
            with pytest.raises(ShareUnsealFailed):
                open_share(doc, kek)


def test_public_fields_are_bound_to_the_sealed_share(dealing: Dealing, kek: RawKek) -> None:
    """Moving a sealed share to another index or another (consistent) key set fails to open."""
    document = _sealed(dealing, kek, index=1)
    moved = document | {"node_index": 2}
    with pytest.raises(ShareUnsealFailed):
        open_share(moved, kek)
    other = deal(2, 3).public.to_json()
    swapped = document | {k: other[k] for k in ("public_key", "public_shares", "commitments")}
    with pytest.raises(ShareUnsealFailed):
        open_share(swapped, kek)
    with pytest.raises(ShareUnsealFailed):
        open_share(document | {"epoch": 1}, kek)


def test_inconsistent_public_fields_are_refused_before_unsealing(
    dealing: Dealing, kek: RawKek
) -> None:
    document = _sealed(dealing, kek)
    other = deal(2, 3).public.to_json()
    with pytest.raises(InvalidThresholdParameters):
        open_share(document | {"public_shares": other["public_shares"]}, kek)


def test_a_validly_sealed_wrong_share_fails_the_commitment_check(
    dealing: Dealing, kek: RawKek
) -> None:
    """A dealer (or anyone with the KEK) sealing a wrong value: Feldman catches it at load."""
    from nox.kms import keys as keys_module

    wrong = KeyShare(2, (dealing.shares[1].value + 1) % N)
    record: dict[str, Any] = {"kek": "raw"}
    nonce = bytes(12)
    ad = keys_module._associated_data(2, dealing.public)
    ciphertext = AESGCM(kek.derive(record)).encrypt(nonce, wrong.secret_bytes(), ad)
    document = _sealed(dealing, kek, index=2)
    document["sealed_share"] = record | {
        "nonce": "0x" + nonce.hex(),
        "ciphertext": "0x" + ciphertext.hex(),
    }
    with pytest.raises(ShareCommitmentMismatch):
        open_share(document, kek)
    with pytest.raises(ShareCommitmentMismatch):  # and it cannot be written in the first place
        seal_share(wrong, dealing.public, kek)


def test_a_share_file_for_another_key_set_is_refused(
    tmp_path: Path, dealing: Dealing, kek: RawKek
) -> None:
    path = tmp_path / "share.json"
    write_share_file(path, dealing.shares[0], dealing.public, kek)
    with pytest.raises(PublicKeyMismatch):
        load_share_file(path, kek, expected=deal(2, 3).public)


def test_start_up_check_against_what_the_registry_publishes(
    tmp_path: Path, dealing: Dealing, kek: RawKek
) -> None:
    path = tmp_path / "share.json"
    write_share_file(path, dealing.shares[2], dealing.public, kek)
    loaded = load_share_file(path, kek)
    pub = dealing.public
    require_published(
        loaded, public_key=pub.public_key, public_shares=pub.public_shares, threshold=2
    )
    other = deal(2, 3).public
    wrong = [
        {"public_key": other.public_key, "public_shares": pub.public_shares, "threshold": 2},
        {"public_key": pub.public_key, "public_shares": other.public_shares, "threshold": 2},
        {"public_key": pub.public_key, "public_shares": pub.public_shares[:2], "threshold": 2},
        {"public_key": pub.public_key, "public_shares": pub.public_shares, "threshold": 3},
    ]
    for published in wrong:
        with pytest.raises(PublicKeyMismatch):
            require_published(loaded, **published)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d | {"kind": "something else"},
        lambda d: d | {"version": 2},
        lambda d: {k: v for k, v in d.items() if k != "commitments"},
        lambda d: {k: v for k, v in d.items() if k != "sealed_share"},
        lambda d: d | {"node_index": 7},
        lambda d: d | {"node_index": "1"},
        lambda d: d | {"sealed_share": d["sealed_share"] | {"nonce": "00"}},
        lambda d: d | {"sealed_share": d["sealed_share"] | {"nonce": "0x00"}},
    ],
)
def test_malformed_share_files_are_typed_errors(dealing: Dealing, kek: RawKek, mutate: Any) -> None:
    with pytest.raises(ShareFileMalformed):
        open_share(mutate(_sealed(dealing, kek)), kek)


def test_scrypt_parameters_from_a_file_are_bounded(dealing: Dealing) -> None:
    kek = PassphraseKek(b"pw", FAST_SCRYPT)
    document = seal_share(dealing.shares[0], dealing.public, kek)
    document["sealed_share"]["scrypt"]["log_n"] = 30  # would take gigabytes
    with pytest.raises(InvalidKek):
        open_share(document, kek)


def test_not_json_is_malformed(tmp_path: Path, kek: RawKek) -> None:
    path = tmp_path / "share.json"
    path.write_bytes(b"\xff\x00not json")
    with pytest.raises(ShareFileMalformed):
        load_share_file(path, kek)


def test_writers_refuse_to_overwrite(tmp_path: Path, dealing: Dealing, kek: RawKek) -> None:
    path = tmp_path / "share.json"
    write_share_file(path, dealing.shares[0], dealing.public, kek)
    with pytest.raises(FileExistsError):
        write_share_file(path, dealing.shares[0], dealing.public, kek)
    write_share_file(path, dealing.shares[0], dealing.public, kek, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["share.json"]  # no temp files left


def test_public_file_round_trip(tmp_path: Path, dealing: Dealing) -> None:
    path = tmp_path / "public.json"
    write_public_file(path, dealing.public)
    assert load_public_file(path) == dealing.public
    assert set(json.loads(path.read_text())) >= {
        "public_key",
        "public_shares",
        "commitments",
        "threshold",
        "n",
        "epoch",
        "version",
    }


def test_kek_files(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    write_kek_file(path, rand=lambda n: b"\x07" * n)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_kek_file(path).derive({}) == b"\x07" * 32
    hex_path = tmp_path / "kek.hex"
    hex_path.write_text("0x" + "ab" * 32 + "\n")
    assert load_kek_file(hex_path).derive({}) == b"\xab" * 32
    for bad in (b"short", b"z" * 64, b"ab" * 31):
        hex_path.write_bytes(bad)
        with pytest.raises(InvalidKek):
            load_kek_file(hex_path)
    with pytest.raises(InvalidKek):
        PassphraseKek(b"")


def test_no_secret_in_files_reprs_errors_or_logs(
    tmp_path: Path, dealing: Dealing, kek: RawKek, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    share = dealing.shares[0]
    secret_hex = share.secret_bytes().hex()
    passphrase = b"a very secret passphrase"
    path = tmp_path / "share.json"
    write_share_file(path, share, dealing.public, PassphraseKek(passphrase, FAST_SCRYPT))
    loaded = load_share_file(path, PassphraseKek(passphrase, FAST_SCRYPT))
    texts = [path.read_text(), repr(loaded), str(loaded), repr(kek)]
    texts.append(repr(PassphraseKek(passphrase, FAST_SCRYPT)))
    for wrong in (RawKek(bytes(32)), PassphraseKek(b"nope", FAST_SCRYPT)):
        with pytest.raises((ShareUnsealFailed, ShareCommitmentMismatch)) as info:
            load_share_file(path, wrong)
        texts += [str(info.value), repr(info.value), repr(info.value.metadata)]
    texts.append(caplog.text)
    for text in texts:
        assert secret_hex not in text
        assert secret_hex.upper() not in text
        assert str(share.value) not in text
        assert passphrase.decode() not in text
        assert bytes(range(32)).hex() not in text
