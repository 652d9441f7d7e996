"""The public surface of nox.sdk, pinned: a change here is a change for every integrator."""

from __future__ import annotations

import nox.sdk


def test_public_api_is_pinned() -> None:
    assert sorted(nox.sdk.__all__) == sorted(
        [
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
    )
    for name in nox.sdk.__all__:
        assert getattr(nox.sdk, name) is not None
