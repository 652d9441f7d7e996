"""The operator-facing docs say what the code does.

- Every setting of every service's settings class is listed in docs/operations.md, in its
  service's section, with the code's default; a setting added without docs fails here.
- Every `noxctl` command in a shell block of the README and the operator docs parses with the
  real command-line parser (placeholders such as `0x<address>` filled in).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from nox.cli import build_parser
from nox.gateway.config import GatewaySettings
from nox.kms.config import KmsSettings
from nox.orchestrator.cli import IngestorServiceSettings, OrchestratorServiceSettings
from nox.runner.config import RunnerSettings

# settings class -> the operations.md sections ("### 2.x ...") its rows may be in; the
# attestation settings every service shares are listed once, in §2.0
SECTIONS: dict[type[BaseSettings], tuple[str, ...]] = {
    GatewaySettings: ("2.0", "2.1"),
    KmsSettings: ("2.0", "2.2"),
    RunnerSettings: ("2.0", "2.3"),
    OrchestratorServiceSettings: ("2.0", "2.4"),
    # the ingestor's shared settings are listed once, in the orchestrator's section
    IngestorServiceSettings: ("2.0", "2.4", "2.5"),
}

COMMAND_DOCS = ("README.md", "docs/operations.md", "docs/operator-guide.md")


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^### (\d+\.\d+) ", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _documented_default(value: Any) -> str:
    """How operations.md writes a default."""
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "unset"
    if value == "":
        return "empty"
    if value == ():
        return "`[]`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _setting_rows(repo_root: Path) -> list[tuple[str, str, str, list[str]]]:
    """(class, setting, documented default, table rows naming it in its sections)."""
    sections = _sections((repo_root / "docs" / "operations.md").read_text(encoding="utf-8"))
    out = []
    for cls, names in SECTIONS.items():
        text = "\n".join(sections.get(n, "") for n in names)
        rows = [line for line in text.splitlines() if line.startswith("|")]
        for field, info in cls.model_fields.items():
            name = f"`{field.upper()}`"
            out.append(
                (
                    cls.__name__,
                    field,
                    _documented_default(info.default),
                    [r for r in rows if name in r.split("|")[1]],
                )
            )
    return out


def test_every_setting_is_documented_with_its_default(repo_root: Path) -> None:
    rows = _setting_rows(repo_root)
    assert len(rows) > 80  # five services' settings were read
    missing = [f"{c}.{f}" for c, f, _d, found in rows if not found]
    assert not missing, f"settings not in docs/operations.md §2: {missing}"
    wrong = [
        f"{c}.{f} (expected {d})"
        for c, f, d, found in rows
        if not any(d in r.split("|")[2] for r in found)
    ]
    assert not wrong, f"defaults that differ from the code: {wrong}"


def test_documented_default_rendering() -> None:
    assert _documented_default(PydanticUndefined) == "required"
    assert _documented_default(None) == "unset"
    assert _documented_default(True) == "`true`"
    assert _documented_default(50051) == "`50051`"


def _commands(repo_root: Path) -> list[tuple[str, str]]:
    found = []
    for doc in COMMAND_DOCS:
        text = (repo_root / doc).read_text(encoding="utf-8")
        for lang, block in re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S):
            if lang not in ("", "sh"):
                continue
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" #", 1)[0]
                if "noxctl " in line:
                    found.append((doc, line[line.index("noxctl ") + len("noxctl ") :]))
    return found


def _argv(command: str) -> list[str]:
    command = command.split("|", 1)[0]
    command = re.sub(r"0x<[^>]*>|0x\.\.", "0x" + "ab" * 20, command)
    command = re.sub(r"<[^>]*>", "x", command)
    return shlex.split(command.replace("...", ""))


def test_documented_commands_parse(repo_root: Path) -> None:
    commands = _commands(repo_root)
    assert len(commands) > 20
    bad = []
    for doc, command in commands:
        try:
            build_parser().parse_args(_argv(command))
        except SystemExit:
            bad.append(f"{doc}: noxctl {command}")
    assert not bad, "commands the CLI rejects:\n" + "\n".join(bad)


def test_a_wrong_command_is_caught() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(_argv("runner register --no-such-flag"))
