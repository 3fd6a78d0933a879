"""Where webhooks may go: https URLs whose host resolves only to global addresses, unless the
operator allows private ones (`notification_allow_private`; plain http with
`notification_allow_http`). Checked when a channel is saved and again, after resolving the
name, at every send: the request then goes to the very address checked, so a name that
resolves elsewhere later (DNS rebinding) cannot slip through."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.errors import BadInput
from app.settings import Settings

MAX_URL_LENGTH = 2000
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedDestination(Exception):
    """A URL that may not be called; the message says why."""


@dataclass(frozen=True, slots=True)
class Destination:
    """A checked URL: the host it names and the address to connect to."""

    url: str
    host: str
    address: Address


def checked_url(url: str, settings: Settings) -> str:
    """The URL's form and scheme (no resolution): for inputs, as BAD_USER_INPUT naming `url`."""
    try:
        return _well_formed(url.strip(), settings)
    except RefusedDestination as exc:
        raise BadInput(str(exc), field="url") from None


async def checked_destination(url: str, settings: Settings) -> Destination:
    """Well formed and resolving to allowed addresses only; raises RefusedDestination."""
    url = _well_formed(url, settings)
    host = urlsplit(url).hostname or ""
    addresses = await resolve(host)
    if not settings.notification_allow_private:
        refused = [a for a in addresses if not a.is_global]
        if refused:
            raise RefusedDestination(f"{host} resolves to {refused[0]}, which is not a public address")
    return Destination(url=url, host=host, address=addresses[0])


async def validated_url(url: str, settings: Settings) -> str:
    """What a channel stores: checked as a send would check it, refused as BAD_USER_INPUT."""
    try:
        return (await checked_destination(url.strip(), settings)).url
    except RefusedDestination as exc:
        raise BadInput(str(exc), field="url") from None


def _well_formed(url: str, settings: Settings) -> str:
    if len(url) > MAX_URL_LENGTH:
        raise RefusedDestination(f"url is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise RefusedDestination("url is not a valid URL") from None
    schemes = ("https", "http") if settings.notification_allow_http else ("https",)
    if parts.scheme not in schemes:
        raise RefusedDestination(f"url must start with {' or '.join(s + '://' for s in schemes)}")
    if not parts.hostname:
        raise RefusedDestination("url has no host")
    if parts.username or parts.password:
        raise RefusedDestination("url may not carry credentials")
    return url


async def resolve(host: str) -> list[Address]:
    """Every address the name resolves to (an address literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise RefusedDestination(f"{host} does not resolve") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos))
    if not addresses:
        raise RefusedDestination(f"{host} does not resolve")
    return addresses
