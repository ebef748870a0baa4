"""The scale benchmark (``scripts/bench scale``) keeps working: its homes speak the real protocol
and a 200-home smoke run against a real ``jeisson-aggregator serve`` measures every phase.

The figures themselves are not checked here (this machine is shared and timing is noisy): only
that each phase ran to the end and saw what a working server does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from jeisson.common.protocol import (
    HOME_MESSAGE_TYPES,
    AwardAck,
    Bid,
    HomeHello,
    Inventory,
    Telemetry,
    parse_message,
)
from tests.benchmarks.scale import floor, homes
from tests.benchmarks.scale.runner import SMOKE_HOMES

REPO = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT_S = 180


def parsed(frame: dict[str, object]) -> object:
    return parse_message(json.dumps(frame), allowed=HOME_MESSAGE_TYPES)


def test_simulated_homes_send_valid_protocol_messages() -> None:
    offer = {"id": "offer-evt_1-1", "event_id": "evt_1", "round": 1}
    award = {"id": "award-1", "event_id": "evt_1", "award_id": "awd_1"}

    hello = parsed(homes.hello_frame("h1-1"))
    inventory = parsed(homes.inventory_frame("h1-2"))
    bid = parsed(homes.bid_frame("h1-3", offer, index=7))
    ack = parsed(homes.award_ack_frame("h1-4", award))
    telemetry = parsed(homes.telemetry_frame("h1-5", 7, datetime.now(UTC)))

    assert isinstance(hello, HomeHello)
    assert isinstance(inventory, Inventory)
    assert {load.load_id for load in inventory.loads} == {"wh", "pool"}
    assert isinstance(bid, Bid)
    assert bid.reply_to == "offer-evt_1-1"
    assert [step.loads for step in bid.steps] == [["pool"], ["wh"]]
    assert isinstance(ack, AwardAck)
    assert ack.award_id == "awd_1"
    assert ack.accepted
    assert isinstance(telemetry, Telemetry)
    assert telemetry.event_id is None
    assert len(telemetry.samples) == homes.SAMPLES_PER_BATCH


def test_smoke_run_measures_every_phase(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    subprocess.run(  # noqa: S603 - this interpreter, our own benchmark module
        [
            sys.executable,
            "-m",
            "tests.benchmarks.scale",
            "--smoke",
            "--systems",
            "jeisson",
            "--cache",
            str(tmp_path / "cache"),
            "--json",
            str(out),
        ],
        cwd=REPO,
        check=True,
        timeout=SMOKE_TIMEOUT_S,
        capture_output=True,
    )
    report = json.loads(out.read_text())
    (run,) = report["runs"]
    assert run["homes"] == SMOKE_HOMES
    assert run["connect"]["count"] == SMOKE_HOMES
    (round_,) = run["rounds"]
    assert round_["offer"]["count"] == SMOKE_HOMES
    assert round_["bids_acked"] == SMOKE_HOMES
    assert round_["errors"] == {}
    # Every award the server stored as acknowledged was held by a home, and the target was met.
    assert round_["round"]["count"] == round_["awards_acked_on_server"] > 0
    assert round_["committed_kw"] >= round_["target_kw"]
    assert round_["server_cpu_s"] > 0
    assert run["reconnect"]["count"] == SMOKE_HOMES
    assert run["rss_connected_bytes"] > run["rss_start_bytes"]
    summary = run["summary"]
    assert summary["round_p99_s"] >= summary["offer_p99_s"] > 0


def test_the_floor_benchmark_runs_and_its_frames_are_the_protocols() -> None:
    # The frames the bare server is measured with are real protocol frames of a round.
    assert parse_message(floor.BID, allowed=HOME_MESSAGE_TYPES).type == "bid"
    offer = json.loads(floor.OFFER)
    assert offer["type"] == "offer"

    run = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.scale.floor", "--homes", "100", "--rounds", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        check=True,
    )

    figures = json.loads(run.stdout)
    assert figures["homes"] == 100
    assert len(figures["send_ms_per_home"]) == len(figures["request_reply_ms_per_home"]) == 1
    assert figures["floor_ms_per_home_round"] >= 0
