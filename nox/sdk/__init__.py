"""The Python client an integrator uses: encrypt inputs, wait for results, decrypt, sign.

See docs/sdk.md. `NoxClient` talks to a gateway; `nox.sdk.envelopes` signs requests by
hand; `nox.sdk.keyfile` keeps keys in encrypted keystores; `nox.sdk.contracts` (imported on
its own: it pulls in the chain stack) drives contracts with encrypted inputs.
"""

from __future__ import annotations

from nox.crypto.delegation import RequesterKeyKind
from nox.crypto.keys import EnclaveKey
from nox.handles import BOOL, Handle, ValueType, fixed_bytes, int_, uint
from nox.sdk.authorization import (
    AccountSigner,
    UserSigner,
    authorization_digest,
    authorization_typed_data,
    build_authorization,
)
from nox.sdk.client import (
    ClientSettings,
    Decryption,
    EncryptedInput,
    GatewayInfo,
    HandleStatus,
    NoxClient,
    PinnedNodes,
    PublicValue,
)
from nox.sdk.envelopes import (
    envelope_from_json,
    open_envelope,
    payload_from_json,
    request_json,
    sign_request,
)
from nox.sdk.exceptions import GatewayKeyInvalid, KeyfileInvalid, ResponseInvalid, ResultTimeout
from nox.sdk.keyfile import load_keyfile, read_passphrase, write_keyfile

__all__ = [
    "BOOL",
    "AccountSigner",
    "ClientSettings",
    "Decryption",
    "EnclaveKey",
    "EncryptedInput",
    "GatewayInfo",
    "GatewayKeyInvalid",
    "Handle",
    "HandleStatus",
    "KeyfileInvalid",
    "NoxClient",
    "PinnedNodes",
    "PublicValue",
    "RequesterKeyKind",
    "ResponseInvalid",
    "ResultTimeout",
    "UserSigner",
    "ValueType",
    "authorization_digest",
    "authorization_typed_data",
    "build_authorization",
    "envelope_from_json",
    "fixed_bytes",
    "int_",
    "load_keyfile",
    "open_envelope",
    "payload_from_json",
    "read_passphrase",
    "request_json",
    "sign_request",
    "uint",
    "write_keyfile",
]
