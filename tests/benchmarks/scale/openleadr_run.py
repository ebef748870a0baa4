"""Measure OpenLEADR 0.5.36 the same way: one VTN process, N polling VENs (the comparison).

OpenLEADR is installed with pip into its own venv in the cache folder (never the project's
dependencies). The VTN (``vtn.py``) runs pinned to the server core with its fd limit raised; the
VENs (``vens.py``) run in simulator processes on the other core. The VENs register once, then
the same fleet is measured at each poll interval (10 s, OpenLEADR's default, and 1 s):

* idle: VTN CPU per VEN per minute while every VEN polls (no reports: OpenLEADR's idle cost is
  the polling), and whether the VTN kept up (polls done vs. N / interval);
* each event: ``add_event`` for every VEN (OpenLEADR queues events per VEN), then event received
  by each VEN (at its next poll) and its optIn answered by the VTN; VTN CPU per VEN for the
  event, net of the polling it would have served anyway (the idle rate times the round's length);
  the event is then cancelled for every VEN (untimed) before the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

import aiohttp

from tests.benchmarks.scale.common import HOST, load_average, simulator_cores
from tests.benchmarks.scale.processes import (
    CpuSampler,
    ServerProcess,
    Workers,
    split_evenly,
)
from tests.benchmarks.scale.settings import RunSettings, spread
from tests.helpers import free_port

OPENLEADR_VERSION: Final = "0.5.36"
POLL_S: Final = 0.1
SETTLE_S: Final = 2.0
SLOTS_TO_WAIT: Final = 3
"""An event is waited for at most this many poll intervals (plus half a minute): a VTN that
cannot serve its VENs at that interval is saturated, and the figures say by how much."""
EXTRA_WAIT_S: Final = 30.0
CANCEL_SLOTS: Final = 2


def openleadr_python(cache_dir: Path) -> str:
    """Return the Python of a venv with OpenLEADR installed (made on first use)."""
    venv = cache_dir / f"openleadr-{OPENLEADR_VERSION}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if not stamp.exists():
        print(f"  installing openleadr=={OPENLEADR_VERSION} into {venv}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)  # noqa: S603
        subprocess.run(  # noqa: S603 - pip of the venv just made
            [str(python), "-m", "pip", "install", "--quiet", f"openleadr=={OPENLEADR_VERSION}"],
            check=True,
        )
        stamp.write_text(OPENLEADR_VERSION)
    return str(python)


class OpenLeadrBench:
    """One size: a VTN, VEN simulator processes, then each poll interval in turn."""

    def __init__(self, vens: int, settings: RunSettings) -> None:
        """Prepare a run of ``vens`` VENs."""
        self.vens = vens
        self.settings = settings
        self.folder = settings.work_dir / f"openleadr-{vens}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        self.server: ServerProcess | None = None
        self.sampler: CpuSampler | None = None
        self.workers: Workers | None = None
        self.results: list[dict[str, Any]] = []
        """One result per poll interval measured so far (kept when a later one fails)."""

    async def run(self) -> list[dict[str, Any]]:
        """Register the VENs, then measure every poll interval; return one result per interval."""
        python = openleadr_python(self.settings.cache_dir)
        polls = list(self.settings.openleadr_polls)
        settings = {"port": self.port, "poll_s": polls[0]}
        self.server = ServerProcess(
            [python, "-m", "tests.benchmarks.scale.vtn", json.dumps(settings)],
            f"{self.base}/bench/health",
            self.folder / "vtn.log",
        )
        results = self.results
        sampling: asyncio.Task[None] | None = None
        try:
            await self.server.start()
            self.sampler = CpuSampler(self.server.pid)
            sampling = asyncio.create_task(self.sampler.run())
            await asyncio.sleep(SETTLE_S)
            rss_start = self.sampler.now().rss_bytes
            await self._start_workers(python)
            registration = await self._register()
            for poll_s in polls:
                result: dict[str, Any] = {
                    "system": "openleadr",
                    "homes": self.vens,
                    "poll_s": poll_s,
                    "load_before": load_average(),
                    "rss_start_bytes": rss_start,
                    "connect": registration,
                }
                await self._workers.ask({"cmd": "poll", "poll_s": poll_s})
                await asyncio.sleep(min(poll_s, SETTLE_S))
                result["idle"] = await self._idle(poll_s)
                result["rss_idle_bytes"] = self._sampler.now().rss_bytes
                result["rounds"] = [
                    await self._event(f"p{poll_s:g}r{number}".replace(".", "_"), poll_s, result)
                    for number in range(self.settings.openleadr_rounds)
                ]
                await self._workers.ask({"cmd": "poll", "poll_s": 0})
                result["load_after"] = load_average()
                results.append(result)
        finally:
            if self.workers is not None:
                with contextlib.suppress(Exception):
                    await self._workers.ask({"cmd": "close"}, timeout=120)
                await self.workers.stop()
            if sampling is not None:
                sampling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampling
            await self.server.stop()
        return results

    @property
    def _sampler(self) -> CpuSampler:
        assert self.sampler is not None
        return self.sampler

    @property
    def _workers(self) -> Workers:
        assert self.workers is not None
        return self.workers

    async def _start_workers(self, python: str) -> None:
        cores = sorted(simulator_cores())
        settings = [
            {"port": self.port, "names": [f"ven{index}" for index in part], "cores": cores}
            for part in split_evenly(self.vens, self.settings.homes_per_process)
        ]
        self.workers = await Workers.start(
            python, "tests.benchmarks.scale.vens", settings, self.folder
        )

    async def _counts(self, tag: str | None = None) -> dict[str, float]:
        replies = await self._workers.ask({"cmd": "counts", "tag": tag})
        return {key: sum(float(reply[key]) for reply in replies) for key in replies[0]}

    async def _register(self) -> dict[str, Any]:
        before = self._sampler.now()
        sim_before = self._workers.cpu_s()
        replies = await self._workers.ask(
            {
                "cmd": "register",
                "in_flight": self.settings.in_flight,
                "timeout": self.settings.connect_timeout_s,
            },
            timeout=self.settings.connect_timeout_s + 60,
        )
        started = min(reply["started"] for reply in replies)
        ready = [at for reply in replies for at in reply["ready"]]
        last = max(ready) if ready else time.time()
        after = self._sampler.at_or_after(last)
        registration = spread(ready, started)
        registration["homes_per_s"] = round(len(ready) / max(1e-9, last - started), 1)
        registration["server_cpu_ms_per_home"] = round(
            (after.cpu_s - before.cpu_s) * 1000 / max(1, len(ready)), 3
        )
        registration["simulator_cpu_s"] = round(self._workers.cpu_s() - sim_before, 2)
        if len(ready) < self.vens:
            registration["failed"] = self.vens - len(ready)
        return registration

    async def _idle(self, poll_s: float) -> dict[str, Any]:
        window = max(self.settings.openleadr_idle_s, SLOTS_TO_WAIT * poll_s)
        counts_before = await self._counts()
        before = self._sampler.now()
        await asyncio.sleep(window)
        after = self._sampler.now()
        counts_after = await self._counts()
        seconds = after.at - before.at
        cpu_ms = (after.cpu_s - before.cpu_s) * 1000
        polls = counts_after["polls"] - counts_before["polls"]
        return {
            "window_s": round(seconds, 1),
            "server_cpu_ms": round(cpu_ms, 1),
            "cpu_ms_per_home_per_min": round(cpu_ms / self.vens / (seconds / 60), 4),
            "core_share": round(cpu_ms / 1000 / seconds, 4),
            "polls_per_s": round(polls / seconds, 1),
            "polls_per_s_wanted": round(self.vens / poll_s, 1),
            "mean_poll_s": round(
                (counts_after["poll_seconds"] - counts_before["poll_seconds"]) / max(1, polls), 4
            ),
            "skipped_slots": int(counts_after["skipped"] - counts_before["skipped"]),
            # What one poll costs the VTN, and so how many VENs one core could poll at this
            # interval (at 100 % of the core, nothing left for events).
            "cpu_ms_per_poll": round(cpu_ms / max(1, polls), 3),
            "vens_one_core_can_poll": int(poll_s * 1000 / max(1e-9, cpu_ms / max(1, polls))),
            "failures": int(counts_after["failures"]),
        }

    async def _event(self, tag: str, poll_s: float, result: dict[str, Any]) -> dict[str, Any]:
        """Queue one event for every VEN and follow it until every VEN answered."""
        load = load_average()
        idle_cpu_per_s = result["idle"]["core_share"]
        sim_before = self._workers.cpu_s()
        wait_s = min(self.settings.round_timeout_s, SLOTS_TO_WAIT * poll_s + EXTRA_WAIT_S)
        # A saturated VTN answers the operator late (add_event for 19,000 VENs alone takes
        # seconds, behind a queue of polls): give its answers as long as a whole run may take.
        timeout = aiohttp.ClientTimeout(total=self.settings.round_timeout_s * 2)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            before = self._sampler.now()
            created_at = time.time()
            async with http.post(f"{self.base}/bench/event", json={"tag": tag}) as response:
                response.raise_for_status()
                queued = await response.json()
            counts = await self._wait(tag, "responded", wait_s)
            sim_cpu = self._workers.cpu_s() - sim_before
            reports = await self._workers.ask({"cmd": "report", "tag": tag})
            async with http.post(f"{self.base}/bench/cancel", json={"tag": tag}) as response:
                response.raise_for_status()
            await self._wait(tag, "cancel_acked", min(wait_s, CANCEL_SLOTS * poll_s + SETTLE_S))
        received = [at for reply in reports for at in reply["received"]]
        responded = [at for reply in reports for at in reply["responded"]]
        end = max(responded) if responded else time.time()
        after = self._sampler.at_or_after(end)
        cpu_s = after.cpu_s - before.cpu_s
        net_cpu_s = max(0.0, cpu_s - idle_cpu_per_s * (after.at - before.at))
        return {
            "tag": tag,
            "load": load,
            "add_event_s": queued["queued_s"],
            "offer": spread(received, created_at),
            "round": spread(responded, created_at),
            "answered": int(counts["responded"]),
            "server_cpu_s": round(cpu_s, 3),
            "server_cpu_ms_per_home": round(net_cpu_s * 1000 / self.vens, 4),
            "server_cpu_ms_per_home_with_polling": round(cpu_s * 1000 / self.vens, 4),
            "simulator_cpu_s": round(sim_cpu, 2),
        }

    async def _wait(self, tag: str, key: str, timeout: float) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        counts = await self._counts(tag)
        while counts[key] < self.vens and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
            counts = await self._counts(tag)
        return counts
