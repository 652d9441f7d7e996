"""The runner's settings: environment variables `NOX_RUNNER_*` (or keyword arguments).

One frozen object per process, passed down (DESIGN §9). Secrets are never settings values:
the operator's gas-paying key is read from a file named here, the enclave key is generated
inside the process at start and never leaves it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from nox.attest.settings import AttestationSettings
from nox.rpc import ChannelSettings, ServerSettings
from nox.runner.agent import AgentSettings
from nox.runner.executor import RunnerLimits

__all__ = ["RunnerSettings"]


class RunnerSettings(AttestationSettings):
    """Everything `noxctl serve runner` needs; each field is `NOX_RUNNER_<FIELD>` (the
    attestation fields are `AttestationSettings`', shared by every service)."""

    model_config = SettingsConfigDict(env_prefix="NOX_RUNNER_", frozen=True, extra="forbid")

    # --- the deployment
    chain_rpc_url: str = "http://127.0.0.1:8545"
    """Ethereum JSON-RPC endpoint of the chain holding NoxRegistry."""
    registry_address: str = ""
    """NoxRegistry address (0x...); also the envelopes' EIP-712 verifying contract."""
    compute_address: str = ""
    """NoxCompute address (0x...): the audience of the ingestor's transaction messages."""
    operator_key_file: Path | None = None
    """File holding the hex private key of the operator account that pays registration gas
    (registerWithPermit); required when auto_register is on."""
    kms_public_file: Path | None = None
    """KMS public.json (`noxctl kms keygen`); when unset the key set is read from NoxRegistry."""

    # --- peers
    orchestrator_endpoint: str = "127.0.0.1:50053"
    orchestrator_tls_root_certificates: Path | None = None
    """PEM CA roots the orchestrator's TLS certificate must chain to; unset: plaintext."""
    gateway_endpoint: str = "127.0.0.1:50051"
    gateway_tls_root_certificates: Path | None = None
    """PEM CA roots the gateway's TLS certificate must chain to; unset: plaintext."""
    orchestrator_attested_tls: bool = False
    """Dial the orchestrator over RA-TLS: refuse it unless its certificate is bound to an
    active orchestrator enclave in the registry (the TLS roots are then unused)."""
    gateway_attested_tls: bool = False
    """Dial the gateway over RA-TLS: refuse it unless its certificate is bound to an active
    gateway enclave in the registry (the TLS roots are then unused)."""

    # --- the loop
    capacity: int = Field(default=4, ge=1)
    processes: int = Field(default=1, ge=1)
    """Agent processes to run, each with its own enclave key and registration."""
    claim_wait_seconds: int = Field(default=10, ge=0)
    heartbeat_seconds: float = Field(default=10.0, gt=0)
    registration_check_seconds: float = Field(default=30.0, gt=0)
    reregister_margin_seconds: int = Field(default=3600, ge=0)
    auto_register: bool = True
    endpoint: str = ""
    """Endpoint URI bound into the quote (empty: the runner sits behind NAT)."""

    # --- limits (the runner's own caps; assignments may only tighten them)
    max_operations: int = Field(default=256, ge=1)
    max_input_handles: int = Field(default=256, ge=1)
    max_output_handles: int = Field(default=768, ge=1)
    max_ciphertext_bytes: int = Field(default=64 * 1024, ge=1)
    max_execution_seconds: int = Field(default=300, ge=1)

    # --- the status server
    status_host: str = "127.0.0.1"
    status_port: int = Field(default=0, ge=0, le=65535)
    """Port of RunnerService (0 = a free port; with several processes, port + index)."""
    metrics_port: int | None = None
    tls_cert_chain: Path | None = None
    """PEM certificate chain the status server presents; with `tls_private_key`, TLS is on."""
    tls_private_key: Path | None = None
    """PEM private key of `tls_cert_chain`; unset (both) serves plaintext gRPC."""

    def status_server_settings(self) -> ServerSettings:
        """Where the RunnerService status server listens, TLS included."""
        return ServerSettings(
            host=self.status_host,
            port=self.status_port,
            metrics_port=self.metrics_port,
            tls_cert_chain=self.tls_cert_chain,
            tls_private_key=self.tls_private_key,
        )

    def orchestrator_channel_settings(self) -> ChannelSettings:
        """How the runner dials the orchestrator (TLS roots when configured)."""
        return ChannelSettings(tls_root_certificates=self.orchestrator_tls_root_certificates)

    def gateway_channel_settings(self) -> ChannelSettings:
        """How the runner dials the gateway (TLS roots when configured)."""
        return ChannelSettings(tls_root_certificates=self.gateway_tls_root_certificates)

    def agent_settings(self) -> AgentSettings:
        return AgentSettings(
            capacity=self.capacity,
            claim_wait_seconds=self.claim_wait_seconds,
            heartbeat_seconds=self.heartbeat_seconds,
            registration_check_seconds=self.registration_check_seconds,
            reregister_margin_seconds=self.reregister_margin_seconds,
            auto_register=self.auto_register,
            endpoint=self.endpoint,
        )

    def limits(self) -> RunnerLimits:
        return RunnerLimits(
            max_operations=self.max_operations,
            max_input_handles=self.max_input_handles,
            max_output_handles=self.max_output_handles,
            max_ciphertext_bytes=self.max_ciphertext_bytes,
            max_execution_seconds=self.max_execution_seconds,
        )

    def for_process(self, index: int) -> RunnerSettings:
        """The settings of agent process `index` (its own status port when one is fixed)."""
        port = self.status_port + index if self.status_port else 0
        return self.model_copy(update={"status_port": port, "processes": 1})
