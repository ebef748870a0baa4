"""docs/wifi-actuator.md agrees with the code: its examples validate, its worked proofs hold."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from jeisson.actuator import protocol

DOC = Path(__file__).resolve().parents[2] / "docs" / "wifi-actuator.md"
FROM_DEVICE = {protocol.HELLO, protocol.STATE, protocol.ACK}


def _examples() -> list[dict[str, Any]]:
    blocks = re.findall(r"```json\n(.*?)\n```", DOC.read_text(), re.DOTALL)
    return [json.loads(block) for block in blocks]


def test_every_example_is_a_valid_message_and_every_type_has_one() -> None:
    examples = _examples()
    for example in examples:
        text = json.dumps(example)
        if example["type"] in FROM_DEVICE:
            assert protocol.decode_from_device(text) == example
        else:
            assert protocol.decode_from_server(text) == example
    assert {e["type"] for e in examples} == {
        protocol.CHALLENGE,
        protocol.HELLO,
        protocol.WELCOME,
        protocol.PENDING,
        protocol.COMMAND,
        protocol.ACK,
        protocol.STATE,
        protocol.ERROR,
    }


def test_worked_example_proofs_are_right() -> None:
    text = DOC.read_text()
    examples = {e["type"]: e for e in _examples()}
    key = protocol.parse_key("a031-1abe-7df5-4f36-3ef3-4643-04e1-0e51")
    server_nonce = examples[protocol.CHALLENGE]["nonce"]
    hello = examples[protocol.HELLO]
    device_proof = protocol.device_proof(key, server_nonce, hello["nonce"], hello["device_id"])
    server_proof = protocol.server_proof(key, server_nonce, hello["nonce"], hello["device_id"])
    assert device_proof in text
    assert server_proof in text
    assert protocol.check_device_proof(key, server_nonce, hello)
    assert protocol.check_server_proof(
        key, server_nonce, hello["nonce"], hello["device_id"], examples[protocol.WELCOME]
    )


def test_documented_constants_match_the_code() -> None:
    text = DOC.read_text()
    assert protocol.MDNS_SERVICE_TYPE in text
    assert protocol.WS_PATH in text
    assert f"at most {protocol.MAX_FRAME_BYTES} bytes" in text
    for code in (
        protocol.CLOSE_PROTOCOL,
        protocol.CLOSE_UNSUPPORTED_VERSION,
        protocol.CLOSE_AUTH_FAILED,
        protocol.CLOSE_HANDSHAKE_TIMEOUT,
        protocol.CLOSE_REPLACED,
        protocol.CLOSE_TRY_LATER,
        protocol.CLOSE_IGNORED,
    ):
        assert f"close {code}" in text
    for error_code in (
        protocol.E_INVALID_JSON,
        protocol.E_INVALID_MESSAGE,
        protocol.E_UNKNOWN_TYPE,
        protocol.E_FRAME_TOO_LARGE,
        protocol.E_UNSUPPORTED_VERSION,
        protocol.E_AUTH_FAILED,
        protocol.E_NOT_AUTHENTICATED,
        protocol.E_UNKNOWN_COMMAND,
        protocol.E_HANDSHAKE_TIMEOUT,
        protocol.E_REPLACED,
        protocol.E_BUSY,
        protocol.E_IGNORED,
    ):
        assert f"`{error_code}`" in text
