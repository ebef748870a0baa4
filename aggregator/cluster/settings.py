"""How a clustered aggregator process finds the others, and how fast it reacts to one dying."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy.engine import make_url

from aggregator.records import new_id

DEFAULT_SUBJECT_PREFIX: Final = "jeisson"
_SUBJECT_TOKEN: Final = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


class ClusterConfigError(ValueError):
    """A cluster cannot run with this configuration (the message says what to change)."""


def new_node_id() -> str:
    """Return a fresh id for this process (a restarted process is a new node)."""
    return new_id("node")


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """One aggregator process's place in a cluster (timings in seconds)."""

    nats_url: str
    """Where NATS listens, e.g. ``nats://127.0.0.1:4222`` (several: comma-separated)."""
    subject_prefix: str = DEFAULT_SUBJECT_PREFIX
    """The first tokens of every subject this cluster uses; clusters on one NATS differ here."""
    node_id: str = field(default_factory=new_node_id)
    lease_ttl_s: float = 5.0
    """An event whose coordinator stops renewing is taken over this long after the last renewal."""
    sweep_interval_s: float = 1.0
    """How often a process looks for events without a live coordinator."""
    heartbeat_s: float = 1.0
    """How often a process tells the others it lives (and how far its home directory is)."""
    node_ttl_s: float = 4.0
    """A process not heard from for this long is gone: its homes count as disconnected."""
    forward_patience_s: float = 8.0
    """How long a home's message waits for its event's coordinator (e.g. during a takeover),
    below the client's 10 s request timeout."""
    request_timeout_s: float = 2.0
    """One NATS request's timeout (retried within the patience above)."""

    def __post_init__(self) -> None:
        """Refuse settings that cannot work."""
        if not _SUBJECT_TOKEN.match(self.subject_prefix):
            raise ClusterConfigError(
                f"cluster subject prefix {self.subject_prefix!r}: use letters, digits, - and _ "
                "in dot-separated tokens"
            )
        if not self.nats_url.strip():
            raise ClusterConfigError("the cluster needs a NATS URL, e.g. nats://127.0.0.1:4222")
        if self.lease_ttl_s < 3 * self.sweep_interval_s:
            raise ClusterConfigError("lease_ttl_s must be at least three sweep intervals")
        if self.node_ttl_s < 2 * self.heartbeat_s:
            raise ClusterConfigError("node_ttl_s must be at least two heartbeats")

    @property
    def servers(self) -> list[str]:
        """Return the NATS server URLs."""
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]

    @property
    def renew_interval_s(self) -> float:
        """Return how often held leases are renewed (three tries within one lifetime)."""
        return self.lease_ttl_s / 3


def require_postgresql(db_url: str) -> None:
    """Raise ClusterConfigError unless ``db_url`` is a PostgreSQL database.

    Every process of a cluster shares one database and takes event leases in it; SQLite is one
    file on one machine, written by one process at a time.
    """
    try:
        backend = make_url(db_url).get_backend_name()
    except Exception:  # the store reports a malformed URL itself, in its own words
        backend = ""
    if backend not in ("postgresql", "postgres"):
        raise ClusterConfigError(
            "clustering (--cluster) needs PostgreSQL: every process shares one database and "
            "takes event leases in it. Use --db postgresql://user@host/db, or run one process "
            "without --cluster on SQLite."
        )
