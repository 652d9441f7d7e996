"""Workload identity: the TD measurements a governance allowlist names (DESIGN §3)."""

from __future__ import annotations

from dataclasses import dataclass

from eth_hash.auto import keccak

from attestation.quote import TdReport

ZERO48 = bytes(48)
#: TDATTRIBUTES with only SEPT_VE_DISABLE (bit 28) set, as production TDs run.
DEFAULT_TD_ATTRIBUTES = (1 << 28).to_bytes(8, "little")
#: XFAM of a typical TD (x87, SSE, AVX, AVX-512 state, PK).
DEFAULT_XFAM = bytes.fromhex("e702060000000000")


@dataclass(frozen=True, slots=True)
class Measurements:
    """The measured fields of a TD report that make up its workload id."""

    mr_td: bytes
    rtmr0: bytes = ZERO48
    rtmr1: bytes = ZERO48
    rtmr2: bytes = ZERO48
    rtmr3: bytes = ZERO48
    mr_config_id: bytes = ZERO48
    xfam: bytes = DEFAULT_XFAM
    td_attributes: bytes = DEFAULT_TD_ATTRIBUTES

    def __post_init__(self) -> None:
        for name in ("mr_td", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mr_config_id"):
            if len(getattr(self, name)) != 48:
                raise ValueError(f"{name} must be 48 bytes")
        if len(self.xfam) != 8 or len(self.td_attributes) != 8:
            raise ValueError("xfam and td_attributes must be 8 bytes")

    @classmethod
    def of(cls, td: TdReport) -> Measurements:
        return cls(
            td.mr_td,
            td.rtmr0,
            td.rtmr1,
            td.rtmr2,
            td.rtmr3,
            td.mr_config_id,
            td.xfam,
            td.td_attributes,
        )

    @property
    def workload_id(self) -> bytes:
        return bytes(
            keccak(
                self.mr_td
                + self.rtmr0
                + self.rtmr1
                + self.rtmr2
                + self.rtmr3
                + self.mr_config_id
                + self.xfam
                + self.td_attributes
            )
        )


def workload_id(td_report: TdReport | Measurements) -> bytes:
    """keccak256(MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 ‖ RTMR3 ‖ MRCONFIGID ‖ XFAM ‖ TDATTRIBUTES),
    the fields as raw report bytes (the flashtestations workload id)."""
    m = td_report if isinstance(td_report, Measurements) else Measurements.of(td_report)
    return m.workload_id
