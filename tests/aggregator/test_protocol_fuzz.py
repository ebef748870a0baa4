"""Hostile frames on a real home session: every frame gets an ack or an error; nothing crashes.

The explicit cases are the ones that used to drop the session with 1006 and a traceback (an
``id`` that is not a valid identifier, an error text over 1,000 characters). The Hypothesis test
then sends generated frames — random JSON, home messages with random fields, valid messages
with one field replaced — over one enrolled home's websocket on a real server, and checks that
each is answered by exactly one ``ack`` or ``error`` (``reply_to`` its id when the id is valid),
that the session stays open, and that the server logged no exception.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jeisson.common.protocol import (
    HOME_MESSAGE_TYPES,
    MAX_ERROR_TEXT,
    AwardAck,
    Bid,
    BidStep,
    ErrorCode,
    ErrorMessage,
    Inventory,
    Load,
    LoadKind,
    OptOut,
    ProtocolError,
    Sample,
    Telemetry,
    dump_message,
    parse_message,
    utc_now,
)
from tests.helpers import free_port

from .common import FAST, RawHome, RunningServer, enrolled_token, raw_home

IDENTIFIER = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
FUZZ_EXAMPLES = 150
"""Generated sessions per run (each a handful of frames): about 10 s here."""


def inventory() -> Inventory:
    """A small inventory (one water heater)."""
    return Inventory(
        loads=[Load(load_id="heater", name="Heater", kind=LoadKind.WATER_HEATER, rated_kw=2.0)]
    )


async def ready(home: RawHome) -> None:
    """Say hello and send the inventory, reading both acks."""
    await home.handshake()
    await home.send(dump_message(inventory()))
    assert (await home.receive())["type"] == "ack"


@pytest.mark.parametrize(
    "bad_id",
    ["has spaces", "x" * 65, "", "ünïcode", 42, None, ["list"], {"an": "object"}],
    ids=["spaces", "too-long", "empty", "non-ascii", "number", "null", "list", "object"],
)
async def test_a_frame_with_an_invalid_id_gets_an_error_and_the_session_goes_on(
    server: RunningServer, http: aiohttp.ClientSession, bad_id: Any
) -> None:
    async with raw_home(server, http) as home:
        await ready(home)
        await home.send(json.dumps({"type": "telemetry", "id": bad_id, "samples": []}))
        error = await home.receive()
        assert (error["type"], error["code"]) == ("error", ErrorCode.INVALID_MESSAGE)
        assert "reply_to" not in error
        telemetry = Telemetry(samples=[Sample(ts=utc_now(), power_kw=1.0)])
        await home.send(dump_message(telemetry))
        assert (await home.receive())["reply_to"] == telemetry.id


async def test_an_error_text_over_the_limit_is_cut_and_the_session_goes_on(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    """500 invalid samples: the details would run to thousands of characters."""
    async with raw_home(server, http) as home:
        await ready(home)
        samples = [{"ts": "yesterday", "power_kw": "lots"} for _ in range(500)]
        await home.send(json.dumps({"type": "telemetry", "id": "t-big", "samples": samples}))
        error = await home.receive()
        assert (error["code"], error["reply_to"]) == (ErrorCode.INVALID_MESSAGE, "t-big")
        assert len(error["message"]) == MAX_ERROR_TEXT
        assert error["message"].endswith("…")
        await home.send(dump_message(OptOut(event_id="evt_missing")))
        assert (await home.receive())["code"] == ErrorCode.UNKNOWN_EVENT


def test_protocol_error_frames_are_always_valid() -> None:
    """Whatever a ProtocolError carries, its frame parses back as an ErrorMessage."""
    for reply_to, text in (("ok-id", "x" * 5000), ("bad id", "fine"), ("y" * 99, "")):
        frame = dump_message(ProtocolError(ErrorCode.INVALID_MESSAGE, text, reply_to).to_message())
        message = parse_message(frame)
        assert isinstance(message, ErrorMessage)
        assert len(message.message) <= MAX_ERROR_TEXT
        assert message.reply_to in (None, "ok-id")


# --- generated frames ---------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
IDS = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9_.:-]{1,64}\Z"),
    st.text(max_size=80),
    st.integers(),
    st.none(),
    st.just("x" * 200),
)
TYPES = st.sampled_from([*sorted(HOME_MESSAGE_TYPES - {"home_hello"}), "server_hello", "award"])


def valid_messages() -> Iterator[dict[str, Any]]:
    """One valid example of every home message sent after the handshake."""
    now = utc_now()
    examples = [
        inventory(),
        Telemetry(samples=[Sample(ts=now, power_kw=1.5, loads={"heater": 1.5})]),
        Bid(
            reply_to="offer-x",
            event_id="evt_x",
            round=1,
            steps=[BidStep(kw=2.0, price=0.2, loads=["heater"])],
        ),
        AwardAck(reply_to="award-x", event_id="evt_x", award_id="awd_x", accepted=True),
        OptOut(event_id="evt_x", load_id="heater"),
    ]
    for message in examples:
        yield json.loads(dump_message(message))


VALID = list(valid_messages())


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A valid message with one field replaced (or removed, or added)."""
    message = dict(draw(st.sampled_from(VALID)))
    key = draw(st.sampled_from([*message, "extra"]))
    if draw(st.booleans()) and key in message:
        del message[key]
    else:
        message[key] = draw(JSON_VALUES | IDS)
    return json.dumps(message)


@st.composite
def typed(draw: st.DrawFn) -> str:
    """An object with a home message type, any id and random fields."""
    message = draw(st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=5))
    message["type"] = draw(TYPES)
    message["id"] = draw(IDS)
    return json.dumps(message)


FRAMES = st.one_of(
    mutated(),
    typed(),
    JSON_VALUES.map(json.dumps),
    st.text(max_size=200),
)


async def exchange(home: RawHome, frames: list[str]) -> None:
    """Send each frame; exactly one ack or error answers it."""
    for frame in frames:
        await home.send(frame)
        reply = await asyncio.wait_for(home.receive(), 10)
        assert reply["type"] in ("ack", "error"), (frame, reply)
        has_id, sent_id = _id_of(frame)
        if sent_id is not None:
            assert reply.get("reply_to") == sent_id, (frame, reply)
        elif has_id:  # an id that is not a valid identifier: refused, and not echoed
            assert (reply["type"], reply.get("reply_to")) == ("error", None), (frame, reply)
        # (a message without an id is given one by the parser; replies name that one)
        if reply["type"] == "error":
            assert len(reply["message"]) <= MAX_ERROR_TEXT
            assert reply["code"] != ErrorCode.INTERNAL_ERROR, (frame, reply)
    assert not home.ws.closed


def _id_of(frame: str) -> tuple[bool, str | None]:
    """Return whether ``frame`` is an object with an ``id``, and that id if it is valid."""
    try:
        raw = json.loads(frame)
    except ValueError:
        return False, None
    if not isinstance(raw, dict) or "id" not in raw:
        return False, None
    value = raw["id"]
    return True, value if isinstance(value, str) and IDENTIFIER.match(value) else None


def test_generated_frames_are_answered_and_never_crash_the_session(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Hypothesis drives one real server; every example is a fresh session of one home."""
    caplog.set_level(logging.ERROR)
    with asyncio.Runner() as runner:
        server, http, token = runner.run(_start(tmp_path))
        try:

            @settings(
                max_examples=FUZZ_EXAMPLES,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            )
            @given(frames=st.lists(FRAMES, min_size=1, max_size=6))
            def check(frames: list[str]) -> None:
                runner.run(_session(server, http, token, frames))

            check()
        finally:
            runner.run(_stop(server, http))
    errors = [r for r in caplog.records if r.name.startswith("aggregator")]
    assert not errors, [r.getMessage() for r in errors]


async def _start(tmp_path: Path) -> tuple[RunningServer, aiohttp.ClientSession, str]:
    http = aiohttp.ClientSession()
    server = RunningServer(db_path=tmp_path / "fuzz.db", port=free_port(), settings=FAST)
    server.session = http
    await server.start()
    _home_id, token = await enrolled_token(server, http)
    return server, http, token


async def _stop(server: RunningServer, http: aiohttp.ClientSession) -> None:
    await server.stop()
    await http.close()


async def _session(
    server: RunningServer, http: aiohttp.ClientSession, token: str, frames: list[str]
) -> None:
    async with raw_home(server, http, token) as home:
        await ready(home)
        await exchange(home, frames)
