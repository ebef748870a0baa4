"""A utility's OpenADR event into the Jeisson event it asks for."""

from __future__ import annotations

import pytest

from aggregator.openadr.mapping import NotMappable, ProgramMapping, plan_event

MAPPING = ProgramMapping(program="peak")


def event(*payloads: dict[str, object]) -> dict[str, object]:
    return {
        "id": "event_1",
        "programID": "program_1",
        "intervalPeriod": {"start": "2026-12-05T18:00:00Z", "duration": "PT30M"},
        "intervals": [{"id": 0, "payloads": list(payloads)}],
    }


@pytest.mark.parametrize("value", [-12.5, 12.5])
def test_a_relative_setpoint_of_either_sign_asks_for_its_size_in_kw(value: float) -> None:
    plan = plan_event(event({"type": "DISPATCH_SETPOINT_RELATIVE", "values": [value]}), MAPPING)
    assert plan.target_kw == 12.5


def test_load_shed_is_kw_to_shed_and_a_negative_one_asks_for_nothing() -> None:
    assert plan_event(event({"type": "LOAD_SHED", "values": [4.0]}), MAPPING).target_kw == 4.0
    with pytest.raises(NotMappable):
        plan_event(event({"type": "LOAD_SHED", "values": [-4.0]}), MAPPING)
