"""The automation blueprints in blueprints/automation/jeisson: valid, and pre-cooling works."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from homeassistant.components.automation.config import AUTOMATION_BLUEPRINT_SCHEMA
from homeassistant.components.blueprint.models import Blueprint
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from homeassistant.util.yaml import load_yaml_dict
from pytest_homeassistant_custom_component.common import async_mock_service

from custom_components.jeisson.const import EVENT_AWARDED

BLUEPRINTS = Path(__file__).resolve().parents[3] / "blueprints" / "automation" / "jeisson"


def _install(target: Path) -> None:
    """Put the blueprint where Home Assistant looks for it (as an import from the URL does)."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(BLUEPRINTS / "precool_before_event.yaml", target)


@pytest.mark.parametrize("name", ["precool_before_event.yaml", "notify_phone.yaml"])
def test_blueprint_is_a_valid_automation_blueprint(name: str) -> None:
    """Home Assistant's own schema accepts it, and its inputs are used."""
    blueprint = Blueprint(
        load_yaml_dict(BLUEPRINTS / name),
        expected_domain="automation",
        schema=AUTOMATION_BLUEPRINT_SCHEMA,
    )
    assert blueprint.inputs
    assert f"blueprints/automation/jeisson/{name}" in blueprint.metadata["source_url"]


async def test_precool_blueprint_sets_the_thermostat_before_the_event(
    hass: HomeAssistant,
) -> None:
    """An award whose window opens within the lead time: the thermostat is set at once (the
    thermostat's action is mocked; the automation, its blueprint and template are real)."""
    await hass.async_add_executor_job(
        _install, Path(hass.config.path("blueprints/automation/jeisson"))
    )
    set_temperature = async_mock_service(hass, "climate", "set_temperature")
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "use_blueprint": {
                    "path": "jeisson/precool_before_event.yaml",
                    "input": {
                        "climate": "climate.living_room",
                        "temperature": 20.5,
                        "lead_minutes": 30,
                    },
                }
            }
        },
    )
    start = dt_util.utcnow() + timedelta(minutes=10)
    hass.bus.async_fire(
        EVENT_AWARDED,
        {"event_id": "evt-1", "window_start": start.isoformat(), "kw": 2.0},
    )
    await hass.async_block_till_done()
    assert [call.data for call in set_temperature] == [
        {"entity_id": ["climate.living_room"], "temperature": 20.5}
    ]
