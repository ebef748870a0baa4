"""``scripts/bench cluster``: 1, 2, 4 clustered ``serve`` processes with the same total homes.

Every size runs the same fleet on one fresh PostgreSQL database (created for the run, dropped
after it) and NATS (a subject prefix of the run's own): N homes are enrolled through the REST API
(setup, untimed), then for each process count P, P ``serve --cluster`` processes start, the homes
connect spread evenly over them (one simulator process per server process at least, as
``homes.py`` does for the scale benchmark), and ``--rounds`` market events are created on the
first process (which coordinates them), each followed until every awarded home holds its award
(its ``ack`` of the ``award_ack`` received), then cancelled.

Figures per round: offer and round p50/p99 over the homes (from the event's creation, as in the
scale benchmark), and the CPU of *all* server processes over the round divided by N — what a
home costs the cluster, wherever its connection is. Every server process is pinned to the same
core (this machine has two; the simulators use the other), so the wall-clock figures show what
the coordination costs, not what more machines would gain: read the CPU column for that.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import aiohttp
import asyncpg
from sqlalchemy.engine import make_url

from tests.benchmarks.scale.common import HOST, load_average, simulator_cores
from tests.benchmarks.scale.jeisson_run import KW_PER_HOME, PRICE_CAP, aggregator_command
from tests.benchmarks.scale.processes import CpuSampler, ServerProcess, Workers, split_evenly
from tests.benchmarks.scale.settings import spread
from tests.helpers import free_port

PG_ADMIN_URL: Final = os.environ.get(
    "JEISSON_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
NATS_URL: Final = os.environ.get("JEISSON_TEST_NATS_URL", "nats://127.0.0.1:4222")
ENROL_CONCURRENCY: Final = 16
HOMES_PER_SIMULATOR: Final = 4000
BID_WINDOW_S: Final = 120.0
TARGET_SHARE: Final = 0.3
ROUND_TIMEOUT_S: Final = 300.0
POLL_S: Final = 0.1
QUIET_S: Final = 1.5
SETTLE_S: Final = 3.0


def serve_command(db_url: str, port: int, prefix: str) -> list[str]:
    """Return one clustered server's command line (acks and drop-offs given time)."""
    return [
        *aggregator_command(),
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--db",
        db_url,
        "--cluster",
        NATS_URL,
        "--cluster-prefix",
        prefix,
        "--ack-timeout",
        "300",
        "--drop-grace",
        "900",
    ]


async def create_database() -> tuple[str, str]:
    """Create a fresh PostgreSQL database; return its URL and name."""
    name = f"jeisson_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    return url, name


async def drop_database(name: str) -> None:
    """Drop the run's database."""
    admin = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


class ClusterBench:
    """One fleet on one database, measured with each process count in turn."""

    def __init__(self, homes: int, rounds: int, work_dir: Path) -> None:
        """Prepare a run of ``homes`` homes, ``rounds`` events per process count."""
        self.homes = homes
        self.rounds = rounds
        self.work_dir = work_dir
        self.db_url = ""
        self.operator_token = ""
        self.tokens: list[str] = []

    async def enrol(self) -> None:
        """Create the operator token and enrol every home through one process (untimed)."""
        created = await asyncio.create_subprocess_exec(
            *aggregator_command(),
            "operator-token",
            "create",
            "--db",
            self.db_url,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await created.communicate()
        if created.returncode != 0:
            raise RuntimeError("operator-token create failed")
        self.operator_token = out.decode().strip().splitlines()[-1]
        port = free_port()
        server = ServerProcess(
            serve_command(self.db_url, port, f"bench-enrol-{uuid.uuid4().hex[:8]}"),
            f"http://{HOST}:{port}/healthz",
            self.work_dir / "enrol-server.log",
        )
        await server.start()
        started = time.monotonic()
        headers = {"Authorization": f"Bearer {self.operator_token}"}
        tokens: list[str] = [""] * self.homes
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(self.homes):
            queue.put_nowait(index)
        base = f"http://{HOST}:{port}"
        try:
            async with aiohttp.ClientSession() as http:

                async def enrol_some() -> None:
                    while not queue.empty():
                        index = queue.get_nowait()
                        async with http.post(
                            f"{base}/api/v1/homes", json={"name": f"b{index}"}, headers=headers
                        ) as response:
                            response.raise_for_status()
                            code = (await response.json())["code"]
                        async with http.post(
                            f"{base}/api/v1/enroll", json={"code": code}
                        ) as response:
                            response.raise_for_status()
                            tokens[index] = (await response.json())["token"]

                await asyncio.gather(*(enrol_some() for _ in range(ENROL_CONCURRENCY)))
        finally:
            await server.stop()
        self.tokens = tokens
        print(
            f"  enrolled {self.homes} homes in {time.monotonic() - started:.0f} s (setup)",
            file=sys.stderr,
        )

    async def measure(self, processes: int) -> dict[str, Any]:
        """Start ``processes`` servers, connect the fleet over them, negotiate the rounds."""
        folder = self.work_dir / f"p{processes}"
        folder.mkdir()
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        servers: list[ServerProcess] = []
        samplers: list[CpuSampler] = []
        sampling: list[asyncio.Task[None]] = []
        workers: Workers | None = None
        result: dict[str, Any] = {"processes": processes, "homes": self.homes}
        try:
            for number in range(processes):
                port = free_port()
                server = ServerProcess(
                    serve_command(self.db_url, port, prefix),
                    f"http://{HOST}:{port}/healthz",
                    folder / f"server-{number}.log",
                )
                await server.start()
                servers.append(server)
                sampler = CpuSampler(server.pid)
                samplers.append(sampler)
                sampling.append(asyncio.create_task(sampler.run()))
            workers = await self._start_workers(servers, folder)
            replies = await workers.ask({"cmd": "connect", "in_flight": 64, "timeout": 600})
            ready = sum(len(reply["ready"]) for reply in replies)
            if ready < self.homes:
                raise RuntimeError(f"only {ready} of {self.homes} homes connected")
            await asyncio.sleep(SETTLE_S)  # every process hears of every home
            base = f"http://{HOST}:{_port(servers[0])}"
            result["rounds"] = [
                await self._round(base, workers, samplers, number) for number in range(self.rounds)
            ]
        finally:
            if workers is not None:
                with contextlib.suppress(Exception):
                    await workers.ask({"cmd": "close"}, timeout=120)
                await workers.stop()
            for task in sampling:
                task.cancel()
            for server in servers:
                await server.stop()
        return result

    async def _start_workers(self, servers: list[ServerProcess], folder: Path) -> Workers:
        """One simulator process per server process (more for large fleets), homes spread."""
        per_worker = min(HOMES_PER_SIMULATOR, -(-self.homes // len(servers)))
        cores = sorted(simulator_cores())
        settings = [
            {
                "url": f"ws://{HOST}:{_port(servers[number % len(servers)])}/api/v1/ws",
                "tokens": self.tokens[part.start : part.stop],
                "first_index": part.start,
                "cores": cores,
            }
            for number, part in enumerate(split_evenly(self.homes, per_worker))
        ]
        return await Workers.start(sys.executable, "tests.benchmarks.scale.homes", settings, folder)

    async def _round(
        self, base: str, workers: Workers, samplers: list[CpuSampler], number: int
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.operator_token}"}
        start = datetime.now(UTC) + timedelta(seconds=BID_WINDOW_S + 30)
        body = {
            "name": f"cluster {self.homes} #{number}",
            "kind": "market",
            "target_kw": round(TARGET_SHARE * KW_PER_HOME * self.homes, 1),
            "price_cap": PRICE_CAP,
            "start": start.isoformat(),
            "end": (start + timedelta(hours=1)).isoformat(),
            "bid_window_s": BID_WINDOW_S,
            "restore_stagger_s": 60,
        }
        load = load_average()
        async with aiohttp.ClientSession() as http:
            before = [sampler.now() for sampler in samplers]
            created_at = time.time()
            async with http.post(f"{base}/api/v1/events", json=body, headers=headers) as response:
                if response.status != 201:
                    raise RuntimeError(f"event not created: {await response.text()}")
                event_id = (await response.json())["id"]
            await self._await_round(workers, event_id)
            reports = await workers.ask({"cmd": "event", "event_id": event_id})
            held = [at for reply in reports for at in reply["held"]]
            end = max(held) if held else time.time()
            after = [sampler.at_or_after(end) for sampler in samplers]
            async with http.post(
                f"{base}/api/v1/events/{event_id}/cancel", json={}, headers=headers
            ) as response:
                response.raise_for_status()
        await asyncio.sleep(SETTLE_S)
        offers = [at for reply in reports for at in reply["offers"]]
        errors: dict[str, int] = {}
        for reply in reports:
            for code, count in reply["errors"].items():
                errors[code] = errors.get(code, 0) + count
        cpu = [a.cpu_s - b.cpu_s for a, b in zip(after, before, strict=True)]
        return {
            "event_id": event_id,
            "load": load,
            "offer": spread(offers, created_at),
            "round": spread(held, created_at),
            "awards_held": len(held),
            "errors": errors,
            "server_cpu_s": [round(value, 3) for value in cpu],
            "server_cpu_ms_per_home": round(sum(cpu) * 1000 / self.homes, 4),
        }

    @staticmethod
    async def _await_round(workers: Workers, event_id: str) -> None:
        deadline = time.monotonic() + ROUND_TIMEOUT_S
        last: dict[str, int] = {}
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
            replies = await workers.ask({"cmd": "counts", "event_id": event_id})
            counts = {key: sum(int(reply[key]) for reply in replies) for key in replies[0]}
            if counts != last:
                last, quiet_since = counts, time.monotonic()
                continue
            settled = counts["awards"] > 0 and counts["held"] >= counts["awards"]
            answered = counts["bids_acked"] + counts["errors"] >= counts["offers"]
            if settled and answered and time.monotonic() - quiet_since >= QUIET_S:
                return
        raise RuntimeError(f"round of {event_id} did not settle: {last}")


def _port(server: ServerProcess) -> int:
    return int(server.health_url.rsplit(":", 1)[1].split("/", 1)[0])


def table(results: Sequence[dict[str, Any]]) -> str:
    """Return the figures as a Markdown table (one line per process count and round)."""
    lines = [
        "| processes | homes | round | offer p50 / p99 | round p50 / p99 | "
        "server CPU ms/home/round (all processes) | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for number, item in enumerate(result["rounds"]):
            lines.append(
                f"| {result['processes']} | {result['homes']:,} | {number + 1} | "
                f"{item['offer']['p50_s']} / {item['offer']['p99_s']} s | "
                f"{item['round']['p50_s']} / {item['round']['p99_s']} s | "
                f"{item['server_cpu_ms_per_home']} | {sum(item['errors'].values())} |"
            )
    return "\n".join(lines)


async def run(homes: int, processes: Sequence[int], rounds: int, work_dir: Path) -> list[Any]:
    """Enrol the fleet once, then measure each process count."""
    bench = ClusterBench(homes, rounds, work_dir)
    bench.db_url, name = await create_database()
    try:
        await bench.enrol()
        results = []
        for count in processes:
            print(f"  {count} process(es), {homes} homes", file=sys.stderr)
            results.append(await bench.measure(count))
        return results
    finally:
        await drop_database(name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the cluster benchmark from the command line."""
    parser = argparse.ArgumentParser(prog="scripts/bench cluster", description=__doc__)
    parser.add_argument("--homes", type=int, default=2000, help="total homes (same for every P)")
    parser.add_argument("--processes", default="1,2,4", help="process counts, e.g. 1,2,4")
    parser.add_argument("--rounds", type=int, default=2, help="events per process count")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args(argv)
    counts = [int(item) for item in args.processes.split(",") if item.strip()]
    work_dir = Path(tempfile.mkdtemp(prefix="jeisson-bench-cluster-"))
    results = asyncio.run(run(args.homes, counts, args.rounds, work_dir))
    print(table(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    if args.keep:
        print(f"logs: {work_dir}", file=sys.stderr)
    else:
        import shutil

        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
