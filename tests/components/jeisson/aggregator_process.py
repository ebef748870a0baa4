"""A real Jeisson aggregator server process on 127.0.0.1 for the integration tests."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from tests.helpers import free_port

STARTUP_TIMEOUT_S = 30.0
POLL_S = 0.1


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "aggregator.cli", *args]


@dataclass
class AggregatorProcess:
    """One `jeisson-aggregator serve` subprocess with its own SQLite database."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    operator_token: str = ""

    @property
    def url(self) -> str:
        """Return the base URL homes and operators use."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_url(self) -> str:
        """Return the SQLite URL of the server's database."""
        return f"sqlite:///{self.workdir / 'aggregator.db'}"

    def start(self) -> None:
        """Start the server (creating an operator token first) and wait until it is healthy."""
        if not self.operator_token:
            self.operator_token = subprocess.run(  # noqa: S603 - our own CLI
                _cli("operator-token", "create", "--db", self.db_url, "--name", "tests"),
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
        log = (self.workdir / "aggregator.log").open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own CLI
            _cli(
                "--log-level",
                "DEBUG",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--db",
                self.db_url,
                "--heartbeat",
                "5",
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"aggregator exited: {self.log_tail()}")
            try:
                health = f"{self.url}/healthz"  # http on loopback
                with urllib.request.urlopen(health, timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(POLL_S)
        raise RuntimeError(f"aggregator did not become healthy: {self.log_tail()}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """Kill the server at once, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def telemetry_count(self, home_id: str, event_id: str | None) -> int:
        """Return how many samples of a home the server stored for an event (None: outside).

        Reads the server's SQLite file directly (blocking: call it from an executor job).
        """
        with closing(sqlite3.connect(self.workdir / "aggregator.db")) as conn:
            if event_id is None:
                query = "SELECT count(*) FROM telemetry WHERE home_id = ? AND event_id IS NULL"
                (count,) = conn.execute(query, (home_id,)).fetchone()
            else:
                query = "SELECT count(*) FROM telemetry WHERE home_id = ? AND event_id = ?"
                (count,) = conn.execute(query, (home_id, event_id)).fetchone()
        return int(count)

    def store_telemetry(
        self, home_id: str, start: datetime, end: datetime, kw: float, every: timedelta
    ) -> int:
        """Store samples of ``kw`` from ``start`` to ``end`` as if the home had sent them.

        Writes the server's SQLite file directly (blocking: call it from an executor job);
        returns how many samples were stored.
        """
        rows = []
        ts = start
        while ts < end:
            stamp = ts.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
            rows.append((home_id, stamp, kw))
            ts += every
        with closing(sqlite3.connect(self.workdir / "aggregator.db")) as conn, conn:
            conn.executemany(
                "INSERT INTO telemetry (home_id, event_id, ts, power_kw, shed_kw, loads) "
                "VALUES (?, NULL, ?, ?, 0, '{}')",
                rows,
            )
        return len(rows)

    def statement_receipts(self, home_id: str) -> list[tuple[str, int]]:
        """Return ``(event_id, version)`` of every statement the home acknowledged."""
        with closing(sqlite3.connect(self.workdir / "aggregator.db")) as conn:
            query = "SELECT event_id, version FROM statement_receipts WHERE home_id = ?"
            return [(str(row[0]), int(row[1])) for row in conn.execute(query, (home_id,))]

    def log_tail(self, chars: int = 4000) -> str:
        """Return the end of the server log (for failure messages)."""
        path = self.workdir / "aggregator.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    # --- operator REST API (async, so tests do not block Home Assistant's loop) ----------------

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call the operator API and return the JSON answer (raises on HTTP errors)."""
        headers = {"Authorization": f"Bearer {self.operator_token}"}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path, json=body, headers=headers) as response,
        ):
            payload = await response.json(content_type=None)
            if response.status >= 300:
                raise AssertionError(f"{method} {path}: {response.status} {payload}")
            return payload

    async def add_home(self, name: str = "test home") -> tuple[str, str]:
        """Create a home; return (home_id, enrolment code)."""
        home = await self.request("POST", "/api/v1/homes", {"name": name})
        return home["home_id"], home["code"]

    async def new_code(self, home_id: str) -> str:
        """Return a fresh enrolment code for an existing home."""
        return (await self.request("POST", f"/api/v1/homes/{home_id}/code"))["code"]

    async def enroll(self, code: str) -> dict[str, Any]:
        """Enrol like a home would (no operator token); return {home_id, token, aggregator_id}."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.url}/api/v1/enroll", json={"code": code}) as response,
        ):
            assert response.status == 200, await response.text()
            return dict(await response.json())

    async def create_event(
        self,
        *,
        kind: str = "market",
        target_kw: float = 1.0,
        price_cap: float = 0.5,
        starts_in: float = 2.0,
        duration: float = 3.0,
        bid_window_s: float = 1.0,
        restore_stagger_s: float = 1.0,
    ) -> dict[str, Any]:
        """Create an event starting ``starts_in`` seconds from now; return its JSON."""
        start = datetime.now(UTC) + timedelta(seconds=starts_in)
        return dict(
            await self.request(
                "POST",
                "/api/v1/events",
                {
                    "kind": kind,
                    "target_kw": target_kw,
                    "price_cap": price_cap,
                    "start": start.isoformat(),
                    "end": (start + timedelta(seconds=duration)).isoformat(),
                    "bid_window_s": bid_window_s,
                    "restore_stagger_s": restore_stagger_s,
                },
            )
        )

    async def event(self, event_id: str) -> dict[str, Any]:
        """Return the event's detail JSON."""
        return dict(await self.request("GET", f"/api/v1/events/{event_id}"))

    async def settle(self, event_id: str) -> dict[str, Any]:
        """Settle a finished event now; return the statement version stored (or current)."""
        return dict(await self.request("POST", f"/api/v1/events/{event_id}/settlement"))

    async def cancel(self, event_id: str) -> dict[str, Any]:
        """Cancel an event."""
        return dict(await self.request("POST", f"/api/v1/events/{event_id}/cancel", {}))
