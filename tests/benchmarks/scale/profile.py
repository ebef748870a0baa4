"""Where a server's time goes during a round: py-spy samples, summarised by function and by area.

``scripts/bench scale --profile`` records the server with py-spy (installed with pip into a tools
venv in the cache folder, never the project's dependencies) while each round runs, without
pausing it (``--nonblocking``), and writes the collapsed stacks next to the JSON. Only threads
holding the GIL are sampled (``--gil``), so the shares are of the CPU the server used.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Final

PY_SPY_VERSION: Final = "0.4.3"
RATE_PER_S: Final = 250
TOP: Final = 20
AREAS: Final = (
    ("sqlalchemy", "SQLAlchemy"),
    ("aiosqlite", "aiosqlite (thread hand-off)"),
    ("sqlite3", "SQLite"),
    ("asyncpg", "asyncpg"),
    ("pydantic", "pydantic (validation, dumps)"),
    ("aiohttp", "aiohttp (HTTP, websocket)"),
    ("/json/", "json"),
    ("logging", "logging"),
    ("asyncio", "asyncio (event loop)"),
    ("aggregator", "aggregator (own code)"),
    ("jeisson", "jeisson (protocol)"),
)
"""First match wins, looked for from the leaf frame up: which library a sample is spent in."""


def py_spy(cache_dir: Path) -> Path:
    """Return the py-spy executable of the tools venv (made on first use)."""
    venv = cache_dir / "tools"
    executable = venv / "bin" / "py-spy"
    if not executable.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # noqa: S603
        subprocess.run(  # noqa: S603 - pip of the venv just made
            [str(venv / "bin" / "pip"), "install", "--quiet", f"py-spy=={PY_SPY_VERSION}"],
            check=True,
        )
    return executable


class Recording:
    """One py-spy recording of a process, started and stopped around a phase."""

    def __init__(self, executable: Path, pid: int, output: Path) -> None:
        """Prepare to record ``pid`` into ``output`` (collapsed stacks)."""
        self.argv = [
            str(executable),
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(RATE_PER_S),
            "--format",
            "raw",
            "--nonblocking",
            "--gil",
            "--output",
            str(output),
        ]
        self.output = output
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start sampling."""
        self.process = await asyncio.create_subprocess_exec(
            *self.argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        await asyncio.sleep(0.3)  # py-spy attaches before the phase starts

    async def stop(self) -> dict[str, Any]:
        """Stop sampling and return the summary."""
        process = self.process
        if process is None:
            return {}
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(30):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
        return summarise(self.output) if self.output.exists() else {}


def summarise(path: Path) -> dict[str, Any]:
    """Return the top functions (self and inclusive) and the share of each area."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [frame for frame in stack.split(";") if frame and not frame.startswith("process")]
        if not frames:
            continue
        total += count
        own[_short(frames[-1])] += count
        for name in {_short(frame) for frame in frames}:
            inclusive[name] += count
        areas[_area(frames)] += count

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * count / total, 1)) for name, count in counter.most_common(TOP)]

    return {
        "samples": total,
        "self_percent": shares(own),
        "inclusive_percent": shares(inclusive),
        "area_percent": shares(areas),
    }


def _short(frame: str) -> str:
    """``handle (aggregator/sessions.py:12)`` -> ``handle (sessions.py)``."""
    name, _, where = frame.partition(" (")
    file = where.split(":", 1)[0].rsplit("/", 1)[-1]
    return f"{name} ({file})" if file else name


def _area(frames: list[str]) -> str:
    for frame in reversed(frames):
        for needle, area in AREAS:
            if needle in frame:
                return area
    return "other"
