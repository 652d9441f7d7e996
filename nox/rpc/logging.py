"""structlog set-up for every nox service: JSON or console output that never prints secrets.

`SecretRedactor` runs before rendering and
- replaces the value of any field whose key looks secret (secret, private, key_share, share,
  plaintext, password, passphrase, seed, mnemonic, or a whole word `sk`) with "[REDACTED]",
  at any depth of nested dicts and lists;
- shows raw bytes only as their length and a fingerprint, `<32 bytes #1a2b3c4d>`. The
  fingerprint is a BLAKE2b MAC under a key drawn per redactor (per process), so equal values
  can be correlated within one process's logs while a low-entropy plaintext (a balance, a
  bool) cannot be recovered by hashing guesses. Values that are meant to be read (handles,
  addresses) should be logged as hex strings.

Tracebacks are rendered without local variables (structlog's dict tracebacks show locals by
default, which would print a key held in a local).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from structlog.dev import ConsoleRenderer, plain_traceback
from structlog.processors import (
    ExceptionRenderer,
    JSONRenderer,
    TimeStamper,
    add_log_level,
)
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[REDACTED]"
SECRET_SUBSTRINGS = (
    "secret",
    "private",
    "key_share",
    "share",
    "plaintext",
    "password",
    "passphrase",
    "seed",
    "mnemonic",
)
# Matched only as a whole word of the key, so "task" or "disk" are not secret.
SECRET_WORDS = frozenset({"sk"})
# structlog's own fields: never secret, never rewritten.
_RESERVED = frozenset({"event", "level", "timestamp", "logger", "exc_info", "stack_info"})
_MAX_DEPTH = 8
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")


def looks_secret(key: str) -> bool:
    """Whether a field named `key` may hold a secret (see the module docstring)."""
    snake = _CAMEL.sub("_", key).lower()
    if any(word in snake for word in SECRET_SUBSTRINGS):
        return True
    return any(word in SECRET_WORDS for word in _WORD_SPLIT.split(snake))


class SecretRedactor:
    """structlog processor removing secrets from an event (see the module docstring).

    `clear_bytes_max`: bytes values up to this length are shown as hex (default 0: none are;
    a short value can still be a plaintext). `fingerprint_key` is injectable for tests.
    """

    def __init__(self, *, clear_bytes_max: int = 0, fingerprint_key: bytes | None = None) -> None:
        self._clear_bytes_max = clear_bytes_max
        self._key = fingerprint_key if fingerprint_key is not None else os.urandom(16)

    def fingerprint(self, data: bytes) -> str:
        digest = hashlib.blake2b(data, key=self._key, digest_size=4).hexdigest()
        return f"<{len(data)} bytes #{digest}>"

    def _value(self, value: Any, depth: int) -> Any:
        if isinstance(value, bytes | bytearray | memoryview):
            data = bytes(value)
            return data.hex() if len(data) <= self._clear_bytes_max else self.fingerprint(data)
        if depth >= _MAX_DEPTH:
            return value if isinstance(value, str | int | float | bool | None) else REDACTED
        if isinstance(value, Mapping):
            return {k: self._field(str(k), v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._value(v, depth + 1) for v in value]
        return value

    def _field(self, key: str, value: Any, depth: int) -> Any:
        return REDACTED if looks_secret(key) else self._value(value, depth)

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        for key, value in list(event_dict.items()):
            if key not in _RESERVED:
                event_dict[key] = self._field(key, value, 0)
        return event_dict


def build_processors(*, json: bool = True, redactor: SecretRedactor | None = None) -> list[Any]:
    """The processor chain: level, time, redaction, exceptions without locals, renderer."""
    renderer: Processor = (
        JSONRenderer()
        if json
        else ConsoleRenderer(colors=False, exception_formatter=plain_traceback)
    )
    chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        add_log_level,
        TimeStamper(fmt="iso", utc=True),
        redactor if redactor is not None else SecretRedactor(),
    ]
    if json:
        chain.append(ExceptionRenderer(ExceptionDictTransformer(show_locals=False)))
    chain.append(renderer)
    return chain


def configure_logging(
    *, json: bool = True, level: str = "info", stream: TextIO | None = None
) -> None:
    """Configure structlog for this process (the CLI calls it once at start).

    Logging configuration is process-wide by nature; nothing else in nox configures it.
    """
    structlog.configure(
        processors=build_processors(json=json),
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    """structlog's logger when `configure_logging` ran; otherwise one with the redacting
    console chain on stderr, so nothing logs through structlog's unredacted defaults."""
    if structlog.is_configured():
        return structlog.get_logger(name)
    return bind_logger(build_processors(json=False), sys.stderr).bind(logger=name)


class _ModuleLogger:
    """A module-level logger that picks the configured chain at each call, not at import
    (a module imported before `configure_logging` still logs through it afterwards, and
    never through structlog's unredacted stdout default)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, method: str) -> Any:
        return getattr(get_logger(self._name), method)


def module_logger(name: str) -> Any:
    """The logger a module keeps in a global: `_log = module_logger("nox.queue")`."""
    return _ModuleLogger(name)


def bind_logger(processors: list[Any], stream: TextIO) -> Any:
    """A logger with `processors` writing to `stream`, without touching global config."""
    return structlog.wrap_logger(structlog.PrintLogger(file=stream), processors=processors)


__all__ = [
    "REDACTED",
    "SecretRedactor",
    "bind_logger",
    "build_processors",
    "configure_logging",
    "get_logger",
    "looks_secret",
]
