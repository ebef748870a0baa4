"""Offers, awards, cancels and ends reach each home through the process holding its connection.

:class:`ClusterLink` is the negotiation's ``HomeLink`` in a cluster. A message for homes held
here goes to their sessions at once; for homes held elsewhere it is serialised once and queued in
that process's :class:`_Mailbox`, which sends what is queued as one request (frames with the
homes each goes to) and waits for the process to confirm it queued them. A request that fails
(NATS restarting, the process busy) is sent again, in order, for as long as the directory still
lists that process; once it is gone its homes reconnect elsewhere and are caught up there.
Homes recognise a message they already have by its id, so sending one twice is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Protocol, cast

from nats.aio.subscription import Subscription

from aggregator.cluster.bus import MAX_PAYLOAD_BYTES, Bus, BusUnavailableError, Json
from aggregator.cluster.directory import HomeDirectory
from jeisson.common.protocol import (
    SERVER_MESSAGE_TYPES,
    ProtocolError,
    ServerMessage,
    dump_message,
    parse_message,
)

_LOGGER = logging.getLogger(__name__)

HOMES_PER_ITEM: Final = 5000
"""Home ids per frame in one request (about 100 KB of ids)."""
_ID_BYTES: Final = 24
"""Rough size of one home id in a request, for keeping requests under the payload limit."""
RETRY_BASE_S: Final = 0.1
RETRY_MAX_S: Final = 1.0


class LocalHomes(Protocol):
    """The sessions of this process (:class:`aggregator.sessions.SessionRegistry`)."""

    def send(self, home_id: str, message: ServerMessage) -> bool:
        """Queue a message for one home held here."""

    def broadcast(self, home_ids: Iterable[str], message: ServerMessage) -> int:
        """Queue one message for many homes held here."""


@dataclass(slots=True)
class _Item:
    frame: str
    homes: list[str]

    @property
    def size(self) -> int:
        return len(self.frame) + _ID_BYTES * len(self.homes)


class _Mailbox:
    """What waits to be delivered to one other process, sent in order, retried until taken."""

    def __init__(
        self, bus: Bus, node_id: str, still_there: Callable[[], bool], timeout_s: float
    ) -> None:
        self._bus = bus
        self.node_id = node_id
        self._subject = bus.subjects.deliver(node_id)
        self._still_there = still_there
        self._timeout_s = timeout_s
        self._queue: list[_Item] = []
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"deliver-{node_id}")

    def put(self, frame: str, homes: list[str]) -> None:
        for start in range(0, len(homes), HOMES_PER_ITEM):
            self._queue.append(_Item(frame, homes[start : start + HOMES_PER_ITEM]))
        self._wake.set()

    @property
    def idle(self) -> bool:
        return not self._queue

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        failures = 0
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._take()
            try:
                await self._bus.request(
                    self._subject,
                    {"items": [{"frame": item.frame, "homes": item.homes} for item in batch]},
                    timeout=self._timeout_s,
                )
            except BusUnavailableError as err:
                if not self._still_there():
                    dropped = len(batch) + len(self._queue)
                    self._queue.clear()
                    _LOGGER.info(
                        "Process %s is gone; %d undelivered messages dropped (its homes are "
                        "caught up where they reconnect)",
                        self.node_id,
                        dropped,
                    )
                    continue
                self._queue[:0] = batch  # send again, in order
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    _LOGGER.warning("Delivery to %s failed (%s); retrying", self.node_id, err)
                await asyncio.sleep(min(RETRY_MAX_S, RETRY_BASE_S * 2 ** min(failures, 8)))
                continue
            failures = 0

    def _take(self) -> list[_Item]:
        size = 0
        count = 0
        for item in self._queue:
            if count and size + item.size > MAX_PAYLOAD_BYTES:
                break
            size += item.size
            count += 1
        batch, self._queue = self._queue[:count], self._queue[count:]
        return batch


class ClusterLink:
    """The negotiation's way to homes anywhere in the cluster (its ``HomeLink``)."""

    def __init__(
        self, bus: Bus, directory: HomeDirectory, local: LocalHomes, timeout_s: float
    ) -> None:
        """Deliver through ``local`` for homes held here, through NATS for the others."""
        self._bus = bus
        self._directory = directory
        self._local = local
        self._timeout_s = timeout_s
        self._mailboxes: dict[str, _Mailbox] = {}
        self._subscription: Subscription | None = None
        self._closing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Take frames other processes deliver to homes held here."""
        subject = self._bus.subjects.deliver(self._directory.node_id)
        self._subscription = await self._bus.subscribe(subject, self._on_deliver)

    async def stop(self) -> None:
        """Stop delivering (what is still queued for other processes is dropped)."""
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None
        for mailbox in self._mailboxes.values():
            await mailbox.close()
        self._mailboxes.clear()

    def is_connected(self, home_id: str) -> bool:
        """Return True when the home is connected to some process of the cluster."""
        return self._directory.is_connected(home_id)

    def send(self, home_id: str, message: ServerMessage) -> bool:
        """Send a message to one home wherever it is; False when it is connected nowhere."""
        node_id = self._directory.node_of(home_id)
        if node_id is None:
            return False
        if node_id == self._directory.node_id:
            return self._local.send(home_id, message)
        self._mailbox(node_id).put(dump_message(message), [home_id])
        return True

    def broadcast(self, home_ids: Iterable[str], message: ServerMessage) -> int:
        """Send one message to many homes, one request per process holding some of them."""
        frame: str | None = None
        count = 0
        for node_id, homes in self._directory.by_node(home_ids).items():
            if node_id == self._directory.node_id:
                count += self._local.broadcast(homes, message)
                continue
            frame = frame or dump_message(message)
            self._mailbox(node_id).put(frame, homes)
            count += len(homes)
        return count

    def _mailbox(self, node_id: str) -> _Mailbox:
        mailbox = self._mailboxes.get(node_id)
        if mailbox is None:
            for gone in [n for n, m in self._mailboxes.items() if m.idle and n not in self._live]:
                self._spawn_close(self._mailboxes.pop(gone))
            mailbox = self._mailboxes[node_id] = _Mailbox(
                self._bus,
                node_id,
                lambda: node_id in self._live,
                self._timeout_s,
            )
        return mailbox

    @property
    def _live(self) -> set[str]:
        return set(self._directory.nodes())

    def _spawn_close(self, mailbox: _Mailbox) -> None:
        task = asyncio.create_task(mailbox.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _on_deliver(self, request: Json) -> Json:
        """Queue frames from another process for the homes held here."""
        queued = 0
        for item in request.get("items", []):
            try:
                message = cast(
                    ServerMessage, parse_message(item["frame"], allowed=SERVER_MESSAGE_TYPES)
                )
            except (ProtocolError, KeyError, TypeError) as err:
                _LOGGER.warning("Dropped an undeliverable frame from another process: %s", err)
                continue
            queued += self._local.broadcast(item["homes"], message)
        return {"queued": queued}
