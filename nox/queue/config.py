"""Typed, frozen settings of the JetStream queue between the ingestor and the orchestrators.

One object is built per service from its own settings and passed down; nothing here is global.
The defaults are production defaults; tests shorten the time-outs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nox.queue.exceptions import InvalidQueueSettings, InvalidTransactionId

# NATS subject tokens and stream / consumer names: no whitespace, dots only between tokens,
# no wildcards. Stream and durable names are stricter (they become file names on the server).
_SUBJECT_PREFIX = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

DAY = 86_400.0


@dataclass(frozen=True)
class QueueSettings:
    """Where the transaction queue lives and how its consumer behaves.

    Subjects: a transaction of chain `c` is published on `<subject_prefix>.<c>` (stream
    `stream`); a parked (poison) message of that chain goes to `<dlq_subject_prefix>.<c>`
    (stream `dlq_stream`, kept apart so it has its own retention and no consumer competes for
    it). Every orchestrator binds the same durable pull consumer `durable`.
    """

    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    """NATS URLs; the client fails over between them and reconnects forever."""
    stream: str = "NOX_TX"
    subject_prefix: str = "nox.tx"
    dlq_stream: str = "NOX_DLQ"
    dlq_subject_prefix: str = "nox.dlq"
    durable: str = "nox-orchestrators"
    """Durable consumer name shared by every orchestrator instance."""
    ack_wait: float = 30.0
    """Seconds a delivered message stays leased without an ack or in-progress ack."""
    max_deliver: int = 5
    """Processing attempts before a message is parked with reason MAX_DELIVERIES_EXCEEDED."""
    max_ack_pending: int = 1000
    """Messages delivered and not yet acked, across all orchestrators, before the server waits."""
    duplicate_window: float = 600.0
    """Seconds JetStream remembers message ids: a block re-read within it is stored once."""
    max_age: float = 7 * DAY
    """Seconds a transaction message is kept in the stream (acked or not)."""
    dlq_max_age: float = 30 * DAY
    max_msg_bytes: int = 256 * 1024
    """Largest transaction message. A parked copy adds headers, and NATS' own max_payload
    (1 MiB by default) bounds both, so keep this well below it."""
    replicas: int = 1
    """Stream replicas (1 on a single server; 3 on a production cluster)."""
    publish_timeout: float = 5.0
    connect_timeout: float = 2.0
    """Seconds per TCP/TLS connection attempt."""
    initial_connect_timeout: float = 10.0
    """Seconds `connect()` keeps trying before it reports NATS unavailable."""
    reconnect_base_delay: float = 0.25
    """First reconnect delay; doubles per failed attempt (with jitter) up to the maximum."""
    reconnect_max_delay: float = 5.0
    ping_interval: int = 20
    max_outstanding_pings: int = 3
    connection_name: str = "nox"
    user: str | None = None
    """NATS user name (user/password authentication); see docs/queue.md for the roles."""
    password: str | None = field(default=None, repr=False)
    """Its password (read from a file by the services, never logged)."""
    nkeys_seed_file: str | None = None
    """File holding an NKEY user seed (needs the `nkeys` package), instead of a password."""
    creds_file: str | None = None
    """A `.creds` file (JWT and NKEY seed, decentralized auth; needs `nkeys`)."""
    tls_root_certificates: str | None = None
    """PEM of the CA that signed the NATS server's certificate: TLS on, server verified."""
    tls_cert_chain: str | None = None
    """Client certificate (PEM) for servers that verify clients; with `tls_private_key`."""
    tls_private_key: str | None = None
    inbox_prefix: str = "_INBOX"
    """Prefix of this client's reply subjects. Each role has its own (`_INBOX_<role>`), so
    the server lets a role subscribe only to its own replies and deliveries."""
    dangerous_no_auth: bool = False
    """Connect without credentials (a machine's own unauthenticated nats-server only):
    anybody who reaches that server can then suppress or forge queue messages."""

    def __post_init__(self) -> None:
        if not self.servers:
            raise InvalidQueueSettings("at least one NATS server URL is required")
        for prefix in (self.subject_prefix, self.dlq_subject_prefix):
            if not _SUBJECT_PREFIX.match(prefix):
                raise InvalidQueueSettings(f"invalid subject prefix {prefix!r}")
        if self.subject_prefix == self.dlq_subject_prefix or _overlaps(
            self.subject_prefix, self.dlq_subject_prefix
        ):
            raise InvalidQueueSettings("the dead-letter subjects must not overlap the tx subjects")
        for name in (self.stream, self.dlq_stream, self.durable):
            if not _NAME.match(name):
                raise InvalidQueueSettings(f"invalid stream or consumer name {name!r}")
        if self.stream == self.dlq_stream:
            raise InvalidQueueSettings("the dead-letter stream must differ from the tx stream")
        positive = {
            "ack_wait": self.ack_wait,
            "duplicate_window": self.duplicate_window,
            "max_age": self.max_age,
            "dlq_max_age": self.dlq_max_age,
            "publish_timeout": self.publish_timeout,
            "connect_timeout": self.connect_timeout,
            "initial_connect_timeout": self.initial_connect_timeout,
            "reconnect_base_delay": self.reconnect_base_delay,
            "reconnect_max_delay": self.reconnect_max_delay,
        }
        for field_name, value in positive.items():
            if not value > 0:
                raise InvalidQueueSettings(f"{field_name} must be positive")
        if not _SUBJECT_PREFIX.match(self.inbox_prefix):
            raise InvalidQueueSettings(f"invalid inbox prefix {self.inbox_prefix!r}")
        if (self.tls_cert_chain is None) != (self.tls_private_key is None):
            raise InvalidQueueSettings("tls_cert_chain and tls_private_key go together")
        methods = [
            m
            for m, on in (
                ("user", self.user is not None),
                ("nkeys_seed_file", self.nkeys_seed_file is not None),
                ("creds_file", self.creds_file is not None),
            )
            if on
        ]
        if len(methods) > 1:
            raise InvalidQueueSettings(f"choose one NATS credential, not {', '.join(methods)}")
        if (self.user is None) != (self.password is None):
            raise InvalidQueueSettings("a NATS user needs its password, and a password its user")
        if self.duplicate_window > self.max_age:
            raise InvalidQueueSettings("duplicate_window cannot exceed max_age")
        for field_name, count in {
            "max_deliver": self.max_deliver,
            "max_ack_pending": self.max_ack_pending,
            "max_msg_bytes": self.max_msg_bytes,
            "replicas": self.replicas,
            "ping_interval": self.ping_interval,
            "max_outstanding_pings": self.max_outstanding_pings,
        }.items():
            if count < 1:
                raise InvalidQueueSettings(f"{field_name} must be at least 1")

    @property
    def authenticated(self) -> bool:
        """Whether a credential is configured (`connect` refuses to go without one unless
        `dangerous_no_auth` is set)."""
        return any(x is not None for x in (self.user, self.nkeys_seed_file, self.creds_file))

    def tx_subject(self, chain_id: int) -> str:
        """The subject a transaction of `chain_id` is published on."""
        return f"{self.subject_prefix}.{_chain_token(chain_id)}"

    def dlq_subject(self, chain: int | str) -> str:
        """The dead-letter subject of a chain (`"unknown"` when it cannot be told)."""
        token = _chain_token(chain) if isinstance(chain, int) else chain
        return f"{self.dlq_subject_prefix}.{token}"

    @property
    def tx_subjects(self) -> str:
        """The wildcard covering every chain's transactions (the stream's and consumer's)."""
        return f"{self.subject_prefix}.*"

    @property
    def dlq_subjects(self) -> str:
        return f"{self.dlq_subject_prefix}.*"

    def chain_token_of(self, subject: str) -> str:
        """The chain token of a tx subject, or `"unknown"` if the subject is not one."""
        head = self.subject_prefix + "."
        token = subject[len(head) :] if subject.startswith(head) else ""
        return token if token and "." not in token else "unknown"


def _chain_token(chain_id: int) -> str:
    if isinstance(chain_id, bool) or not isinstance(chain_id, int) or chain_id < 0:
        raise InvalidTransactionId(f"invalid chain id {chain_id!r}")
    return str(chain_id)


def _overlaps(a: str, b: str) -> bool:
    return a.startswith(b + ".") or b.startswith(a + ".")
