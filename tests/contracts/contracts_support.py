"""Helpers shared by the contract and chain tests: bound TDX quotes and registered nodes."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3.logs import DISCARD

from attestation.binding import ext_data, report_data_for
from attestation.measurements import Measurements
from attestation.providers.simulated import DEFAULT_MR_TD, SimulatedTdx
from nox.chain.backend import ChainBackend
from nox.chain.contracts import AclClient, ComputeClient, RegistryClient, to_bytes20
from nox.chain.deploy import Deployment, deploy_all

ENDPOINT = "https://runner-1.example:7443"
MEASUREMENTS = Measurements(mr_td=DEFAULT_MR_TD)
WORKLOAD_ID = MEASUREMENTS.workload_id


@dataclass
class Net:
    """A fresh deployment on a backend, with typed clients and a governance key."""

    backend: ChainBackend
    deployment: Deployment
    registry: RegistryClient
    acl: AclClient
    compute: ComputeClient
    owner: LocalAccount
    sim: SimulatedTdx

    def bound_quote(
        self,
        enclave: bytes,
        role: int,
        operator: bytes,
        endpoint: str = ENDPOINT,
        *,
        measurements: Measurements = MEASUREMENTS,
        registry: bytes | None = None,
        chain_id: int | None = None,
    ) -> bytes:
        ext = ext_data(
            role,
            operator,
            chain_id or self.backend.chain_id,
            registry or to_bytes20(self.registry.address),
            endpoint,
        )
        return self.sim.quote(report_data_for(enclave, ext), measurements=measurements)

    def new_enclave(self) -> LocalAccount:
        account: LocalAccount = Account.create()
        self.backend.fund(account.address)
        return account

    def register_node(
        self, role: int, *, endpoint: str = ENDPOINT, allow: bool = True
    ) -> LocalAccount:
        """An enclave registered (by itself) in `role`, its workload allowlisted."""
        if allow:
            self.registry.allow_workload(role, WORKLOAD_ID, self.owner)
        enclave = self.new_enclave()
        operator = self.backend.accounts[1]
        quote = self.bound_quote(
            to_bytes20(enclave.address), role, to_bytes20(operator.address), endpoint
        )
        self.registry.register(quote, role, operator.address, endpoint, enclave)
        return enclave


def make_net(backend: ChainBackend, sim: SimulatedTdx, *, with_token: bool = False) -> Net:
    d = deploy_all(backend, with_token=with_token)
    return Net(
        backend,
        d,
        RegistryClient(backend, d.registry),
        AclClient(backend, d.acl),
        ComputeClient(backend, d.compute),
        backend.deployer,
        sim,
    )


class Harness:
    """The NoxHarness test app: makes handles it keeps access to, runs ops, validates proofs."""

    def __init__(self, net: Net) -> None:
        from nox.chain.artifacts import load_artifact

        self.net = net
        self.address = net.backend.deploy(load_artifact("NoxHarness"), net.compute.address)
        self.contract = net.backend.contract(load_artifact("NoxHarness"), self.address)
        self.fn = self.contract.functions

    def encrypt(self, value: int, type_code: int) -> bytes:
        word = (value % 2**256).to_bytes(32, "big")
        receipt = self.net.backend.transact(self.fn.encrypt(word, type_code))
        (event,) = self.contract.events.Made().process_receipt(receipt, errors=DISCARD)
        return bytes(event.args.handle)

    def run(self, op: int, inputs: list[bytes]) -> tuple[list[bytes], int, dict[str, int]]:
        """Outputs, the gas NoxCompute spent, and the block (timestamp) of the transaction."""
        receipt = self.net.backend.transact(self.fn.run(op, inputs))
        (event,) = self.contract.events.Measured().process_receipt(receipt, errors=DISCARD)
        block = self.net.backend.w3.eth.get_block(receipt["blockNumber"])
        return (
            [bytes(h) for h in event.args.outputs],
            int(event.args.gasUsed),
            {"timestamp": int(block["timestamp"]), "number": int(block["number"])},
        )
