"""The jeisson-aggregator command against a real server (run as real subprocesses).

Every command that prints data prints it for people by default and as JSON with ``--json``;
logs stay out of the way unless ``-v`` (``serve`` logs INFO by default).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from aggregator.cli.output import Column, table, tidy
from aggregator.records import RoundRecord, RoundStatus
from tests.helpers import free_port

from .common import EVENT_START, RunningServer

NOISY_KW = 394.82999999999987
"""What a sum of floats looks like before rounding (issue 13 saw it printed)."""
LOG_LINE = re.compile(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR) [\w.]+: ", re.MULTILINE)
SERVE_READY_TIMEOUT_S = 20.0


async def cli(*args: str, token: str | None = None, url: str | None = None) -> tuple[int, str, str]:
    """Run the CLI in a subprocess; return exit code, stdout and stderr."""
    env = {**os.environ}
    env.pop("JEISSON_OPERATOR_TOKEN", None)
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
    code, out, err = await cli("operator-token", "create", "--name", "ops", "--db", db)
    assert code == 0
    token = out.strip()
    assert len(token) >= 40
    assert token.encode() not in (tmp_path / "cli.db").read_bytes()
    assert not LOG_LINE.search(err)  # the migration's INFO line is not shown by default

    code, out, _ = await cli("operator-token", "create", "--json", "--db", db)
    created = json.loads(out)
    assert created["name"] == "operator"
    assert len(created["token"]) >= 40


async def test_logs_are_quiet_by_default_and_shown_with_verbose(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    code, out, err = await cli("db", "upgrade", "--db", db)
    assert code == 0
    assert out.startswith("database at revision")
    assert err == ""

    code, out, err = await cli("db", "current", "--json", "--db", db, "-v")
    assert code == 0
    state = json.loads(out)
    assert state["revision"] == state["head"]
    # -v after the command works as well as before it; a fresh database logs its migration.
    code, _, err = await cli("-v", "db", "upgrade", "--db", f"sqlite:///{tmp_path / 'new.db'}")
    assert code == 0
    assert re.search(r" INFO aggregator\.migrations: Database schema migrated", err)


async def test_serve_logs_info_by_default(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aggregator.cli",
        "serve",
        "--port",
        str(free_port()),
        "--db",
        f"sqlite:///{tmp_path / 'serve.db'}",
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(SERVE_READY_TIMEOUT_S):
            while not any(" ready" in line for line in seen):
                line = (await process.stderr.readline()).decode()
                assert line, f"serve exited: {seen}"
                seen.append(line)
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()
    assert any(re.search(r" INFO aggregator\.server: Aggregator \S+ ready", line) for line in seen)
    assert process.returncode == 0


async def test_home_commands_print_lines_and_tables_or_json(server: RunningServer) -> None:
    operator = {"token": server.operator_token, "url": server.url}

    code, out, err = await cli("home", "add", "--name", "Casa 7", **operator)
    assert code == 0, err
    assert re.search(r"^home Casa 7 \(home_\w+\)$", out, re.MULTILINE)
    assert re.search(r"^enrolment code: \S+", out, re.MULTILINE)
    code, out, _ = await cli("home", "add", "--name", "Casa 8", "--json", **operator)
    added = json.loads(out)
    assert added["name"] == "Casa 8"
    assert added["code"]

    code, out, _ = await cli("home", "list", **operator)
    header, *rows = out.splitlines()
    columns = ["HOME ID", "NAME", "STATE", "TAKING PART", "FLEXIBLE", "LOADS", "RELIABILITY"]
    assert re.split(r"\s{2,}", header) == [*columns, "LAST SEEN"]
    assert any("Casa 7" in row and "offline" in row and "0.00 kW" in row for row in rows)
    assert rows[-1] == "(homes 1-2 of 2)"
    code, out, _ = await cli("home", "list", "--json", **operator)
    assert {home["name"] for home in json.loads(out)["homes"]} == {"Casa 7", "Casa 8"}
    code, out, _ = await cli("home", "list", "--search", "casa 8", "--offline", **operator)
    assert "Casa 8" in out
    assert "Casa 7" not in out
    code, out, _ = await cli("home", "list", "--online", **operator)
    assert out.strip() == "no homes match"

    code, out, _ = await cli("home", "code", added["home_id"], **operator)
    assert f"({added['home_id']})" in out
    assert "enrolment code:" in out


async def test_event_commands_print_lines_and_tables_or_json(server: RunningServer) -> None:
    operator = {"token": server.operator_token, "url": server.url}
    create = ("event", "create", "--target-kw", "4", "--price-cap", "0.3", "--start", "+120")
    create += ("--duration", "15m", "--stagger", "30", "--name", "Evening peak")

    code, out, err = await cli(*create, **operator)
    assert code == 0, err
    assert re.search(r"^status:\s+negotiating$", out, re.MULTILINE)
    assert re.search(r"^target:\s+4\.00 kW$", out, re.MULTILINE)
    assert re.search(r"^price cap:\s+0\.300 EUR/kWh$", out, re.MULTILINE)
    assert re.search(r"^direction:\s+down$", out, re.MULTILINE)
    code, out, _ = await cli(*create, "--direction", "up", **operator)
    assert re.search(r"^direction:\s+up$", out, re.MULTILINE)
    code, out, _ = await cli(*create, "--json", **operator)
    event = json.loads(out)
    assert event["target_kw"] == 4
    assert event["status"] == "negotiating"

    code, out, _ = await cli("event", "list", **operator)
    header, *rows = out.splitlines()
    assert header.startswith("EVENT ID")
    assert len(rows) == 3
    assert all("Evening peak" in row and "4.00 kW" in row for row in rows)
    code, out, _ = await cli("event", "list", "--json", "--limit", "1", **operator)
    assert [item["id"] for item in json.loads(out)["events"]] == [event["id"]]

    code, out, _ = await cli("event", "show", event["id"], **operator)
    assert out.startswith("event:")
    assert event["id"] in out
    assert "Rounds\n" in out
    code, out, _ = await cli("event", "show", event["id"], "--json", **operator)
    assert json.loads(out)["id"] == event["id"]

    code, out, _ = await cli("event", "cancel", event["id"], "--reason", "test", **operator)
    assert code == 0
    assert out.strip() == f"event {event['id']} cancelled"


async def test_kw_figures_are_rounded_in_every_output(
    server: RunningServer,
    settled_event: dict[str, str],
) -> None:
    await server.store.insert_round(
        RoundRecord(
            event_id="evt_settle",
            round=2,
            status=RoundStatus.CLEARED,
            target_kw=NOISY_KW,
            opened_at=EVENT_START - timedelta(minutes=10),
            deadline=EVENT_START - timedelta(minutes=9),
            offered_kw=NOISY_KW,
            accepted_kw=NOISY_KW,
        )
    )
    operator = {"token": server.operator_token, "url": server.url}

    code, out, _ = await cli("event", "show", "evt_settle", **operator)
    assert code == 0
    assert "394.83 kW" in out
    assert "394.8299" not in out
    code, out, _ = await cli("event", "show", "evt_settle", "--json", **operator)
    (round_two,) = [item for item in json.loads(out)["rounds"] if item["round"] == 2]
    assert round_two["target_kw"] == 394.83
    assert "394.8299" not in out


def test_json_output_drops_float_noise_but_keeps_real_precision() -> None:
    assert tidy({"a": [NOISY_KW, 0.1234], "b": "x", "c": 3}) == {
        "a": [394.83, 0.1234],
        "b": "x",
        "c": 3,
    }


def test_tables_align_numbers_right_and_say_when_empty() -> None:
    columns = (Column("name"), Column("kw", numeric=True))
    assert table(columns, [("a", "1.00 kW"), ("long name", "10.00 kW")]) == (
        "NAME             KW\na           1.00 kW\nlong name  10.00 kW"
    )
    assert table(columns, [], empty="no homes yet") == "no homes yet"


async def test_settlement_is_a_table_or_json_or_csv(
    server: RunningServer,
    settled_event: dict[str, str],
) -> None:
    operator = {"token": server.operator_token, "url": server.url}
    code, _, err = await cli("event", "settlement", "evt_settle", **operator)
    assert code == 1
    assert "not settled yet" in err
    code, out, _ = await cli("event", "settle", "evt_settle", **operator)
    assert code == 0
    assert re.search(r"^version:\s+v1  settled by the operator$", out, re.MULTILINE)

    code, out, _ = await cli("event", "settlement", "evt_settle", **operator)
    assert code == 0
    assert re.search(r"^delivered:\s+2\.50 kWh$", out, re.MULTILINE)
    assert re.search(rf"^{settled_event['curtailing']}\s+\w+.*2\.50 kWh.*0\.50 EUR$", out, re.M)

    code, out, _ = await cli("event", "settlement", "evt_settle", "--json", **operator)
    assert json.loads(out)["totals"]["delivered_kwh"] == pytest.approx(2.5)

    code, out, _ = await cli("event", "settlement", "evt_settle", "--csv", **operator)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("event_id,version,home_id")
    assert len(lines) == 4  # header, two homes, totals

    code, out, _ = await cli("event", "statements", "evt_settle", **operator)
    assert re.search(r"^\s+v1 .*0\.50 EUR\s+\+0\.50\s+settled by the operator$", out, re.M)
    code, out, _ = await cli(
        "event", "preview", "evt_settle", "--baseline", "pre_event_average", "--json", **operator
    )
    assert json.loads(out)["baseline_method"] == "pre_event_average"


async def test_ledger_reliability_and_program_commands(
    server: RunningServer,
    settled_event: dict[str, str],
) -> None:
    operator = {"token": server.operator_token, "url": server.url}
    home = settled_event["curtailing"]
    await cli("event", "settle", "evt_settle", **operator)
    code, out, _ = await cli("home", "ledger", home, **operator)
    assert code == 0
    assert re.search(r"evt_settle\s+v1\s+2\.50 kWh\s+\+0\.50 EUR$", out, re.M)
    assert re.search(r"^total \d{4}-\d{2}:\s+0\.50 EUR$", out, re.M)
    code, out, _ = await cli("home", "ledger", home, "--csv", **operator)
    assert out.splitlines()[1].startswith(home)
    code, out, _ = await cli("home", "reliability", **operator)
    assert re.search(rf"^{home}\s+0\.967\s+1\s+2\.50 kWh\s+3\.00 kWh$", out, re.M)

    code, out, _ = await cli(
        "program", "set", "--timezone", "America/Santiago", "--holidays", "CL", **operator
    )
    assert code == 0, out
    assert re.search(r"^holidays:\s+CL$", out, re.M)
    code, out, _ = await cli("program", "show", "--json", **operator)
    assert json.loads(out)["timezone"] == "America/Santiago"
    code, _, err = await cli("program", "set", "--holidays", "ZZ", **operator)
    assert code == 1
    assert "ZZ" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("home", "list"), "operator token is needed"),
        (("event", "show", "evt_x", "--token", "wrong"), "401 unauthorized"),
        (("event", "create", "--target-kw", "1", "--price-cap", "1"), "--start"),
        (("event", "list", "--start", "soon"), "unrecognized arguments"),
    ],
)
async def test_cli_errors_are_clear_and_exit_non_zero(
    server: RunningServer, args: tuple[str, ...], message: str
) -> None:
    code, out, err = await cli(*args, url=server.url)
    assert code != 0
    assert out == ""
    assert message in err
