"""Measure a real ``jeisson-aggregator serve`` with N simulated homes (see ``docs/performance.md``).

The server runs as its own process on SQLite, pinned to one core with its fd limit raised; the
homes (``homes.py``) run in simulator processes on the other core. Only the public surface is
used: the CLI (``serve``, ``operator-token create``), the operator REST API (enrolment, events,
cancel) and the home websocket protocol.

Enrolment is setup, not measured: N homes are enrolled once through the REST API into a SQLite
file kept in the cache folder, which every run copies (the copy is checked to still accept its
tokens and rebuilt if not).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
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
from tests.benchmarks.scale.profile import Recording, py_spy
from tests.benchmarks.scale.settings import RunSettings, spread
from tests.helpers import free_port

KW_PER_HOME: Final = 4.5
PRICE_CAP: Final = 0.40
ENROL_CONCURRENCY: Final = 32
POLL_S: Final = 0.1
QUIET_S: Final = 1.5
"""A round is over when every award is held and nothing changed for this long."""
SETTLE_S: Final = 2.0
CANCEL_SETTLE_S: Final = 1.0
ACK_TIMEOUT_S: Final = 300
DROP_GRACE_S: Final = 900
CACHE_NAME: Final = "jeisson-fleet"


SERVER_SOURCE_VARIABLE: Final = "JEISSON_BENCH_SERVER_SRC"


def server_source() -> Path | None:
    """Return another checkout whose server to measure (``--server-src``), or None for this one."""
    value = os.environ.get(SERVER_SOURCE_VARIABLE)
    return Path(value) if value else None


def aggregator_command() -> list[str]:
    """Return the ``jeisson-aggregator`` command of this environment."""
    script = Path(sys.executable).with_name("jeisson-aggregator")
    if script.exists() and server_source() is None:
        return [str(script)]
    return [sys.executable, "-m", "aggregator.cli"]


def server_env() -> dict[str, str] | None:
    """Return the server's environment: ``PYTHONPATH`` at ``--server-src`` when one is given."""
    source = server_source()
    if source is None:
        return None
    return {**os.environ, "PYTHONPATH": str(source)}


def sqlite_url(path: Path) -> str:
    """Return the server's URL for a SQLite file."""
    return f"sqlite:///{path}"


def serve_command(db: Path, port: int) -> list[str]:
    """Return the server command line (acks and drop-offs given time; nothing else tuned)."""
    return [
        *aggregator_command(),
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--db",
        sqlite_url(db),
        "--ack-timeout",
        str(ACK_TIMEOUT_S),
        "--drop-grace",
        str(DROP_GRACE_S),
    ]


class EnrolledFleet:
    """A SQLite file with N enrolled homes, their tokens and an operator token (cached)."""

    def __init__(self, folder: Path) -> None:
        """Use (or build) the fleet kept in ``folder``."""
        self.folder = folder
        self.db = folder / "fleet.db"
        self.meta = folder / "fleet.json"
        self.operator_token = ""
        self.tokens: list[str] = []

    def load(self) -> bool:
        """Read the cached tokens; False when there is no usable cache."""
        if not (self.db.exists() and self.meta.exists()):
            return False
        meta = json.loads(self.meta.read_text())
        self.operator_token = meta["operator_token"]
        self.tokens = meta["tokens"]
        return True

    async def ensure(self, homes: int, log_dir: Path) -> None:
        """Make sure at least ``homes`` homes are enrolled (enrolling the missing ones)."""
        if self.load() and len(self.tokens) >= homes:
            return
        await self.build(homes, log_dir, extend=bool(self.tokens))

    async def build(self, homes: int, log_dir: Path, *, extend: bool = False) -> None:
        """Enrol homes through the REST API until there are ``homes`` (a fresh database unless
        ``extend``, which adds to the cached one)."""
        building = self.folder / "building.db"
        if extend:
            for suffix in ("", "-wal", "-shm"):
                source = self.db.with_name(self.db.name + suffix)
                if source.exists():
                    source.rename(building.with_name(building.name + suffix))
        else:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.mkdir(parents=True)
            self.tokens = []
            created = await asyncio.create_subprocess_exec(
                *aggregator_command(),
                "operator-token",
                "create",
                "--db",
                sqlite_url(building),
                stdout=asyncio.subprocess.PIPE,
                env=server_env(),
            )
            out, _ = await created.communicate()
            if created.returncode != 0:
                raise RuntimeError("operator-token create failed")
            self.operator_token = out.decode().strip().splitlines()[-1]
        port = free_port()
        server = ServerProcess(
            serve_command(building, port),
            f"http://{HOST}:{port}/healthz",
            log_dir / "enrol-server.log",
            server_env(),
        )
        await server.start()
        started = time.monotonic()
        missing = homes - len(self.tokens)
        try:
            self.tokens += await self._enrol(f"http://{HOST}:{port}", len(self.tokens), missing)
        finally:
            await server.stop()
        print(
            f"  enrolled {missing} homes in {time.monotonic() - started:.0f} s (setup, untimed)",
            file=sys.stderr,
        )
        for suffix in ("", "-wal", "-shm"):
            source = building.with_name(building.name + suffix)
            if source.exists():
                source.rename(self.db.with_name(self.db.name + suffix))
        meta = {"operator_token": self.operator_token, "tokens": self.tokens}
        self.meta.write_text(json.dumps(meta))

    async def _enrol(self, base: str, first: int, homes: int) -> list[str]:
        headers = {"Authorization": f"Bearer {self.operator_token}"}
        tokens: list[str] = [""] * homes
        queue: asyncio.Queue[int] = asyncio.Queue()
        for offset in range(homes):
            queue.put_nowait(offset)
        async with aiohttp.ClientSession() as http:

            async def enrol_some() -> None:
                while not queue.empty():
                    offset = queue.get_nowait()
                    async with http.post(
                        f"{base}/api/v1/homes",
                        json={"name": f"bench-{first + offset}"},
                        headers=headers,
                    ) as response:
                        response.raise_for_status()
                        code = (await response.json())["code"]
                    async with http.post(f"{base}/api/v1/enroll", json={"code": code}) as response:
                        response.raise_for_status()
                        tokens[offset] = (await response.json())["token"]

            await asyncio.gather(*(enrol_some() for _ in range(ENROL_CONCURRENCY)))
        return tokens

    def copy_to(self, folder: Path) -> Path:
        """Copy the enrolled database into ``folder``; return the copy's path."""
        target = folder / "jeisson.db"
        for suffix in ("", "-wal", "-shm"):
            source = self.db.with_name(self.db.name + suffix)
            if source.exists():
                shutil.copyfile(source, target.with_name(target.name + suffix))
        return target


class JeissonBench:
    """One size: server, simulator processes and every phase, in order."""

    def __init__(self, homes: int, settings: RunSettings, fleet: EnrolledFleet) -> None:
        """Prepare a run of ``homes`` homes."""
        self.homes = homes
        self.settings = settings
        self.fleet = fleet
        self.folder = settings.work_dir / f"jeisson-{homes}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        self.server: ServerProcess | None = None
        self.sampler: CpuSampler | None = None
        self._sampling: asyncio.Task[None] | None = None
        self.workers: Workers | None = None
        self.result: dict[str, Any] = {"system": "jeisson", "homes": homes}

    async def run(self) -> dict[str, Any]:
        """Run every phase; return the figures."""
        self.result["load_before"] = load_average()
        db = self.fleet.copy_to(self.folder)
        self.server = ServerProcess(
            serve_command(db, self.port),
            f"{self.base}/healthz",
            self.folder / "server.log",
            server_env(),
        )
        try:
            await self._start_server()
            if not await self._fleet_is_valid():
                await self._stop_server()
                await self.fleet.build(max(self.homes, len(self.fleet.tokens)), self.folder)
                db = self.fleet.copy_to(self.folder)
                await self._start_server()
            await asyncio.sleep(SETTLE_S)
            self.result["rss_start_bytes"] = self._sampler.now().rss_bytes
            await self._start_workers()
            await self._connect()
            await self._idle()
            self.result["rounds"] = [
                await self._round(number) for number in range(self.settings.rounds)
            ]
            self.result["rss_after_rounds_bytes"] = self._sampler.now().rss_bytes
            if self.settings.restart:
                await self._restart()
        finally:
            if self.workers is not None:
                with contextlib.suppress(Exception):
                    await self.workers.ask({"cmd": "close"}, timeout=120)
                await self.workers.stop()
            await self._stop_server()
        self.result["load_after"] = load_average()
        return self.result

    @property
    def _sampler(self) -> CpuSampler:
        assert self.sampler is not None
        return self.sampler

    @property
    def _server(self) -> ServerProcess:
        assert self.server is not None
        return self.server

    @property
    def _workers(self) -> Workers:
        assert self.workers is not None
        return self.workers

    async def _start_server(self) -> float:
        assert self.server is not None
        ready = await self.server.start()
        self.sampler = CpuSampler(self.server.pid)
        self._sampling = asyncio.create_task(self.sampler.run())
        return ready

    async def _stop_server(self) -> float:
        if self._sampling is not None:
            self._sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampling
            self._sampling = None
        return 0.0 if self.server is None else await self.server.stop()

    async def _fleet_is_valid(self) -> bool:
        """Return True when the copied database still accepts the cached tokens."""
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {self.fleet.operator_token}"}
            async with http.get(f"{self.base}/api/v1/events?limit=1", headers=headers) as response:
                if response.status != 200:
                    return False
            try:
                async with http.ws_connect(
                    f"ws://{HOST}:{self.port}/api/v1/ws",
                    headers={"Authorization": f"Bearer {self.fleet.tokens[0]}"},
                ):
                    pass
            except aiohttp.WSServerHandshakeError:
                return False
        return True

    async def _start_workers(self) -> None:
        url = f"ws://{HOST}:{self.port}/api/v1/ws"
        cores = sorted(simulator_cores())
        settings = [
            {
                "url": url,
                "tokens": self.fleet.tokens[part.start : part.stop],
                "first_index": part.start,
                "cores": cores,
            }
            for part in split_evenly(self.homes, self.settings.homes_per_process)
        ]
        self.workers = await Workers.start(
            sys.executable, "tests.benchmarks.scale.homes", settings, self.folder
        )
        self.result["simulator_processes"] = len(settings)

    async def _counts(self, **query: Any) -> dict[str, int]:
        replies = await self._workers.ask({"cmd": "counts", **query})
        return {key: sum(int(reply[key]) for reply in replies) for key in replies[0]}

    async def _connect(self) -> None:
        cpu_before = self._sampler.now()
        sim_before = self._workers.cpu_s()
        replies = await self._workers.ask(
            {
                "cmd": "connect",
                "in_flight": self.settings.in_flight,
                "timeout": self.settings.connect_timeout_s,
            },
            timeout=self.settings.connect_timeout_s + 60,
        )
        started = min(reply["started"] for reply in replies)
        ready = [at for reply in replies for at in reply["ready"]]
        last = max(ready) if ready else time.time()
        cpu_after = self._sampler.at_or_after(last)
        await asyncio.sleep(SETTLE_S)
        connect = spread(ready, started)
        connect["homes_per_s"] = round(len(ready) / max(1e-9, last - started), 1)
        connect["server_cpu_ms_per_home"] = round(
            (cpu_after.cpu_s - cpu_before.cpu_s) * 1000 / max(1, len(ready)), 3
        )
        connect["simulator_cpu_s"] = round(self._workers.cpu_s() - sim_before, 2)
        self.result["connect"] = connect
        self.result["rss_connected_bytes"] = self._sampler.now().rss_bytes
        if len(ready) < self.homes:
            raise RuntimeError(f"only {len(ready)} of {self.homes} homes connected")

    async def _profile(self, phase: str) -> Recording | None:
        """Start py-spy on the server for one phase (None unless ``--profile``)."""
        if not self.settings.profile:
            return None
        recording = Recording(
            py_spy(self.settings.cache_dir),
            self._server.pid,
            self.settings.work_dir / f"profile-jeisson-{self.homes}-{phase}.txt",
        )
        await recording.start()
        return recording

    async def _idle(self) -> None:
        telemetry = await self._workers.ask({"cmd": "telemetry", "on": True})
        sent_before = sum(reply["telemetry_sent"] for reply in telemetry)
        recording = await self._profile("idle")
        before = self._sampler.now()
        await asyncio.sleep(self.settings.idle_s)
        after = self._sampler.now()
        profile = None if recording is None else await recording.stop()
        if profile:
            self.result["idle_profile"] = profile
        telemetry = await self._workers.ask({"cmd": "telemetry", "on": False})
        minutes = (after.at - before.at) / 60
        cpu_ms = (after.cpu_s - before.cpu_s) * 1000
        self.result["idle"] = {
            "window_s": round(after.at - before.at, 1),
            "server_cpu_ms": round(cpu_ms, 1),
            "cpu_ms_per_home_per_min": round(cpu_ms / self.homes / minutes, 4),
            "core_share": round(cpu_ms / 1000 / (after.at - before.at), 4),
            "telemetry_batches": sum(reply["telemetry_sent"] for reply in telemetry) - sent_before,
            "telemetry_acked": sum(reply["telemetry_acked"] for reply in telemetry),
        }
        self.result["rss_idle_bytes"] = after.rss_bytes

    async def _round(self, number: int) -> dict[str, Any]:
        """Create one market event and follow it until every awarded home holds its award."""
        headers = {"Authorization": f"Bearer {self.fleet.operator_token}"}
        start = datetime.now(UTC) + timedelta(seconds=self.settings.bid_window_s + 30)
        body = {
            "name": f"scale {self.homes} #{number}",
            "kind": "market",
            "target_kw": round(self.settings.target_share * KW_PER_HOME * self.homes, 1),
            "price_cap": PRICE_CAP,
            "start": start.isoformat(),
            "end": (start + timedelta(hours=1)).isoformat(),
            "bid_window_s": self.settings.bid_window_s,
            "restore_stagger_s": 60,
        }
        load = load_average()
        recording = await self._profile(str(number))
        sim_before = self._workers.cpu_s()
        async with aiohttp.ClientSession() as http:
            before = self._sampler.now()
            created_at = time.time()
            async with http.post(
                f"{self.base}/api/v1/events", json=body, headers=headers
            ) as response:
                answered_at = time.time()
                if response.status != 201:
                    raise RuntimeError(
                        f"event not created: {response.status} {await response.text()}"
                    )
                event_id = (await response.json())["id"]
            counts = await self._await_round(event_id)
            sim_cpu = self._workers.cpu_s() - sim_before
            profile = None if recording is None else await recording.stop()
            reports = await self._workers.ask({"cmd": "event", "event_id": event_id})
            async with http.get(
                f"{self.base}/api/v1/events/{event_id}", headers=headers
            ) as response:
                detail = await response.json()
            async with http.post(
                f"{self.base}/api/v1/events/{event_id}/cancel", json={}, headers=headers
            ) as response:
                response.raise_for_status()
        await asyncio.sleep(CANCEL_SETTLE_S)
        offers = [at for reply in reports for at in reply["offers"]]
        held = [at for reply in reports for at in reply["held"]]
        errors: dict[str, int] = {}
        for reply in reports:
            for code, count in reply["errors"].items():
                errors[code] = errors.get(code, 0) + count
        end = max(held) if held else time.time()
        after = self._sampler.at_or_after(end)
        acked_awards = sum(1 for award in detail["awards"] if award["status"] == "acked")
        return {
            "event_id": event_id,
            "load": load,
            "create_request_s": round(answered_at - created_at, 3),
            "offer": spread(offers, created_at),
            "round": spread(held, created_at),
            "bids_acked": counts["bids_acked"],
            "awards_received": counts["awards"],
            "awards_acked_on_server": acked_awards,
            "rounds_on_server": len(detail["rounds"]),
            "committed_kw": detail["committed_kw"],
            "target_kw": body["target_kw"],
            "errors": errors,
            "server_cpu_ms_per_home": round((after.cpu_s - before.cpu_s) * 1000 / self.homes, 4),
            "server_cpu_s": round(after.cpu_s - before.cpu_s, 3),
            "simulator_cpu_s": round(sim_cpu, 2),
            **({"profile": profile} if profile else {}),
        }

    async def _await_round(self, event_id: str) -> dict[str, int]:
        """Wait until every award is held and nothing moved for a while (or the timeout)."""
        deadline = time.monotonic() + self.settings.round_timeout_s
        last: dict[str, int] = {}
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
            counts = await self._counts(event_id=event_id)
            if counts != last:
                last = counts
                quiet_since = time.monotonic()
                continue
            settled = counts["awards"] > 0 and counts["held"] >= counts["awards"]
            answered = counts["bids_acked"] + counts["errors"] >= counts["offers"]
            if settled and answered and time.monotonic() - quiet_since >= QUIET_S:
                return counts
        return last

    async def _restart(self) -> None:
        """Restart the server on the same database; time the fleet's reconnection."""
        await self._workers.ask({"cmd": "server_down"})
        killed_at = time.time()
        stop_s = await self._stop_server()
        up_at = await self._start_server()
        cpu_before = self._sampler.now()
        await self._workers.ask({"cmd": "server_up"})
        deadline = time.monotonic() + self.settings.connect_timeout_s
        while time.monotonic() < deadline:
            counts = await self._counts(since=killed_at)
            if counts["ready_since"] >= self.homes:
                break
            await asyncio.sleep(0.25)
        status = await self._workers.ask({"cmd": "status"})
        ready = [at for reply in status for at in reply["ready"] if at >= killed_at]
        last = max(ready) if ready else time.time()
        cpu_after = self._sampler.at_or_after(last)
        reconnect = spread(ready, up_at)
        reconnect["stop_s"] = round(stop_s, 2)
        reconnect["start_s"] = round(up_at - killed_at - stop_s, 2)
        reconnect["from_stop_signal_s"] = round(last - killed_at, 2)
        reconnect["server_cpu_ms_per_home"] = round(
            (cpu_after.cpu_s - cpu_before.cpu_s) * 1000 / max(1, len(ready)), 3
        )
        self.result["reconnect"] = reconnect
