"""Where a merchant's webhook may point: http(s) to public addresses only, unless the bank's
operator allows the host (`webhook_allowed_hosts`). A bank posts from inside its network, so
a URL naming 169.254.169.254, 10.x, localhost or the bank's own services would turn the
webhook into a request forged by the bank (SSRF). The URL is checked when the merchant sets
it and again at each delivery, and a delivery connects to the very address it checked, so a
name that re-resolves to a private address between the two (DNS rebinding) gains nothing."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from rail_protocol.errors import RailError

MAX_URL_LENGTH = 300
Resolver = Callable[[str, int], Awaitable[list[str]]]


@dataclass(frozen=True)
class WebhookTarget:
    """A checked URL and how to reach it: `connect_url` names the checked address (or the
    allowed host itself); `host` goes into the Host header and TLS SNI."""
    url: str
    connect_url: str
    host: str


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, through the system's resolver."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


def _refuse(why: str) -> RailError:
    return RailError("invalid_field", f"webhook_url {why}")


async def check_webhook_url(url: object, allowed_hosts: Collection[str],
                            resolver: Resolver = resolve) -> WebhookTarget:
    """The target `url` names, or `invalid_field` saying why a bank must not post there."""
    if not isinstance(url, str) or not 1 <= len(url) <= MAX_URL_LENGTH:
        raise _refuse(f"must be an http(s) URL of at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise _refuse("is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _refuse("must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise _refuse("must not carry a user name or password")
    host = parts.hostname
    if host in allowed_hosts:
        return WebhookTarget(url, url, host)
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = [ipaddress.ip_address(a.split("%", 1)[0])
                         for a in await resolver(host, port)]
        except (OSError, UnicodeError, ValueError):
            raise _refuse(f"names a host that does not resolve: {host}") from None
    if not addresses:
        raise _refuse(f"names a host that does not resolve: {host}")
    private = [str(a) for a in addresses if not a.is_global]
    if private:
        named = host if private == [host] else f"{host} is {', '.join(private)}"
        raise _refuse(f"must point at a public address ({named}: not public); "
                      "the bank's operator may allow a host")
    address = str(addresses[0])
    netloc = f"[{address}]" if addresses[0].version == 6 else address
    if parts.port:
        netloc += f":{parts.port}"
    connect_url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    return WebhookTarget(url, connect_url, host)
