"""Logging set-up for the aggregator: readable text, or one JSON object per line for collectors.

Log calls attach ``event_id``, ``home_id`` and ``round`` as ``extra`` fields; the JSON format
emits them as keys so logs can be filtered per event or home. Secrets are never logged.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Final, Literal

CONTEXT_FIELDS: Final = ("event_id", "home_id", "round")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

type LogFormat = Literal["text", "json"]


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
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
