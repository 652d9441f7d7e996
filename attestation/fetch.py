"""Collateral fetching from a PCCS or the Intel PCS v4 API: the package's only network I/O.

The HTTP client and the clock are injected; results are cached per (TEE, FMSPC, PCK CA)
until the earlier of `max_cache_age` and the collateral's own earliest nextUpdate, and
concurrent requests for the same key share one fetch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

import httpx
from cryptography import x509

from attestation.collateral import Collateral, QeIdentity, TcbInfo, pem_certificates
from attestation.exceptions import AttestationError, CertificateChainError, CollateralFetchError
from attestation.pck import SGX_EXTENSION_OID, parse_sgx_extension
from attestation.quote import Quote, parse_quote
from attestation.verify import DECODE_ERRORS

INTEL_PCS_URL = "https://api.trustedservices.intel.com"
INTEL_ROOT_CA_CRL_URL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"


@dataclass(frozen=True, slots=True)
class PlatformId:
    """What selects a platform's collateral."""

    tdx: bool
    fmspc: bytes
    ca: str  # "platform" or "processor"

    @classmethod
    def of(cls, quote: Quote) -> PlatformId:
        """FMSPC and PCK CA from the quote's PCK certificate chain."""
        ders = pem_certificates(quote.pck_chain_pem, "pck_certificate_chain")
        if len(ders) < 2:
            raise CertificateChainError("pck_certificate_chain", "needs the PCK CA certificate")
        try:
            leaf = x509.load_der_x509_certificate(ders[0])
            inter = x509.load_der_x509_certificate(ders[1])
            ext = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION_OID))
            cn = inter.subject.rfc4514_string()
        except DECODE_ERRORS as exc:
            raise CertificateChainError("pck_certificate_chain", repr(exc)) from None
        if not isinstance(ext.value, x509.UnrecognizedExtension):
            raise CertificateChainError("pck_certificate.sgx_extension", "unexpected type")
        fmspc = parse_sgx_extension(ext.value.value).fmspc
        return cls(quote.is_tdx, fmspc, "processor" if "Processor CA" in cn else "platform")


class CollateralFetcher:
    """Fetch and cache collateral from `base_url` (a PCCS or Intel's PCS)."""

    def __init__(
        self,
        base_url: str = INTEL_PCS_URL,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        max_cache_age: int = 3600,
        root_ca_crl_url: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._owns_client = client is None
        self._clock = clock
        self._max_age = max_cache_age
        self._root_crl_url = root_ca_crl_url or root_ca_crl_url_for(self._base)
        self._cache: dict[PlatformId, tuple[Collateral, float]] = {}
        self._locks: dict[PlatformId, asyncio.Lock] = {}

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def for_quote(self, quote: bytes | Quote) -> Collateral:
        """Collateral for the platform that produced `quote`."""
        q = quote if isinstance(quote, Quote) else parse_quote(quote)
        return await self.fetch(PlatformId.of(q))

    async def fetch(self, platform: PlatformId) -> Collateral:
        lock = self._locks.setdefault(platform, asyncio.Lock())
        async with lock:
            hit = self._cache.get(platform)
            if hit is not None and self._clock() < hit[1]:
                return hit[0]
            collateral = await self._download(platform)
            self._cache[platform] = (collateral, self._expiry(collateral))
            return collateral

    def _expiry(self, collateral: Collateral) -> float:
        limit = self._clock() + self._max_age
        try:
            limit = min(
                limit,
                TcbInfo.parse(collateral.tcb_info).next_update,
                QeIdentity.parse(collateral.qe_identity).next_update,
            )
            for der in (collateral.pck_crl, collateral.root_ca_crl):
                nxt = x509.load_der_x509_crl(der).next_update_utc
                if nxt is not None:
                    limit = min(limit, nxt.timestamp())
        except (AttestationError, ValueError):
            return self._clock()  # undecodable: do not cache; verification will say why
        return limit

    async def _get(self, url: str, params: dict[str, str] | None = None) -> httpx.Response:
        try:
            response = await self._client.get(url, params=params)
        except httpx.HTTPError as exc:
            raise CollateralFetchError(url, f"request failed: {exc!r}") from None
        return checked_response(url, response)

    async def _download(self, platform: PlatformId) -> Collateral:
        requests = collateral_requests(self._base, self._root_crl_url, platform)
        responses = await asyncio.gather(*(self._get(url, params) for url, params in requests))
        return assemble_collateral(*responses)


#: (url, query parameters) of one PCS / PCCS request.
Request = tuple[str, dict[str, str] | None]


def root_ca_crl_url_for(base_url: str) -> str:
    """Where the root CA CRL is served: Intel's certificate site for the PCS, else the PCCS."""
    base = base_url.rstrip("/")
    if base == INTEL_PCS_URL:
        return INTEL_ROOT_CA_CRL_URL
    return f"{base}/sgx/certification/v4/rootcacrl"


def collateral_requests(base_url: str, root_crl_url: str, platform: PlatformId) -> list[Request]:
    """The four v4 API requests of a platform's collateral: TCB info, QE identity, PCK CRL,
    root CA CRL (the order `assemble_collateral` takes the responses in)."""
    base = base_url.rstrip("/")
    tee = "tdx" if platform.tdx else "sgx"
    fmspc = platform.fmspc.hex().upper()
    return [
        (f"{base}/{tee}/certification/v4/tcb", {"fmspc": fmspc}),
        (f"{base}/{tee}/certification/v4/qe/identity", None),
        (f"{base}/sgx/certification/v4/pckcrl", {"ca": platform.ca, "encoding": "der"}),
        (root_crl_url, None),
    ]


def checked_response(url: str, response: httpx.Response) -> httpx.Response:
    """`response` if it is a 200; CollateralFetchError naming the status otherwise."""
    if response.status_code != 200:
        raise CollateralFetchError(url, f"HTTP {response.status_code}")
    return response


def _header(response: httpx.Response, *names: str) -> str:
    for name in names:
        value = response.headers.get(name)
        if value:
            return unquote(value)
    raise CollateralFetchError(str(response.url), f"response lacks header {names[0]}")


def assemble_collateral(
    tcb: httpx.Response, qe: httpx.Response, pck_crl: httpx.Response, root_crl: httpx.Response
) -> Collateral:
    """Collateral from the four responses of `collateral_requests` (nothing is trusted yet:
    the verifier checks every signature against the trusted roots)."""
    return Collateral.from_pcs(
        tcb_info_body=tcb.content,
        tcb_info_issuer_chain=_header(tcb, "TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"),
        qe_identity_body=qe.content,
        qe_identity_issuer_chain=_header(qe, "SGX-Enclave-Identity-Issuer-Chain"),
        pck_crl=pck_crl.content,
        pck_crl_issuer_chain=_header(pck_crl, "SGX-PCK-CRL-Issuer-Chain"),
        root_ca_crl=root_crl.content,
    )


def download_collateral(
    client: httpx.Client, base_url: str, platform: PlatformId, *, root_crl_url: str | None = None
) -> Collateral:
    """Fetch a platform's collateral with a blocking client (the live collateral source's
    background thread); raises CollateralFetchError or CollateralFormatError."""
    responses = []
    for url, params in collateral_requests(
        base_url, root_crl_url or root_ca_crl_url_for(base_url), platform
    ):
        try:
            response = client.get(url, params=params)
        except httpx.HTTPError as exc:
            raise CollateralFetchError(url, f"request failed: {exc!r}") from None
        responses.append(checked_response(url, response))
    return assemble_collateral(*responses)
