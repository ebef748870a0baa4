"""Repair issues raised by the integration (an aggregator speaking another protocol version)."""

from __future__ import annotations

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir

from jeisson.common.errors import UnsupportedSchemaVersion

from .const import DOMAIN, ISSUE_UNSUPPORTED_PROTOCOL


@callback
def async_raise_protocol_issue(hass: HomeAssistant, err: UnsupportedSchemaVersion) -> None:
    """Tell the homeowner the aggregator and this integration cannot talk (update needed)."""
    ir.async_create_issue(
        hass,
        DOMAIN,
        ISSUE_UNSUPPORTED_PROTOCOL,
        is_fixable=False,
        severity=ir.IssueSeverity.ERROR,
        translation_key=ISSUE_UNSUPPORTED_PROTOCOL,
        translation_placeholders={
            "server_version": str(err.server_version),
            "server_min_version": str(err.server_min_version),
            "client_version": str(err.client_version),
        },
    )


@callback
def async_clear_protocol_issue(hass: HomeAssistant) -> None:
    """Remove the protocol issue once a connection succeeded."""
    ir.async_delete_issue(hass, DOMAIN, ISSUE_UNSUPPORTED_PROTOCOL)
