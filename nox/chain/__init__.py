"""web3 access to the Nox contracts: backends, deployment, typed clients, registry view."""

from __future__ import annotations

from nox.chain.artifacts import Artifact, load_artifact
from nox.chain.backend import DEV_CHAIN_ID, ChainBackend, EmbeddedChain, RpcChain
from nox.chain.contracts import (
    AclClient,
    ComputeClient,
    KmsKeys,
    NodeRecord,
    OperationEvent,
    RegistryClient,
)
from nox.chain.deploy import Deployment, deploy_all
from nox.chain.exceptions import ContractReverted, NodeNotAuthorized
from nox.chain.registry import Node, QuoteVerifier, RegistryView

__all__ = [
    "DEV_CHAIN_ID",
    "AclClient",
    "Artifact",
    "ChainBackend",
    "ComputeClient",
    "ContractReverted",
    "Deployment",
    "EmbeddedChain",
    "KmsKeys",
    "Node",
    "NodeNotAuthorized",
    "NodeRecord",
    "OperationEvent",
    "QuoteVerifier",
    "RegistryClient",
    "RegistryView",
    "RpcChain",
    "deploy_all",
    "load_artifact",
]
