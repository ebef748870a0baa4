"""``jeisson-aggregator serve`` as a real process, for the limits, TLS and reverse-proxy tests.

The process runs with its own soft file-descriptor limit (``fd_limit``) and logs to a file, so
tests can exhaust descriptors without touching the test process and can measure the log.
"""

from __future__ import annotations

import asyncio
import re
import resource
import signal
import ssl
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Final

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from aggregator.store import Store
from tests.helpers import free_port

READY_TIMEOUT_S: Final = 30.0
LISTENING = re.compile(r"Listening on (https?)://\S+ \(at most (\d+) connections\)")


@dataclass
class ServeProcess:
    """A running ``serve`` with its database, port, log file and operator token."""

    workdir: Path
    args: list[str] = field(default_factory=list)
    fd_limit: int | None = None
    port: int = field(default_factory=free_port)
    scheme: str = "http"
    cap: int = 0
    token: str = ""
    process: asyncio.subprocess.Process | None = None
    database: str | None = None
    """Another database (e.g. a fresh PostgreSQL one) instead of SQLite in ``workdir``."""

    @property
    def db_url(self) -> str:
        """Return the database URL (SQLite in ``workdir`` unless ``database`` is set)."""
        return self.database or f"sqlite:///{self.workdir / 'serve.db'}"

    @property
    def log_path(self) -> Path:
        """Return the file the server logs to."""
        return self.workdir / "serve.log"

    @property
    def url(self) -> str:
        """Return the base URL."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def log(self) -> str:
        """Return what the server logged so far."""
        return self.log_path.read_text(errors="replace")

    async def start(self) -> None:
        """Create an operator token, start the server and wait until it listens."""
        store = await Store.open(self.db_url)
        try:
            self.token = await store.create_operator_token("tests")
        finally:
            await store.close()
        limit = self.fd_limit

        def lower_fd_limit() -> None:  # runs in the child before exec
            if limit is not None:
                _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))

        with self.log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "aggregator.cli",
                "serve",
                "--port",
                str(self.port),
                "--db",
                self.db_url,
                *self.args,
                stderr=log,
                preexec_fn=lower_fd_limit,
            )
        async with asyncio.timeout(READY_TIMEOUT_S):
            while (found := LISTENING.search(self.log())) is None:
                if self.process.returncode is not None:
                    raise RuntimeError(f"serve exited: {self.log()}")
                await asyncio.sleep(0.05)
        self.scheme, self.cap = found.group(1), int(found.group(2))

    async def stop(self) -> int:
        """Stop it with SIGTERM; return its exit status."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        return int(self.process.returncode or 0)

    async def kill(self) -> None:
        """Kill it with SIGKILL (no clean stop: nothing handed over, nothing flushed)."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()

    async def add_home(self, session: aiohttp.ClientSession, name: str = "home") -> str:
        """Add a home over REST; return its enrolment code."""
        async with session.post(
            f"{self.url}/api/v1/homes",
            json={"name": name},
            headers={"Authorization": f"Bearer {self.token}"},
        ) as response:
            assert response.status == 201, await response.text()
            return str((await response.json())["code"])


def self_signed(workdir: Path, host: str = "127.0.0.1") -> tuple[Path, Path, ssl.SSLContext]:
    """Write a self-signed certificate for ``host``; return (cert, key, a client context)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ip_address(host))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = workdir / "cert.pem", workdir / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    client = ssl.create_default_context(cafile=str(cert_path))
    return cert_path, key_path, client
