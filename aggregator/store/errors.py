"""What a write can fail with: the database did not take it, or the writer lost its lease."""

from __future__ import annotations


class StoreUnavailableError(RuntimeError):
    """The database did not take a write; nothing of it was stored. Retrying may succeed."""


class FencedError(StoreUnavailableError):
    """A write for an event whose lease this process no longer holds; nothing was stored.

    Raised in a clustered deployment when another process took over the event (its fencing
    token moved on): the write is refused by the database, so nothing is decided twice.
    """

    def __init__(self, event_id: str, token: int) -> None:
        """Name the event and the token the refused write carried."""
        super().__init__(f"lease of event {event_id} lost (token {token} is stale)")
        self.event_id = event_id
        self.token = token
