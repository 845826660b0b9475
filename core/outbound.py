"""Every HTTP request Parley makes to a URL a tenant wrote (webhook endpoints, SMS and
messenger gateways, and whatever comes later) goes through here.

    response = await outbound.post(url, content=body, headers=headers, timeout=10)
    response.ok, response.summary       # True/False, "HTTP 500"
    except OutboundError as exc:        # exc.reason: "address refused: 10.0.0.5 is private"

What it guarantees:

- the host is resolved once, every address it resolves to is checked (`refusal`), and
  the connection goes to exactly the address that was checked: the URL is rewritten to
  that IP while TLS keeps the name for SNI and certificate verification and the Host
  header keeps the name, so DNS cannot answer differently between check and connect
  (rebinding);
- non-global addresses (loopback, private, link-local including the cloud metadata
  address, CGNAT, multicast, reserved, unspecified, and IPv6 forms that embed such an
  IPv4) are refused unless `private_networks_allowed()`;
- https is required when ENV=prod; redirects are never followed; the whole exchange has
  one deadline; at most `max_bytes` of the answer are read, uncompressed;
- what may reach API clients is `reason` and `summary`: our own short words, never the
  remote body or an exception's text. `OutboundResponse.body` is for the caller's own
  parsing (a CRM lookup's JSON), not for error messages.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from opentelemetry.trace import StatusCode

from core.config import settings
from core.tracing import SpanKind, span

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_MAX_BYTES = 64 * 1024
# Addresses of one name tried in turn when a connection is refused (IPv6 then IPv4, say).
MAX_ADDRESSES = 4
USER_AGENT = "Parley/1"

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052, the IPv4 in the last 32 bits
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215, local-use translation
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT, RFC 2765
_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated IPv4-compatible, ::a.b.c.d


class OutboundError(Exception):
    """No answer: `reason` is short, ours, and safe to show to API clients."""

    def __init__(self, reason: str, *, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True)
class OutboundResponse:
    status: int
    headers: httpx.Headers
    body: bytes  # at most max_bytes, as received: for the caller to parse, never to echo
    truncated: bool

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def summary(self) -> str:
        return f"HTTP {self.status}"

    @property
    def retry_after(self) -> float | None:
        value = self.headers.get("retry-after", "").strip()
        return float(value) if value.isdigit() else None


def retry_delay(base: float, attempt: int, retry_after: float | None = None, cap: float = 3600.0) -> float:
    """Seconds before the try after `attempt` (1-based) of a failed request: base ·
    2^(attempt-1), ±10 %, at most `cap`; a receiver's longer Retry-After wins (within it).
    Webhooks and push notifications back off alike."""
    delay = base * 2.0 ** (attempt - 1) * random.uniform(0.9, 1.1)  # noqa: S311 - jitter, not a secret
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, cap)


# -- which addresses -------------------------------------------------------------------------


def private_networks_allowed() -> bool:
    """OUTBOUND_ALLOW_PRIVATE_NETWORKS (or its old name WEBHOOK_ALLOW_PRIVATE_NETWORKS);
    unset: allowed in dev only."""
    allowed = settings.outbound_allow_private_networks
    return settings.is_dev if allowed is None else allowed


def https_required() -> bool:
    return settings.env == "prod"


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, for the forms a network may route to it:
    IPv4-mapped, SIIT-translated, IPv4-compatible, NAT64 (64:ff9b::/96) and 6to4."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or address in _TRANSLATED or (address in _COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress) -> str | None:
    """Why an address may not be called unless private networks are allowed (None: it is
    a global unicast address).

        refusal(ip_address("10.0.0.5"))            # 'private'
        refusal(ip_address("64:ff9b::a00:5"))      # 'private (embeds 10.0.0.5)'
    """
    inner = embedded_ipv4(address)
    if inner is not None:
        # The IPv4 decides: it is where a mapping, NAT64 or 6to4 relay takes the packets.
        why = refusal(inner)
        return None if why is None else f"{why} (embeds {inner})"
    # Order matters: ipaddress calls multicast and fec0::/10 "global", 240/4 "private".
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "carrier-grade NAT"
    if isinstance(address, ipaddress.IPv6Address) and (address.is_site_local or address in _NAT64_LOCAL):
        return "private"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "not global"
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address a URL's host names literally, in any form the resolver accepts
    (`127.1`, `0x7f000001` and `2130706433` are 127.0.0.1 too); None for a name."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def url_problem(url: str) -> str | None:
    """What is wrong with a URL a user saves for us to call, as the end of a sentence
    that starts with the field's name ("gatewayUrl " + problem); None when it is fine.
    DNS names are checked again (resolved) at every request: this catches literals."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "must be an http(s) URL."
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        return "must be an http(s) URL."
    if https_required() and parts.scheme != "https":
        return "must use https."
    if private_networks_allowed():
        return None
    host = parts.hostname.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return "must not point at this server (localhost)."
    address = literal_address(host)
    if address is not None:
        why = refusal(address)
        if why is not None:
            return f"must not point at {address}: it is {why}."
    return None


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, in the resolver's order, once."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in found:
            found.append(address)
    return found


async def _addresses(host: str, port: int) -> list[IPAddress]:
    """The addresses to connect to; refused if any of them is not allowed (a name that
    answers one public and one private address is refused, whichever comes first)."""
    literal = literal_address(host)
    try:
        addresses = [literal] if literal is not None else await resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise OutboundError(f"could not resolve {host}") from exc
    if not addresses:
        raise OutboundError(f"could not resolve {host}")
    if not private_networks_allowed():
        for address in addresses:
            why = refusal(address)
            if why is not None:
                raise OutboundError(f"address refused: {address} is {why}", retryable=False)
    return addresses[:MAX_ADDRESSES]


# -- the request -----------------------------------------------------------------------------


def _failure(exc: BaseException) -> str:
    """Our words for a transport error; its own text may quote the remote side."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, ssl.SSLCertVerificationError):
            return "TLS certificate not valid"
        if isinstance(seen, ssl.SSLError):
            return "TLS handshake failed"
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, httpx.ConnectError):
        return "could not connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "invalid HTTP answer"
    return "connection failed"


async def request(
    method: str,
    url: str,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - httpx's per-phase timeout, not one for the call
    max_bytes: int = DEFAULT_MAX_BYTES,
    verify: ssl.SSLContext | bool = True,
    http2: bool = False,
) -> OutboundResponse:
    """One request to a URL a user gave us, with every check in the module docstring.
    Raises OutboundError when there is no HTTP answer (any status is an answer).

    http2=True speaks HTTP/2 only (APNs accepts nothing else): negotiated by ALPN over
    TLS, with prior knowledge over plain http (a loopback test server)."""
    timeout = settings.outbound_timeout_seconds if timeout is None else timeout
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise OutboundError("invalid URL", retryable=False) from exc
    if target.scheme not in ("http", "https") or not target.host:
        raise OutboundError("invalid URL", retryable=False)
    if https_required() and target.scheme != "https":
        raise OutboundError("https required", retryable=False)
    host = target.host
    port = target.port or (443 if target.scheme == "https" else 80)
    sent = {"user-agent": USER_AGENT, **(headers or {})}
    # The name the server expects, whichever address we connect to.
    sent["host"] = target.netloc.decode("ascii")  # HTTP/2's :authority is made from it
    sent["accept-encoding"] = "identity"  # max_bytes counts what we read, not an inflated body
    # The span (when tracing is on) shows the method, the name and port and the status:
    # never the path's query string nor a header, where tenants' secrets travel.
    attributes: dict[str, Any] = {"http.request.method": method, "server.address": host, "server.port": port}
    with span(method, kind=SpanKind.CLIENT, **attributes) as traced:  # an exception: recorded, status ERROR
        try:
            async with asyncio.timeout(timeout):
                addresses = await _addresses(host, port)
                async with httpx.AsyncClient(
                    timeout=timeout,
                    follow_redirects=False,
                    trust_env=False,
                    verify=verify,
                    http1=not http2,
                    http2=http2,
                ) as client:
                    response = await _first_answer(client, method, target, addresses, content, sent, max_bytes)
        except TimeoutError as exc:
            raise OutboundError(f"no answer within {timeout:g} s") from exc
        except httpx.TimeoutException as exc:
            raise OutboundError(f"no answer within {timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise OutboundError(_failure(exc)) from exc
        if traced is not None:
            traced.set_attribute("http.response.status_code", response.status)
            if response.status >= 400:
                traced.set_status(StatusCode.ERROR)
        return response


async def _first_answer(
    client: httpx.AsyncClient,
    method: str,
    target: httpx.URL,
    addresses: list[IPAddress],
    content: bytes | None,
    headers: dict[str, str],
    max_bytes: int,
) -> OutboundResponse:
    extensions: dict[str, Any] = {}
    if target.scheme == "https" and literal_address(target.host) is None:
        extensions["sni_hostname"] = target.host
    for i, address in enumerate(addresses):
        pinned = target.copy_with(host=str(address))
        built = client.build_request(method, pinned, content=content, headers=headers, extensions=extensions)
        try:
            response = await client.send(built, stream=True)
        except httpx.ConnectError:
            if i == len(addresses) - 1:
                raise
            continue  # nothing was sent: the name's next address
        try:
            body, truncated = b"", False
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) >= max_bytes:
                    body, truncated = body[:max_bytes], True
                    break
        finally:
            await response.aclose()
        return OutboundResponse(response.status_code, response.headers, body, truncated)
    raise AssertionError("unreachable: _addresses returns at least one address")


async def post(url: str, **options: Any) -> OutboundResponse:
    return await request("POST", url, **options)
