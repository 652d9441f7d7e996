"""A local PCCS: the Intel PCS v4 collateral routes over HTTP on 127.0.0.1, for development.

It serves whatever collateral `collateral_for(fmspc_hex)` returns (None: 404), in the exact
form Intel's PCS and a PCCS use (signed JSON bodies, URL-encoded issuer-chain headers, DER
PCK CRL, hex root CA CRL), so `attestation.fetch` and `attestation.live` run their
production path against it. With a simulated TDX it serves the dev PKI's collateral
(`SimulatedPccs.for_simulated`); tests serve the real fixture collateral with it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

from attestation.collateral import Collateral, TcbInfo

#: `collateral_for(fmspc)` with the FMSPC in upper-case hex (None for the routes that are not
#: per platform: QE identity and CRLs); returns None when it has nothing to serve.
CollateralFor = Callable[[str | None], Collateral | None]


def pcs_response(
    collateral: Collateral, path: str, query: dict[str, list[str]]
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of the v4 API route `path` served from `collateral`."""
    c = collateral
    tee = TcbInfo.parse(c.tcb_info).id.lower()
    if path == f"/{tee}/certification/v4/tcb":
        return 200, {"TCB-Info-Issuer-Chain": quote(c.tcb_info_issuer_chain)}, _b(c.tcb_info_body())
    if path == f"/{tee}/certification/v4/qe/identity":
        headers = {"SGX-Enclave-Identity-Issuer-Chain": quote(c.qe_identity_issuer_chain)}
        return 200, headers, _b(c.qe_identity_body())
    if path == "/sgx/certification/v4/pckcrl":
        return 200, {"SGX-PCK-CRL-Issuer-Chain": quote(c.pck_crl_issuer_chain)}, c.pck_crl
    if path == "/sgx/certification/v4/rootcacrl":
        return 200, {}, c.root_ca_crl.hex().encode()  # a PCCS serves it hex-encoded
    return 404, {}, b""


def _b(text: str) -> bytes:
    return text.encode()


class SimulatedPccs:
    """A threaded HTTP server on 127.0.0.1 answering the PCS v4 collateral routes."""

    def __init__(self, collateral_for: CollateralFor, *, port: int = 0) -> None:
        self.collateral_for = collateral_for
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's naming
                url = urlparse(self.path)
                outer.requests.append(url.path)
                status, headers, body = outer.route(url.path, parse_qs(url.query))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread: threading.Thread | None = None

    @classmethod
    def for_collateral(cls, collateral: Collateral, *, port: int = 0) -> SimulatedPccs:
        """Serve one fixed collateral (for its FMSPC only)."""
        fmspc = TcbInfo.parse(collateral.tcb_info).fmspc.hex().upper()
        return cls(lambda f: collateral if f in (None, fmspc) else None, port=port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def route(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        fmspc = None
        if path.endswith("/certification/v4/tcb"):
            fmspc = query.get("fmspc", [""])[0].upper()
        collateral = self.collateral_for(fmspc)
        if collateral is None:
            return 404, {}, b""
        return pcs_response(collateral, path, query)

    def start(self) -> SimulatedPccs:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering (an outage): connections to the port are refused from now on."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


__all__ = ["SimulatedPccs", "pcs_response"]
