"""Errors of the computation engine.

An op the engine refuses (wrong types, wrong operand count, unknown operator) makes the whole
task fail with the error's reason; no error message ever carries an operand's value.
"""

from __future__ import annotations

from nox.errors import InvalidArgument, NotFound


class ComputeError(InvalidArgument):
    """Base class of the engine's refusals: the op as requested cannot be computed."""

    reason = "COMPUTE_ERROR"


class UnknownOperator(ComputeError):
    """An operator code outside DESIGN §7's table (0..18)."""

    reason = "UNKNOWN_OPERATOR"


class ArityMismatch(ComputeError):
    """An op was given the wrong number of operands or output handles."""

    reason = "ARITY_MISMATCH"


class TypeMismatch(ComputeError):
    """Operand types differ where they must agree, or a handle's type differs from its value's."""

    reason = "TYPE_MISMATCH"


class UnsupportedOperation(ComputeError):
    """The op is not defined for the operand type (e.g. `add` on bool, `transfer` on intN)."""

    reason = "UNSUPPORTED_OPERATION"


class ValueOutOfRange(ComputeError):
    """A value does not fit its type (a uint8 of 256, a bool of 2, a 16-bit word above 0xFFFF)."""

    reason = "VALUE_OUT_OF_RANGE"


class DuplicateOutput(ComputeError):
    """An output handle is produced twice in one task, or names one of the task's inputs."""

    reason = "DUPLICATE_OUTPUT_HANDLE"


class OperandMissing(NotFound):
    """An op's input handle is neither a task input nor the output of an earlier op."""

    reason = "OPERAND_MISSING"
