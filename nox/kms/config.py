"""Typed settings of a KMS node: environment variables `NOX_KMS_*` and an optional file.

    NOX_KMS_SHARE_FILE=kms/share-1.json NOX_KMS_KEK_FILE=kek-1 \
    NOX_KMS_REGISTRY_ADDRESS=0x… NOX_KMS_CHAIN_ID=31337 noxctl serve kms

A TOML or JSON file (`noxctl serve kms --config FILE`, or `NOX_KMS_CONFIG_FILE`) holds the
same keys in lower case; environment variables override it. Secrets are never settings
values except the scrypt passphrase, which is a `SecretStr` (hidden in reprs); prefer a KEK
file released to the TD (docs/kms.md §4). Options that weaken security are named
`dangerous_*` and are off by default.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from nox.attest.settings import AttestationSettings
from nox.crypto.eip712 import Domain
from nox.errors import InvalidArgument
from nox.kms.node import KmsNodeSettings
from nox.rpc import ServerSettings
from nox.rpc.ratls import TlsIdentity

ENV_PREFIX = "NOX_KMS_"
DEFAULT_PORT = 50052


class InvalidKmsSettings(InvalidArgument):
    """KMS settings that cannot work (missing share file, bad address, both KEK kinds)."""


class KmsSettings(AttestationSettings):
    """Everything `noxctl serve kms` needs; each field is `NOX_KMS_<FIELD>` in the environment
    (peers' attestation: the shared `AttestationSettings` fields, e.g. `NOX_KMS_PCCS_URL`)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    # --- where it listens (nox.rpc.ServerSettings)
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    metrics_port: int | None = Field(None, ge=0, le=65535)
    tls_cert_chain: Path | None = None
    tls_private_key: Path | None = None
    # RA-TLS (nox.rpc.ratls): serve a certificate made at start, in memory, for a fresh TLS
    # key bound to the node's enclave key; exclusive with the two files above.
    attested_tls: bool = False
    graceful_shutdown_seconds: float = Field(5.0, ge=0)

    # --- the deployment (EIP-712 domain of every envelope)
    chain_id: int = Field(31337, ge=1, lt=2**32)
    # 20-byte NoxRegistry address, 0x-hex: verifyingContract of the envelope domain.
    registry_address: str

    # --- the share (nox.kms.keys): a sealed share file and its KEK
    share_file: Path
    # A raw 32-byte KEK file (32 bytes, or 64 hex characters)...
    kek_file: Path | None = None
    # ...or the scrypt passphrase the share was sealed with (one of the two).
    kek_passphrase: SecretStr | None = None
    # The published public.json to compare the share file's key set with, until the node
    # reads it from the registry; the node refuses to serve on any difference.
    public_file: Path | None = None

    # --- the chain: the registry view (who may ask) and the ACL (public decryption).
    # Without a chain, the caller injects a registry (devnet, tests).
    chain_rpc_url: str | None = None
    # 20-byte ACL contract address, 0x-hex; without it public decryption is refused.
    acl_address: str | None = None

    # --- replay protection: a SQLAlchemy URL (sqlite:///…, postgresql+psycopg://…) keeps
    # seen nonces across restarts; without one they are kept in memory only.
    replay_database_url: str | None = None
    replay_cache_entries: int = Field(1_000_000, ge=1)

    # --- limits (nox.kms.node.KmsNodeSettings)
    max_batch: int = Field(256, ge=1)
    response_ttl: int = Field(60, ge=1)
    max_skew: int = Field(30, ge=0)
    max_envelope_ttl: int = Field(3600, ge=1)
    # Largest Delegate request (the gateway's envelope around up to max_batch targets and the
    # relayed runner request or user authorization), refused before parsing.
    max_delegate_request_bytes: int = Field(2 * 1024 * 1024, ge=4096, le=16 * 1024 * 1024)
    # How often the node re-checks its own registration (it serves only while registered
    # and attested; health follows), seconds.
    registration_check_seconds: float = Field(30.0, gt=0)

    # --- self-registration (nox.chain.registrar): the enclave key is generated in memory at
    # start and registered by the node itself; the operator account pays the gas.
    # File holding the hex private key of the operator account (needed with a chain).
    operator_key_file: Path | None = None
    # Endpoint URI bound into the quote and the registration (default: host:port bound).
    endpoint: str = ""
    # Register again once this fraction of the registry's max attestation age has passed.
    registration_refresh_fraction: float = Field(0.5, gt=0, lt=1)

    # --- development only
    # A fixed enclave key (file with 32 bytes or 64 hex characters) instead of one generated
    # in memory at start: the key leaves the TEE. For reproducible local networks only.
    dangerous_enclave_key_file: Path | None = None
    # A JSON file {"0x<address>": <role>} trusted as the registry without any attestation.
    # Only for running a node without a chain (tests, demos).
    dangerous_static_registry_file: Path | None = None
    # (`dangerous_simulated_tdx_dir`, a simulated-TDX dev root trusted for peers' quotes,
    # comes with the shared AttestationSettings.)

    @field_validator("registry_address", "acl_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            raw = bytes.fromhex(value.removeprefix("0x"))
        except ValueError:
            raise ValueError("must be a 0x-hex address") from None
        if len(raw) != 20:
            raise ValueError("must be a 20-byte address")
        return "0x" + raw.hex()

    @model_validator(mode="after")
    def _one_kek(self) -> KmsSettings:
        if (self.kek_file is None) == (self.kek_passphrase is None):
            raise ValueError("set exactly one of kek_file and kek_passphrase")
        if (self.tls_cert_chain is None) != (self.tls_private_key is None):
            raise ValueError("TLS needs both tls_cert_chain and tls_private_key")
        if self.attested_tls and self.tls_cert_chain is not None:
            raise ValueError("attested_tls and tls_cert_chain are exclusive")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file's values (passed as init arguments by `load`).
        return (env_settings, init_settings)

    @classmethod
    def load(cls, config_file: Path | None = None, **values: Any) -> KmsSettings:
        """Settings from `config_file` (TOML or JSON) and `values`, overridden by the environment.

        Raises InvalidKmsSettings with pydantic's explanation (never a passphrase).
        """
        data: dict[str, Any] = {}
        if config_file is not None:
            data = _read_file(config_file)
        data.update(values)
        try:
            return cls(**data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
                for err in exc.errors(include_input=False, include_url=False)
            )
            raise InvalidKmsSettings(f"invalid KMS settings: {problems}") from None

    @property
    def domain(self) -> Domain:
        """The envelope domain {name "Nox", version "1", chain id, NoxRegistry}."""
        return Domain(
            chain_id=self.chain_id,
            verifying_contract=bytes.fromhex(self.registry_address[2:]),
        )

    def server_settings(
        self, tls_identity: Callable[[str], TlsIdentity] | None = None
    ) -> ServerSettings:
        """The `nox.rpc` server settings these describe; with `attested_tls`, the server's
        certificate comes from `tls_identity` (the node's `KmsNode.tls_identity`)."""
        if self.attested_tls and tls_identity is None:
            raise InvalidKmsSettings("attested_tls needs the node's enclave key")
        return ServerSettings(
            host=self.host,
            port=self.port,
            metrics_port=self.metrics_port,
            tls_cert_chain=self.tls_cert_chain,
            tls_private_key=self.tls_private_key,
            graceful_shutdown_seconds=self.graceful_shutdown_seconds,
            tls_identity=tls_identity if self.attested_tls else None,
        )

    def node_settings(self) -> KmsNodeSettings:
        """The node's limits."""
        return KmsNodeSettings(
            max_batch=self.max_batch,
            response_ttl=self.response_ttl,
            max_skew=self.max_skew,
            max_envelope_ttl=self.max_envelope_ttl,
        )


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidKmsSettings(f"cannot read {path.name}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidKmsSettings(f"{path.name} does not parse: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidKmsSettings(f"{path.name} must hold a table of settings")
    # A file may group the keys under [kms]; top-level keys work too.
    section = data.get("kms", data)
    if not isinstance(section, dict):
        raise InvalidKmsSettings(f"{path.name}: [kms] must be a table")
    return dict(section)
