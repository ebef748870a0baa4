"""Tests of the wire protocol: every message round-trips, every kind of bad frame is refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from jeisson.common.protocol import (
    HOME_MESSAGE_TYPES,
    MAX_FRAME_BYTES,
    MAX_STEPS_PER_BID,
    MESSAGE_TYPES,
    SCHEMA_VERSION,
    SERVER_MESSAGE_TYPES,
    Ack,
    Award,
    AwardAck,
    Bid,
    BidStep,
    Cancel,
    ErrorCode,
    ErrorMessage,
    EventEnd,
    EventKind,
    HeldAward,
    HomeEventStatus,
    HomeHello,
    Inventory,
    Load,
    LoadKind,
    Message,
    Offer,
    OptOut,
    OptOutReason,
    ProtocolError,
    Sample,
    ServerHello,
    Statement,
    StatementAck,
    Telemetry,
    dump_message,
    for_schema,
    parse_message,
)

START = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)
END = START + timedelta(hours=1)

EXAMPLES: dict[str, Callable[[], Message]] = {
    "server_hello": lambda: ServerHello(
        server_version="0.1.0",
        aggregator_id="agg-1",
        home_id="home-1",
        heartbeat_interval=30.0,
        server_time=START - timedelta(hours=1),
    ),
    "offer": lambda: Offer(
        event_id="ev-1",
        round=1,
        window_start=START,
        window_end=END,
        price_cap=0.4,
        bid_deadline=START - timedelta(minutes=58),
    ),
    "award": lambda: Award(
        event_id="ev-1",
        award_id="aw-1",
        round=2,
        kind=EventKind.DIRECT,
        kw=0.0,
        price=0.1,
        window_start=START,
        window_end=END,
        restore_stagger_s=600,
    ),
    "cancel": lambda: Cancel(event_id="ev-1", reason="withdrawn by the grid operator"),
    "event_end": lambda: EventEnd(event_id="ev-1"),
    "ack": lambda: Ack(reply_to="m-1"),
    "error": lambda: ErrorMessage(reply_to="m-1", code=ErrorCode.UNKNOWN_EVENT, message="no ev-9"),
    "home_hello": lambda: HomeHello(
        schema_version=SCHEMA_VERSION,
        software_version="0.1.0",
        held_awards=[
            HeldAward(event_id="ev-0", award_id="aw-0", status=HomeEventStatus.ACTIVE, loads=["wh"])
        ],
    ),
    "inventory": lambda: Inventory(
        loads=[
            Load(load_id="wh", name="Water heater", kind=LoadKind.WATER_HEATER, rated_kw=4.5),
            Load(
                load_id="hp", name="Heat pump", kind=LoadKind.HVAC, rated_kw=2.8, curtailable=False
            ),
        ],
        participating=False,
    ),
    "bid": lambda: Bid(
        reply_to="offer-1",
        event_id="ev-1",
        round=1,
        steps=[
            BidStep(kw=1.1, price=0.08, loads=["pool"]),
            BidStep(kw=4.5, price=0.08, loads=["wh"]),
            BidStep(kw=7.4, price=0.32, loads=["ev"]),
        ],
    ),
    "award_ack": lambda: AwardAck(
        reply_to="award-1", event_id="ev-1", award_id="aw-1", loads=["wh"], kw=4.5
    ),
    "telemetry": lambda: Telemetry(
        event_id="ev-1",
        samples=[
            Sample(ts=START, power_kw=9.8, shed_kw=5.6, loads={"wh": 0.0, "ev": 7.2}),
            Sample(ts=START + timedelta(seconds=30), power_kw=9.9, measured=False),
        ],
    ),
    "opt_out": lambda: OptOut(event_id="ev-1", load_id="wh", reason=OptOutReason.OVERRIDE),
    "statement": lambda: Statement(
        id="statement-ev-1-v2",
        event_id="ev-1",
        version=2,
        settled_at=END + timedelta(days=1),
        window_start=START,
        window_end=END,
        status="settled",
        committed_kw=4.5,
        delivered_kwh=3.9,
        paid_kwh=3.9,
        price=0.2,
        payment=0.78,
        previous_payment=0.7,
        baseline="comparison_group",
        baseline_reason="comparison group: median of 6 similar homes",
        reliability=0.84,
    ),
    "statement_ack": lambda: StatementAck(reply_to="statement-ev-1-v2", event_id="ev-1", version=2),
}


def test_a_statement_says_its_correction_and_refuses_nonsense() -> None:
    statement = EXAMPLES["statement"]()
    assert isinstance(statement, Statement)
    assert statement.correction == pytest.approx(0.08)
    good = json.loads(dump_message(statement))
    for field, bad in (
        ("version", 0),
        ("payment", float("inf")),
        ("delivered_kwh", -1.0),
        ("reliability", 1.5),
        ("data_quality", "guessed"),
    ):
        assert refused({**good, field: bad}).code is ErrorCode.INVALID_MESSAGE, field


def offer_dict(**changes: Any) -> dict[str, Any]:
    """Return a valid offer as a JSON object, with ``changes`` applied."""
    data: dict[str, Any] = json.loads(dump_message(EXAMPLES["offer"]()))
    data.update(changes)
    return data


def refused(frame: str | bytes | dict[str, Any], **kwargs: Any) -> ProtocolError:
    """Return the ProtocolError ``parse_message`` raises for ``frame``."""
    text = json.dumps(frame) if isinstance(frame, dict) else frame
    with pytest.raises(ProtocolError) as caught:
        parse_message(text, **kwargs)
    return caught.value


# --- Round trips ------------------------------------------------------------------------------


def test_examples_cover_every_message_type() -> None:
    assert set(EXAMPLES) == set(MESSAGE_TYPES)
    assert set(MESSAGE_TYPES) == SERVER_MESSAGE_TYPES | HOME_MESSAGE_TYPES
    assert not SERVER_MESSAGE_TYPES & HOME_MESSAGE_TYPES


@pytest.mark.parametrize("message_type", sorted(MESSAGE_TYPES))
def test_every_message_round_trips(message_type: str) -> None:
    message = EXAMPLES[message_type]()

    parsed = parse_message(dump_message(message))

    assert parsed == message
    assert type(parsed) is MESSAGE_TYPES[message_type]


@pytest.mark.parametrize("message_type", sorted(MESSAGE_TYPES))
def test_bytes_frames_parse_like_text(message_type: str) -> None:
    message = EXAMPLES[message_type]()

    assert parse_message(dump_message(message).encode()) == message


def test_dump_leaves_out_absent_optional_fields() -> None:
    dumped = json.loads(dump_message(ErrorMessage(code=ErrorCode.INVALID_JSON, message="bad")))

    assert "reply_to" not in dumped
    assert dumped["type"] == "error"


def test_new_messages_get_unique_ids() -> None:
    ids = {EventEnd(event_id="ev-1").id for _ in range(1000)}

    assert len(ids) == 1000


# --- Refused frames ---------------------------------------------------------------------------


@pytest.mark.parametrize("frame", ["{not json", "", '{"type": "ack",', b"\xff\xfe"])
def test_invalid_json_is_refused(frame: str | bytes) -> None:
    error = refused(frame)

    assert error.code is ErrorCode.INVALID_JSON
    assert error.reply_to is None


@pytest.mark.parametrize("frame", ["[1, 2]", "42", '"ack"', "null", "true"])
def test_json_that_is_not_an_object_is_refused(frame: str) -> None:
    assert refused(frame).code is ErrorCode.INVALID_JSON


@pytest.mark.parametrize("message_type", ["shutdown", "", "ACK", 7, None])
def test_unknown_type_is_refused_with_the_id(message_type: object) -> None:
    error = refused({"type": message_type, "id": "m-7"})

    assert error.code is ErrorCode.UNKNOWN_TYPE
    assert error.reply_to == "m-7"


def test_missing_type_is_refused() -> None:
    assert refused({"id": "m-7", "event_id": "ev-1"}).code is ErrorCode.UNKNOWN_TYPE


def test_missing_field_is_refused_naming_the_field() -> None:
    data = offer_dict()
    del data["price_cap"]

    error = refused(data)

    assert error.code is ErrorCode.INVALID_MESSAGE
    assert "price_cap" in error.message
    assert error.reply_to == data["id"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("round", "first"),
        ("round", 1.5),
        ("price_cap", [0.4]),
        ("window_start", "tomorrow evening"),
        ("window_start", "2026-12-04T18:00:00"),  # no time zone
        ("kind", "auction"),
        ("currency", "EURO"),
        ("event_id", "ev 1"),  # spaces are not allowed in ids
        ("event_id", "x" * 65),
        ("price_cap", "0.4"),  # strict: a numeric string is not a number
        ("round", True),  # strict: a boolean is not a round
    ],
)
def test_wrong_field_type_or_format_is_refused(field: str, value: object) -> None:
    error = refused(offer_dict(**{field: value}))

    assert error.code is ErrorCode.INVALID_MESSAGE
    assert field in error.message


def test_negative_kilowatts_are_refused() -> None:
    data = json.loads(dump_message(EXAMPLES["telemetry"]()))
    data["samples"][0]["power_kw"] = -1.0

    error = refused(data)

    assert error.code is ErrorCode.INVALID_MESSAGE
    assert "samples.0.power_kw" in error.message


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(literal: str) -> None:
    frame = dump_message(EXAMPLES["telemetry"]()).replace('"power_kw":9.8', f'"power_kw":{literal}')
    assert literal in frame

    assert refused(frame).code is ErrorCode.INVALID_MESSAGE


def test_non_finite_numbers_cannot_be_built_either() -> None:
    with pytest.raises(ValueError, match="finite"):
        BidStep(kw=float("nan"), price=0.1, loads=["wh"])


def test_extra_field_is_refused() -> None:
    error = refused(offer_dict(target_kw=50))

    assert error.code is ErrorCode.INVALID_MESSAGE
    assert "target_kw" in error.message


def test_oversize_frame_is_refused_before_parsing() -> None:
    frame = json.dumps(offer_dict(padding="x" * MAX_FRAME_BYTES))

    error = refused(frame)

    assert error.code is ErrorCode.FRAME_TOO_LARGE


def test_frame_at_the_limit_is_not_refused_for_size() -> None:
    frame = dump_message(EXAMPLES["ack"]())
    frame = frame[:-1] + " " * (MAX_FRAME_BYTES - len(frame)) + "}"
    assert len(frame) == MAX_FRAME_BYTES

    assert isinstance(parse_message(frame), Ack)


def test_frame_limit_counts_utf8_bytes_not_characters() -> None:
    frame = dump_message(EXAMPLES["ack"]())
    padding = (MAX_FRAME_BYTES - len(frame)) // 2 + 1  # "é" is two bytes in UTF-8
    frame = frame[:-1] + ', "pad": "' + "é" * padding + '"}'
    assert len(frame) < MAX_FRAME_BYTES < len(frame.encode())

    assert refused(frame).code is ErrorCode.FRAME_TOO_LARGE


def _bid(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "bid",
        "id": "bid-1",
        "reply_to": "offer-1",
        "event_id": "ev-1",
        "round": 1,
        "steps": steps,
    }


def test_load_in_two_bid_steps_is_refused() -> None:
    error = refused(
        _bid(
            [
                {"kw": 4.5, "price": 0.1, "loads": ["wh"]},
                {"kw": 5.6, "price": 0.2, "loads": ["pool", "wh"]},
            ]
        )
    )

    assert error.code is ErrorCode.INVALID_MESSAGE
    assert "'wh'" in error.message
    assert error.reply_to == "bid-1"


def test_decreasing_bid_prices_are_refused() -> None:
    error = refused(
        _bid(
            [
                {"kw": 4.5, "price": 0.3, "loads": ["wh"]},
                {"kw": 1.1, "price": 0.1, "loads": ["pool"]},
            ]
        )
    )

    assert error.code is ErrorCode.INVALID_MESSAGE
    assert "decrease" in error.message


@pytest.mark.parametrize(
    "step",
    [
        {"kw": 0, "price": 0.1, "loads": ["wh"]},  # a step must shed something
        {"kw": 1.0, "price": 0.1, "loads": []},  # and name its loads
        {"kw": 1.0, "price": -0.1, "loads": ["wh"]},
    ],
)
def test_empty_or_negative_bid_steps_are_refused(step: dict[str, Any]) -> None:
    assert refused(_bid([step])).code is ErrorCode.INVALID_MESSAGE


def test_too_many_bid_steps_are_refused() -> None:
    steps = [
        {"kw": 1.0, "price": 0.01 * index, "loads": [f"l{index}"]}
        for index in range(MAX_STEPS_PER_BID + 1)
    ]

    assert refused(_bid(steps)).code is ErrorCode.INVALID_MESSAGE
    assert isinstance(parse_message(json.dumps(_bid(steps[:-1]))), Bid)


def test_empty_bid_means_no_bid() -> None:
    bid = parse_message(json.dumps(_bid([])))

    assert isinstance(bid, Bid)
    assert bid.total_kw == 0


def test_duplicate_inventory_load_ids_are_refused() -> None:
    load = {"load_id": "wh", "name": "Water heater", "kind": "water_heater", "rated_kw": 4.5}

    error = refused({"type": "inventory", "id": "inv-1", "loads": [load, load]})

    assert error.code is ErrorCode.INVALID_MESSAGE
    assert "unique" in error.message


@pytest.mark.parametrize("message_type", ["offer", "award"])
@pytest.mark.parametrize("length", [timedelta(0), timedelta(minutes=-30)])
def test_window_must_end_after_it_starts(message_type: str, length: timedelta) -> None:
    data = json.loads(dump_message(EXAMPLES[message_type]()))
    data["window_end"] = (START + length).isoformat()

    error = refused(data)

    assert error.code is ErrorCode.INVALID_MESSAGE
    assert "window_end" in error.message


def test_telemetry_needs_at_least_one_sample() -> None:
    assert refused({"type": "telemetry", "id": "t-1", "samples": []}).code is (
        ErrorCode.INVALID_MESSAGE
    )


@pytest.mark.parametrize("message_type", sorted(SERVER_MESSAGE_TYPES))
def test_allowed_filter_refuses_server_messages_from_a_home(message_type: str) -> None:
    message = EXAMPLES[message_type]()

    error = refused(dump_message(message), allowed=HOME_MESSAGE_TYPES)

    assert error.code is ErrorCode.UNKNOWN_TYPE
    assert error.reply_to == message.id


@pytest.mark.parametrize("message_type", sorted(HOME_MESSAGE_TYPES))
def test_allowed_filter_refuses_home_messages_from_a_server(message_type: str) -> None:
    error = refused(dump_message(EXAMPLES[message_type]()), allowed=SERVER_MESSAGE_TYPES)

    assert error.code is ErrorCode.UNKNOWN_TYPE


@pytest.mark.parametrize("message_id", [None, 42, ["m-1"]])
def test_reply_to_is_absent_when_the_id_is_unreadable(message_id: object) -> None:
    error = refused(offer_dict(id=message_id, round=0))

    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.reply_to is None


def test_reply_to_carries_the_id_of_an_invalid_message() -> None:
    error = refused(offer_dict(id="offer-77", round=0))

    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.reply_to == "offer-77"
    assert "round" in error.message


# --- Properties -------------------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def outcome(frame: str | bytes) -> Message | ErrorCode:
    """Return the parsed message, or the code of the ProtocolError (any other error escapes)."""
    try:
        return parse_message(frame)
    except ProtocolError as err:
        return err.code


@given(st.text(max_size=200) | st.binary(max_size=200))
def test_arbitrary_frames_raise_only_protocol_errors(frame: str | bytes) -> None:
    assert isinstance(outcome(frame), ErrorCode | BaseModel)


@given(
    st.sampled_from(sorted(MESSAGE_TYPES)),
    st.dictionaries(st.sampled_from(["id", "event_id", "round", "loads", "kw", "steps"]), _JSON),
)
def test_arbitrary_fields_raise_only_protocol_errors(
    message_type: str, fields: dict[str, Any]
) -> None:
    result = outcome(json.dumps({**fields, "type": message_type}))

    if isinstance(result, ErrorCode):
        assert result is ErrorCode.INVALID_MESSAGE
    else:
        assert result.type == message_type


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0.01, max_value=100, allow_nan=False),
            st.floats(min_value=0, max_value=1, allow_nan=False),
        ),
        max_size=MAX_STEPS_PER_BID,
    )
)
def test_any_sorted_bid_round_trips(steps: list[tuple[float, float]]) -> None:
    ordered = sorted(steps, key=lambda step: step[1])
    bid = Bid(
        reply_to="offer-1",
        event_id="ev-1",
        round=1,
        steps=[
            BidStep(kw=kw, price=price, loads=[f"load-{index}"])
            for index, (kw, price) in enumerate(ordered)
        ],
    )

    assert parse_message(dump_message(bid)) == bid
    assert bid.total_kw == pytest.approx(sum(kw for kw, _ in steps))


# --- Schema 3: partial steps, kinds, power-up ---------------------------------------------------


def _steps_bid(*steps: BidStep) -> Bid:
    return Bid(reply_to="offer-1", event_id="ev-1", round=1, steps=list(steps))


def test_a_load_may_bid_several_partial_steps_then_one_whole_step() -> None:
    bid = _steps_bid(
        BidStep(kw=5.0, price=0.1, loads=["ev"], level_kw=6.0),
        BidStep(kw=4.6, price=0.2, loads=["ev"], level_kw=1.4),
        BidStep(kw=1.4, price=0.3, loads=["ev"]),
    )

    assert parse_message(dump_message(bid)) == bid
    assert bid.total_kw == pytest.approx(11.0)


@pytest.mark.parametrize(
    ("steps", "why"),
    [
        (
            [BidStep(kw=1.0, price=0.1, loads=["ev"]), BidStep(kw=1.0, price=0.2, loads=["ev"])],
            "after its whole step",
        ),
        (
            [
                BidStep(kw=1.0, price=0.1, loads=["ev"]),
                BidStep(kw=1.0, price=0.2, loads=["ev"], level_kw=1.0),
            ],
            "after its whole step",
        ),
        (
            [
                BidStep(kw=1.0, price=0.1, loads=["ev"], level_kw=5.0),
                BidStep(kw=1.0, price=0.2, loads=["ev"], level_kw=3.0),
                BidStep(kw=1.0, price=0.3, loads=["ev"], level_kw=4.0),
            ],
            "all fall or all rise",
        ),
        (
            [
                BidStep(kw=1.0, price=0.1, loads=["ev"], level_kw=5.0),
                BidStep(kw=1.0, price=0.2, loads=["ev"], level_kw=5.0),
            ],
            "all fall or all rise",
        ),
    ],
)
def test_a_load_s_steps_must_make_sense_in_order(steps: list[BidStep], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        _steps_bid(*steps)


def test_a_partial_step_names_exactly_one_load() -> None:
    with pytest.raises(ValueError, match="exactly one load"):
        BidStep(kw=1.0, price=0.1, loads=["a", "b"], level_kw=1.0)


def test_award_levels_name_only_awarded_loads() -> None:
    award = EXAMPLES["award"]()
    data = json.loads(dump_message(award))
    data.update(loads=["ev"], levels={"ev": 3.0}, direction="up")
    parsed = parse_message(json.dumps(data))
    assert isinstance(parsed, Award)
    assert parsed.is_power_up
    assert parsed.level("ev") == 3.0
    assert parsed.level("wh") is None

    data["levels"] = {"wh": 1.0}
    assert refused(data).code is ErrorCode.INVALID_MESSAGE


def test_messages_for_an_older_aggregator_lose_only_what_it_cannot_read() -> None:
    inventory = Inventory(
        loads=[
            Load(load_id="t", name="Thermostat", kind=LoadKind.THERMOSTAT, rated_kw=2.0),
            Load(load_id="wh", name="Water heater", kind=LoadKind.WATER_HEATER, rated_kw=4.5),
        ]
    )
    plain = _steps_bid(BidStep(kw=1.0, price=0.1, loads=["wh"]))
    sample = Sample(ts=START, power_kw=1.0, measured=True)
    telemetry = Telemetry(samples=[sample])

    assert for_schema(inventory, SCHEMA_VERSION) is inventory
    old_inventory = for_schema(inventory, 2)
    assert isinstance(old_inventory, Inventory)
    assert [load.kind for load in old_inventory.loads] == [LoadKind.HVAC, LoadKind.WATER_HEATER]
    assert for_schema(plain, 1) is plain
    assert for_schema(telemetry, 2) is telemetry
    old_telemetry = for_schema(telemetry, 1)
    assert isinstance(old_telemetry, Telemetry)
    assert old_telemetry.samples[0].measured is None
