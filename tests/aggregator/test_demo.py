"""The demo end to end: ``jeisson-aggregator demo`` run as a real process (an in-process
aggregator, a simulated fleet, one event with a drop-out), and its summary.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest

from aggregator.simulation.demo import run_demo
from aggregator.simulation.fleet import SimulatorError
from aggregator.simulation.report import render_text

KW_TOLERANCE = 0.01
DEMO_TIMEOUT_S = 180
LOG_LINE = re.compile(r"\b(DEBUG|INFO|WARNING)\b")
MAX_DECIMALS = 3


@dataclass(frozen=True)
class DemoRun:
    """What ``jeisson-aggregator demo --json`` printed: the report and the progress lines."""

    report: dict[str, Any]
    progress: list[str]


@pytest.fixture(scope="module")
def demo_run() -> DemoRun:
    """Run the demo once with 8 homes, as JSON, as the operator would (a subprocess)."""
    done = subprocess.run(
        [sys.executable, "-m", "aggregator.cli", "demo", "--homes", "8", "--seed", "7", "--json"],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return DemoRun(report=json.loads(done.stdout), progress=done.stderr.splitlines())


@pytest.fixture
def report(demo_run: DemoRun) -> dict[str, Any]:
    """Return the demo's report."""
    return demo_run.report


def test_progress_is_told_without_log_lines(demo_run: DemoRun) -> None:
    progress = demo_run.progress
    assert not [line for line in progress if LOG_LINE.search(line)]
    assert len(progress) < 20
    assert progress[0].startswith("Aggregator running on http://127.0.0.1:")
    assert any(line.startswith("Round 1 cleared: 8 bids") for line in progress)
    assert any(f"{demo_run.report['drop']['home']} dropped off" in line for line in progress)
    assert any(line.startswith("Round 2 cleared") for line in progress)
    assert any(line.startswith("Event completed") for line in progress)


def _floats(value: Any) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [item for child in value.values() for item in _floats(child)]
    if isinstance(value, list):
        return [item for child in value for item in _floats(child)]
    return []


def test_json_summary_figures_are_rounded(demo_run: DemoRun) -> None:
    figures = _floats(demo_run.report)
    assert len(figures) > 50
    assert all(round(figure, MAX_DECIMALS) == figure for figure in figures)


def test_event_completes_with_every_home_connected(report: dict[str, Any]) -> None:
    assert report["homes"]["count"] == 8
    assert report["homes"]["connected"] == 8
    assert report["final"]["status"] == "completed"
    assert report["event"]["target_kw"] == pytest.approx(
        0.4 * report["homes"]["flexible_kw"], abs=0.1
    )


def test_first_round_clears_under_the_cap(report: dict[str, Any]) -> None:
    first = report["rounds"][0]
    assert first["round"] == 1
    assert first["offered_homes"] == 8
    assert first["bids"] == 8
    assert first["steps"] > 0
    assert first["accepted_kw"] >= first["target_kw"] or first["shortfall_kw"] > 0
    assert 0 < first["clearing_price"] <= report["event"]["price_cap"]


def test_drop_out_is_renegotiated_for_the_lost_commitment(report: dict[str, Any]) -> None:
    drop = report["drop"]
    rounds = report["rounds"]
    assert drop is not None
    assert drop["lost_kw"] > 0
    assert len(rounds) >= 2
    second = rounds[1]
    assert second["opened_at_s"] > drop["at_s"]
    assert drop["renegotiation_rounds"][0] == 2
    # Round 2 asks for exactly what the event lacks once the dropped home's award is lost.
    lacking = report["event"]["target_kw"] - (drop["committed_before_kw"] - drop["lost_kw"])
    assert second["target_kw"] == pytest.approx(lacking, abs=KW_TOLERANCE)
    assert 0 < second["target_kw"] <= drop["lost_kw"] + KW_TOLERANCE
    assert second["offered_homes"] <= 7  # the dropped home is not offered


def test_shortfall_is_recovered_or_reported(report: dict[str, Any]) -> None:
    drop = report["drop"]
    final = report["final"]
    target = report["event"]["target_kw"]
    assert final["committed_kw"] >= drop["committed_left_kw"] - KW_TOLERANCE
    assert final["awards_by_status"].get("lost") == 1
    if final["committed_kw"] >= target - KW_TOLERANCE:
        assert drop["recovered_kw"] > 0
        assert final["shortfall_kw"] == 0
    else:
        assert final["shortfall_kw"] == pytest.approx(target - final["committed_kw"], abs=0.01)
        assert drop["remaining_shortfall_kw"] == final["shortfall_kw"]


def test_delivery_is_tracked_while_active(report: dict[str, Any]) -> None:
    active = [row for row in report["timeline"] if row["status"] == "active"]
    assert active
    assert max(row["delivered_kw"] for row in active) > 0
    assert all(row["delivered_kw"] == 0 for row in report["timeline"] if row["t_s"] < 0)
    assert report["timeline"][-1]["status"] == "completed"


def test_loads_switched_off_are_restored_within_the_stagger(report: dict[str, Any]) -> None:
    restore = report["restore"]
    stagger = report["event"]["restore_stagger_s"]
    assert restore["loads_switched_off"] > 0
    assert restore["loads_restored"] == restore["loads_switched_off"]
    assert 0 <= restore["max_delay_s"] <= stagger


def test_text_summary_names_rounds_drop_and_timeline(report: dict[str, Any]) -> None:
    text = render_text(report)
    assert "Negotiation rounds" in text
    assert report["drop"]["home"] in text
    assert "Committed vs delivered" in text
    assert f"{report['final']['committed_kw']:.1f} kW" in text
    assert "Loads by kind" in text
    assert "Power-up event" in text


def test_a_power_up_event_is_taken_by_loads_that_can_add_load(report: dict[str, Any]) -> None:
    event = report["power_up"]

    assert event["status"] == "completed"
    assert event["target_kw"] > 0
    assert event["accepted_kw"] > 0
    assert event["loads_by_kind"]
    assert set(event["loads_by_kind"]) <= {"battery", "ev_charger", "water_heater"}


def test_the_fleet_has_every_kind_and_turns_some_loads_down_to_a_level(
    report: dict[str, Any],
) -> None:
    kinds = {row["kind"]: row for row in report["kinds"]}

    assert {"ev_charger", "thermostat", "water_heater"} <= set(kinds)
    assert sum(row["awarded"] for row in kinds.values()) > 0
    assert sum(row["at_level"] for row in kinds.values()) > 0
    assert all(
        row["at_level"] == 0
        for kind, row in kinds.items()
        if kind not in {"ev_charger", "thermostat"}
    )


async def test_demo_needs_two_homes() -> None:
    with pytest.raises(SimulatorError, match="at least 2 homes"):
        await run_demo(homes=1)
