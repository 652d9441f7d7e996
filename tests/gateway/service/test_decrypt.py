"""Decrypt (user authorization + ACL) and PublicDecrypt (gateway-signed proofs)."""

from __future__ import annotations

import grpc
from eth_account import Account
from eth_account.messages import encode_typed_data
from gateway_servers import GatewayNet
from gateway_support import (
    CHAIN_ID,
    COMPUTE,
    UINT64,
    authorization,
    encrypt_request,
    expect,
    open_material,
    result_handle,
    u64,
)

from nox.crypto.delegation import RequesterKey
from nox.crypto.keys import EnclaveKey
from nox.v1 import gateway_pb2


async def stored(gw: GatewayNet, *values: int) -> list[bytes]:
    return [
        (await gw.stub.EncryptInput(encrypt_request(gw.key.public_key, plaintext=u64(v)))).handle
        for v in values
    ]


async def test_a_viewer_decrypts_and_a_non_viewer_is_denied(gw: GatewayNet) -> None:
    a, b = await stored(gw, 11, 22)
    user, stranger = EnclaveKey.generate(), EnclaveKey.generate()
    gw.acl.viewers |= {(a, user.address), (b, user.address)}
    for kind in ("secp256k1", "rsa"):
        requester = (
            RequesterKey.generate_secp256k1()
            if kind == "secp256k1"
            else RequesterKey.generate_rsa()
        )
        auth = authorization(user, requester, now=gw.clock.now)
        response = await gw.stub.Decrypt(
            gateway_pb2.DecryptRequest(authorization=auth, handles=[b, a])
        )
        assert [c.handle for c in response.ciphertexts] == [b, a]
        assert all(c.value_tag == b"" for c in response.ciphertexts)
        assert response.kms_threshold == 2
        assert len(response.kms_delegations) == 2
        plaintexts = open_material(
            response.ciphertexts,
            response.kms_delegations,
            requester,
            public=gw.public,
            gateway=gw.key.address,
            registry=gw.registry,
            now=gw.clock.now,
        )
        assert plaintexts == [u64(22), u64(11)]
    requester = RequesterKey.generate_secp256k1()
    await expect(
        gw.stub.Decrypt(
            gateway_pb2.DecryptRequest(
                authorization=authorization(stranger, requester, now=gw.clock.now), handles=[a]
            )
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "ACL_DENIED",
    )


async def test_decrypt_refusals(gw: GatewayNet) -> None:
    (a,) = await stored(gw, 5)
    missing = result_handle(UINT64)
    user, other = EnclaveKey.generate(), EnclaveKey.generate()
    gw.acl.viewers |= {(a, user.address), (missing, user.address)}
    requester = RequesterKey.generate_secp256k1()
    now = gw.clock.now
    forged = authorization(user, requester, now=now)
    forged.signature = authorization(other, requester, now=now).signature
    cases = [
        (authorization(user, requester, now=now, not_before=now - 700, window=600), [a],
         grpc.StatusCode.UNAUTHENTICATED, "AUTHORIZATION_EXPIRED"),
        (authorization(user, requester, now=now, not_before=now + 60), [a],
         grpc.StatusCode.UNAUTHENTICATED, "AUTHORIZATION_EXPIRED"),
        (authorization(user, requester, now=now, window=3601), [a],
         grpc.StatusCode.INVALID_ARGUMENT, "AUTHORIZATION_WINDOW_INVALID"),
        (forged, [a], grpc.StatusCode.UNAUTHENTICATED, "AUTHORIZATION_INVALID"),
        (authorization(user, requester, now=now, handles=[missing]), [a],
         grpc.StatusCode.PERMISSION_DENIED, "HANDLE_NOT_AUTHORIZED"),
        (authorization(user, requester, now=now), [missing],
         grpc.StatusCode.NOT_FOUND, "HANDLE_NOT_FOUND"),
        (authorization(user, requester, now=now), [],
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    ]  # fmt: skip
    for auth, handles, code, reason in cases:
        await expect(
            gw.stub.Decrypt(gateway_pb2.DecryptRequest(authorization=auth, handles=handles)),
            code,
            reason,
        )


async def test_public_decrypt_returns_values_with_proofs_a_contract_checks(
    gw: GatewayNet,
) -> None:
    a, b = await stored(gw, 77, 88)
    gw.acl.public.add(a)
    response = await gw.stub.PublicDecrypt(gateway_pb2.PublicDecryptRequest(handles=[a]))
    (result,) = response.decryptions
    assert (result.handle, result.plaintext) == (a, u64(77))
    proof = result.decryption_proof
    assert proof[65:] == u64(77)
    typed = encode_typed_data(
        full_message={
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "DecryptionProof": [
                    {"name": "handle", "type": "bytes32"},
                    {"name": "plaintext", "type": "bytes"},
                ],
            },
            "primaryType": "DecryptionProof",
            "domain": {
                "name": "NoxCompute",
                "version": "1",
                "chainId": CHAIN_ID,
                "verifyingContract": "0x" + COMPUTE.hex(),
            },
            "message": {"handle": a, "plaintext": u64(77)},
        }
    )
    signer = Account.recover_message(typed, signature=proof[:65])
    assert bytes.fromhex(signer[2:]) == gw.key.address
    await expect(
        gw.stub.PublicDecrypt(gateway_pb2.PublicDecryptRequest(handles=[a, b])),
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_PUBLICLY_DECRYPTABLE",
    )
