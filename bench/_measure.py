"""What the multi-process benchmarks share: percentiles, CPU time per process, a scratch
PostgreSQL schema."""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_SERVE = re.compile(r"serve (\w+)")


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def cpu_seconds() -> dict[str, float]:
    """CPU time (user + system, seconds) of this process (`bench`) and of every process it
    started, directly or not, keyed by role: `noxctl serve X` processes are `X-1`, `X-2`, ...
    in pid order (`X` alone when there is one), then `nats-server` and `anvil` (the npm
    wrapper's child included). Read from /proc; empty without it."""
    tick = os.sysconf("SC_CLK_TCK")
    proc_dir = Path("/proc")
    if not proc_dir.exists():
        return {}
    procs: dict[int, tuple[int, float, str]] = {}
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / tick
        procs[int(entry.name)] = (int(fields[1]), seconds, cmdline)
    me = os.getpid()

    def descends(pid: int) -> bool:
        seen = 0
        while pid > 1 and seen < 64:
            if pid == me:
                return True
            pid = procs[pid][0] if pid in procs else 0
            seen += 1
        return False

    found: list[tuple[str, float]] = []
    for pid in sorted(procs):
        if not descends(pid):
            continue
        _, seconds, cmdline = procs[pid]
        serve = _SERVE.search(cmdline)
        if pid == me:
            found.append(("bench", seconds))
        elif serve:
            found.append((serve.group(1), seconds))
        elif "nats-server" in cmdline:
            found.append(("nats-server", seconds))
        elif "anvil" in cmdline:
            found.append(("anvil", seconds))
    out: dict[str, float] = {}
    for role in dict.fromkeys(r for r, _ in found):
        mine = [s for r, s in found if r == role]
        if len(mine) == 1:
            out[role] = mine[0]
        else:
            out.update({f"{role}-{i}": s for i, s in enumerate(mine, 1)})
    return out


@contextlib.contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A fresh schema in the PostgreSQL database at `url`, dropped afterwards; yields the
    store URL that selects it."""
    schema = f"nox_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(url), poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        sep = "&" if "?" in url else "?"
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
