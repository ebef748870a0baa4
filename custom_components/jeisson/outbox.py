"""Keep the client's outbox across Home Assistant restarts (HA ``Store``).

Award and statement acknowledgements, opt-outs and telemetry made while the aggregator is
unreachable wait in :attr:`jeisson.client.HomeClient.queued_messages` until the aggregator
acknowledges them.
:class:`OutboxStore` saves them shortly after they change, on Home Assistant's stop and on
unload, and gives them back at setup (``HomeClient(outbox=...)``), where the client re-sends
them with their original ids (the aggregator applies each id once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.storage import Store

from jeisson.client import QueuedMessage
from jeisson.common.protocol import (
    AwardAck,
    OptOut,
    ProtocolError,
    StatementAck,
    Telemetry,
    dump_message,
    parse_message,
)

from .const import DOMAIN, LOGGER

OUTBOX_STORAGE_VERSION: Final = 1
OUTBOX_STORAGE_KEY_PREFIX: Final = f"{DOMAIN}.outbox"
OUTBOX_SAVE_DELAY: Final = 2.0
"""Seconds a change waits before it is written (several changes in a row are written once)."""
QUEUED_TYPES: Final = frozenset({"award_ack", "opt_out", "telemetry", "statement_ack"})
"""The message types the client keeps in its outbox."""

type MessagesFn = Callable[[], Sequence[QueuedMessage]]


def _no_messages() -> Sequence[QueuedMessage]:
    return ()


class OutboxStore:
    """Saves and restores one entry's queued messages."""

    def __init__(self, hass: HomeAssistant, entry_id: str) -> None:
        """Prepare the store of ``entry_id`` (nothing is read until :meth:`async_load`)."""
        self._store: Store[dict[str, Any]] = Store(
            hass, OUTBOX_STORAGE_VERSION, f"{OUTBOX_STORAGE_KEY_PREFIX}.{entry_id}"
        )
        self._messages: MessagesFn = _no_messages
        self._frames: dict[str, str] = {}
        """Message id → its wire form (each message is serialised once)."""
        self._closed = False

    async def async_load(self) -> list[QueuedMessage]:
        """Return the messages saved by the previous run, oldest first (invalid ones dropped)."""
        raw = await self._store.async_load()
        messages: list[QueuedMessage] = []
        for frame in (raw or {}).get("messages", []):
            try:
                message = parse_message(frame, allowed=QUEUED_TYPES)
            except (ProtocolError, TypeError) as err:
                LOGGER.warning("Dropping an unreadable saved message: %s", err)
                continue
            if isinstance(message, AwardAck | OptOut | Telemetry | StatementAck):
                messages.append(message)
        return messages

    @callback
    def async_bind(self, messages: MessagesFn) -> None:
        """Read the messages to save from ``messages`` (the client's ``queued_messages``)."""
        self._messages = messages
        self._closed = False

    @callback
    def async_schedule_save(self) -> None:
        """Write the queued messages soon (at Home Assistant's final write when stopping)."""
        if not self._closed:
            self._store.async_delay_save(self._data, OUTBOX_SAVE_DELAY)

    async def async_save(self) -> None:
        """Write the queued messages now and stop saving (the client is closed)."""
        self._closed = True
        await self._store.async_save(self._data())

    async def async_remove(self) -> None:
        """Delete the saved messages (the entry is removed)."""
        await self._store.async_remove()

    def _data(self) -> dict[str, Any]:
        messages = self._messages()
        frames = {
            message.id: self._frames.get(message.id) or dump_message(message)
            for message in messages
        }
        self._frames = frames
        return {"messages": list(frames.values())}
