"""Switches: one per declared load, the home's participation, and each WiFi actuator's relay."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from homeassistant.components.switch import SwitchEntity, SwitchEntityDescription
from homeassistant.const import EntityCategory
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.event import async_track_state_change_event

from jeisson.policy.terms import Terms

from .actuators import WifiActuator
from .const import ATTR_HELD_BY_JEISSON, ATTR_HELD_UNTIL, DOMAIN, LOGGER
from .coordinator import JeissonConfigEntry, JeissonCoordinator, JeissonState
from .entity import JeissonEntity
from .models import SETTING_DOMAINS, LoadConfig
from .wifi_devices import RELAY_KEY, PairedDevice, WifiHub
from .wifi_entity import WifiDeviceEntity, async_setup_wifi_platform
from .zigbee import linked_zha_device

PARALLEL_UPDATES = 1


@dataclass(frozen=True, kw_only=True)
class JeissonSwitchDescription(SwitchEntityDescription):
    """Describes a home-level Jeisson switch."""

    is_on_fn: Callable[[JeissonState], bool]
    set_fn: Callable[[JeissonCoordinator, bool], Awaitable[None]]


PARTICIPATION = JeissonSwitchDescription(
    key="participation",
    translation_key="participation",
    entity_category=EntityCategory.CONFIG,
    is_on_fn=lambda state: state.participating,
    set_fn=lambda coordinator, on: coordinator.async_set_participating(on),
)

LOAD = SwitchEntityDescription(key="load", translation_key="load")
WIFI_RELAY = SwitchEntityDescription(key=RELAY_KEY, translation_key="wifi_relay")
ATTR_CAUSE = "cause"
ATTR_HOLD_UNTIL = "hold_until"


async def async_setup_entry(
    hass: HomeAssistant,
    entry: JeissonConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Create the participation switch and a switch per configured load."""
    coordinator = entry.runtime_data.coordinator
    # WiFi actuators first: the load switches of WiFi loads follow their device's hub.
    await async_setup_wifi_platform(hass, entry, async_add_entities, WifiRelaySwitch)
    async_add_entities([JeissonSwitch(coordinator, PARTICIPATION)])
    load_switches = LoadSwitches(coordinator, async_add_entities)
    load_switches.async_remove_stale()
    await load_switches.async_sync()
    entry.async_on_unload(coordinator.async_listen_loads(load_switches.async_sync))


def _identity(load: LoadConfig) -> LoadConfig:
    """Return what a load switch is built from (its terms are read live)."""
    return replace(load, terms=Terms())


def _switched(loads: Mapping[str, LoadConfig]) -> dict[str, LoadConfig]:
    """Return the loads that have a switch.

    A load moved by a setting (charger current, setpoint, mode) is not switched.
    """
    return {load_id: load for load_id, load in loads.items() if load.domain not in SETTING_DOMAINS}


class LoadSwitches:
    """The switches of the declared loads: added, rebuilt and removed as the loads change.

    A removed load's switch leaves the entity registry too (no unavailable leftovers); a load
    whose name or actuator changed gets a new switch object under the same unique id.
    """

    def __init__(
        self, coordinator: JeissonCoordinator, add_entities: AddConfigEntryEntitiesCallback
    ) -> None:
        """Follow ``coordinator``'s loads, adding switches with ``add_entities``."""
        self._coordinator = coordinator
        self._add_entities = add_entities
        self._switches: dict[str, JeissonLoadSwitch] = {}

    @callback
    def async_remove_stale(self) -> None:
        """Remove registry entries of loads that are no longer declared (removed while away)."""
        entry = self._coordinator.config_entry
        registry = er.async_get(self._coordinator.hass)
        expected = {
            load_unique_id(entry, load_id) for load_id in _switched(self._coordinator.loads)
        }
        prefix = load_unique_id(entry, "")
        for entity in er.async_entries_for_config_entry(registry, entry.entry_id):
            if entity.unique_id.startswith(prefix) and entity.unique_id not in expected:
                LOGGER.debug("Removing %s: its load is no longer declared", entity.entity_id)
                registry.async_remove(entity.entity_id)

    async def async_sync(self) -> None:
        """Bring the switches in line with the declared loads."""
        loads = _switched(self._coordinator.loads)
        registry = er.async_get(self._coordinator.hass)
        for load_id, switch in list(self._switches.items()):
            load = loads.get(load_id)
            if load is not None and _identity(load) == _identity(switch.load):
                continue
            del self._switches[load_id]
            if load is None and registry.async_get(switch.entity_id) is not None:
                LOGGER.debug("Removing %s: its load was removed", switch.entity_id)
                registry.async_remove(switch.entity_id)  # removes the entity as well
            else:
                await switch.async_remove()
        added = [
            JeissonLoadSwitch(self._coordinator, load)
            for load_id, load in loads.items()
            if load_id not in self._switches
        ]
        self._switches.update((switch.load.load_id, switch) for switch in added)
        self._add_entities(added)


def load_unique_id(entry: JeissonConfigEntry, load_id: str) -> str:
    """Return the unique id of a load's switch."""
    return f"{entry.unique_id or entry.entry_id}_load_{load_id}"


class JeissonSwitch(JeissonEntity, SwitchEntity):
    """A home-level switch fed by the coordinator's state snapshot."""

    entity_description: JeissonSwitchDescription

    @property
    def is_on(self) -> bool:
        """Return the switch state."""
        return self.entity_description.is_on_fn(self.coordinator.data)

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Switch on."""
        await self.entity_description.set_fn(self.coordinator, True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Switch off."""
        await self.entity_description.set_fn(self.coordinator, False)


class JeissonLoadSwitch(JeissonEntity, SwitchEntity):
    """A declared load: mirrors and drives its actuator, and says whether Jeisson holds it."""

    def __init__(self, coordinator: JeissonCoordinator, load: LoadConfig) -> None:
        """Describe the load's switch (named after the load)."""
        super().__init__(coordinator, LOAD, unique_suffix=f"load_{load.load_id}")
        self.load = load
        self._actuator = coordinator.actuator(load)
        self._attr_name = load.name
        if (zha_device := linked_zha_device(coordinator.hass, load)) is not None:
            # Shown on the ZHA plug's device: HA's way to link an entity to another
            # integration's device (the entity registry's device_id), no ZHA identifiers.
            self._attr_device_info = None
            self.device_entry = zha_device

    async def async_added_to_hass(self) -> None:
        """Follow the actuator's state as well as the coordinator."""
        await super().async_added_to_hass()
        self.async_on_remove(
            async_track_state_change_event(
                self.hass, self._actuator.watched_entity_ids, self._on_actuator_change
            )
        )
        if isinstance(self._actuator, WifiActuator):  # its entities may not be registered yet
            self.async_on_remove(self._actuator.async_listen(self.async_write_ha_state))

    @callback
    def _on_actuator_change(self, _event: Event[EventStateChangedData]) -> None:
        self.async_write_ha_state()

    @property
    def available(self) -> bool:
        """Return True when the actuator can be commanded."""
        return super().available and self._actuator.available

    @property
    def is_on(self) -> bool | None:
        """Return whether the load is powered."""
        return self._actuator.is_on

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """Return whether Jeisson holds the load off, and until when."""
        held_until = self.coordinator.data.held.get(self.load.load_id)
        return {
            ATTR_HELD_BY_JEISSON: held_until is not None,
            ATTR_HELD_UNTIL: held_until.isoformat() if held_until else None,
        }

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Power the load (while held, this is an opt-out for the load)."""
        await self._command(self._actuator.async_turn_on)

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Cut the load's power."""
        await self._command(self._actuator.async_turn_off)

    async def _command(self, action: Callable[[], Awaitable[None]]) -> None:
        try:
            await action()
        except HomeAssistantError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="actuator_failed",
                translation_placeholders={"load": self.load.name, "error": str(err)},
            ) from err


class WifiRelaySwitch(WifiDeviceEntity, SwitchEntity):
    """A WiFi actuator's relay: on powers the load; off holds it off (renewed, at most a day)."""

    def __init__(self, hub: WifiHub, device: PairedDevice) -> None:
        """Describe the relay of ``device``."""
        super().__init__(hub, device, WIFI_RELAY)

    @property
    def is_on(self) -> bool | None:
        """Return the relay state the device reported."""
        state = self.device_state
        return None if state is None else state.relay_on

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """Return why the relay is as it is and when the device ends its hold by itself."""
        state = self.device_state
        if state is None:
            return {}
        return {
            ATTR_CAUSE: state.cause,
            ATTR_HOLD_UNTIL: state.hold_until.isoformat() if state.hold_until else None,
        }

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Release any hold and power the load."""
        await self._hub.async_turn_on(self._device_id)

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Hold the load off (until its event ends, or a renewed day outside events)."""
        await self._hub.async_turn_off(self._device_id)
