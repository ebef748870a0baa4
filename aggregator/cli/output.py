"""How ``jeisson-aggregator`` prints: human lines and tables by default, JSON with ``--json``.

Every command that prints data goes through :func:`emit`: the data (the API's JSON, or the
command's own result) is rendered for a person by a small function, or dumped as JSON with the
floating-point noise of sums removed (``394.82999999999987`` becomes ``394.83``). Progress of long
commands (``demo``, ``simulate``) goes to stderr through :class:`Progress`, so stdout holds only
the result and stays safe to pipe. Tables are plain aligned columns: a 40-line renderer rather
than a dependency (``rich``, ``tabulate``) for the server's package.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TextIO

JSON_DIGITS: Final = 6
"""Decimals kept in JSON output: enough for any price or kW, none of a sum's binary noise."""
KW_DECIMALS: Final = 2
PRICE_DECIMALS: Final = 3
COLUMN_GAP: Final = "  "
MISSING: Final = "-"


def tidy(value: Any) -> Any:
    """Return ``value`` with every float rounded to :data:`JSON_DIGITS` decimals (recursively)."""
    if isinstance(value, float):
        return round(value, JSON_DIGITS)
    if isinstance(value, dict):
        return {key: tidy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [tidy(item) for item in value]
    return value


def json_text(data: Any) -> str:
    """Return ``data`` as indented JSON, floats tidied."""
    return json.dumps(tidy(data), indent=2, ensure_ascii=False)


def emit[DataT](
    data: DataT, render: Callable[[DataT], str], *, as_json: bool, out: TextIO | None = None
) -> None:
    """Print ``data`` for a person (``render``) or as JSON."""
    print(json_text(data) if as_json else render(data), file=out or sys.stdout)


def kw(value: float | None, decimals: int = KW_DECIMALS) -> str:
    """Return a power figure for people: ``74.4 kW`` style, rounded."""
    return MISSING if value is None else f"{value:.{decimals}f} kW"


def price(value: float | None, currency: str) -> str:
    """Return a price per kWh for people, or ``-`` when there is none."""
    return MISSING if value is None else f"{value:.{PRICE_DECIMALS}f} {currency}/kWh"


def when(text: str | None) -> str:
    """Return an ISO 8601 time from the API as ``2026-12-04 18:00:00Z`` (UTC), or ``-``."""
    if not text:
        return MISSING
    moment = datetime.fromisoformat(text).astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a :func:`table`: its header and whether it is numeric (right-aligned)."""

    header: str
    numeric: bool = False


def table(columns: Sequence[Column], rows: Iterable[Sequence[str]], empty: str = "") -> str:
    """Return rows as aligned text columns under an upper-case header line.

    ``empty`` is printed instead when there are no rows (a table of nothing says so).
    """
    cells = [list(row) for row in rows]
    if not cells and empty:
        return empty
    widths = [
        max([len(column.header), *(len(row[index]) for row in cells)])
        for index, column in enumerate(columns)
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            value.rjust(width) if column.numeric else value.ljust(width)
            for value, width, column in zip(values, widths, columns, strict=True)
        ]
        return COLUMN_GAP.join(parts).rstrip()

    header = line([column.header.upper() for column in columns])
    return "\n".join([header, *(line(row) for row in cells)])


def fields(pairs: Sequence[tuple[str, str]]) -> str:
    """Return ``label: value`` lines with the values aligned."""
    width = max((len(label) for label, _ in pairs), default=0) + 1
    return "\n".join(f"{label + ':':<{width}} {value}" for label, value in pairs)


class Progress:
    """One-line progress messages of a long command, on stderr (silent with ``--quiet``)."""

    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None) -> None:
        """Print to ``stream`` (stderr by default) unless ``quiet``."""
        self._quiet = quiet
        self._stream = stream

    def __call__(self, message: str) -> None:
        """Print one progress line, at once (flushed)."""
        if not self._quiet:
            print(message, file=self._stream or sys.stderr, flush=True)
