"""Which webhook targets may be sent to.

A target is refused when its address is loopback, link-local (the cloud metadata service
at 169.254.169.254 among them), private or otherwise not a public unicast address, unless
the settings allow loopback or private ones (link-local and reserved addresses never).
The check is made on the addresses the name resolves to, every time a delivery is sent
and on every redirect, and the request then goes to the address that was checked, so a
name that changes between check and connect cannot move it elsewhere.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from estate.errors import EstateError

Resolver = Callable[[str, int], list[str]]
SCHEMES: Final = {"http": 80, "https": 443}


class TargetRefused(EstateError, ValueError):
    """A URL that must not be sent to; ``reason`` says why in words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TargetUnresolved(EstateError):
    """A name that does not resolve now (perhaps later: retried)."""


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    allow_loopback: bool = False
    allow_private: bool = False


@dataclass(frozen=True, slots=True)
class Target:
    """A checked target: the URL's parts and the address to connect to."""

    scheme: str
    host: str
    port: int
    address: str


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, by the system's resolver."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetUnresolved(f"{host} does not resolve: {exc}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def origin(url: str) -> str:
    """The URL cut to scheme, host and port: what logs and reasons show (a path or query
    can hold a token)."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname or ''}" + (
            f":{parts.port}" if parts.port else "")
    except ValueError:
        return "<unparsable URL>"


def _kind(address: str) -> str | None:
    """What kind of non-public address this is, or None for a public unicast one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_unspecified:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast or ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "private"
    return None


def _allowed(kind: str | None, policy: TargetPolicy) -> bool:
    return (kind is None or (kind == "loopback" and policy.allow_loopback)
            or (kind == "private" and policy.allow_private))


_HOW_TO_ALLOW: Final = {"loopback": " (DISPATCH_WEBHOOKS__ALLOW_LOOPBACK allows it)",
                        "private": " (DISPATCH_WEBHOOKS__ALLOW_PRIVATE allows it)"}


def check_url(url: str, policy: TargetPolicy, resolve: Resolver = system_resolver) -> Target:
    """The target of ``url`` if it may be sent to; ``TargetRefused`` with the reason if
    not, ``TargetUnresolved`` if its name does not resolve."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a URL: {exc}") from exc
    if parts.scheme not in SCHEMES:
        raise TargetRefused(f"{origin(url)}: only http and https URLs are sent to")
    host = parts.hostname
    if not host:
        raise TargetRefused(f"{origin(url)}: the URL names no host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused(f"{origin(url)}: credentials in the URL are refused "
                            "(the signature authenticates deliveries)")
    port = port or SCHEMES[parts.scheme]
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        addresses, literal = [host], True
    except ValueError:
        addresses, literal = resolve(host, port), False
    if not addresses:
        raise TargetUnresolved(f"{host} resolves to no address")
    for address in addresses:
        kind = _kind(address)
        if not _allowed(kind, policy):
            said = (f"{host} is a {kind} address" if literal
                    else f"{host} resolves to {address}, a {kind} address")
            raise TargetRefused(f"{origin(url)} refused: {said}{_HOW_TO_ALLOW.get(kind or '', '')}")
    return Target(parts.scheme, host, port, addresses[0])
