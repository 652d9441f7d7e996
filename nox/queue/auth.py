"""Who may do what on NATS: the roles, their subject permissions and their credential files.

NATS is trusted for availability only (docs/queue.md). Every client authenticates, and each
role's user may publish and subscribe to exactly what its service uses:

- `ingestor`: publish transactions on `<subject_prefix>.*`; create, update and read the
  configuration of the two streams (idempotent set-up at start); read one stored message by
  sequence (`STREAM.MSG.GET`, to check a duplicate is its own message). It cannot consume,
  delete, purge or remove messages.
- `orchestrator`: the stream set-up as above; create and read the shared durable consumer
  and pull from it (`CONSUMER.MSG.NEXT`), acknowledge its deliveries (`$JS.ACK.<stream>.
  <durable>.>`) and publish parked messages on `<dlq_subject_prefix>.*`. It cannot publish
  transactions nor read the stream outside the consumer.
- `admin`: everything (operators' inspection of the dead-letter stream, tests' helpers).

Each role receives replies and deliveries only on its own inbox prefix `_INBOX_<role>`, so
one role cannot read another's deliveries. Stream set-up is done by both services because
either may start first; neither may delete a stream, purge it or delete a message.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from nox.files import write_private
from nox.queue.config import QueueSettings

__all__ = ["ROLES", "NatsUser", "inbox_prefix", "role_permissions", "server_config"]

ROLES = ("admin", "ingestor", "orchestrator")
_API = "$JS.API"


def inbox_prefix(role: str) -> str:
    """The reply-subject prefix of a role's clients."""
    return f"_INBOX_{role}"


def role_permissions(role: str, q: QueueSettings) -> dict[str, dict[str, list[str]]]:
    """The nats-server `permissions` block of `role` for the streams named in `q`."""
    inbox = [f"{inbox_prefix(role)}.>"]
    if role == "admin":
        return {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}}
    setup = [
        f"{_API}.STREAM.{op}.{name}"
        for name in (q.stream, q.dlq_stream)
        for op in ("CREATE", "UPDATE", "INFO")
    ]
    if role == "ingestor":
        publish = [q.tx_subjects, *setup, f"{_API}.STREAM.MSG.GET.{q.stream}"]
        return {"publish": {"allow": publish}, "subscribe": {"allow": inbox}}
    if role == "orchestrator":
        consumer = f"{q.stream}.{q.durable}"
        publish = [
            q.dlq_subjects,
            *setup,
            f"{_API}.CONSUMER.CREATE.{consumer}",
            f"{_API}.CONSUMER.CREATE.{consumer}.>",
            f"{_API}.CONSUMER.DURABLE.CREATE.{consumer}",
            f"{_API}.CONSUMER.INFO.{consumer}",
            f"{_API}.CONSUMER.MSG.NEXT.{consumer}",
            f"$JS.ACK.{consumer}.>",
        ]
        return {"publish": {"allow": publish}, "subscribe": {"allow": inbox}}
    raise ValueError(f"unknown NATS role {role!r}")


@dataclass(frozen=True)
class NatsUser:
    """One role's user on a local nats-server and the file holding its password."""

    role: str
    user: str
    password_file: Path

    def password(self) -> str:
        return self.password_file.read_text().strip()

    def settings(self, base: QueueSettings) -> QueueSettings:
        """`base` with this user's credential and inbox prefix."""
        return dataclasses.replace(
            base, user=self.user, password=self.password(), inbox_prefix=inbox_prefix(self.role),
            dangerous_no_auth=False,
        )  # fmt: skip


def ensure_users(creds_dir: Path) -> dict[str, NatsUser]:
    """One user per role with a random password in `creds_dir/<role>.password` (0600),
    generated once and kept across restarts (the folder is 0700)."""
    creds_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(creds_dir, 0o700)
    users = {}
    for role in ROLES:
        path = creds_dir / f"{role}.password"
        if not path.exists():
            write_private(path, secrets.token_hex(32) + "\n")
        users[role] = NatsUser(role, f"nox-{role}", path)
    return users


def server_config(users: dict[str, NatsUser], q: QueueSettings) -> str:
    """A nats-server configuration with an `authorization` block of the roles' users.

    Strings are written as JSON strings, which the nats-server configuration format reads.
    """
    entries = []
    for role, u in users.items():
        user, password = json.dumps(u.user), json.dumps(u.password())
        perms = json.dumps(role_permissions(role, q))
        entries.append(f"    {{user: {user}, password: {password}, permissions: {perms}}}")
    return "authorization {\n  users: [\n" + ",\n".join(entries) + "\n  ]\n}\n"
