"""A PostgreSQL cluster of a test's own, on another port, that the test stops and starts.

Never the shared cluster on 5432: this one lives in a temporary folder (as user ``postgres``,
``initdb`` + ``pg_ctl``), listens on 127.0.0.1 and a socket in that folder, and is removed
afterwards.
"""

from __future__ import annotations

import asyncio
import glob
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import free_port

_BIN_PATTERN = "/usr/lib/postgresql/*/bin"


def postgres_bin() -> Path:
    """Return the newest installed PostgreSQL's bin folder."""
    found = sorted(glob.glob(_BIN_PATTERN))
    if not found:
        raise RuntimeError(f"no PostgreSQL server binaries at {_BIN_PATTERN}")
    return Path(found[-1])


async def _as_postgres(*command: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "runuser",
        "-u",
        "postgres",
        "--",
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {output.decode(errors='replace')}")


@dataclass
class OwnPostgres:
    """One throw-away cluster."""

    directory: Path
    port: int

    @property
    def url(self) -> str:
        """Return the URL of its ``postgres`` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @classmethod
    async def create(cls) -> OwnPostgres:
        """Make a fresh cluster (not started)."""
        directory = Path(tempfile.mkdtemp(prefix="jeisson-pg-"))
        shutil.chown(directory, "postgres", "postgres")
        data = directory / "data"
        await _as_postgres(
            str(postgres_bin() / "initdb"),
            "--no-sync",
            "--auth=trust",
            "--username=postgres",
            "-D",
            str(data),
        )
        return cls(directory=directory, port=free_port())

    async def start(self) -> None:
        """Start it and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        await _as_postgres(
            str(postgres_bin() / "pg_ctl"),
            "-D",
            str(self.directory / "data"),
            "-o",
            options,
            "-l",
            str(self.directory / "log"),
            "-w",
            "start",
        )

    async def stop(self) -> None:
        """Stop it at once (connections are cut, as in a crash of the database host)."""
        await _as_postgres(
            str(postgres_bin() / "pg_ctl"),
            "-D",
            str(self.directory / "data"),
            "-m",
            "immediate",
            "-w",
            "stop",
        )

    def remove(self) -> None:
        """Delete its files (stop it first)."""
        shutil.rmtree(self.directory, ignore_errors=True)
