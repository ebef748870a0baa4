"""Logging set-up for the aggregator: readable text, or one JSON object per line for collectors.

Log calls attach ``event_id``, ``home_id`` and ``round`` as ``extra`` fields; the JSON format
emits them as keys so logs can be filtered per event or home. Secrets are never logged.

Every line goes through a :class:`FloodGuard`: the same message (logger, level and format string)
is written at most ``FLOOD_BURST`` times per ``FLOOD_INTERVAL_S``; the next one let through says
how many were held back. A fault that repeats on every connection or every second (the file
descriptors running out, a database that is down) cannot fill the disk with its log.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final, Literal

CONTEXT_FIELDS: Final = ("event_id", "home_id", "round")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

FLOOD_BURST: Final = 5
"""Lines of one message let through per interval."""
FLOOD_INTERVAL_S: Final = 60.0
MAX_FLOOD_KEYS: Final = 4096
"""Messages remembered by the guard (the oldest is forgotten first)."""

type LogFormat = Literal["text", "json"]


class FloodGuard(logging.Filter):
    """Let each message through at most ``burst`` times per interval (see the module docstring)."""

    def __init__(
        self,
        burst: int = FLOOD_BURST,
        interval_s: float = FLOOD_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Allow ``burst`` lines of one message per ``interval_s`` seconds."""
        super().__init__()
        self._burst = burst
        self._interval = interval_s
        self._clock = clock
        self._windows: dict[tuple[str, int, str], tuple[float, int, int]] = {}
        """(logger, level, format string) -> (window start, lines let through, held back)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Return False for a line over its message's burst; note the held-back count."""
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        start, passed, held = self._windows.pop(key, (now, 0, 0))
        if now - start >= self._interval:
            start, passed = now, 0
        if passed >= self._burst:
            self._windows[key] = (start, passed, held + 1)
            return False
        if held:
            record.msg = f"{record.msg} [{held} more like this were not logged]"
        self._windows[key] = (start, passed + 1, 0)
        if len(self._windows) > MAX_FLOOD_KEYS:
            del self._windows[next(iter(self._windows))]
        return True


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: time, level, logger, message and context ids."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the JSON line for ``record``."""
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "INFO", log_format: LogFormat = "text") -> None:
    """Send logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    handler.addFilter(FloodGuard())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class Throttle:
    """Let a repeated log line through at most once per interval, counting what it held back.

    ``throttle.ready()`` returns the number of occurrences since the last line let through
    (at least 1) when a line is due, else 0; the caller logs only then, with that count.
    """

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        """Allow one line per ``interval_s`` seconds."""
        self._interval = interval_s
        self._clock = clock
        self._last: float | None = None
        self._held = 0

    def ready(self) -> int:
        """Count one occurrence; return how many to report if a line is due now, else 0."""
        self._held += 1
        now = self._clock()
        if self._last is not None and now - self._last < self._interval:
            return 0
        self._last = now
        count, self._held = self._held, 0
        return count
