"""Set up and unload an enrolled home against the real aggregator."""

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry


async def test_entry_loads_and_unloads(hass: HomeAssistant, loaded_entry: MockConfigEntry) -> None:
    """The entry connects to the aggregator, creates its entities, and unloads cleanly."""
    assert loaded_entry.state is ConfigEntryState.LOADED
    assert hass.states.get("binary_sensor.jeisson_home_aggregator_connected").state == "on"
    assert await hass.config_entries.async_unload(loaded_entry.entry_id)
    assert loaded_entry.state is ConfigEntryState.NOT_LOADED
