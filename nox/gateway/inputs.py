"""EncryptInput: open a user's sealed input, encrypt it under the KMS key, store, prove.

Checks, in order (nothing is stored unless all pass): the input is sealed
(`sealed_plaintext`; a bare `plaintext` is refused with PLAINTEXT_INPUT_REFUSED unless the
gateway runs with `dangerous_accept_plaintext_inputs`, and both at once are
INVALID_ARGUMENT); chain id is the gateway's (WRONG_CHAIN); type code present and known
(UNKNOWN_VALUE_TYPE); owner and application are 20-byte non-zero addresses; the sealed input
opens under the gateway's enclave key for exactly this chain, type, owner and application
(SEALED_INPUT_INVALID, `nox.crypto.sealing`); the plaintext has exactly the type's size and
a valid value (INVALID_PLAINTEXT; dynamic types: 1..max_plaintext_bytes bytes, strings
valid UTF-8).
Then: a fresh input handle, ECIES under the KMS public key with the handle as associated
data (DESIGN §5), the value tag HMAC-SHA256(tag key, handle ‖ plaintext) (`nox.crypto.tags`;
UNAVAILABLE while the gateway holds no tag key), the gateway's producer binding of the row
(`nox.gateway.bindings`), the record stored, and the 137-byte input proof signed over the
stored creation time.

The plaintext is never logged or put in an error.
"""

from __future__ import annotations

from nox.crypto import ecies
from nox.crypto.sealing import open_sealed_input
from nox.errors import InvalidArgument
from nox.gateway.bindings import bind_input
from nox.gateway.context import GatewayContext
from nox.gateway.exceptions import PlaintextInputRefused, WrongChain
from nox.gateway.proofs import make_input_proof
from nox.gateway.store import HandleRecord
from nox.handles import InvalidPlaintext, ValueType, decode_plaintext, new_input_handle, value_tag
from nox.v1 import gateway_pb2

_ZERO_ADDRESS = bytes(20)


def _address(value: bytes, name: str) -> bytes:
    if len(value) != 20:
        raise InvalidArgument(f"{name} must be a 20-byte address", metadata={"field": name})
    if value == _ZERO_ADDRESS:
        raise InvalidArgument(f"{name} must not be the zero address", metadata={"field": name})
    return bytes(value)


def validate_input(
    ctx: GatewayContext, request: gateway_pb2.EncryptInputRequest
) -> tuple[ValueType, bytes, bytes, bytes]:
    """(type, plaintext, owner, application) of a well-formed request; raises otherwise."""
    sealed = request.HasField("sealed_plaintext")
    if sealed and request.plaintext:
        raise InvalidArgument(
            "set exactly one of plaintext and sealed_plaintext", metadata={"field": "plaintext"}
        )
    if not sealed and not ctx.dangerous_accept_plaintext_inputs:
        raise PlaintextInputRefused(
            "this gateway accepts only inputs sealed to its enclave key (sealed_plaintext)",
            metadata={"field": "plaintext"},
        )
    if request.chain_id != ctx.deployment.chain_id:
        raise WrongChain(
            f"this gateway serves chain {ctx.deployment.chain_id}",
            metadata={"chain_id": str(ctx.deployment.chain_id)},
        )
    if not request.HasField("type_code"):
        raise InvalidArgument("type_code is required", metadata={"field": "type_code"})
    vt = ValueType.from_code(request.type_code)
    owner = _address(request.owner_address, "owner_address")
    app = _address(request.application_address, "application_address")
    if sealed:
        plaintext = open_sealed_input(
            ctx.key,
            request.sealed_plaintext,
            chain_id=request.chain_id,
            type_code=request.type_code,
            owner=owner,
            application=app,
        )
    else:
        plaintext = bytes(request.plaintext)
    if vt.is_dynamic:
        limit = ctx.limits.max_plaintext_bytes
        if not 0 < len(plaintext) <= limit:
            raise InvalidPlaintext(
                f"{vt.name} plaintext must be 1..{limit} bytes", metadata={"field": "plaintext"}
            )
    decode_plaintext(vt, plaintext)  # exact size, bool 0/1, UTF-8: raises InvalidPlaintext
    return vt, plaintext, owner, app


async def encrypt_input(
    ctx: GatewayContext, request: gateway_pb2.EncryptInputRequest
) -> gateway_pb2.EncryptInputResponse:
    """The whole EncryptInput call (see the module docstring)."""
    vt, plaintext, owner, app = validate_input(ctx, request)
    tag_key = ctx.require_tag_key()
    handle = new_input_handle(ctx.deployment.chain_id, vt, ctx.rand).to_bytes()
    ct = ecies.encrypt(ctx.kms.public.public_key, plaintext, handle)
    record = HandleRecord(
        handle=handle,
        ciphertext=ct.ciphertext,
        ephemeral_public_key=ct.ephemeral_public_key,
        nonce=ct.nonce,
        value_tag=value_tag(tag_key, handle, plaintext),
        owner=owner,
        application=app,
    )
    record = bind_input(ctx.key, ctx.domain, record, ctx.rand)
    created_at = await ctx.store.put_input(record, expires_after=ctx.limits.input_ttl_seconds)
    proof = make_input_proof(ctx.key, ctx.compute_domain, handle, owner, app, created_at)
    return gateway_pb2.EncryptInputResponse(
        handle=handle, handle_proof=proof, created_at=created_at
    )
