"""Who is calling, by address: the one place that reads the client's IP.

    client_ip(request)    # '203.0.113.7'

The peer's address, unless the peer is one of TRUSTED_PROXIES: then X-Forwarded-For
names the client. Each proxy appends the address it received the request from, so the
header is read from the right, past the trusted proxies, and the first address that is
not one of them is the client; what lies further left was written by the client and
proves nothing. (Run uvicorn with `--no-proxy-headers`: by default it rewrites the peer
from X-Forwarded-For for 127.0.0.1 itself, and the peer's own address would be lost.)
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from starlette.requests import HTTPConnection

from core.config import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in trusted)


def _trusted(address: IPAddress) -> bool:
    return any(address in network for network in _networks(tuple(settings.trusted_proxies)))


def _parse(value: str) -> IPAddress | None:
    """An address as proxies write it: `203.0.113.7`, `203.0.113.7:5123`, `2001:db8::1`,
    `[2001:db8::1]:5123`; None for anything else (`unknown`, garbage)."""
    value = value.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def client_ip(connection: HTTPConnection) -> str | None:
    peer = connection.client.host if connection.client else None
    address = _parse(peer) if peer else None
    if address is None:
        return peer
    if not _trusted(address):
        return str(address)
    forwarded = ",".join(connection.headers.getlist("x-forwarded-for"))
    for entry in reversed(forwarded.split(",") if forwarded.strip() else []):
        hop = _parse(entry)
        if hop is None:
            break  # a proxy we trust wrote nothing sane here: the last trusted hop is all we know
        address = hop
        if not _trusted(hop):
            break
    return str(address)
