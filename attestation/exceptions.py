"""Typed errors of the attestation package.

Every error carries a stable UPPER_SNAKE `reason` and the `field` (quote field, collateral
item or check) it is about, so a caller can tell *what* failed without parsing the message.
The package imports nothing from `nox`; the network maps these to its own errors (a quote
that does not verify is a permission failure there).
"""

from __future__ import annotations


class AttestationError(Exception):
    """Base class of every error raised by the attestation package."""

    reason: str = "ATTESTATION_FAILED"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{self.reason} [{field}]: {message}")
        self.field = field
        self.message = message


# --- parsing -------------------------------------------------------------------------------


class QuoteFormatError(AttestationError):
    """The quote bytes are not a well-formed DCAP quote (the field says where)."""

    reason = "QUOTE_MALFORMED"


class QuoteTruncated(QuoteFormatError):
    """The quote ends before the structure it declares."""

    reason = "QUOTE_TRUNCATED"


class UnsupportedQuote(QuoteFormatError):
    """Well-formed but outside what this verifier accepts (version, key type, cert type)."""

    reason = "QUOTE_UNSUPPORTED"


class CollateralFormatError(AttestationError):
    """Collateral (JSON, PEM, CRL, PCS response) that cannot be decoded."""

    reason = "COLLATERAL_MALFORMED"


# --- verification --------------------------------------------------------------------------


class VerificationError(AttestationError):
    """The quote is well-formed but does not verify against the collateral."""

    reason = "QUOTE_VERIFICATION_FAILED"


class CertificateChainError(VerificationError):
    """A certificate chain (PCK, TCB signing, QE identity) is invalid."""

    reason = "CERT_CHAIN_INVALID"


class UntrustedRoot(CertificateChainError):
    """A chain does not end in one of the trusted root certificates."""

    reason = "UNTRUSTED_ROOT"


class CertificateRevoked(CertificateChainError):
    """A certificate of a chain is listed in the CRL of its issuer."""

    reason = "CERT_REVOKED"


class CrlError(VerificationError):
    """A CRL has a bad signature, the wrong issuer, or cannot be used."""

    reason = "CRL_INVALID"


class SignatureInvalid(VerificationError):
    """An ECDSA signature (quote, QE report, TCB info, QE identity) does not verify."""

    reason = "SIGNATURE_INVALID"


class QeReportDataMismatch(VerificationError):
    """QE report data does not bind the attestation key and QE authentication data."""

    reason = "QE_REPORT_DATA_MISMATCH"


class CollateralExpired(VerificationError):
    """A certificate, CRL, TCB info or QE identity is outside its validity window at `now`."""

    reason = "COLLATERAL_EXPIRED"


class CollateralMismatch(VerificationError):
    """Collateral for another platform or TEE: FMSPC, PCEID, id or version do not match."""

    reason = "COLLATERAL_MISMATCH"


class QeIdentityMismatch(VerificationError):
    """The quoting enclave's report does not match the QE identity collateral."""

    reason = "QE_IDENTITY_MISMATCH"


class TdxModuleMismatch(VerificationError):
    """The TDX module (MRSIGNERSEAM, SEAMATTRIBUTES, identity) does not match TCB info."""

    reason = "TDX_MODULE_MISMATCH"


class TcbNotSupported(VerificationError):
    """No TCB level of the collateral matches the platform (Intel: TCB not supported)."""

    reason = "TCB_NOT_SUPPORTED"


class TcbRevoked(VerificationError):
    """The platform, TDX module or QE TCB level is revoked."""

    reason = "TCB_REVOKED"


class VerifierDisagreement(VerificationError):
    """The project's verifier and dcap-qvl reached different verdicts (dual mode)."""

    reason = "VERIFIER_DISAGREEMENT"


# --- policy --------------------------------------------------------------------------------


class PolicyViolation(AttestationError):
    """A verified quote that the relying party's policy does not accept."""

    reason = "POLICY_VIOLATION"


class TcbStatusNotAllowed(PolicyViolation):
    """The TCB status or an advisory id is not allowed by the policy."""

    reason = "TCB_STATUS_NOT_ALLOWED"


class DebugNotAllowed(PolicyViolation):
    """The TD (or SGX enclave) runs in debug mode."""

    reason = "DEBUG_NOT_ALLOWED"


class TdAttributesNotAllowed(PolicyViolation):
    """TD attributes the policy forbids (migratable, profiling, reserved bits, no SEPT_VE)."""

    reason = "TD_ATTRIBUTES_NOT_ALLOWED"


class ServiceTdNotAllowed(PolicyViolation):
    """The TD is bound to a service TD (MRSERVICETD non-zero)."""

    reason = "SERVICE_TD_NOT_ALLOWED"


class CollateralTooOld(PolicyViolation):
    """The collateral was issued longer ago than the policy's freshness limit."""

    reason = "COLLATERAL_TOO_OLD"


class MeasurementMismatch(PolicyViolation):
    """The workload id (measurements) is not one the policy expects."""

    reason = "MEASUREMENT_MISMATCH"


class ReportDataMismatch(PolicyViolation):
    """REPORTDATA does not bind the expected enclave address and extData."""

    reason = "REPORT_DATA_MISMATCH"


# --- providers -----------------------------------------------------------------------------


class ProviderError(AttestationError):
    """A quote provider (configfs-tsm, simulated) could not produce a quote."""

    reason = "QUOTE_PROVIDER_FAILED"


class ProviderBusy(ProviderError):
    """The provider stayed busy (EBUSY) or raced with another writer after all retries."""

    reason = "QUOTE_PROVIDER_BUSY"


class CollateralFetchError(AttestationError):
    """Collateral could not be fetched from the PCCS / PCS endpoint."""

    reason = "COLLATERAL_FETCH_FAILED"
