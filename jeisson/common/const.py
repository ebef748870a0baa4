"""Constants of the home websocket protocol that both sides use, defined once.

Message limits (frame size, steps per bid, samples per batch, ...) live beside the models in
``jeisson.common.protocol``; this module holds the transport's paths and close codes.
"""

from __future__ import annotations

from typing import Final

WS_PATH: Final = "/api/v1/ws"
"""Path of the aggregator's home websocket."""
ENROLL_PATH: Final = "/api/v1/enroll"
"""Path where a home trades its one-time enrolment code for its token."""

CLOSE_UNSUPPORTED_VERSION: Final = 4001
"""The peer speaks a schema version the other side cannot serve."""
CLOSE_REPLACED: Final = 4002
"""A newer connection of the same home took over this one."""
CLOSE_SILENT: Final = 4003
"""The home stopped answering heartbeats."""
CLOSE_TOO_SLOW: Final = 4004
"""The home stopped reading: its send queue overflowed."""
CLOSE_REVOKED: Final = 4005
"""The operator revoked the home's token, suspended or removed the home, or the home enrolled
again: reconnecting with this token fails (401/403); the home must enrol again."""
CLOSE_MESSAGE_TOO_BIG: Final = 1009
"""RFC 6455's code for a frame larger than the receiver accepts."""
