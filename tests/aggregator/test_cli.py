"""The jeisson-aggregator command against a real server (run as real subprocesses)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from .conftest import RunningServer
from .test_settlement_api import settled_event  # noqa: F401 - fixture


async def cli(*args: str, token: str | None = None, url: str | None = None) -> tuple[int, str, str]:
    """Run the CLI in a subprocess; return exit code, stdout and stderr."""
    env = {**os.environ}
    if token is not None:
        env["JEISSON_OPERATOR_TOKEN"] = token
    if url is not None:
        env["JEISSON_URL"] = url
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aggregator.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_operator_token_is_created_on_the_database(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    code, out, _ = await cli("operator-token", "create", "--name", "ops", "--db", db)
    assert code == 0
    token = out.strip()
    assert len(token) >= 40
    assert token.encode() not in (tmp_path / "cli.db").read_bytes()


async def test_operator_commands_drive_a_running_server(server: RunningServer) -> None:
    operator = {"token": server.operator_token, "url": server.url}

    code, out, _ = await cli("home", "add", "--name", "Casa 7", **operator)
    assert code == 0
    assert "enrolment code:" in out
    code, out, _ = await cli("home", "list", **operator)
    assert "Casa 7" in out
    assert "offline" in out

    code, out, _ = await cli(
        "event",
        "create",
        "--target-kw",
        "4",
        "--price-cap",
        "0.3",
        "--start",
        "+120",
        "--duration",
        "15m",
        "--stagger",
        "30",
        **operator,
    )
    assert code == 0, out
    event = json.loads(out)
    assert event["target_kw"] == 4
    assert event["status"] == "negotiating"
    code, out, _ = await cli("event", "list", **operator)
    assert event["id"] in out
    code, out, _ = await cli("event", "show", event["id"], **operator)
    assert json.loads(out)["id"] == event["id"]
    code, out, _ = await cli("event", "cancel", event["id"], "--reason", "test", **operator)
    assert code == 0
    assert "cancelled" in out


async def test_settlement_is_exported_as_csv(
    server: RunningServer,
    settled_event: dict[str, str],  # noqa: F811
) -> None:
    code, out, _ = await cli(
        "event", "settlement", "evt_settle", "--csv", token=server.operator_token, url=server.url
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("home_id") or "home_id" in lines[0]
    assert len(lines) == 4  # header, two homes, totals


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("home", "list"), "operator token is needed"),
        (("event", "show", "evt_x", "--token", "wrong"), "401"),
    ],
)
async def test_cli_errors_are_clear_and_exit_non_zero(
    server: RunningServer, args: tuple[str, ...], message: str
) -> None:
    env_token = os.environ.pop("JEISSON_OPERATOR_TOKEN", None)
    try:
        code, _, err = await cli(*args, url=server.url)
    finally:
        if env_token is not None:
            os.environ["JEISSON_OPERATOR_TOKEN"] = env_token
    assert code == 1
    assert message in err
