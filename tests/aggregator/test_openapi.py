"""The OpenAPI document: valid, complete, and true to the real server (schemathesis).

Schemathesis generates requests for every operation from ``aggregator.openapi`` and sends them,
as the operator, to ``jeisson-aggregator serve`` running as a real process. The run must see no
server error (5xx), and every documented JSON answer of the core API must match its response
schema. Examples per operation are bounded (``EXAMPLES``) to keep the suite fast; the dashboard's
endless event stream is left out.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from aggregator.openapi import openapi_document
from aggregator.store import Store
from tests.helpers import free_port

EXAMPLES: Final = 12
"""Generated requests per operation (about 30 operations: ~10 s here)."""
CONFORMING: Final = ("/api/v1/enroll", "/api/v1/homes", "/api/v1/events", "/healthz")
"""Paths (and the paths below them) whose JSON answers are checked against their schemas."""
READY_TIMEOUT_S: Final = 30.0

STREAMS: Final = ("/api/v1/stream",)
"""Endpoints that answer with an endless stream (tests/aggregator/test_dashboard.py covers it)."""

SCHEMA = schemathesis.openapi.from_dict(openapi_document()).exclude(path=list(STREAMS))


def test_the_document_is_valid_openapi_with_every_reference_resolved() -> None:
    document = openapi_document()
    validate(document)  # raises on any violation of OpenAPI 3.1
    text = json.dumps(document)
    names = set(document["components"]["schemas"])
    for ref in re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text):
        assert ref in names, ref


def test_every_success_answer_has_a_schema() -> None:
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for status, answer in operation["responses"].items():
                if not status.startswith("2"):
                    continue
                for media, content in answer["content"].items():
                    assert content["schema"], (method, path, status, media)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``jeisson-aggregator serve`` on a fresh database; yield its URL and an operator token."""
    workdir = tmp_path_factory.mktemp("openapi")
    db_url = f"sqlite:///{workdir / 'api.db'}"
    token = asyncio.run(_operator_token(db_url))
    port = free_port()
    log_path = workdir / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - this interpreter, our own command
            [sys.executable, "-m", "aggregator.cli", "serve", "--port", str(port), "--db", db_url],
            stderr=log,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while "Listening on" not in _read(log_path):
            assert process.poll() is None, _read(log_path)
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", token
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
    assert "Traceback" not in _read(log_path), _read(log_path)[-6000:]


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_generated_requests_get_no_server_error(case: Any, served: tuple[str, str]) -> None:
    url, token = served
    response = case.call(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    checks = [not_a_server_error]
    if case.path.startswith(CONFORMING):
        checks.append(response_schema_conformance)
    case.validate_response(response, checks=checks)


async def _operator_token(db_url: str) -> str:
    store = await Store.open(db_url)
    try:
        return await store.create_operator_token("schemathesis")
    finally:
        await store.close()


def _read(path: Path) -> str:
    return path.read_text(errors="replace")
