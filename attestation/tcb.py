"""TCB level selection and status convergence (notes §3 steps 8, 11, 13-17; Intel QVL
TcbLevelCheck, TdxModuleCheck, TDRelaunchCheck).

Pure functions over decoded collateral and the SVNs of the quote and PCK certificate.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from attestation.collateral import IsvLevel, QeIdentity, TcbInfo, TcbLevel, TdxModuleIdentity
from attestation.exceptions import TcbNotSupported, TdxModuleMismatch
from attestation.quote import TdReport

UP_TO_DATE: Final = "UpToDate"
SW_HARDENING: Final = "SWHardeningNeeded"
CONFIG_NEEDED: Final = "ConfigurationNeeded"
CONFIG_AND_SW: Final = "ConfigurationAndSWHardeningNeeded"
OUT_OF_DATE: Final = "OutOfDate"
OUT_OF_DATE_CONFIG: Final = "OutOfDateConfigurationNeeded"
REVOKED: Final = "Revoked"
RELAUNCH: Final = "TDRelaunchAdvised"
RELAUNCH_CONFIG: Final = "TDRelaunchAdvisedConfigurationNeeded"

#: Statuses a verifier returns (with advisories); accepting them is relying-party policy.
NON_TERMINAL_STATUSES: Final = frozenset(
    {
        UP_TO_DATE,
        SW_HARDENING,
        CONFIG_NEEDED,
        CONFIG_AND_SW,
        OUT_OF_DATE,
        OUT_OF_DATE_CONFIG,
        RELAUNCH,
        RELAUNCH_CONFIG,
    }
)


@dataclass(frozen=True, slots=True)
class TcbVerdict:
    """The converged status and the levels it came from."""

    status: str
    advisory_ids: tuple[str, ...]
    platform_level: TcbLevel
    sgx_level: TcbLevel
    module_level: IsvLevel | None
    qe_level: IsvLevel
    #: When the TCB evaluation that made a component out of date took effect: the earliest
    #: tcbDate of a level newer than the out-of-date one (platform, module or QE; the
    #: earliest of them). None when no component is out of date.
    out_of_date_since: int | None = None


def _level_key(level: TcbLevel) -> tuple[tuple[int, ...], int, tuple[int, ...]]:
    return (level.sgx_components, level.pcesvn, level.tdx_components or ())


def sorted_levels(levels: Iterable[TcbLevel]) -> list[TcbLevel]:
    """Levels highest first (SGX components lexicographic, then PCESVN, then TDX components)."""
    return sorted(levels, key=_level_key, reverse=True)


def select_platform_levels(
    tcb_info: TcbInfo,
    cpusvn: Sequence[int],
    pcesvn: int,
    tee_tcb_svn: bytes | None,
) -> tuple[TcbLevel, TcbLevel]:
    """Return (SGX level, platform level): the first levels the platform reaches.

    CPUSVN and PCESVN come from the PCK certificate. For TDX the platform level must also be
    reached by TEE_TCB_SVN; bytes 0 and 1 (module SVN and version) are skipped when the
    module version byte is non-zero, since the module identity covers them.
    """
    sgx_level: TcbLevel | None = None
    for level in sorted_levels(tcb_info.levels):
        if pcesvn < level.pcesvn or any(
            have < need for have, need in zip(cpusvn, level.sgx_components, strict=True)
        ):
            continue
        if sgx_level is None:
            sgx_level = level
        if tee_tcb_svn is None:
            return sgx_level, level
        if level.tdx_components is None:
            continue
        start = 2 if tee_tcb_svn[1] > 0 else 0
        if all(tee_tcb_svn[i] >= level.tdx_components[i] for i in range(start, 16)):
            return sgx_level, level
    raise TcbNotSupported("tcb_info.tcbLevels", "no TCB level matches the platform's SVNs")


def module_identity(tcb_info: TcbInfo, td: TdReport) -> TdxModuleIdentity:
    """The TDX module identity for the quote's module version; checks signer and attributes."""
    version = td.tee_tcb_svn[1]
    if version > 0:
        wanted = f"TDX_{version:02X}"
        found = [m for m in tcb_info.tdx_module_identities if m.id.upper() == wanted]
        if not found:
            raise TdxModuleMismatch("tcb_info.tdxModuleIdentities", f"no identity {wanted}")
        identity = found[0]
    elif tcb_info.tdx_module is not None:
        identity = tcb_info.tdx_module
    else:
        raise TdxModuleMismatch("tcb_info.tdxModule", "TCB info has no TDX module identity")
    if td.mr_signer_seam != identity.mrsigner:
        raise TdxModuleMismatch("td_report.mr_signer_seam", "does not match the module signer")
    mask = identity.attributes_mask
    if td.seam_attributes_int & mask != identity.attributes & mask:
        raise TdxModuleMismatch("td_report.seam_attributes", "does not match module attributes")
    return identity


def module_level(identity: TdxModuleIdentity, td: TdReport) -> IsvLevel | None:
    """The module's TCB level (None for module version 0, which has no separate status)."""
    if td.tee_tcb_svn[1] == 0:
        return None
    for level in sorted(identity.levels, key=lambda lv: lv.isvsvn, reverse=True):
        if td.tee_tcb_svn[0] >= level.isvsvn:
            return level
    raise TcbNotSupported(f"tcb_info.{identity.id}.tcbLevels", "module SVN below every level")


def qe_level(identity: QeIdentity, isvsvn: int) -> IsvLevel:
    """The QE's TCB level: the first level (ISVSVN descending) the QE reaches."""
    for level in sorted(identity.levels, key=lambda lv: lv.isvsvn, reverse=True):
        if isvsvn >= level.isvsvn:
            return level
    raise TcbNotSupported("qe_identity.tcbLevels", "QE ISVSVN below every level")


def converge_out_of_date(status: str, other: str) -> str:
    """Combine a platform status with a module or QE status (notes §3 steps 15 and 17)."""
    if other == OUT_OF_DATE:
        if status in (UP_TO_DATE, SW_HARDENING):
            return OUT_OF_DATE
        if status in (CONFIG_NEEDED, CONFIG_AND_SW):
            return OUT_OF_DATE_CONFIG
    if other == REVOKED:
        return REVOKED
    return status


def relaunch_status(
    *,
    tcb_info: TcbInfo,
    td: TdReport,
    status: str,
    sgx_status: str,
    module: IsvLevel | None,
    qe: IsvLevel,
) -> str:
    """TD 1.5 relaunch check: an out-of-date TD whose current TCB (TEE_TCB_SVN2, after a
    TD-preserving module update) reaches the latest level only needs a relaunch."""
    svn2 = td.tee_tcb_svn2
    if (
        svn2 is None
        or module is None
        or module.status != OUT_OF_DATE
        or qe.status in (OUT_OF_DATE, REVOKED)
        or sgx_status not in (UP_TO_DATE, SW_HARDENING, CONFIG_NEEDED, CONFIG_AND_SW)
        or status not in (OUT_OF_DATE, OUT_OF_DATE_CONFIG)
    ):
        return status
    latest = sorted_levels(tcb_info.levels)[0]
    if latest.tdx_components is None:
        return status
    if svn2[1] == 0:
        reached = svn2[0] >= latest.tdx_components[0]
    else:
        wanted = f"TDX_{svn2[1]:02X}"
        ids = [m for m in tcb_info.tdx_module_identities if m.id.upper() == wanted]
        if not ids:
            raise TdxModuleMismatch("td_report.tee_tcb_svn2", f"no module identity {wanted}")
        top = max((lv.isvsvn for lv in ids[0].levels), default=None)
        if top is None:
            raise TcbNotSupported(f"tcb_info.{wanted}.tcbLevels", "module identity has no level")
        reached = svn2[0] >= top
    if not (reached and svn2[2] >= latest.tdx_components[2]):
        return status
    config = "Configuration" in sgx_status or status == OUT_OF_DATE_CONFIG
    return RELAUNCH_CONFIG if config else RELAUNCH


def _superseded_at(level_date: int, dates: Iterable[int], fallback: int) -> int:
    """The tcbDate of the first level newer than one dated `level_date` (its supersession)."""
    newer = [d for d in dates if d > level_date]
    return min(newer) if newer else fallback


def out_of_date_since(
    tcb_info: TcbInfo,
    qe_identity: QeIdentity,
    platform: TcbLevel,
    module: IsvLevel | None,
    module_levels: Sequence[IsvLevel],
    qe: IsvLevel,
) -> int | None:
    """The date from which an OutOfDate grace period runs (None if nothing is out of date).

    Each out-of-date component became so when Intel published the newer level that
    superseded it (the newer level's tcbDate; the TCB info's issue date if the collateral
    lists none); the earliest of them counts, so a grace period is never extended by a
    later recovery of another component.
    """
    since: list[int] = []
    if platform.status.startswith(OUT_OF_DATE):
        dates = (lv.tcb_date for lv in tcb_info.levels)
        since.append(_superseded_at(platform.tcb_date, dates, tcb_info.issue_date))
    if module is not None and module.status == OUT_OF_DATE:
        dates = (lv.tcb_date for lv in module_levels)
        since.append(_superseded_at(module.tcb_date, dates, tcb_info.issue_date))
    if qe.status == OUT_OF_DATE:
        dates = (lv.tcb_date for lv in qe_identity.levels)
        since.append(_superseded_at(qe.tcb_date, dates, qe_identity.issue_date))
    return min(since) if since else None


def union_advisories(*groups: Iterable[str]) -> tuple[str, ...]:
    """Advisory ids of several levels, each once, sorted."""
    return tuple(sorted({a for g in groups for a in g}))


def evaluate(
    *,
    tcb_info: TcbInfo,
    qe_identity: QeIdentity,
    qe_isvsvn: int,
    cpusvn: Sequence[int],
    pcesvn: int,
    td: TdReport | None,
    module: TdxModuleIdentity | None,
) -> TcbVerdict:
    """Select every level and converge them into one status (notes §3 steps 13-17).

    `module` is the identity `module_identity` checked (step 8), None for SGX quotes.
    """
    sgx, platform = select_platform_levels(
        tcb_info, cpusvn, pcesvn, td.tee_tcb_svn if td is not None else None
    )
    status = platform.status
    mod_level: IsvLevel | None = None
    if td is not None and module is not None:
        mod_level = module_level(module, td)
        if mod_level is not None:
            status = converge_out_of_date(status, mod_level.status)
    qe = qe_level(qe_identity, qe_isvsvn)
    if td is not None:
        status = relaunch_status(
            tcb_info=tcb_info, td=td, status=status, sgx_status=sgx.status, module=mod_level, qe=qe
        )
    status = converge_out_of_date(status, qe.status)
    advisories = union_advisories(
        platform.advisory_ids, mod_level.advisory_ids if mod_level else (), qe.advisory_ids
    )
    since = out_of_date_since(
        tcb_info, qe_identity, platform, mod_level, module.levels if module else (), qe
    )
    return TcbVerdict(status, advisories, platform, sgx, mod_level, qe, since)
