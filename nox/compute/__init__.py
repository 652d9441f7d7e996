"""The computation engine: DESIGN §7's ops over bool, uintN and intN (N = 8..256, step 8).

Pure and deterministic (no I/O). `execute` computes one op, `run_ops` a transaction's ops
in order; `Operator`, `spec` and `output_types` are the op table the contracts, ingestor
and runner share.
"""

from __future__ import annotations

from nox.compute.engine import Op, execute, run_ops
from nox.compute.exceptions import (
    ArityMismatch,
    ComputeError,
    DuplicateOutput,
    OperandMissing,
    TypeMismatch,
    UnknownOperator,
    UnsupportedOperation,
    ValueOutOfRange,
)
from nox.compute.operators import SPECS, Operator, OpSpec, output_types, spec
from nox.compute.value import Value

__all__ = [
    "SPECS",
    "ArityMismatch",
    "ComputeError",
    "DuplicateOutput",
    "Op",
    "OpSpec",
    "OperandMissing",
    "Operator",
    "TypeMismatch",
    "UnknownOperator",
    "UnsupportedOperation",
    "Value",
    "ValueOutOfRange",
    "execute",
    "output_types",
    "run_ops",
    "spec",
]
