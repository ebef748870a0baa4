"""The Jeisson WiFi actuator protocol: messages between Home Assistant and a relay device.

A device opens a websocket to Home Assistant (``WS_PATH``) and both sides exchange JSON text
frames, one JSON object each, with a ``type``. This module builds every message, validates every
received frame and computes the handshake proofs. It is plain Python that runs unchanged under
CPython (Home Assistant, the simulator) and MicroPython (the ESP32 firmware): only ``json``,
``hashlib``, ``binascii`` and ``os`` are used, and typing names exist for the type checker only.

Handshake (both sides prove they know the device key without sending it)::

    HA     -> device  challenge {protocol_min, protocol_max, nonce, time}
    device -> HA      hello     {protocol, device_id, name, rated_kw, firmware, nonce, proof, state}
    HA     -> device  welcome   {proof, report_interval_s, time}     (device known, proof checked)
                   or pending   {message}                            (new device: awaiting the user)
                   or error     {code: auth_failed | unsupported_version, ...} and close

Then the device sends ``state`` reports and answers every ``command`` with ``ack`` or ``error``.
Malformed frames are answered with ``error`` and the connection is closed (``CLOSE_PROTOCOL``).
See ``docs/wifi-actuator.md`` for the full reference.
"""

import binascii
import hashlib
import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    Message = dict[str, Any]

PROTOCOL_VERSION = 1
"""The protocol version this code speaks."""
MIN_PROTOCOL_VERSION = 1
"""The oldest protocol version this code still accepts."""

WS_PATH = "/api/jeisson/actuator"
"""Path of the websocket endpoint Home Assistant serves."""
MDNS_SERVICE_TYPE = "_jeisson-actuator._tcp.local."
"""Zeroconf service type Home Assistant announces so devices can find the endpoint."""
TXT_PATH = "path"
"""TXT record key: the websocket path (``WS_PATH``)."""
TXT_PROTOCOL_MIN = "protocol_min"
"""TXT record key: the oldest protocol version the endpoint accepts."""
TXT_PROTOCOL_MAX = "protocol_max"
"""TXT record key: the newest protocol version the endpoint speaks."""
TXT_TLS = "tls"
"""TXT record key: ``1`` when the endpoint is served over TLS (``wss://``), else ``0``."""

MAX_FRAME_BYTES = 4096
"""Largest text frame (UTF-8 bytes) either side sends or accepts; a device has little memory."""
NONCE_BYTES = 16
"""Random bytes in a handshake nonce (sent as 32 lowercase hex digits)."""
PROOF_HEX_LEN = 64
"""Length of a proof: an HMAC-SHA256 digest as lowercase hex."""
MIN_KEY_BYTES = 16
"""Shortest device key accepted (128 bits)."""
MAX_KEY_BYTES = 32
"""Longest device key accepted (256 bits)."""
KEY_GROUP = 4
"""Hex digits per dash-separated group when a key is shown to a person."""

MAX_HOLD_S = 24 * 3600
"""Longest off command a device accepts, in seconds: every hold ends within a day."""
MAX_RATED_KW = 100.0
"""Largest rated power a device may declare."""
MAX_POWER_W = 100_000.0
"""Largest power a device may report."""
DEFAULT_REPORT_INTERVAL_S = 10
"""Seconds between periodic state reports unless ``welcome`` says otherwise."""
HANDSHAKE_TIMEOUT_S = 10.0
"""Seconds either side waits for the other's next handshake frame (challenge / hello)."""
MIN_REPORT_INTERVAL_S = 1
MAX_REPORT_INTERVAL_S = 300
MAX_ID_LEN = 64
"""Longest device id or command id."""
MAX_NAME_LEN = 64
"""Longest device name."""
MAX_TEXT_LEN = 200
"""Longest free-text field (firmware, model, error messages)."""
MAX_EPOCH_S = 4_102_444_800.0
"""Largest accepted wall-clock time (2100-01-01T00:00:00Z), in Unix seconds."""

# Message types.
CHALLENGE = "challenge"
HELLO = "hello"
WELCOME = "welcome"
PENDING = "pending"
COMMAND = "command"
STATE = "state"
ACK = "ack"
ERROR = "error"

# Commands.
CMD_OFF = "off"
CMD_ON = "on"
COMMANDS = (CMD_OFF, CMD_ON)

# Relay states.
RELAY_ON = "on"
RELAY_OFF = "off"

# Why the relay is in its current state (``state.cause``).
CAUSE_BOOT = "boot"
CAUSE_COMMAND = "command"
CAUSE_FAILSAFE = "failsafe"
CAUSE_LOCAL = "local"
CAUSES = (CAUSE_BOOT, CAUSE_COMMAND, CAUSE_FAILSAFE, CAUSE_LOCAL)

# Error codes (``error.code``).
E_INVALID_JSON = "invalid_json"
E_INVALID_MESSAGE = "invalid_message"
E_UNKNOWN_TYPE = "unknown_type"
E_FRAME_TOO_LARGE = "frame_too_large"
E_UNSUPPORTED_VERSION = "unsupported_version"
E_AUTH_FAILED = "auth_failed"
E_NOT_AUTHENTICATED = "not_authenticated"
E_UNKNOWN_COMMAND = "unknown_command"
E_HANDSHAKE_TIMEOUT = "handshake_timeout"
E_REPLACED = "replaced"
E_BUSY = "busy"
E_IGNORED = "ignored"
E_INTERNAL = "internal_error"

# Websocket close codes (4000-4999 are the application's).
CLOSE_NORMAL = 1000
CLOSE_TOO_BIG = 1009
CLOSE_TRY_LATER = 1013
CLOSE_PROTOCOL = 4000
CLOSE_UNSUPPORTED_VERSION = 4001
CLOSE_AUTH_FAILED = 4003
CLOSE_HANDSHAKE_TIMEOUT = 4008
CLOSE_REPLACED = 4009
CLOSE_IGNORED = 4010

_DEVICE_LABEL = "jeisson-actuator device"
_SERVER_LABEL = "jeisson-actuator home-assistant"
_HEX = "0123456789abcdef"
_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"
_SHA256_BLOCK = 64
_IPAD = 0x36
_OPAD = 0x5C


class ProtocolError(Exception):
    """A frame was refused: ``code`` says why; ``fatal`` means the connection must close.

    ``reply_to`` is the id of the refused message when it had a readable one.
    """

    def __init__(
        self, code: str, message: str, fatal: bool = True, reply_to: "str | None" = None
    ) -> None:
        """Record why a frame was refused."""
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = fatal
        self.reply_to = reply_to

    def close_code(self) -> int:
        """Return the websocket close code that goes with this error."""
        if self.code == E_UNSUPPORTED_VERSION:
            return CLOSE_UNSUPPORTED_VERSION
        if self.code == E_AUTH_FAILED:
            return CLOSE_AUTH_FAILED
        if self.code == E_FRAME_TOO_LARGE:
            return CLOSE_TOO_BIG
        return CLOSE_PROTOCOL

    def to_message(self) -> "Message":
        """Return the ``error`` message that reports this refusal to the peer."""
        return error(self.code, self.message, self.reply_to)


# --- keys, nonces and proofs ---------------------------------------------------------------


def _hex(data: bytes) -> str:
    """Return ``data`` as lowercase hex."""
    return binascii.hexlify(data).decode()


def hmac_sha256_pure(key: bytes, msg: bytes) -> bytes:
    """Return HMAC-SHA256 of ``msg`` under ``key`` (RFC 2104) using only ``hashlib.sha256``.

    MicroPython has no ``hmac`` module; CPython uses the standard library (see
    :func:`hmac_sha256`), and the tests check both give the same digests.
    """
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + bytes(_SHA256_BLOCK - len(key))
    inner = hashlib.sha256(bytes(b ^ _IPAD for b in key))
    inner.update(msg)
    outer = hashlib.sha256(bytes(b ^ _OPAD for b in key))
    outer.update(inner.digest())
    return outer.digest()


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    """Return HMAC-SHA256 of ``msg`` under ``key``: the standard library's where it exists."""
    try:
        import hmac  # noqa: PLC0415 - absent on MicroPython
    except ImportError:
        return hmac_sha256_pure(key, msg)
    return hmac.new(key, msg, hashlib.sha256).digest()


def constant_time_equal(a: str, b: str) -> bool:
    """Return True when ``a == b``, taking the same time wherever they differ."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):  # no zip(strict=...) on MicroPython
        diff |= ord(a[i]) ^ ord(b[i])
    return diff == 0


def new_nonce() -> str:
    """Return a fresh random handshake nonce (``NONCE_BYTES`` bytes as lowercase hex)."""
    return _hex(os.urandom(NONCE_BYTES))


def generate_key() -> bytes:
    """Return a fresh random device key (128 bits)."""
    return os.urandom(MIN_KEY_BYTES)


def format_key(key: bytes) -> str:
    """Return ``key`` as a person types it: lowercase hex in dash-separated groups of four."""
    digits = _hex(key)
    return "-".join(digits[i : i + KEY_GROUP] for i in range(0, len(digits), KEY_GROUP))


def parse_key(text: str) -> bytes:
    """Return the key bytes of ``text`` (hex; dashes, spaces and case are ignored).

    Raises ``ValueError`` when it is not 32 to 64 hex digits (128 to 256 bits).
    """
    digits = text.strip().lower().replace("-", "").replace(" ", "")
    if len(digits) % 2 or not MIN_KEY_BYTES * 2 <= len(digits) <= MAX_KEY_BYTES * 2:
        raise ValueError("a device key is 32 to 64 hex digits (128 to 256 bits)")
    for ch in digits:
        if ch not in _HEX:
            raise ValueError("a device key contains only hex digits 0-9 and a-f")
    return binascii.unhexlify(digits)


def _proof(label: str, key: bytes, server_nonce: str, device_nonce: str, device_id: str) -> str:
    """Return the hex HMAC that binds a side's ``label`` to both nonces and the device id."""
    text = "\n".join((label, server_nonce, device_nonce, device_id))
    return _hex(hmac_sha256(key, text.encode()))


def device_proof(key: bytes, server_nonce: str, device_nonce: str, device_id: str) -> str:
    """Return the proof a device sends in ``hello``: it knows ``key``, answering this challenge."""
    return _proof(_DEVICE_LABEL, key, server_nonce, device_nonce, device_id)


def server_proof(key: bytes, server_nonce: str, device_nonce: str, device_id: str) -> str:
    """Return the proof Home Assistant sends in ``welcome``: it knows ``key`` too."""
    return _proof(_SERVER_LABEL, key, server_nonce, device_nonce, device_id)


def check_device_proof(key: bytes, server_nonce: str, hello_message: "Message") -> bool:
    """Return True when a validated ``hello`` proves its device knows ``key``.

    Home Assistant calls this with the nonce of the challenge it sent on that connection, for a
    confirmed device (stored key) or when the user types the key of a new device.
    """
    expected = device_proof(key, server_nonce, hello_message["nonce"], hello_message["device_id"])
    return constant_time_equal(expected, hello_message["proof"])


def check_server_proof(
    key: bytes, server_nonce: str, device_nonce: str, device_id: str, welcome_message: "Message"
) -> bool:
    """Return True when a validated ``welcome`` proves Home Assistant knows ``key``."""
    expected = server_proof(key, server_nonce, device_nonce, device_id)
    return constant_time_equal(expected, welcome_message["proof"])


# --- building messages ---------------------------------------------------------------------


def challenge(nonce: str, now: float) -> "Message":
    """Return the ``challenge`` Home Assistant sends first on every connection."""
    return {
        "type": CHALLENGE,
        "protocol_min": MIN_PROTOCOL_VERSION,
        "protocol_max": PROTOCOL_VERSION,
        "nonce": nonce,
        "time": now,
    }


def hello(
    *,
    device_id: str,
    name: str,
    rated_kw: float,
    firmware: str,
    nonce: str,
    proof: str,
    state_payload: "Message",
    meter: bool,
    model: str = "",
) -> "Message":
    """Return a device's ``hello``: who it is, its proof, and its current state."""
    message = {
        "type": HELLO,
        "protocol": PROTOCOL_VERSION,
        "device_id": device_id,
        "name": name,
        "rated_kw": rated_kw,
        "firmware": firmware,
        "meter": meter,
        "nonce": nonce,
        "proof": proof,
        "state": state_payload,
    }
    if model:
        message["model"] = model
    return message


def welcome(
    proof: str, now: float, report_interval_s: int = DEFAULT_REPORT_INTERVAL_S
) -> "Message":
    """Return the ``welcome`` that accepts an authenticated device."""
    return {
        "type": WELCOME,
        "proof": proof,
        "report_interval_s": report_interval_s,
        "time": now,
    }


def pending(message: str) -> "Message":
    """Return ``pending``: the device is new and waits for the user to confirm it."""
    return {"type": PENDING, "message": message}


def command_off(command_id: str, duration_s: float, until: float) -> "Message":
    """Return an ``off`` command holding the load off for ``duration_s`` (ending at ``until``)."""
    return {
        "type": COMMAND,
        "id": command_id,
        "command": CMD_OFF,
        "duration_s": duration_s,
        "until": until,
    }


def command_on(command_id: str) -> "Message":
    """Return an ``on`` command: release any hold and switch the load on."""
    return {"type": COMMAND, "id": command_id, "command": CMD_ON}


def state_payload(
    *,
    relay: str,
    power_w: float,
    power_measured: bool,
    hold: "Message | None",
    cause: str,
    uptime_s: float,
) -> "Message":
    """Return the state object carried by ``state``, ``ack`` and ``hello``."""
    return {
        "relay": relay,
        "power_w": power_w,
        "power_measured": power_measured,
        "hold": hold,
        "cause": cause,
        "uptime_s": uptime_s,
    }


def hold_payload(command_id: str, until: float, remaining_s: float) -> "Message":
    """Return the description of an active off hold (``state.hold``)."""
    return {"command_id": command_id, "until": until, "remaining_s": remaining_s}


def state(payload: "Message") -> "Message":
    """Return a ``state`` report."""
    return {"type": STATE, "state": payload}


def ack(reply_to: str, duplicate: bool, payload: "Message") -> "Message":
    """Return the ``ack`` of command ``reply_to`` with the state after it."""
    return {"type": ACK, "reply_to": reply_to, "duplicate": duplicate, "state": payload}


def error(code: str, message: str, reply_to: "str | None" = None) -> "Message":
    """Return an ``error`` message."""
    result: Message = {"type": ERROR, "code": code, "message": message[:MAX_TEXT_LEN]}
    if reply_to is not None:
        result["reply_to"] = reply_to
    return result


def encode(message: "Message") -> str:
    """Return ``message`` as a compact JSON text frame.

    Raises ``ProtocolError`` (``frame_too_large``) when it exceeds ``MAX_FRAME_BYTES``.
    """
    text = json.dumps(message, separators=(",", ":"))
    if len(text.encode()) > MAX_FRAME_BYTES:
        raise ProtocolError(E_FRAME_TOO_LARGE, "message larger than the frame limit")
    return text


# --- validating received frames ------------------------------------------------------------


def _invalid(text: str, reply_to: "str | None" = None) -> ProtocolError:
    """Return the fatal error for a frame that does not match its message's shape."""
    return ProtocolError(E_INVALID_MESSAGE, text, True, reply_to)


def _number(obj: "Message", key: str, low: float, high: float) -> float:
    """Return ``obj[key]``: a finite number in ``[low, high]``."""
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(key + " must be a number")
    if (value - value) != 0 or not low <= value <= high:  # value - value is nan for inf/nan
        raise _invalid(key + " must be a number from " + str(low) + " to " + str(high))
    return value


def _integer(obj: "Message", key: str, low: int, high: int) -> int:
    """Return ``obj[key]``: an integer in ``[low, high]``."""
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(key + " must be an integer from " + str(low) + " to " + str(high))
    return value


def _boolean(obj: "Message", key: str) -> bool:
    """Return ``obj[key]``: true or false."""
    value = obj.get(key)
    if not isinstance(value, bool):
        raise _invalid(key + " must be true or false")
    return value


def _text(obj: "Message", key: str, max_len: int = MAX_TEXT_LEN, min_len: int = 1) -> str:
    """Return ``obj[key]``: a string of ``min_len`` to ``max_len`` characters."""
    value = obj.get(key)
    if not isinstance(value, str) or not min_len <= len(value) <= max_len:
        raise _invalid(key + " must be a string of " + str(min_len) + " to " + str(max_len))
    return value


def is_identifier(value: object) -> bool:
    """Return True for a valid device or command id: 1-64 of ``A-Z a-z 0-9 _ . : -``."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LEN:
        return False
    return all(ch in _ID_CHARS for ch in value)


def _identifier(obj: "Message", key: str) -> str:
    """Return ``obj[key]``: a valid identifier."""
    value = obj.get(key)
    if not isinstance(value, str) or not is_identifier(value):
        raise _invalid(key + " must be 1-64 characters of A-Z a-z 0-9 _ . : -")
    return value


def _lower_hex(obj: "Message", key: str, length: int) -> str:
    """Return ``obj[key]``: exactly ``length`` lowercase hex digits."""
    value = obj.get(key)
    if not isinstance(value, str) or len(value) != length or any(c not in _HEX for c in value):
        raise _invalid(key + " must be " + str(length) + " lowercase hex digits")
    return value


def _nonce(obj: "Message", key: str = "nonce") -> str:
    """Return ``obj[key]``: a handshake nonce."""
    return _lower_hex(obj, key, NONCE_BYTES * 2)


def _one_of(obj: "Message", key: str, allowed: "tuple[str, ...]") -> str:
    """Return ``obj[key]``: one of ``allowed``."""
    value = obj.get(key)
    if not isinstance(value, str) or value not in allowed:
        raise _invalid(key + " must be one of " + ", ".join(allowed))
    return value


def _object(obj: "Message", key: str) -> "Message":
    """Return ``obj[key]``: a JSON object."""
    value = obj.get(key)
    if not isinstance(value, dict):
        raise _invalid(key + " must be an object")
    return value


def validate_state_payload(payload: "Message") -> None:
    """Check a state object (in ``state``, ``ack`` and ``hello``); raise ``ProtocolError``."""
    _one_of(payload, "relay", (RELAY_ON, RELAY_OFF))
    _number(payload, "power_w", 0, MAX_POWER_W)
    _boolean(payload, "power_measured")
    _one_of(payload, "cause", CAUSES)
    _number(payload, "uptime_s", 0, MAX_EPOCH_S)
    hold = payload.get("hold")
    if hold is None:
        return
    if not isinstance(hold, dict):
        raise _invalid("hold must be null or an object")
    _identifier(hold, "command_id")
    _number(hold, "until", 0, MAX_EPOCH_S)
    _number(hold, "remaining_s", 0, MAX_HOLD_S)


def _check_challenge(msg: "Message") -> None:
    """Check a ``challenge``; a version range without ours is ``unsupported_version``."""
    low = _integer(msg, "protocol_min", 1, 1_000_000)
    high = _integer(msg, "protocol_max", low, 1_000_000)
    _nonce(msg)
    _number(msg, "time", 0, MAX_EPOCH_S)
    if not low <= PROTOCOL_VERSION <= high:
        raise ProtocolError(
            E_UNSUPPORTED_VERSION,
            "Home Assistant speaks protocol versions "
            + str(low)
            + "-"
            + str(high)
            + "; this device speaks "
            + str(PROTOCOL_VERSION),
        )


def _check_hello(msg: "Message") -> None:
    """Check a ``hello``; a version we do not speak is ``unsupported_version``."""
    version = _integer(msg, "protocol", 1, 1_000_000)
    if not MIN_PROTOCOL_VERSION <= version <= PROTOCOL_VERSION:
        raise ProtocolError(
            E_UNSUPPORTED_VERSION,
            "protocol version "
            + str(version)
            + " is not supported; supported: "
            + str(MIN_PROTOCOL_VERSION)
            + "-"
            + str(PROTOCOL_VERSION),
        )
    _identifier(msg, "device_id")
    _text(msg, "name", MAX_NAME_LEN)
    rated = _number(msg, "rated_kw", 0, MAX_RATED_KW)
    if rated <= 0:
        raise _invalid("rated_kw must be more than 0")
    _text(msg, "firmware")
    _boolean(msg, "meter")
    if "model" in msg:
        _text(msg, "model")
    _nonce(msg)
    _lower_hex(msg, "proof", PROOF_HEX_LEN)
    validate_state_payload(_object(msg, "state"))


def _check_welcome(msg: "Message") -> None:
    """Check a ``welcome``."""
    _lower_hex(msg, "proof", PROOF_HEX_LEN)
    _integer(msg, "report_interval_s", MIN_REPORT_INTERVAL_S, MAX_REPORT_INTERVAL_S)
    _number(msg, "time", 0, MAX_EPOCH_S)


def _check_pending(msg: "Message") -> None:
    """Check a ``pending``."""
    _text(msg, "message", MAX_TEXT_LEN, 0)


def _check_command(msg: "Message") -> None:
    """Check a ``command``; a command this device does not know is a non-fatal error."""
    command_id = _identifier(msg, "id")
    name = msg.get("command")
    if not isinstance(name, str):
        raise _invalid("command must be a string", command_id)
    if name not in COMMANDS:
        raise ProtocolError(
            E_UNKNOWN_COMMAND, "unknown command: " + name[:MAX_ID_LEN], False, command_id
        )
    if name == CMD_OFF:
        duration = _number(msg, "duration_s", 0, MAX_HOLD_S)
        if duration <= 0:
            raise _invalid("duration_s must be more than 0", command_id)
        _number(msg, "until", 0, MAX_EPOCH_S)


def _check_state(msg: "Message") -> None:
    """Check a ``state`` report."""
    validate_state_payload(_object(msg, "state"))


def _check_ack(msg: "Message") -> None:
    """Check an ``ack``."""
    _identifier(msg, "reply_to")
    _boolean(msg, "duplicate")
    validate_state_payload(_object(msg, "state"))


def _check_error(msg: "Message") -> None:
    """Check an ``error``."""
    _text(msg, "code", MAX_ID_LEN)
    _text(msg, "message", MAX_TEXT_LEN, 0)
    if "reply_to" in msg:
        _identifier(msg, "reply_to")


_FROM_SERVER = {
    CHALLENGE: _check_challenge,
    WELCOME: _check_welcome,
    PENDING: _check_pending,
    COMMAND: _check_command,
    ERROR: _check_error,
}
_FROM_DEVICE = {
    HELLO: _check_hello,
    STATE: _check_state,
    ACK: _check_ack,
    ERROR: _check_error,
}


def _decode(text: "str | bytes", checks: "Mapping[str, Callable[[Message], None]]") -> "Message":
    """Parse one frame and validate it against the message types in ``checks``."""
    size = len(text.encode()) if isinstance(text, str) else len(text)
    if size > MAX_FRAME_BYTES:
        raise ProtocolError(E_FRAME_TOO_LARGE, "frame larger than " + str(MAX_FRAME_BYTES))
    parsed: object = None
    bad_json = False
    try:
        parsed = json.loads(text if isinstance(text, str) else text.decode())
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        bad_json = True
    if bad_json:
        raise ProtocolError(E_INVALID_JSON, "frame is not valid JSON")
    if not isinstance(parsed, dict):
        raise _invalid("frame is not a JSON object")
    kind = parsed.get("type")
    if not isinstance(kind, str):
        raise _invalid("type must be a string")
    check = checks.get(kind)
    if check is None:
        raise ProtocolError(E_UNKNOWN_TYPE, "unexpected message type: " + kind[:MAX_ID_LEN])
    check(parsed)
    return parsed


def decode_from_server(text: "str | bytes") -> "Message":
    """Parse and validate a frame a device received from Home Assistant.

    Returns the message (a dict with ``type``); raises ``ProtocolError`` otherwise. Fields this
    version does not know are ignored, so newer peers may add optional fields.
    """
    return _decode(text, _FROM_SERVER)


def decode_from_device(text: "str | bytes") -> "Message":
    """Parse and validate a frame Home Assistant received from a device (see above)."""
    return _decode(text, _FROM_DEVICE)
