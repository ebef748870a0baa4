"""Exceptions shared by the home client and its users (the HA integration, the simulator).

Each exception that mirrors a protocol :class:`~jeisson.common.protocol.ErrorCode` carries it, so a
caller can tell a refused bid from a lost connection without parsing messages.
"""

from __future__ import annotations

from jeisson.common.protocol import ErrorCode


class JeissonError(Exception):
    """Base class of every Jeisson client error."""


class CannotConnect(JeissonError):
    """The aggregator could not be reached or the connection dropped."""


class NotConnected(CannotConnect):
    """A request was made while no connection is open."""


class AuthenticationFailed(JeissonError):
    """The aggregator rejected the home token (HTTP 401): the home must re-enrol or re-auth."""


class InvalidEnrollmentCode(JeissonError):
    """The enrolment code is unknown or was already used."""


class UnsupportedSchemaVersion(JeissonError):
    """The aggregator speaks a protocol version this client does not support."""

    def __init__(self, server_version: int, server_min_version: int, client_version: int) -> None:
        """Store both sides' versions for the error message and a repair issue."""
        super().__init__(
            f"aggregator speaks protocol {server_version} (min {server_min_version}), "
            f"this client speaks {client_version}"
        )
        self.server_version = server_version
        self.server_min_version = server_min_version
        self.client_version = client_version


class RequestRejected(JeissonError):
    """The aggregator answered a request with an error message."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        """Store the protocol error code and the server's explanation."""
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RequestTimeout(JeissonError):
    """No reply arrived for a request in time."""
