"""What every process of the scale benchmark shares: process figures, percentiles, worker I/O.

Imported by the coordinator (the project's ``.venv``) and by the OpenLEADR processes (their own
venv, where neither ``jeisson`` nor ``aggregator`` is installed), so it uses the standard library
only. Worker processes read one JSON command a line on stdin and answer each with one JSON line
on stdout, in order.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
PAGE_BYTES: Final = os.sysconf("SC_PAGE_SIZE")
SERVER_CORE: Final = 0
"""The core the measured server is pinned to; simulators use the others."""
HOST: Final = "127.0.0.1"

type Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class ProcSample:
    """CPU time (user + system, seconds) and resident memory (bytes) of a process at a moment."""

    at: float
    cpu_s: float
    rss_bytes: int


def proc_sample(pid: int) -> ProcSample:
    """Read a process's CPU time and RSS from /proc (clock-tick resolution: 10 ms here)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as file:
        # Fields after the command name (which may hold spaces) start after the last ')'.
        fields = file.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    rss_pages = int(fields[21])
    return ProcSample(
        at=time.time(), cpu_s=(utime + stime) / CLOCK_TICKS, rss_bytes=rss_pages * PAGE_BYTES
    )


def load_average() -> list[float]:
    """Return the 1, 5 and 15 minute load averages (other work on the machine shows here)."""
    with open("/proc/loadavg", encoding="ascii") as file:
        return [float(part) for part in file.read().split()[:3]]


def percentile(values: Sequence[float], share: float) -> float | None:
    """Return the nearest-rank percentile (``share`` in 0..1) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(share * len(ordered) + 0.5)))
    return ordered[rank - 1]


def raise_fd_limit() -> int:
    """Raise this process's soft file-descriptor limit to the hard one; return it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def pin_to(cores: set[int]) -> None:
    """Run this process on ``cores`` only (ignored where the machine has fewer)."""
    available = os.sched_getaffinity(0)
    wanted = cores & available
    if wanted:
        os.sched_setaffinity(0, wanted)


def simulator_cores() -> set[int]:
    """Return the cores simulators run on: every core but the server's (all on one core)."""
    cores = set(range(os.cpu_count() or 1)) - {SERVER_CORE}
    return cores or {SERVER_CORE}


def server_preexec() -> None:
    """Prepare a server child process: pinned to :data:`SERVER_CORE`, fd limit at the hard one."""
    pin_to({SERVER_CORE})
    raise_fd_limit()


async def serve_commands(handlers: dict[str, Handler]) -> None:
    """Answer JSON commands from stdin until ``quit`` or end of input (a worker's main loop)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        command = json.loads(line)
        name = command.pop("cmd")
        if name == "quit":
            return
        try:
            reply = await handlers[name](command)
        except Exception as err:
            reply = {"error": f"{type(err).__name__}: {err}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def worker_arguments() -> dict[str, Any]:
    """Return a process's start-up settings: its only argument, JSON or ``@file`` holding JSON."""
    argument = sys.argv[1]
    if argument.startswith("@"):
        with open(argument[1:], encoding="utf-8") as file:
            argument = file.read()
    settings: dict[str, Any] = json.loads(argument)
    return settings
