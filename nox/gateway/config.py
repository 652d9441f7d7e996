"""Typed settings of one gateway instance, from `NOX_GATEWAY_*` environment variables.

    NOX_GATEWAY_PORT=50051 NOX_GATEWAY_STORE_URL=postgresql://... noxctl serve gateway

Every field is an environment variable named `NOX_GATEWAY_<FIELD>` (tuples as JSON lists,
e.g. `NOX_GATEWAY_KMS_ENDPOINTS='["127.0.0.1:50061", "127.0.0.1:50062"]'`). The object is
frozen and passed down; nothing reads the environment after start.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from nox.attest.settings import AttestationSettings
from nox.gateway.context import GatewayLimits


def _address(value: str) -> str:
    text = value.removeprefix("0x")
    if value and (len(text) != 40 or any(c not in "0123456789abcdefABCDEF" for c in text)):
        raise ValueError("an address is 0x followed by 40 hex digits")
    return value


class GatewaySettings(AttestationSettings):
    """Where the gateway listens, what it stores where, which chain and KMS it trusts (peers'
    attestation: the shared `AttestationSettings` fields)."""

    model_config = SettingsConfigDict(env_prefix="NOX_GATEWAY_", frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    """Interface the gRPC server binds."""
    port: int = Field(default=50051, ge=0, le=65535)
    """gRPC port (0 = a free port)."""
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Prometheus /metrics port; unset serves none."""
    tls_cert_chain: Path | None = None
    """PEM certificate chain the gRPC server presents; with `tls_private_key`, TLS is on."""
    tls_private_key: Path | None = None
    """PEM private key of `tls_cert_chain`; unset (both) serves plaintext gRPC."""
    kms_tls_root_certificates: Path | None = None
    """PEM CA roots the KMS nodes' TLS certificates must chain to; unset: plaintext."""
    attested_tls: bool = False
    """Serve RA-TLS: a certificate made at start, in memory, bound to the gateway's enclave
    key and its `endpoint` (`nox.rpc.ratls`); exclusive with the TLS files."""
    kms_attested_tls: bool = False
    """Dial every KMS node over RA-TLS: refuse one whose certificate is not bound to an
    active KMS enclave in the registry (`kms_tls_root_certificates` is then unused)."""
    dangerous_accept_plaintext_inputs: bool = False
    """Accept EncryptInput's bare `plaintext` (readable by anyone on the wire); off by
    default: only inputs sealed to the enclave key are accepted."""
    store_url: str = "sqlite:///nox-gateway.sqlite3"
    """SQLAlchemy URL of the handle store (SQLite file, or postgresql://...)."""
    store_pool_size: int = Field(default=8, ge=1)

    chain_id: int = Field(default=31337, gt=0, lt=2**32)
    chain_rpc_url: str = "http://127.0.0.1:8545"
    """Ethereum JSON-RPC endpoint of the chain the deployment lives on."""
    registry_address: str = ""
    compute_address: str = ""
    acl_address: str = ""

    operator_key_file: Path | None = None
    """File holding the hex private key of the operator account that pays the gas of the
    gateway's own registration (the enclave key, generated in memory at start, signs the
    permit; `nox.chain.registrar`)."""
    endpoint: str = ""
    """Endpoint URI bound into the quote and the registration (default: host:port bound)."""
    registration_refresh_fraction: float = Field(default=0.5, gt=0, lt=1)
    """Register again once this fraction of the registry's max attestation age has passed."""
    registration_check_seconds: float = Field(default=30.0, gt=0)
    """How often the gateway re-reads its own registration (health follows it)."""
    dangerous_enclave_key_file: Path | None = None
    """File with a fixed enclave key's 32-byte secret in hex, registered outside the process:
    the key leaves the TEE. Development only; unset (the default) generates a fresh key in
    memory at start, which the gateway registers itself and never writes anywhere."""
    kms_endpoints: tuple[str, ...] = ()
    """host:port of every KMS node; identities and shares are checked against the registry."""
    kms_timeout_seconds: float = Field(default=10.0, gt=0)
    kms_extra_responses: int = Field(default=0, ge=0)
    """Answers to wait for beyond t (a runner can then outvote a lying node)."""

    registry_refresh_seconds: float = Field(default=5.0, gt=0)

    max_batch_handles: int = Field(default=256, ge=1, le=4096)
    max_plaintext_bytes: int = Field(default=64 * 1024, ge=1, le=1024 * 1024)
    max_public_request_bytes: int = Field(default=128 * 1024, ge=2048, le=16 * 1024 * 1024)
    """Largest request of a public method, refused before parsing (RESOURCE_EXHAUSTED)."""
    max_envelope_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=16 * 1024 * 1024)
    """Largest signed envelope; the StoreResults request limit (task outputs must fit)."""
    max_operands_request_bytes: int = Field(default=1024 * 1024, ge=1024, le=16 * 1024 * 1024)
    """Largest GetOperands request (a runner's envelope around its assignment chain)."""
    max_authorization_seconds: int = Field(default=3600, ge=1, le=3600)
    response_ttl: int = Field(default=60, ge=1)
    max_skew: int = Field(default=30, ge=0)
    max_envelope_ttl: int = Field(default=3600, ge=1)
    public_rate_per_second: float = Field(default=50.0, gt=0)
    """Sustained public calls per second per client address."""
    public_burst: int = Field(default=100, ge=1)
    """Public calls a client may make at once before being rate limited."""

    input_rate_bytes_per_second: float = Field(default=16 * 1024, gt=0)
    """Input quota: sustained request bytes (plus 256 per input) EncryptInput stores per
    client (an IPv4 address, or an IPv6 /64)."""
    input_burst_bytes: int = Field(default=1024 * 1024, ge=64 * 1024)
    """Input quota: bytes a client may store at once before being rate limited."""
    input_ttl_seconds: int = Field(default=6 * 3600, ge=60)
    """An input no task referenced is deleted this long after it was stored; keep it
    above the on-chain proof validity plus the processing lag (nox/gateway/expiry.py)."""
    input_sweep_interval_seconds: float = Field(default=60.0, gt=0)
    """Period of the sweep that deletes expired inputs."""

    @field_validator("registry_address", "compute_address", "acl_address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        return _address(value)

    @model_validator(mode="after")
    def _one_tls(self) -> GatewaySettings:
        if self.attested_tls and self.tls_cert_chain is not None:
            raise ValueError("attested_tls and tls_cert_chain are exclusive")
        return self

    @property
    def limits(self) -> GatewayLimits:
        """The request limits the domain modules enforce."""
        return GatewayLimits(
            max_batch_handles=self.max_batch_handles,
            max_plaintext_bytes=self.max_plaintext_bytes,
            max_public_request_bytes=self.max_public_request_bytes,
            max_envelope_bytes=self.max_envelope_bytes,
            max_operands_request_bytes=self.max_operands_request_bytes,
            input_ttl_seconds=self.input_ttl_seconds,
            max_authorization_seconds=self.max_authorization_seconds,
            response_ttl=self.response_ttl,
            max_skew=self.max_skew,
            max_envelope_ttl=self.max_envelope_ttl,
        )
