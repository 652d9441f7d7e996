"""State files and folders a service writes: readable by the service's user only.

Every state folder is 0700 and every state file 0600 (issue 14): the gateway and ingestor
SQLite databases, replay caches, the devnet's state folder, KMS shares, key files. A file
is created with its mode (never created wider and narrowed afterwards), and written
atomically (a temporary file in the same folder, then a rename).

    private_dir(state)                      # mkdir -p, the folder itself 0700
    write_private(state / "devnet.json", text)
    engine = create_engine(private_sqlite(url))  # a SQLite file is made 0600 first
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "private_dir",
    "private_file",
    "private_sqlite",
    "write_private",
]

DIR_MODE = 0o700
FILE_MODE = 0o600


def _make_dirs(folder: Path) -> None:
    # Path.mkdir(parents=True) gives missing parents the default mode, not `mode`.
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for each in reversed(missing):
        each.mkdir(mode=DIR_MODE, exist_ok=True)


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` (and missing parents, 0700) and make the folder itself 0700."""
    folder = Path(path)
    _make_dirs(folder)
    os.chmod(folder, DIR_MODE)
    return folder


def private_file(path: str | os.PathLike[str]) -> Path:
    """Make sure `path` exists as a 0600 file (created empty if missing), e.g. before a
    SQLite database is opened: SQLite gives its journal, -wal and -shm files the database
    file's mode. Missing parent folders are created 0700; existing ones are left alone."""
    file = Path(path)
    _make_dirs(file.parent)
    fd = os.open(file, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    os.close(fd)
    os.chmod(file, FILE_MODE)
    return file


def write_private(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write `data` to `path` atomically as a 0600 file (replacing any previous one)."""
    file = Path(path)
    body = data.encode() if isinstance(data, str) else data
    tmp = file.with_name(f".{file.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
        os.replace(tmp, file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return file


def private_sqlite(url: str) -> str:
    """`url` unchanged; when it names a SQLite file, that file is first made 0600
    (`private_file`), so the database SQLite then opens, and its journals, stay private."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    database = parsed.database
    in_memory = not database or database == ":memory:" or database.startswith("file:")
    if parsed.get_backend_name() == "sqlite" and database and not in_memory:
        private_file(Path(database).expanduser())
    return url
