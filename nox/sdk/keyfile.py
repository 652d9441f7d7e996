"""Key files: secp256k1 keys at rest as encrypted Ethereum keystores (Web3 Secret Storage v3).

A key file is the JSON `eth_account.Account.encrypt` writes (scrypt KDF by default,
AES-128-CTR, keccak MAC): the same format geth, Foundry (`cast wallet`) and MetaMask
import, so an integrator can use one key across tools. The passphrase never comes from a
command-line argument (it would show in `ps` and shell history): it is read from an
environment variable or from a file. Nothing here writes an unencrypted private key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eth_account import Account

from nox.crypto.keys import EnclaveKey
from nox.sdk.exceptions import KeyfileInvalid

__all__ = [
    "DEFAULT_PASSPHRASE_ENV",
    "load_keyfile",
    "read_passphrase",
    "write_keyfile",
]

DEFAULT_PASSPHRASE_ENV = "NOX_KEY_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)


def read_passphrase(
    *,
    passphrase_file: Path | None = None,
    passphrase_env: str = DEFAULT_PASSPHRASE_ENV,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The passphrase from `passphrase_file` (first line) or else the environment variable.

    Raises KeyfileInvalid when neither gives a non-empty passphrase.
    """
    if passphrase_file is not None:
        try:
            text = passphrase_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise KeyfileInvalid(f"cannot read passphrase file: {exc.strerror}") from None
        passphrase = text.splitlines()[0] if text else ""
        source = "passphrase file"
    else:
        env = os.environ if environ is None else environ
        passphrase = env.get(passphrase_env, "")
        source = f"environment variable {passphrase_env}"
    if not passphrase:
        raise KeyfileInvalid(f"no passphrase: {source} is empty or unset")
    return passphrase


def write_keyfile(
    path: Path,
    key: EnclaveKey,
    passphrase: str,
    *,
    kdf: str = "scrypt",
    iterations: int | None = None,
) -> None:
    """Write `key` encrypted under `passphrase` to a new file `path` (mode 0600).

    Refuses to overwrite an existing file. `iterations` is the KDF cost (eth_account's
    defaults when None: scrypt n = 2^18); lower it only for throw-away test keys.
    """
    if not passphrase:
        raise KeyfileInvalid("an empty passphrase would leave the key unprotected")
    if kdf not in ("scrypt", "pbkdf2"):
        raise KeyfileInvalid("kdf must be scrypt or pbkdf2")
    document = Account.encrypt(
        key.secret_bytes(),
        passphrase,
        kdf="scrypt" if kdf == "scrypt" else "pbkdf2",
        iterations=iterations,
    )
    data = json.dumps(document, indent=2).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyfileInvalid(f"{path} exists; refusing to overwrite a key file") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def load_keyfile(path: Path, passphrase: str) -> EnclaveKey:
    """The key in the encrypted keystore at `path`; raises KeyfileInvalid (never the key)."""
    try:
        document: Any = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeyfileInvalid(f"cannot read key file: {exc.strerror}") from None
    except ValueError:
        raise KeyfileInvalid("key file is not JSON") from None
    if not isinstance(document, dict) or ("crypto" not in document and "Crypto" not in document):
        raise KeyfileInvalid("key file is not an encrypted keystore (no crypto section)")
    try:
        secret = bytes(Account.decrypt(document, passphrase))
    except ValueError:
        # eth_account raises ValueError both for a wrong passphrase (MAC mismatch) and for
        # unsupported parameters; neither message carries key material.
        raise KeyfileInvalid("key file does not open with this passphrase") from None
    except (KeyError, TypeError):
        raise KeyfileInvalid("key file is malformed") from None
    return EnclaveKey.from_bytes(secret)
