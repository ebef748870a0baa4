"""Config flow: enrol the home with an aggregator, re-authenticate, reconfigure, manage loads.

It also pairs Jeisson WiFi actuators: when an unknown device connects to the endpoint, a
discovered flow asks the user for the key printed on it, checks the typed key against the
device's ``hello`` proof right away (a typo is shown as an error, the user retries), then pairs
the device with the loaded home (its store, not a config entry of its own) and welcomes it. The
flow then ends with the ``wifi_paired`` message: the device is part of the home entry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import probatio
from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
)
from homeassistant.const import CONF_NAME, CONF_TOKEN, CONF_URL
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from homeassistant.helpers.typing import DiscoveryInfoType
from yarl import URL

from jeisson.actuator import protocol
from jeisson.client import Enrollment, HomeClient, enroll
from jeisson.common.errors import (
    AuthenticationFailed,
    CannotConnect,
    InvalidEnrollmentCode,
    UnsupportedSchemaVersion,
)
from jeisson.common.protocol import ServerHello

from .const import (
    CONF_AGGREGATOR_ID,
    CONF_CODE,
    CONF_HOME_ID,
    CONF_HOME_NAME,
    CONF_LOADS,
    CONF_PARTICIPATING,
    CONNECT_TIMEOUT,
    DOMAIN,
    LOGGER,
    SOFTWARE_VERSION,
)
from .models import inventory_from_options
from .options_flow import JeissonOptionsFlow
from .wifi_devices import IDENTIFIER_PREFIX
from .wifi_endpoint import (
    DISCOVERY_DEVICE_ID,
    DISCOVERY_MODEL,
    DISCOVERY_NAME,
    DISCOVERY_RATED_KW,
    NotPendingError,
    WrongKeyError,
    async_forget_pending,
    async_pair_with_key,
    pairing_unique_id,
)

_URL_SCHEMES = ("http", "https")
DEFAULT_TITLE = "Jeisson home"
CONF_KEY = "key"
DEFAULT_ACTUATOR_MODEL = "Jeisson WiFi actuator"


_MARKDOWN_SPECIAL = frozenset("\\`*_{}[]()<>#+-.!|~:@&\"'=$%^,;?/")
"""ASCII punctuation that CommonMark lets a backslash escape (every character that can start
markup, a link, an autolink, an entity or HTML)."""


def escape_markdown(text: str) -> str:
    """Return device-supplied ``text`` so markdown shows it literally.

    Flow descriptions are rendered as markdown: a ``model`` such as ``[Pay here](https://...)``
    would become a link. Every markup character is backslash-escaped (a CommonMark rule, also
    marked's, the frontend's renderer) and line breaks and other control characters become
    spaces. A few lines of our own: no library on Home Assistant's side does this.
    """
    out = []
    for char in text:
        if char in _MARKDOWN_SPECIAL:
            out.append("\\" + char)
        elif not char.isprintable():
            out.append(" ")
        else:
            out.append(char)
    return "".join(out)


def plain_text(text: str) -> str:
    """Return device-supplied ``text`` for plain-text places (titles): controls become spaces."""
    return "".join(char if char.isprintable() else " " for char in text)


class InvalidUrl(ValueError):
    """The aggregator URL is not an http(s) URL."""


def normalize_url(value: str) -> str:
    """Return the aggregator base URL without a trailing slash (raises InvalidUrl)."""
    url = URL(value.strip())
    if url.scheme not in _URL_SCHEMES or not url.host:
        raise InvalidUrl(value)
    return str(url).rstrip("/")


def unique_id_for(aggregator_id: str, home_id: str) -> str:
    """Return the entry's unique id: one entry per aggregator and home."""
    return f"{aggregator_id}-{home_id}"


async def test_connection(
    hass: HomeAssistant, url: str, token: str, options: Mapping[str, Any]
) -> ServerHello:
    """Open one connection with ``token`` and close it again; return the server's hello."""
    client = HomeClient(
        url,
        token,
        session=async_get_clientsession(hass),
        software_version=SOFTWARE_VERSION,
        inventory_provider=lambda: inventory_from_options(options),
    )
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            return await client.connect()
    finally:
        await client.close()


URL_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.URL))
CODE_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.TEXT))


class JeissonConfigFlow(ConfigFlow, domain=DOMAIN):
    """Enrol a home with a Jeisson aggregator."""

    VERSION = 1
    MINOR_VERSION = 1

    _wifi_device: dict[str, Any]

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> JeissonOptionsFlow:
        """Return the flow that manages loads and participation."""
        return JeissonOptionsFlow()

    async def _enroll(
        self, url: str, code: str, options: Mapping[str, Any], errors: dict[str, str]
    ) -> Enrollment | None:
        """Enrol with ``code`` and test the new token; fill ``errors`` on failure."""
        try:
            enrollment = await enroll(async_get_clientsession(self.hass), url, code.strip())
            await test_connection(self.hass, url, enrollment.token, options)
        except InvalidEnrollmentCode:
            errors[CONF_CODE] = "invalid_code"
        except (CannotConnect, TimeoutError):
            errors["base"] = "cannot_connect"
        except UnsupportedSchemaVersion:
            errors["base"] = "unsupported_protocol"
        except Exception:
            LOGGER.exception("Unexpected error while enrolling")
            errors["base"] = "unknown"
        else:
            return enrollment
        return None

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the aggregator URL and the enrolment code the operator gave the homeowner."""
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                url = normalize_url(user_input[CONF_URL])
            except InvalidUrl:
                errors[CONF_URL] = "invalid_url"
            else:
                options = {CONF_LOADS: {}, CONF_PARTICIPATING: True}
                enrollment = await self._enroll(url, user_input[CONF_CODE], options, errors)
                if enrollment is not None:
                    await self.async_set_unique_id(
                        unique_id_for(enrollment.aggregator_id, enrollment.home_id)
                    )
                    self._abort_if_unique_id_configured()
                    return self.async_create_entry(
                        title=enrollment.name or DEFAULT_TITLE,
                        data={
                            CONF_URL: url,
                            CONF_TOKEN: enrollment.token,
                            CONF_HOME_ID: enrollment.home_id,
                            CONF_AGGREGATOR_ID: enrollment.aggregator_id,
                            CONF_HOME_NAME: enrollment.name,
                        },
                        options=options,
                    )
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(
                probatio.Schema(
                    {
                        probatio.Required(CONF_URL): URL_SELECTOR,
                        probatio.Required(CONF_CODE): CODE_SELECTOR,
                    }
                ),
                user_input,
            ),
            errors=errors,
        )

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """Ask for a new enrolment code after the aggregator rejected the home token."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Re-enrol the same home with a fresh code from the operator."""
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            enrollment = await self._enroll(
                entry.data[CONF_URL], user_input[CONF_CODE], entry.options, errors
            )
            if enrollment is not None:
                await self.async_set_unique_id(
                    unique_id_for(enrollment.aggregator_id, enrollment.home_id)
                )
                self._abort_if_unique_id_mismatch(reason="wrong_home")
                return self.async_update_reload_and_abort(
                    entry, data_updates={CONF_TOKEN: enrollment.token}
                )
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=probatio.Schema({probatio.Required(CONF_CODE): CODE_SELECTOR}),
            description_placeholders={CONF_NAME: entry.title},
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Point the home at the aggregator's new URL (same home, same token)."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                url = normalize_url(user_input[CONF_URL])
                hello = await test_connection(self.hass, url, entry.data[CONF_TOKEN], entry.options)
            except InvalidUrl:
                errors[CONF_URL] = "invalid_url"
            except AuthenticationFailed:
                errors["base"] = "invalid_auth"
            except (CannotConnect, TimeoutError):
                errors["base"] = "cannot_connect"
            except UnsupportedSchemaVersion:
                errors["base"] = "unsupported_protocol"
            except Exception:
                LOGGER.exception("Unexpected error while testing the new URL")
                errors["base"] = "unknown"
            else:
                await self.async_set_unique_id(unique_id_for(hello.aggregator_id, hello.home_id))
                self._abort_if_unique_id_mismatch(reason="wrong_home")
                return self.async_update_reload_and_abort(entry, data_updates={CONF_URL: url})
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                probatio.Schema({probatio.Required(CONF_URL): URL_SELECTOR}),
                user_input or {CONF_URL: entry.data[CONF_URL]},
            ),
            errors=errors,
        )

    async def async_step_ignore(self, user_input: dict[str, Any]) -> ConfigFlowResult:
        """Ignore a discovered WiFi actuator: forget it now and refuse it from now on."""
        result = await super().async_step_ignore(user_input)
        unique_id = str(user_input.get("unique_id") or "")
        if unique_id.startswith(IDENTIFIER_PREFIX):
            await async_forget_pending(self.hass, unique_id.removeprefix(IDENTIFIER_PREFIX))
        return result

    async def async_step_integration_discovery(
        self, discovery_info: DiscoveryInfoType
    ) -> ConfigFlowResult:
        """Pair a new Jeisson WiFi actuator: ask the user for the key printed on it."""
        await self.async_set_unique_id(pairing_unique_id(discovery_info[DISCOVERY_DEVICE_ID]))
        self._abort_if_unique_id_configured(error="wifi_ignored")
        self._wifi_device = dict(discovery_info)
        self.context["title_placeholders"] = {
            CONF_NAME: plain_text(str(discovery_info[DISCOVERY_NAME]))
        }
        return await self.async_step_wifi_confirm()

    async def async_step_wifi_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Pair the device once the user typed its key; a wrong key can be typed again."""
        device = self._wifi_device
        placeholders = {  # rendered as markdown: device-supplied text is escaped
            CONF_NAME: escape_markdown(str(device[DISCOVERY_NAME])),
            "model": escape_markdown(str(device.get(DISCOVERY_MODEL) or DEFAULT_ACTUATOR_MODEL)),
            "rated_kw": str(float(device[DISCOVERY_RATED_KW])),  # a checked number
        }
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                key = protocol.parse_key(user_input[CONF_KEY])
                await async_pair_with_key(self.hass, device[DISCOVERY_DEVICE_ID], key)
            except WrongKeyError:
                errors[CONF_KEY] = "wrong_key"
            except ValueError:
                errors[CONF_KEY] = "invalid_key_format"
            except NotPendingError:
                return self.async_abort(reason="wifi_not_pending")
            else:
                return self.async_abort(reason="wifi_paired", description_placeholders=placeholders)
        return self.async_show_form(
            step_id="wifi_confirm",
            data_schema=probatio.Schema({probatio.Required(CONF_KEY): CODE_SELECTOR}),
            description_placeholders=placeholders,
            errors=errors,
        )
