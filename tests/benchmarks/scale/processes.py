"""The coordinator's handles on other processes: simulator workers, servers, a CPU sampler."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import aiohttp

from tests.benchmarks.scale.common import ProcSample, proc_sample, server_preexec

REPO: Final = Path(__file__).resolve().parents[3]
READ_LIMIT: Final = 2**26
"""Largest reply line a worker may send (per-home timestamps of a few thousand homes)."""
SAMPLE_EVERY_S: Final = 0.02
READY_TIMEOUT_S: Final = 120.0
STOP_TIMEOUT_S: Final = 180.0


class Workers:
    """Simulator processes, each serving JSON commands on stdin/stdout (see ``common``)."""

    def __init__(self, processes: list[asyncio.subprocess.Process]) -> None:
        """Wrap started processes; use :meth:`start`."""
        self.processes = processes

    @classmethod
    async def start(
        cls, python: str, module: str, settings: Sequence[dict[str, Any]], log_dir: Path
    ) -> Workers:
        """Start one ``python -m module @settings.json`` per settings object."""
        processes = []
        for number, item in enumerate(settings):
            name = f"{module.rsplit('.', 1)[-1]}-{number}"
            settings_file = log_dir / f"{name}.json"
            settings_file.write_text(json.dumps(item))
            log = (log_dir / f"{name}.log").open("ab")
            processes.append(
                await asyncio.create_subprocess_exec(
                    python,
                    "-m",
                    module,
                    f"@{settings_file}",
                    cwd=REPO,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=log,
                    limit=READ_LIMIT,
                )
            )
            log.close()
        return cls(processes)

    @property
    def pids(self) -> list[int]:
        """Return the workers' process ids."""
        return [process.pid for process in self.processes]

    async def ask(self, command: dict[str, Any], timeout: float = 600.0) -> list[dict[str, Any]]:
        """Send ``command`` to every worker at once; return their replies in worker order."""
        line = (json.dumps(command) + "\n").encode()
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write(line)
        async with asyncio.timeout(timeout):
            replies = await asyncio.gather(*(self._reply(process) for process in self.processes))
        for reply in replies:
            if "error" in reply:
                raise RuntimeError(f"worker failed: {reply['error']}")
        return replies

    @staticmethod
    async def _reply(process: asyncio.subprocess.Process) -> dict[str, Any]:
        assert process.stdout is not None
        line = await process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {process.pid} exited (see its log)")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def cpu_s(self) -> float:
        """Return the CPU seconds the workers used so far."""
        total = 0.0
        for pid in self.pids:
            with contextlib.suppress(OSError):
                total += proc_sample(pid).cpu_s
        return total

    async def stop(self) -> None:
        """Ask every worker to quit; kill those that do not within 30 s."""
        for process in self.processes:
            if process.stdin is not None and process.returncode is None:
                with contextlib.suppress(ConnectionError):
                    process.stdin.write(b'{"cmd": "quit"}\n')
                    await process.stdin.drain()
        for process in self.processes:
            try:
                async with asyncio.timeout(30):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


def split_evenly(count: int, per_process: int) -> list[range]:
    """Return index ranges that spread ``count`` items over processes of ``per_process`` or less."""
    processes = max(1, math.ceil(count / per_process))
    size = math.ceil(count / processes)
    return [range(start, min(count, start + size)) for start in range(0, count, size)]


class CpuSampler:
    """Samples a process's CPU time and RSS every 20 ms while running (to cut windows later)."""

    def __init__(self, pid: int) -> None:
        """Watch ``pid``; call :meth:`run` as a task."""
        self.pid = pid
        self.samples: list[ProcSample] = []

    async def run(self) -> None:
        """Sample until cancelled or the process is gone."""
        while True:
            try:
                self.samples.append(proc_sample(self.pid))
            except OSError:
                return
            await asyncio.sleep(SAMPLE_EVERY_S)

    def now(self) -> ProcSample:
        """Take and keep a sample now."""
        sample = proc_sample(self.pid)
        self.samples.append(sample)
        return sample

    def at_or_after(self, moment: float) -> ProcSample:
        """Return the first sample taken at or after ``moment`` (the latest if none)."""
        for sample in self.samples:
            if sample.at >= moment:
                return sample
        return self.samples[-1]

    def at_or_before(self, moment: float) -> ProcSample:
        """Return the last sample taken at or before ``moment`` (the first if none)."""
        best = self.samples[0]
        for sample in self.samples:
            if sample.at > moment:
                break
            best = sample
        return best


class ServerProcess:
    """A server under test: pinned to one core, fd limit raised, log in a file."""

    def __init__(
        self,
        argv: list[str],
        health_url: str,
        log_path: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        """Describe how to start it (``env``: its environment) and where it answers once ready."""
        self.argv = argv
        self.env = env
        self.health_url = health_url
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        """Return the running server's process id."""
        assert self.process is not None
        return self.process.pid

    async def start(self) -> float:
        """Start the server; return the time it first answered ``health_url``."""
        log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            preexec_fn=server_preexec,
            env=self.env,
        )
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT_S
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.process.returncode is not None:
                    raise RuntimeError(f"server exited at start; see {self.log_path}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(self.health_url) as response:
                        if response.status < 500:
                            return time.time()
                await asyncio.sleep(0.05)
        raise RuntimeError(f"server did not answer {self.health_url} in time")

    async def stop(self) -> float:
        """Stop the server (SIGTERM, SIGKILL after 3 minutes); return the seconds it took."""
        process = self.process
        if process is None or process.returncode is not None:
            return 0.0
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
        return time.monotonic() - started
