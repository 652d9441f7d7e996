"""Module-level loggers follow the process's logging configuration, whenever it happens."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import structlog

from nox.rpc.logging import configure_logging, module_logger


def test_module_logger_bound_before_configuration_uses_the_later_configuration() -> None:
    log = module_logger("nox.test")  # bound at "import time", before configuration
    stream = io.StringIO()
    try:
        configure_logging(json=True, level="info", stream=stream)
        log.info("event_after_configure", share=b"\x01" * 32)
    finally:
        structlog.reset_defaults()
    record = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert record["event"] == "event_after_configure"
    assert "01" * 32 not in stream.getvalue()  # still redacted


def test_unconfigured_module_logger_never_writes_to_stdout() -> None:
    code = (
        "from nox.rpc.logging import module_logger\n"
        "module_logger('nox.queue').warning('nats_disconnected', url='nats://x')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout == ""
    assert "nats_disconnected" in proc.stderr
