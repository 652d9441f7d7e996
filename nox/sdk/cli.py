"""`noxctl envelope …`: sign and inspect signed envelopes for hand-made calls (grpcurl).

    noxctl envelope new-key --out KEYFILE [--passphrase-file F | --passphrase-env VAR]
    noxctl envelope sign --key KEYFILE --payload-type nox.v1.XPayload
        --payload-json JSON|@FILE|- --audience 0x.. --chain-id N --registry 0x..
        [--ttl S] [--now T] [--passphrase-file F | --passphrase-env VAR]
    noxctl envelope verify [ENVELOPE_JSON|@FILE|-] --chain-id N --registry 0x..
        [--audience 0x..] [--signer 0x..] [--now T]

`sign` prints the whole request `{"envelope": {...}}` in proto3 JSON, exactly what
`grpcurl -d @` takes. `verify` takes that (or a bare envelope), checks the signature,
window and audience, and prints the signer and the payload as JSON; it exits 1 with the
error's reason when a check fails. Key files are encrypted keystores (`nox.sdk.keyfile`);
the passphrase comes from `$NOX_KEY_PASSPHRASE` unless told otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from nox.crypto.eip712 import Domain
from nox.crypto.keys import EnclaveKey, checksum
from nox.errors import InvalidArgument, NoxError
from nox.sdk.envelopes import (
    envelope_from_json,
    open_envelope,
    payload_from_json,
    payload_to_json,
    request_json,
    sign_request,
)
from nox.sdk.keyfile import DEFAULT_PASSPHRASE_ENV, load_keyfile, read_passphrase, write_keyfile

__all__ = ["register_commands"]


def register_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `envelope` and its subcommands to noxctl's top-level subparsers."""
    envelope = subparsers.add_parser(
        "envelope", help="sign and verify signed envelopes (for grpcurl and buf curl)"
    )
    sub = envelope.add_subparsers(dest="envelope_command", metavar="ENVELOPE_COMMAND")
    sub.required = True

    new_key = sub.add_parser("new-key", help="create a secp256k1 key in an encrypted keystore")
    new_key.add_argument("--out", type=Path, required=True, help="key file to create (0600)")
    _passphrase_arguments(new_key)
    new_key.set_defaults(func=_new_key)

    sign = sub.add_parser("sign", help="sign a payload; print the request JSON for grpcurl -d")
    sign.add_argument("--key", type=Path, required=True, help="encrypted keystore file")
    _passphrase_arguments(sign)
    sign.add_argument(
        "--payload-type", required=True, help="full message name, e.g. nox.v1.HeartbeatPayload"
    )
    sign.add_argument(
        "--payload-json",
        required=True,
        help="the payload in proto3 JSON, @FILE to read it from a file, or - for stdin",
    )
    sign.add_argument("--audience", required=True, help="the server's enclave address (0x..)")
    _domain_arguments(sign)
    sign.add_argument("--ttl", type=int, default=60, help="validity in seconds (default 60)")
    sign.add_argument("--now", type=int, help="issued-at Unix time (default: the clock)")
    sign.set_defaults(func=_sign)

    verify = sub.add_parser("verify", help="check a signed envelope and print its payload")
    verify.add_argument(
        "envelope",
        nargs="?",
        default="-",
        help="request or envelope JSON, @FILE, or - for stdin (default)",
    )
    _domain_arguments(verify)
    verify.add_argument("--audience", help="require this audience (0x..); default: its own")
    verify.add_argument("--signer", help="require this signer address (0x..)")
    verify.add_argument("--now", type=int, help="check the window at this Unix time")
    verify.set_defaults(func=_verify)


def _passphrase_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--passphrase-file", type=Path, help="read the passphrase from a file")
    group.add_argument(
        "--passphrase-env",
        metavar="VAR",
        default=DEFAULT_PASSPHRASE_ENV,
        help=f"environment variable holding the passphrase (default {DEFAULT_PASSPHRASE_ENV})",
    )


def _domain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--chain-id", type=int, required=True, help="the deployment's chain id")
    parser.add_argument("--registry", required=True, help="NoxRegistry address (0x..)")


def parse_address(text: str, what: str = "address") -> bytes:
    """A 20-byte address from `0x` + 40 hex digits; raises InvalidArgument."""
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise InvalidArgument(f"{what} is not hex") from None
    if len(raw) != 20:
        raise InvalidArgument(f"{what} must be 20 bytes (0x + 40 hex digits)")
    return raw


def _read_argument(value: str) -> str:
    """`-` reads stdin, `@FILE` reads a file, anything else is the text itself."""
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidArgument(f"cannot read {value[1:]}: {exc.strerror}") from None
    return value


def _domain(args: argparse.Namespace) -> Domain:
    return Domain(chain_id=args.chain_id, verifying_contract=parse_address(args.registry))


def _passphrase(args: argparse.Namespace) -> str:
    return read_passphrase(passphrase_file=args.passphrase_file, passphrase_env=args.passphrase_env)


def _run(args: argparse.Namespace, body: Any) -> int:
    try:
        body(args)
    except NoxError as exc:
        print(f"noxctl envelope: {exc}", file=sys.stderr)
        return 1
    return 0


def _new_key(args: argparse.Namespace) -> int:
    def body(a: argparse.Namespace) -> None:
        key = EnclaveKey.generate()
        write_keyfile(a.out, key, _passphrase(a))
        print(json.dumps({"address": checksum(key.address), "keyfile": str(a.out)}))

    return _run(args, body)


def _sign(args: argparse.Namespace) -> int:
    def body(a: argparse.Namespace) -> None:
        payload = payload_from_json(a.payload_type, _read_argument(a.payload_json))
        audience = parse_address(a.audience, "audience")
        domain = _domain(a)
        key = load_keyfile(a.key, _passphrase(a))
        envelope = sign_request(
            key, payload, domain=domain, audience=audience, ttl=a.ttl, now=a.now
        )
        print(request_json(envelope))

    return _run(args, body)


def _verify(args: argparse.Namespace) -> int:
    def body(a: argparse.Namespace) -> None:
        envelope = envelope_from_json(_read_argument(a.envelope))
        verified = open_envelope(
            envelope,
            domain=_domain(a),
            now=int(time.time()) if a.now is None else a.now,
            audience=None if a.audience is None else parse_address(a.audience, "audience"),
            expected_signer=None if a.signer is None else parse_address(a.signer, "signer"),
        )
        if a.signer is None:
            print(
                "noxctl envelope: no --signer given; a signature recovers to some address for "
                "any content, so compare the signer below with the one you expect",
                file=sys.stderr,
            )
        print(
            json.dumps(
                {
                    "signer": checksum(verified.signer),
                    "payloadType": envelope.payload_type,
                    "audience": checksum(envelope.audience),
                    "issuedAt": envelope.issued_at,
                    "expiresAt": envelope.expires_at,
                    "nonce": "0x" + envelope.nonce.hex(),
                    "payload": payload_to_json(verified.message),
                },
                indent=2,
            )
        )

    return _run(args, body)
