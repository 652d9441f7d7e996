"""Errors of the devnet."""

from __future__ import annotations

from nox.errors import FailedPrecondition, InvalidArgument


class InvalidDevnetSettings(InvalidArgument):
    """Devnet settings that cannot work (threshold above the node count, no runner)."""

    reason = "INVALID_DEVNET_SETTINGS"


class DevnetStartFailed(FailedPrecondition):
    """A devnet service did not come up (it names the step)."""

    reason = "DEVNET_START_FAILED"


class DemoFailed(FailedPrecondition):
    """The demo scenario saw a wrong value, a missing result or an unexpected answer."""

    reason = "DEMO_FAILED"
