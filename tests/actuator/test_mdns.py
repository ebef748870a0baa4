"""Finding Home Assistant through zeroconf: the DNS-SD query and answer codec, and a real
UDP round trip against a responder on 127.0.0.1 whose answers python-zeroconf builds."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from zeroconf import ServiceInfo, const
from zeroconf._dns import DNSAddress, DNSPointer, DNSService, DNSText
from zeroconf._protocol.incoming import DNSIncoming
from zeroconf._protocol.outgoing import DNSOutgoing

from actuator import mdns
from jeisson.actuator import protocol

SERVICE = protocol.MDNS_SERVICE_TYPE
INSTANCE = "Home Assistant." + SERVICE
HOST = "homeassistant.local."


def _answer(
    *,
    port: int = 8123,
    txt: dict[str, str] | None = None,
    address: bytes | None = bytes((192, 0, 2, 10)),
    service: str = SERVICE,
) -> bytes:
    """Return an mDNS answer built by python-zeroconf, as Home Assistant's would be."""
    properties = (
        txt
        if txt is not None
        else {"path": protocol.WS_PATH, "protocol_min": "1", "protocol_max": "1", "tls": "0"}
    )
    info = ServiceInfo(
        service, "Home Assistant." + service, port=port, properties=properties, server=HOST
    )
    out = DNSOutgoing(const._FLAGS_QR_RESPONSE | const._FLAGS_AA)
    ttl = const._DNS_OTHER_TTL
    out.add_answer_at_time(DNSPointer(service, const._TYPE_PTR, const._CLASS_IN, ttl, info.name), 0)
    out.add_additional_answer(
        DNSService(info.name, const._TYPE_SRV, const._CLASS_IN, ttl, 0, 0, port, HOST)
    )
    out.add_additional_answer(DNSText(info.name, const._TYPE_TXT, const._CLASS_IN, ttl, info.text))
    if address is not None:
        out.add_additional_answer(DNSAddress(HOST, const._TYPE_A, const._CLASS_IN, ttl, address))
    return out.packets()[0]


def test_query_is_a_valid_dns_sd_question() -> None:
    parsed = DNSIncoming(mdns.build_query())
    assert parsed.is_query()
    [question] = parsed.questions
    assert question.name == SERVICE
    assert question.type == const._TYPE_PTR
    assert question.unicast  # asks for a unicast answer: no multicast group membership needed


def test_answer_gives_the_endpoint_url() -> None:
    url = mdns.url_from_response(_answer(), "198.51.100.1")
    assert url == "ws://192.0.2.10:8123" + protocol.WS_PATH


def test_answer_without_address_uses_the_sender_and_tls_gives_wss() -> None:
    answer = _answer(
        address=None,
        txt={"path": "/custom", "protocol_min": "1", "protocol_max": "2", "tls": "1"},
        port=443,
    )
    assert mdns.url_from_response(answer, "198.51.100.1") == "wss://198.51.100.1:443/custom"


def test_answer_for_other_versions_or_services_is_ignored() -> None:
    newer = _answer(txt={"path": protocol.WS_PATH, "protocol_min": "2", "protocol_max": "3"})
    assert mdns.url_from_response(newer, "198.51.100.1") is None
    other = _answer(service="_other._tcp.local.")
    assert mdns.url_from_response(other, "198.51.100.1") is None
    with pytest.raises(ValueError, match="not a DNS response"):
        mdns.url_from_response(mdns.build_query(), "198.51.100.1")


@pytest.fixture
async def responder() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A UDP responder on 127.0.0.1: answers each query with garbage, then a real answer."""
    queries: list[bytes] = []
    loop = asyncio.get_running_loop()

    class Responder(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            queries.append(data)
            assert isinstance(self.transport, asyncio.DatagramTransport)
            self.transport.sendto(b"\x00garbage", addr)
            self.transport.sendto(_answer(address=None), addr)

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    transport, _ = await loop.create_datagram_endpoint(Responder, sock=sock)
    yield sock.getsockname()[1], queries
    transport.close()


async def test_discover_round_trip(responder: tuple[int, list[bytes]]) -> None:
    port, queries = responder
    url = await mdns.discover(timeout_s=3, target=("127.0.0.1", port))
    assert url == "ws://127.0.0.1:8123" + protocol.WS_PATH
    assert queries == [mdns.build_query()]


async def test_discover_gives_up_quietly() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))  # a port that never answers
    try:
        url = await mdns.discover(timeout_s=0.3, target=("127.0.0.1", sock.getsockname()[1]))
    finally:
        sock.close()
    assert url is None
