"""`noxctl kms …`: the dealer ceremony (keygen), KEK files, and a node's share check.

    noxctl kms keygen --threshold T --shares N --out DIR [--kek-file F ...] [--passphrase-env V]
    noxctl kms new-kek --out F
    noxctl kms check-share SHARE (--kek-file F | --passphrase-env V) [--public public.json]

`keygen` writes `share-<i>.json` for i = 1..N, each sealed under its node's KEK (one
`--kek-file` for all, or one per node in index order; or a passphrase), and `public.json`
(key, public shares, commitments, threshold) to publish on-chain. It prints only public
data. The dealer sees the key once; see docs/kms.md for the trust this needs.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from nox.crypto.threshold import MAX_SHARES, deal
from nox.errors import NoxError
from nox.files import private_dir
from nox.kms.keys import (
    Kek,
    PassphraseKek,
    load_kek_file,
    load_public_file,
    load_share_file,
    write_kek_file,
    write_public_file,
    write_share_file,
)


def register_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `kms` and its subcommands to noxctl's top-level subparsers."""
    kms = subparsers.add_parser("kms", help="threshold KMS key ceremony and share files")
    sub = kms.add_subparsers(dest="kms_command", metavar="KMS_COMMAND")
    sub.required = True

    keygen = sub.add_parser("keygen", help="dealer ceremony: split a new KMS key t-of-n")
    keygen.add_argument("--threshold", type=int, required=True, help="shares needed (t)")
    keygen.add_argument("--shares", type=int, required=True, help="number of nodes (n)")
    keygen.add_argument("--out", type=Path, required=True, help="directory for the files")
    keygen.add_argument("--epoch", type=int, default=0, help="key epoch (default 0)")
    keygen.add_argument("--force", action="store_true", help="overwrite existing files")
    _kek_arguments(keygen, many=True)
    keygen.set_defaults(func=_keygen)

    new_kek = sub.add_parser("new-kek", help="write a new random 32-byte KEK file (mode 0600)")
    new_kek.add_argument("--out", type=Path, required=True, help="file to create")
    new_kek.set_defaults(func=_new_kek)

    check = sub.add_parser("check-share", help="open a share file and check it (node start-up)")
    check.add_argument("share", type=Path, help="share file")
    check.add_argument("--public", type=Path, help="published public.json to compare against")
    _kek_arguments(check, many=False)
    check.set_defaults(func=_check_share)


def _kek_arguments(parser: argparse.ArgumentParser, *, many: bool) -> None:
    group = parser.add_mutually_exclusive_group()
    if many:
        group.add_argument(
            "--kek-file",
            type=Path,
            action="append",
            help="raw 32-byte KEK file; once for all shares or once per node, in index order",
        )
    else:
        group.add_argument("--kek-file", type=Path, help="raw 32-byte KEK file")
    group.add_argument(
        "--passphrase-env",
        metavar="VAR",
        help="read the passphrase (scrypt KEK) from this environment variable",
    )


def _passphrase_kek(args: argparse.Namespace, *, confirm: bool) -> PassphraseKek:
    if args.passphrase_env:
        value = os.environ.get(args.passphrase_env)
        if not value:
            raise SystemExit(f"environment variable {args.passphrase_env} is empty or unset")
        return PassphraseKek(value.encode())
    if not sys.stdin.isatty():
        raise SystemExit("no KEK given: use --kek-file or --passphrase-env (stdin is no TTY)")
    first = getpass.getpass("KEK passphrase: ")
    if confirm and getpass.getpass("again: ") != first:
        raise SystemExit("passphrases differ")
    return PassphraseKek(first.encode())


def _keygen(args: argparse.Namespace) -> int:
    t, n = args.threshold, args.shares
    if not 1 <= t <= n <= MAX_SHARES:
        raise SystemExit(f"need 1 <= threshold <= shares <= {MAX_SHARES}")
    keks: list[Kek]
    if args.kek_file:
        if len(args.kek_file) not in (1, n):
            raise SystemExit(f"give --kek-file once or {n} times, not {len(args.kek_file)}")
        keks = [load_kek_file(p) for p in args.kek_file]
        if len(keks) == 1:
            keks = keks * n
    else:
        keks = [_passphrase_kek(args, confirm=True)] * n
    out: Path = args.out
    private_dir(out)
    targets = [out / f"share-{i}.json" for i in range(1, n + 1)] + [out / "public.json"]
    existing = [p.name for p in targets if p.exists()]
    if existing and not args.force:
        raise SystemExit(f"{out} already has {', '.join(existing)}; use --force to overwrite")
    dealing = deal(t, n, epoch=args.epoch)
    for share, kek in zip(dealing.shares, keks, strict=True):
        write_share_file(
            out / f"share-{share.index}.json", share, dealing.public, kek, overwrite=args.force
        )
    write_public_file(out / "public.json", dealing.public, overwrite=args.force)
    del dealing  # the dealer's copy goes; see docs/kms.md on what Python can and cannot erase
    public = load_public_file(out / "public.json")
    print(f"KMS key {t}-of-{n}, epoch {public.epoch}")
    print(f"public key  0x{public.public_key.hex()}")
    for i, public_share in enumerate(public.public_shares, start=1):
        print(f"node {i:<3}    0x{public_share.hex()}  -> {out / f'share-{i}.json'}")
    print(f"publish     {out / 'public.json'}")
    return 0


def _new_kek(args: argparse.Namespace) -> int:
    write_kek_file(args.out)
    print(f"wrote a new 32-byte KEK to {args.out} (mode 0600); keep it off the share's disk")
    return 0


def _check_share(args: argparse.Namespace) -> int:
    kek: Kek = (
        load_kek_file(args.kek_file) if args.kek_file else _passphrase_kek(args, confirm=False)
    )
    expected = load_public_file(args.public) if args.public else None
    try:
        loaded = load_share_file(args.share, kek, expected=expected)
    except NoxError as exc:
        print(f"share check FAILED: {exc}", file=sys.stderr)
        return 1
    summary = {
        "node_index": loaded.share.index,
        "threshold": loaded.public.threshold,
        "n": loaded.public.n,
        "epoch": loaded.public.epoch,
        "public_key": "0x" + loaded.public.public_key.hex(),
        "public_share": "0x" + loaded.public.public_share(loaded.share.index).hex(),
        "matches_public_file": expected is not None,
    }
    print(json.dumps(summary, indent=2))
    return 0
