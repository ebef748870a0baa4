"""The actuator protocol: HMAC, keys, proofs, message building and validation."""

from __future__ import annotations

import hashlib
import hmac
import json
import os

import pytest

from jeisson.actuator import protocol

NONCE_A = "00112233445566778899aabbccddeeff"
NONCE_B = "ffeeddccbbaa99887766554433221100"
KEY = bytes(range(16))


def test_pure_hmac_matches_rfc4231_and_the_standard_library() -> None:
    # RFC 4231 test case 2.
    expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert protocol.hmac_sha256_pure(b"Jefe", b"what do ya want for nothing?").hex() == expected
    for key_len in (0, 1, 16, 32, 63, 64, 65, 200):
        key = os.urandom(key_len)
        msg = os.urandom(key_len * 3 + 1)
        want = hmac.new(key, msg, hashlib.sha256).digest()
        assert protocol.hmac_sha256_pure(key, msg) == want
        assert protocol.hmac_sha256(key, msg) == want


def test_keys_format_and_parse() -> None:
    key = protocol.generate_key()
    assert len(key) == 16
    text = protocol.format_key(key)
    assert len(text.split("-")) == 8
    assert protocol.parse_key(text) == key
    assert protocol.parse_key(" " + text.upper().replace("-", " ") + " ") == key
    assert protocol.parse_key("ab" * 32) == bytes([0xAB]) * 32
    for bad in ("", "ab" * 15, "ab" * 33, "zz" * 16, "abc" + "0" * 30):
        with pytest.raises(ValueError, match="device key"):
            protocol.parse_key(bad)
    assert protocol.generate_key() != protocol.generate_key()


def test_proofs_bind_key_nonces_device_and_direction() -> None:
    device = protocol.device_proof(KEY, NONCE_A, NONCE_B, "dev-1")
    server = protocol.server_proof(KEY, NONCE_A, NONCE_B, "dev-1")
    assert len(device) == 64
    assert device != server  # a device's proof cannot be reflected as Home Assistant's
    assert device != protocol.device_proof(KEY, NONCE_B, NONCE_B, "dev-1")
    assert device != protocol.device_proof(KEY, NONCE_A, NONCE_A, "dev-1")
    assert device != protocol.device_proof(KEY, NONCE_A, NONCE_B, "dev-2")
    assert device != protocol.device_proof(bytes(16), NONCE_A, NONCE_B, "dev-1")
    hello = _hello(device)
    assert protocol.check_device_proof(KEY, NONCE_A, hello)
    assert not protocol.check_device_proof(bytes(16), NONCE_A, hello)
    assert not protocol.check_device_proof(KEY, NONCE_B, hello)
    welcome = protocol.welcome(server, 1.7e9)
    assert protocol.check_server_proof(KEY, NONCE_A, NONCE_B, "dev-1", welcome)
    assert not protocol.check_server_proof(KEY, NONCE_A, NONCE_A, "dev-1", welcome)
    assert protocol.constant_time_equal("abc", "abc")
    assert not protocol.constant_time_equal("abc", "abd")
    assert not protocol.constant_time_equal("abc", "ab")


def _state() -> dict[str, object]:
    return protocol.state_payload(
        relay="off",
        power_w=0.0,
        power_measured=True,
        hold=protocol.hold_payload("cmd-1", 1.7e9, 30.0),
        cause="command",
        uptime_s=12.5,
    )


def _hello(proof: str = "a" * 64, **changes: object) -> dict[str, object]:
    message = protocol.hello(
        device_id="dev-1",
        name="Water heater",
        rated_kw=2.0,
        firmware="0.1.0",
        nonce=NONCE_B,
        proof=proof,
        state_payload=_state(),
        meter=True,
        model="test",
    )
    message.update(changes)
    return message


def test_every_message_round_trips() -> None:
    from_server = [
        protocol.challenge(NONCE_A, 1.7e9),
        protocol.welcome("b" * 64, 1.7e9, 10),
        protocol.pending("confirm it"),
        protocol.command_off("cmd-1", 60, 1.7e9 + 60),
        protocol.command_on("cmd-2"),
        protocol.error(protocol.E_AUTH_FAILED, "wrong key"),
    ]
    from_device = [
        _hello(),
        protocol.state(_state()),
        protocol.ack("cmd-1", False, _state()),
        protocol.error(protocol.E_UNKNOWN_COMMAND, "no", "cmd-9"),
    ]
    for message in from_server:
        assert protocol.decode_from_server(protocol.encode(message)) == message
    for message in from_device:
        assert protocol.decode_from_device(protocol.encode(message)) == message
    # Fields a newer peer adds are ignored, not refused.
    extended = {**protocol.command_on("cmd-3"), "future_field": [1, 2]}
    assert protocol.decode_from_server(json.dumps(extended))["command"] == "on"


def _refusal(text: str | bytes, side: str = "server") -> protocol.ProtocolError:
    decode = protocol.decode_from_server if side == "server" else protocol.decode_from_device
    with pytest.raises(protocol.ProtocolError) as caught:
        decode(text)
    return caught.value


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", protocol.E_INVALID_JSON),
        (b"\xff\xfe", protocol.E_INVALID_JSON),
        ("[1, 2]", protocol.E_INVALID_MESSAGE),
        ('{"id": "x"}', protocol.E_INVALID_MESSAGE),
        ('{"type": "hello"}', protocol.E_UNKNOWN_TYPE),  # a device never receives hello
        ('{"type": "command", "id": "bad id!", "command": "on"}', protocol.E_INVALID_MESSAGE),
        ('{"type": "command", "id": "c1", "command": 5}', protocol.E_INVALID_MESSAGE),
        ('{"type": "command", "id": "c1", "command": "off", "until": 1}', "invalid_message"),
        (
            '{"type": "command", "id": "c1", "command": "off", "duration_s": true, "until": 1}',
            protocol.E_INVALID_MESSAGE,
        ),
        (
            '{"type": "command", "id": "c1", "command": "off", "duration_s": 0, "until": 1}',
            protocol.E_INVALID_MESSAGE,
        ),
        (
            '{"type": "command", "id": "c1", "command": "off", "duration_s": 86401, "until": 1}',
            protocol.E_INVALID_MESSAGE,
        ),
        (
            '{"type": "command", "id": "c1", "command": "off", "duration_s": NaN, "until": 1}',
            protocol.E_INVALID_MESSAGE,
        ),
        (
            '{"type": "welcome", "proof": "AB", "report_interval_s": 10, "time": 1}',
            "invalid_message",
        ),
        (
            '{"type": "challenge", "protocol_min": 1, "protocol_max": 1, "nonce": "zz", "time": 1}',
            "invalid_message",
        ),
        ("x" * (protocol.MAX_FRAME_BYTES + 1), protocol.E_FRAME_TOO_LARGE),
    ],
)
def test_malformed_frames_are_refused_and_fatal(frame: str, code: str) -> None:
    error = _refusal(frame)
    assert error.code == code
    assert error.fatal
    assert error.to_message()["type"] == "error"
    assert error.close_code() in (protocol.CLOSE_PROTOCOL, protocol.CLOSE_TOO_BIG)


def test_unknown_command_is_refused_but_not_fatal() -> None:
    error = _refusal('{"type": "command", "id": "c7", "command": "dance"}')
    assert error.code == protocol.E_UNKNOWN_COMMAND
    assert not error.fatal
    assert error.reply_to == "c7"
    assert error.to_message() == {
        "type": "error",
        "code": "unknown_command",
        "message": "unknown command: dance",
        "reply_to": "c7",
    }


def test_versions_outside_the_supported_range_are_refused_clearly() -> None:
    newer = {**protocol.challenge(NONCE_A, 1.7e9), "protocol_min": 2, "protocol_max": 3}
    error = _refusal(json.dumps(newer))
    assert error.code == protocol.E_UNSUPPORTED_VERSION
    assert error.close_code() == protocol.CLOSE_UNSUPPORTED_VERSION
    assert "2-3" in error.message
    # Home Assistant's side: a hello of a version it does not speak.
    error = _refusal(json.dumps(_hello(protocol=99)), side="device")
    assert error.code == protocol.E_UNSUPPORTED_VERSION
    assert "99" in error.message


@pytest.mark.parametrize(
    "change",
    [
        {"rated_kw": 0},
        {"rated_kw": 101},
        {"name": ""},
        {"device_id": "has space"},
        {"meter": "yes"},
        {"nonce": NONCE_B.upper()},
        {"proof": "a" * 63},
        {"state": {"relay": "on"}},
    ],
)
def test_hello_fields_are_validated(change: dict[str, object]) -> None:
    error = _refusal(json.dumps({**_hello(), **change}), side="device")
    assert error.code == protocol.E_INVALID_MESSAGE


def test_state_payload_validation() -> None:
    good = _state()
    protocol.validate_state_payload(good)
    for key, value in (
        ("relay", "maybe"),
        ("power_w", -1),
        ("power_measured", 1),
        ("cause", "magic"),
        ("hold", "soon"),
        ("hold", {"command_id": "c", "until": 1.0, "remaining_s": -1}),
    ):
        with pytest.raises(protocol.ProtocolError):
            protocol.validate_state_payload({**good, key: value})


def test_encode_refuses_oversized_messages() -> None:
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.encode(protocol.pending("x" * protocol.MAX_FRAME_BYTES))
    assert caught.value.code == protocol.E_FRAME_TOO_LARGE
    assert len(protocol.error("c", "m" * 1000)["message"]) == protocol.MAX_TEXT_LEN
