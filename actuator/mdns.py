"""Finds Home Assistant's actuator endpoint through its zeroconf (mDNS/DNS-SD) announcement.

Home Assistant announces ``protocol.MDNS_SERVICE_TYPE`` with a SRV record (port), a TXT record
(``path``, ``protocol_min``, ``protocol_max``, ``tls``) and an A record (its IPv4 address). A
device sends one DNS-SD PTR query for that service to the mDNS group from an ordinary UDP port
(an RFC 6762 "one-shot" query, answered by unicast) and builds the websocket URL from the answer.
When the answer has no A record, the address the answer came from is used.

Plain sockets and a hand-written DNS codec, so it runs on MicroPython as on CPython. The socket
is non-blocking and polled with ``asyncio.sleep`` so the device's ticker keeps running.
"""

import asyncio
import socket

from jeisson.actuator import protocol

MDNS_GROUP = "224.0.0.251"
MDNS_PORT = 5353
TYPE_A = 1
TYPE_PTR = 12
TYPE_TXT = 16
TYPE_SRV = 33
CLASS_IN = 1
_UNICAST_RESPONSE = 0x8000
"""Question class bit asking for a unicast answer (RFC 6762 section 5.4)."""
_CLASS_MASK = 0x7FFF
_POINTER = 0xC0
_HEADER_LEN = 12
_MAX_LABEL_JUMPS = 32
_POLL_S = 0.05
_MAX_PACKET = 1500
_FLAG_RESPONSE = 0x80
_IPV4_LEN = 4


def _u16(data: bytes, offset: int) -> int:
    """Return the big-endian 16-bit number at ``offset``."""
    return (data[offset] << 8) | data[offset + 1]


def encode_name(name: str) -> bytes:
    """Return ``name`` (dotted) as DNS labels."""
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode()
        out += bytes((len(raw),)) + raw
    return out + b"\x00"


def build_query(service: str = protocol.MDNS_SERVICE_TYPE) -> bytes:
    """Return a DNS-SD PTR query for ``service`` asking for a unicast answer."""
    header = bytes(5) + b"\x01" + bytes(6)  # id 0, flags 0, one question
    qclass = _UNICAST_RESPONSE | CLASS_IN
    return header + encode_name(service) + bytes((0, TYPE_PTR, qclass >> 8, qclass & 0xFF))


def read_name(data: bytes, offset: int) -> "tuple[str, int]":
    """Return the name at ``offset`` (following compression pointers) and the offset after it."""
    labels: list[str] = []
    end = -1
    for _ in range(_MAX_LABEL_JUMPS):
        length = data[offset]
        if length & _POINTER == _POINTER:
            if end < 0:
                end = offset + 2
            offset = ((length & ~_POINTER) << 8) | data[offset + 1]
            continue
        if length == 0:
            return ".".join(labels) + ".", (end if end >= 0 else offset + 1)
        labels.append(data[offset + 1 : offset + 1 + length].decode())
        offset += 1 + length
    raise ValueError("DNS name has too many compression pointers")


def parse_records(data: bytes) -> "list[tuple[str, int, bytes, int]]":
    """Return ``(name, type, rdata, rdata offset)`` of every record in a DNS response."""
    if len(data) < _HEADER_LEN or not data[2] & _FLAG_RESPONSE:
        raise ValueError("not a DNS response")
    questions = _u16(data, 4)
    records = _u16(data, 6) + _u16(data, 8) + _u16(data, 10)
    offset = _HEADER_LEN
    for _ in range(questions):
        offset = read_name(data, offset)[1] + 4
    found = []
    for _ in range(records):
        name, offset = read_name(data, offset)
        rtype = _u16(data, offset)
        size = _u16(data, offset + 8)
        start = offset + 10
        found.append((name.lower(), rtype, data[start : start + size], start))
        offset = start + size
    if offset > len(data):
        raise ValueError("truncated DNS response")
    return found


def parse_txt(rdata: bytes) -> "dict[str, str]":
    """Return the ``key=value`` strings of a TXT record."""
    values = {}
    offset = 0
    while offset < len(rdata):
        length = rdata[offset]
        item = rdata[offset + 1 : offset + 1 + length].decode()
        offset += 1 + length
        equals = item.find("=")
        if equals > 0:
            values[item[:equals].lower()] = item[equals + 1 :]
    return values


def url_from_response(
    data: bytes, source_ip: str, service: str = protocol.MDNS_SERVICE_TYPE
) -> "str | None":
    """Return the websocket URL a DNS-SD answer for ``service`` points to, or None.

    Picks the first announced instance whose TXT record includes this device's protocol version.
    """
    records = parse_records(data)
    by_name: dict[str, list[tuple[int, bytes, int]]] = {}
    for name, rtype, rdata, start in records:
        by_name.setdefault(name, []).append((rtype, rdata, start))
    for rtype, _rdata, start in by_name.get(service.lower(), []):
        if rtype != TYPE_PTR:
            continue
        instance = read_name(data, start)[0].lower()
        url = _instance_url(data, by_name, instance, source_ip)
        if url:
            return url
    return None


def _instance_url(
    data: bytes,
    by_name: "dict[str, list[tuple[int, bytes, int]]]",
    instance: str,
    source_ip: str,
) -> "str | None":
    """Return the URL of one service instance from its SRV, TXT and A records."""
    port = 0
    host = ""
    txt: dict[str, str] = {}
    for rtype, rdata, start in by_name.get(instance, []):
        if rtype == TYPE_SRV:
            port = _u16(rdata, 4)
            host = read_name(data, start + 6)[0].lower()
        elif rtype == TYPE_TXT:
            txt = parse_txt(rdata)
    if not port:
        return None
    try:
        low = int(txt.get(protocol.TXT_PROTOCOL_MIN, "1"))
        high = int(txt.get(protocol.TXT_PROTOCOL_MAX, "1"))
    except ValueError:
        return None
    if not low <= protocol.PROTOCOL_VERSION <= high:
        return None
    address = source_ip
    for rtype, rdata, _start in by_name.get(host, []):
        if rtype == TYPE_A and len(rdata) == _IPV4_LEN:
            address = ".".join(str(b) for b in rdata)
            break
    scheme = "wss://" if txt.get(protocol.TXT_TLS) == "1" else "ws://"
    path = txt.get(protocol.TXT_PATH) or protocol.WS_PATH
    return scheme + address + ":" + str(port) + path


async def discover(
    timeout_s: float = 3.0,
    target: "tuple[str, int]" = (MDNS_GROUP, MDNS_PORT),
    service: str = protocol.MDNS_SERVICE_TYPE,
) -> "str | None":
    """Ask for ``service`` and return the first usable URL answered within ``timeout_s``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind(("0.0.0.0", 0))  # noqa: S104 - answers come back to this port
        address = socket.getaddrinfo(target[0], target[1])[0][-1]
        sock.sendto(build_query(service), address)
        waited = 0.0
        while waited < timeout_s:
            try:
                data, source = sock.recvfrom(_MAX_PACKET)
            except OSError:  # nothing yet (EAGAIN)
                await asyncio.sleep(_POLL_S)
                waited += _POLL_S
                continue
            try:
                url = url_from_response(data, _source_ip(source), service)
            except (ValueError, IndexError):  # not a well-formed answer: ignore it
                url = None
            if url:
                return url
        return None
    finally:
        sock.close()


def _source_ip(source: object) -> str:
    """Return the IP address of a ``recvfrom`` source (a tuple on CPython, bytes on MicroPython)."""
    if isinstance(source, tuple):
        return str(source[0])
    raw = bytes(source)  # type: ignore[call-overload]
    return ".".join(str(b) for b in raw[4:8])  # sockaddr_in: family, port, address
