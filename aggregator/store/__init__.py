"""Persistent storage of the aggregator: SQLAlchemy Core on SQLite or PostgreSQL.

* :mod:`.engine` — database URLs, drivers and connection pools.
* :mod:`.mapping`, :mod:`.changes` — records and rows: what a step writes, as data.
* :mod:`.unit` — a unit of work: any number of changes in one transaction.
* :mod:`.group_commit` — one writer that merges concurrent requests into one transaction.
* :mod:`.homes`, :mod:`.events`, :mod:`.telemetry` — reads (and single-row conveniences) per
  subject, gathered in :class:`Store`.

:meth:`Store.open` migrates the schema to the newest revision first (:mod:`aggregator.migrations`).
Callers persist every state change through the store *before* acting on it.
"""

from aggregator.records import new_id
from aggregator.store.changes import (
    Change,
    ClaimLease,
    Fence,
    HomeCurtailed,
    HomeInventory,
    HomeSeen,
    Insert,
    OfferRecord,
    OptOutRecord,
    Receipt,
    TelemetryBatch,
    Update,
    Upsert,
)
from aggregator.store.engine import (
    APPLICATION_NAME,
    PG_DRIVER_OPTIONS,
    SQLITE_BUSY_TIMEOUT_S,
    PoolSettings,
    async_database_url,
    make_engine,
    split_pool_settings,
)
from aggregator.store.errors import FencedError, StoreUnavailableError
from aggregator.store.group_commit import GroupCommitter
from aggregator.store.homes import (
    ENROLMENT_CODE_LIFETIME,
    Enrolled,
    EnrolmentRejected,
    OperatorToken,
)
from aggregator.store.store import Store
from aggregator.store.unit import Unit

__all__ = [
    "APPLICATION_NAME",
    "ENROLMENT_CODE_LIFETIME",
    "PG_DRIVER_OPTIONS",
    "SQLITE_BUSY_TIMEOUT_S",
    "Change",
    "ClaimLease",
    "Enrolled",
    "EnrolmentRejected",
    "Fence",
    "FencedError",
    "GroupCommitter",
    "HomeCurtailed",
    "HomeInventory",
    "HomeSeen",
    "Insert",
    "OfferRecord",
    "OperatorToken",
    "OptOutRecord",
    "PoolSettings",
    "Receipt",
    "Store",
    "StoreUnavailableError",
    "TelemetryBatch",
    "Unit",
    "Update",
    "Upsert",
    "async_database_url",
    "make_engine",
    "new_id",
    "split_pool_settings",
]
