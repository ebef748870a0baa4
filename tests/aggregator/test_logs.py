"""Structured logs carry event and home ids and never a secret."""

from __future__ import annotations

import json
import logging

import pytest

from aggregator.logs import JsonFormatter
from jeisson.common.protocol import BidStep
from tests.helpers import wait_for

from .common import HomeFactory, RunningServer


def test_json_formatter_emits_context_ids() -> None:
    record = logging.LogRecord("aggregator.x", logging.INFO, __file__, 1, "Event %s", ("e1",), None)
    record.event_id = "e1"
    record.home_id = "h1"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "Event e1"
    assert line["event_id"] == "e1"
    assert line["home_id"] == "h1"
    assert line["level"] == "INFO"
    assert "round" not in line


async def test_negotiation_logs_name_the_event_and_home_but_no_token(
    server: RunningServer, make_home: HomeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    home = await make_home(lambda _offer: [BidStep(kw=3.0, price=0.1, loads=["wh"])])
    event = await server.create_event(target_kw=3.0)

    async def cleared() -> bool:
        return any(
            getattr(r, "round", None) == 1 and "cleared" in r.getMessage() for r in caplog.records
        )

    await wait_for(cleared, what="clearing log")
    event_records = [r for r in caplog.records if getattr(r, "event_id", None) == event["id"]]
    assert event_records
    assert any(getattr(r, "home_id", None) == home.home_id for r in caplog.records)
    formatter = JsonFormatter()
    text = "\n".join(formatter.format(record) for record in caplog.records)
    assert server.operator_token not in text
