"""Deploy the whole contract set: NoxRegistry, ACL, NoxCompute (and a sample token)."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from nox.chain.artifacts import load_artifact
from nox.chain.backend import ChainBackend


@dataclass(frozen=True)
class Deployment:
    """Checksum addresses of a deployed contract set."""

    chain_id: int
    registry: str
    acl: str
    compute: str
    token: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "chain_id": self.chain_id,
            "registry": self.registry,
            "acl": self.acl,
            "compute": self.compute,
            "token": self.token,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Deployment:
        token = data.get("token")
        return cls(
            int(str(data["chain_id"])),
            str(data["registry"]),
            str(data["acl"]),
            str(data["compute"]),
            str(token) if token else None,
        )


def deploy_all(
    backend: ChainBackend,
    *,
    owner: LocalAccount | None = None,
    with_token: bool = False,
    token_name: str = "Confidential Token",  # noqa: S107 - a display name, not a secret
) -> Deployment:
    """Deploy registry, ACL and NoxCompute (wired together), owned by `owner` (default:
    the backend's deployer); optionally the sample ConfidentialToken."""
    owner = owner or backend.deployer
    registry = backend.deploy(load_artifact("NoxRegistry"), owner.address, sender=owner)
    acl_artifact = load_artifact("ACL")
    acl = backend.deploy(acl_artifact, sender=owner)
    compute = backend.deploy(
        load_artifact("NoxCompute"), registry, acl, owner.address, sender=owner
    )
    backend.transact(backend.contract(acl_artifact, acl).functions.setCompute(compute), owner)
    token = None
    if with_token:
        token = backend.deploy(
            load_artifact("ConfidentialToken"), compute, token_name, sender=owner
        )
    return Deployment(backend.chain_id, registry, acl, compute, token)
