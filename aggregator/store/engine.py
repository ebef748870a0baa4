"""Database URLs and engines: which driver, which pool, which connection settings.

The embedded default is SQLite (``sqlite:///path``, aiosqlite); production runs on PostgreSQL
(``postgresql://user@host/db``, asyncpg, pooled). Connections are kept and reused on both: a
burst of requests waits for a pooled connection rather than opening new ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any, Final

from pydantic_core import to_json
from sqlalchemy import event as sa_event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

APPLICATION_NAME: Final = "jeisson-aggregator"
"""How the aggregator's connections appear in PostgreSQL's ``pg_stat_activity``."""
_ASYNC_DRIVERS: Final = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}
SQLITE_BUSY_TIMEOUT_S: Final = 15.0
"""How long a SQLite write waits for another process's write (e.g. a CLI command) to finish."""
SQLITE_POOL_SIZE: Final = 4
"""SQLite connections kept open: one writes at a time (the store queues writes), the others read.

No overflow: under a burst, requests wait for one of these rather than each opening (and
closing) a connection of its own, which cost a file open and three PRAGMAs every time.
"""
SQLITE_POOL_TIMEOUT_S: Final = 60.0
PG_DRIVER_OPTIONS: Final[dict[str, Callable[[str], Any]]] = {
    "ssl": str,
    "target_session_attrs": str,
    "timeout": float,
    "command_timeout": float,
    "statement_cache_size": int,
    "prepared_statement_cache_size": int,
}
"""PostgreSQL URL query parameters passed to asyncpg (besides the pool settings)."""
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """The PostgreSQL connection pool; each field can be set by a URL query parameter.

    ``postgresql://jeisson@db/jeisson?pool_size=20&max_overflow=5`` overrides two of them.
    SQLite ignores pooling (one embedded file); a pool parameter in a SQLite URL is an error.
    """

    pool_size: int = 10
    """Connections kept open."""
    max_overflow: int = 10
    """Extra connections opened under load (closed when returned)."""
    pool_timeout: float = 30.0
    """Seconds to wait for a free connection before failing."""
    pool_recycle: int = 1800
    """Seconds after which a connection is replaced (outlives idle-killing proxies)."""
    pool_pre_ping: bool = True
    """Check a connection before use, so a restarted database costs no failed request."""

    def validate(self) -> None:
        """Raise ValueError for settings the pool cannot work with."""
        if self.pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if self.max_overflow < 0:
            raise ValueError("max_overflow must be 0 or more")
        if self.pool_timeout <= 0:
            raise ValueError("pool_timeout must be more than 0 seconds")
        if self.pool_recycle < -1:
            raise ValueError("pool_recycle must be -1 (never) or a number of seconds")

    def engine_arguments(self) -> dict[str, Any]:
        """Return the settings as ``create_async_engine`` keyword arguments."""
        return {item.name: getattr(self, item.name) for item in fields(self)}


def json_dumps(value: Any) -> str:
    """Serialise a JSON column's value (pydantic-core's encoder: several times the stdlib's)."""
    return to_json(value).decode()


def _parse_url(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError as err:
        raise ValueError(f"not a database URL: {err}") from None


def async_database_url(url: str) -> str:
    """Map a plain database URL (``sqlite:///x.db``) to its async driver URL.

    ``postgres://`` (as some hosting services spell it) means ``postgresql://``. A URL naming
    its driver must name the one the store uses (``sqlite+aiosqlite``, ``postgresql+asyncpg``).
    """
    parsed = _parse_url(url)
    if "+" in parsed.drivername:
        if parsed.drivername not in _ASYNC_DRIVERS.values():
            raise ValueError(
                f"unsupported database driver {parsed.drivername!r}; use "
                + " or ".join(sorted(set(_ASYNC_DRIVERS.values())))
            )
        return url
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ValueError(f"unsupported database {parsed.drivername!r}; use sqlite or postgresql")
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def _pool_value(name: str, raw: str, kind: Callable[[str], Any]) -> Any:
    if kind is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ValueError(f"database URL parameter {name}={raw!r}: use true or false")
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"database URL parameter {name}={raw!r} is not a number") from None


def split_pool_settings(url: URL, defaults: PoolSettings) -> tuple[URL, PoolSettings]:
    """Take the pool parameters out of ``url``'s query; return the rest and the settings."""
    kinds: dict[str, Callable[[str], Any]] = {
        "pool_size": int,
        "max_overflow": int,
        "pool_timeout": float,
        "pool_recycle": int,
        "pool_pre_ping": bool,
    }
    overrides: dict[str, Any] = {}
    for name, kind in kinds.items():
        given = url.normalized_query.get(name, ())
        if len(given) > 1:
            raise ValueError(f"database URL parameter {name} is given more than once")
        if given:
            overrides[name] = _pool_value(name, given[0], kind)
    settings = replace(defaults, **overrides)
    settings.validate()
    return url.difference_update_query(kinds), settings


def _split_driver_options(url: URL) -> tuple[URL, dict[str, Any]]:
    """Take the asyncpg options out of ``url``'s query, typed; refuse anything else."""
    unknown = sorted(set(url.query) - set(PG_DRIVER_OPTIONS))
    if unknown:
        raise ValueError(
            f"unknown PostgreSQL URL parameters {unknown}; known: "
            + ", ".join([*(item.name for item in fields(PoolSettings)), *PG_DRIVER_OPTIONS])
        )
    options: dict[str, Any] = {}
    for name, kind in PG_DRIVER_OPTIONS.items():
        given = url.normalized_query.get(name, ())
        if len(given) > 1:
            raise ValueError(f"database URL parameter {name} is given more than once")
        if given:
            options[name] = _pool_value(name, given[0], kind)
    return url.difference_update_query(PG_DRIVER_OPTIONS), options


def make_engine(url: str, pool: PoolSettings | None = None) -> AsyncEngine:
    """Create the async engine for ``url`` (no schema work; see :meth:`Store.open`).

    PostgreSQL gets a pooled asyncpg engine (``pool`` as defaults, overridden by the URL's
    query parameters); SQLite gets aiosqlite with WAL, ``synchronous=NORMAL`` and foreign keys,
    over a fixed pool of :data:`SQLITE_POOL_SIZE` connections.
    Raises ValueError for an unsupported or malformed URL.
    """
    parsed = _parse_url(async_database_url(url))
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        parsed, settings = split_pool_settings(parsed, pool or PoolSettings())
        parsed, options = _split_driver_options(parsed)
        return create_async_engine(
            parsed,
            connect_args={"server_settings": {"application_name": APPLICATION_NAME}, **options},
            json_serializer=json_dumps,
            **settings.engine_arguments(),
        )
    if backend == "sqlite":
        stray = sorted(set(parsed.query) & {item.name for item in fields(PoolSettings)})
        if stray:
            raise ValueError(f"pool settings apply to PostgreSQL only, not SQLite: {stray}")
        engine = create_async_engine(
            parsed,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S},
            json_serializer=json_dumps,
            poolclass=AsyncAdaptedQueuePool,
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=0,
            pool_timeout=SQLITE_POOL_TIMEOUT_S,
        )
        sa_event.listen(engine.sync_engine, "connect", _enable_sqlite_pragmas)
        return engine
    raise ValueError(f"unsupported database {backend!r}; use sqlite or postgresql")


def _enable_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
