"""Collateral fetching against a local HTTP server serving the fixture collateral in the
Intel PCS v4 API format."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

import httpx
import pytest
from conftest import Fixtures

from attestation.collateral import Collateral
from attestation.exceptions import CollateralFetchError
from attestation.fetch import CollateralFetcher, PlatformId
from attestation.quote import parse_quote
from attestation.verify import verify_quote

CASE = "dcapqvl-tdx-v4"


class Pcs:
    """A fake PCS: routes of the v4 API backed by one Collateral."""

    def __init__(self, collateral: Collateral, fmspc: str) -> None:
        self.c = collateral
        self.fmspc = fmspc
        self.requests: list[str] = []
        self.fail = False

    def route(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        c = self.c
        if self.fail:
            return 503, {}, b"unavailable"
        if path == "/tdx/certification/v4/tcb":
            if query.get("fmspc") != [self.fmspc]:
                return 404, {}, b""
            return (
                200,
                {"TCB-Info-Issuer-Chain": quote(c.tcb_info_issuer_chain)},
                c.tcb_info_body().encode(),
            )
        if path == "/tdx/certification/v4/qe/identity":
            return (
                200,
                {"SGX-Enclave-Identity-Issuer-Chain": quote(c.qe_identity_issuer_chain)},
                c.qe_identity_body().encode(),
            )
        if path == "/sgx/certification/v4/pckcrl" and query.get("ca") == ["platform"]:
            return 200, {"SGX-PCK-CRL-Issuer-Chain": quote(c.pck_crl_issuer_chain)}, c.pck_crl
        if path == "/sgx/certification/v4/rootcacrl":
            return 200, {}, c.root_ca_crl.hex().encode()  # PCCS serves it hex-encoded
        return 404, {}, b""


@pytest.fixture
def pcs(fx: Fixtures) -> Iterator[tuple[str, Pcs]]:
    case = fx.case(CASE)
    backend = Pcs(fx.collateral(case["collateral"]), case["fmspc"])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's naming
            url = urlparse(self.path)
            backend.requests.append(url.path)
            status, headers, body = backend.route(url.path, parse_qs(url.query))
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", backend
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_fetched_collateral_is_the_fixture_collateral_and_verifies(
    fx: Fixtures, pcs: tuple[str, Pcs], intel_root: bytes
) -> None:
    url, backend = pcs
    case = fx.case(CASE)
    quote = fx.quote(case["quote"])
    fetcher = CollateralFetcher(url, clock=lambda: case["now"])
    try:
        got = await fetcher.for_quote(quote)
    finally:
        await fetcher.aclose()
    assert got == backend.c
    v = verify_quote(quote, got, now=case["now"], trusted_roots=[intel_root])
    assert v.status == case["status"]


async def test_collateral_is_cached_until_max_age(fx: Fixtures, pcs: tuple[str, Pcs]) -> None:
    url, backend = pcs
    case = fx.case(CASE)
    now = [float(case["window"][0])]
    async with httpx.AsyncClient() as client:
        fetcher = CollateralFetcher(url, client=client, clock=lambda: now[0], max_cache_age=600)
        platform = PlatformId.of(parse_quote(fx.quote(case["quote"])))
        assert platform.fmspc.hex().upper() == case["fmspc"]
        assert platform.ca == "platform"
        await fetcher.fetch(platform)
        assert len(backend.requests) == 4
        now[0] += 599
        await fetcher.fetch(platform)
        assert len(backend.requests) == 4
        now[0] += 2
        await fetcher.fetch(platform)
        assert len(backend.requests) == 8


async def test_cache_never_outlives_the_collateral(fx: Fixtures, pcs: tuple[str, Pcs]) -> None:
    url, backend = pcs
    case = fx.case(CASE)
    now = [float(case["window"][1] - 10)]
    async with httpx.AsyncClient() as client:
        fetcher = CollateralFetcher(url, client=client, clock=lambda: now[0], max_cache_age=86400)
        platform = PlatformId.of(parse_quote(fx.quote(case["quote"])))
        await fetcher.fetch(platform)
        now[0] += 11  # past the PCK CRL's nextUpdate although max_cache_age is a day
        await fetcher.fetch(platform)
        assert len(backend.requests) == 8


async def test_http_errors_are_typed(fx: Fixtures, pcs: tuple[str, Pcs]) -> None:
    url, backend = pcs
    backend.fail = True
    async with httpx.AsyncClient() as client:
        fetcher = CollateralFetcher(url, client=client)
        with pytest.raises(CollateralFetchError):
            await fetcher.for_quote(fx.quote(fx.case(CASE)["quote"]))


async def test_unreachable_endpoint_is_typed(fx: Fixtures) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        fetcher = CollateralFetcher("http://127.0.0.1:9", client=client)
        with pytest.raises(CollateralFetchError):
            await fetcher.for_quote(fx.quote(fx.case(CASE)["quote"]))
