"""Auditor CLI: `attest verify QUOTE --collateral FILE` and `attest parse QUOTE`.

Wired into `noxctl` (`noxctl attest ...`) through `register_commands`; also runnable alone
as `python -m attestation.cli`. Exit status: 0 when the quote verifies (any non-terminal
TCB status), 1 with the reason when it does not, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from attestation.binding import split_report_data
from attestation.collateral import Collateral
from attestation.dual import DualVerifier, load_dcap_qvl
from attestation.exceptions import AttestationError
from attestation.measurements import workload_id
from attestation.policy import Policy
from attestation.quote import EnclaveReport, Quote, TdReport, parse_quote, read_quote_bytes
from attestation.roots import intel_sgx_root_ca


def register_commands(subparsers: Any) -> None:
    """Add the `attest` command (with `verify` and `parse`) to an argparse subparsers object."""
    attest = subparsers.add_parser("attest", help="parse and verify TDX / SGX DCAP quotes")
    sub = attest.add_subparsers(dest="attest_command", metavar="SUBCOMMAND")
    sub.required = True

    verify = sub.add_parser("verify", help="verify a quote against collateral")
    verify.add_argument("quote", type=Path, help="quote file (binary or hex)")
    verify.add_argument(
        "--collateral",
        type=Path,
        required=True,
        help="collateral JSON (dcap-qvl QuoteCollateralV3 form)",
    )
    verify.add_argument("--at", type=int, default=None, help="verification time (Unix seconds)")
    verify.add_argument(
        "--root",
        type=Path,
        action="append",
        default=None,
        help="trusted root CA (DER); repeatable; default Intel SGX Root CA",
    )
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.add_argument(
        "--single",
        action="store_true",
        help="do not cross-check with dcap-qvl even where it is installed",
    )
    verify.set_defaults(func=_verify)

    parse = sub.add_parser("parse", help="print the fields of a quote")
    parse.add_argument("quote", type=Path, help="quote file (binary or hex)")
    parse.set_defaults(func=_parse)


def quote_fields(quote: Quote) -> dict[str, Any]:
    """Header and report fields of a quote as JSON-ready values (bytes as hex)."""
    h = quote.header
    out: dict[str, Any] = {
        "version": h.version,
        "attestation_key_type": h.attestation_key_type,
        "tee_type": f"{h.tee_type:#x}",
        "qe_vendor_id": h.qe_vendor_id.hex(),
        "user_data": h.user_data.hex(),
        "body_type": quote.body_type,
        "length": len(quote.raw),
        "signed_length": quote.signed_length,
    }
    body = quote.body
    if isinstance(body, TdReport):
        for name in (
            "tee_tcb_svn",
            "mr_seam",
            "mr_signer_seam",
            "seam_attributes",
            "td_attributes",
            "xfam",
            "mr_td",
            "mr_config_id",
            "mr_owner",
            "mr_owner_config",
            "rtmr0",
            "rtmr1",
            "rtmr2",
            "rtmr3",
            "report_data",
            "tee_tcb_svn2",
            "mr_service_td",
        ):
            value = getattr(body, name)
            if value is not None:
                out[name] = value.hex()
        for name, value in body.extra_fields.items():
            out[name] = value.hex() if isinstance(value, bytes) else value
        out["workload_id"] = workload_id(body).hex()
        binding = split_report_data(body.report_data)
        out["report_data_binding"] = {
            "enclave_address": "0x" + binding.enclave_address.hex(),
            "ext_data_hash": binding.ext_data_hash.hex(),
            "padding_zero": binding.well_formed,
        }
    else:
        assert isinstance(body, EnclaveReport)
        out.update(
            cpu_svn=body.cpu_svn.hex(),
            attributes=body.attributes.hex(),
            mr_enclave=body.mr_enclave.hex(),
            mr_signer=body.mr_signer.hex(),
            isv_prod_id=body.isv_prod_id,
            isv_svn=body.isv_svn,
            report_data=body.report_data.hex(),
        )
    return out


def _print_fields(fields: dict[str, Any], out: TextIO) -> None:
    for key, value in fields.items():
        if isinstance(value, dict):
            out.write(f"{key}:\n")
            for k, v in value.items():
                out.write(f"  {k:<18} {v}\n")
        else:
            out.write(f"{key:<20} {value}\n")


def _fail(exc: AttestationError, as_json: bool) -> int:
    if as_json:
        print(
            json.dumps(
                {"ok": False, "reason": exc.reason, "field": exc.field, "error": exc.message}
            )
        )
    print(f"attest: {exc}", file=sys.stderr)
    return 1


def _verify(args: argparse.Namespace) -> int:
    try:
        raw = read_quote_bytes(args.quote.read_bytes())
        collateral = Collateral.from_json(args.collateral.read_bytes())
        roots = [p.read_bytes() for p in args.root] if args.root else [intel_sgx_root_ca()]
    except OSError as exc:
        print(f"attest: {exc}", file=sys.stderr)
        return 2
    except AttestationError as exc:
        return _fail(exc, args.json)
    now = int(time.time()) if args.at is None else args.at
    dq = None if args.single else load_dcap_qvl()
    verifier = DualVerifier(roots, policy=Policy.any_tcb_status(), dcap_qvl=dq)
    try:
        verdict = verifier.verify(raw, collateral, now=now)
    except AttestationError as exc:
        return _fail(exc, args.json)
    v = verdict.verified
    result: dict[str, Any] = {
        "ok": True,
        "status": v.status,
        "advisory_ids": list(v.advisory_ids),
        "verified_at": now,
        "verifiers": list(verdict.verifiers),
        "fmspc": v.fmspc.hex().upper(),
        "pck_ca": v.pck_ca,
        "collateral_expires_at": v.collateral_expires_at,
        **quote_fields(v.quote),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"quote verified: {v.status}")
        print(f"advisories: {', '.join(v.advisory_ids) or 'none'}")
        print(f"agreed: {' + '.join(verdict.verifiers)}")
        _print_fields(
            {k: val for k, val in result.items() if k not in ("ok", "status")}, sys.stdout
        )
    return 0


def _parse(args: argparse.Namespace) -> int:
    try:
        quote = parse_quote(read_quote_bytes(args.quote.read_bytes()))
    except OSError as exc:
        print(f"attest: {exc}", file=sys.stderr)
        return 2
    except AttestationError as exc:
        return _fail(exc, False)
    _print_fields(quote_fields(quote), sys.stdout)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attestation", description=__doc__)
    register_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
