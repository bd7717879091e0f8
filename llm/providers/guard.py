"""The outbound URL guard: which hosts Coppertone may fetch a user-entered base URL from.

http and https only; never link-local or cloud metadata addresses, whatever the
operator allows; loopback and private ranges only where the operator's allowlist
(LLM_PRIVATE_HOSTS: addresses and networks, each with an optional port) names them, as
local servers such as Ollama need. An IPv6 address that carries an IPv4 one (NAT64
64:ff9b::/96, IPv4-compatible ::a.b.c.d, 6to4, IPv4-mapped) is judged as that IPv4
address, and site-local fec0::/10 as private, though Python calls some of them global.
`check_url` judges the text (forms call it when a base URL is saved, adapters before
every call); `guarded_socket` judges the address
each socket actually connects to, so a name that resolves somewhere forbidden, or
changes its answer between the two checks, is still refused.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from llm.providers.base import Refused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata services answer on these names and addresses with credentials for the
# machine itself, so they are never reachable, whatever the operator allows.
METADATA_HOSTS = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
NEVER = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",  # link-local, AWS/GCP/Azure/OpenStack metadata
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "224.0.0.0/4",  # multicast
        "ff00::/8",
        "255.255.255.255/32",
    )
)


class GuardRefusal(OSError):
    """Raised from the socket factory; one constant text so aiohttp passes it through."""

    def __init__(self, reason: str) -> None:
        super().__init__("refused by the outbound address guard")
        self.reason = reason


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPATIBLE = ipaddress.ip_network("::/96")
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")


@dataclass(frozen=True, slots=True)
class PrivateHosts:
    """The operator's allowlist of private and loopback addresses: (network, port or None)."""

    entries: tuple[tuple[IPNetwork, int | None], ...] = ()

    @classmethod
    def parse(cls, items: tuple[str, ...]) -> PrivateHosts:
        """From `127.0.0.1:11434`, `10.1.0.0/16`, `[::1]:8080`, `::1`. Raises ValueError."""
        return _parse(tuple(item.strip() for item in items if item.strip()))

    def allows(self, ip: IPAddress, port: int | None) -> bool:
        return any(
            ip.version == net.version and ip in net and (want is None or port == want)
            for net, want in self.entries
        )


@functools.lru_cache(maxsize=32)
def _parse(items: tuple[str, ...]) -> PrivateHosts:
    entries = []
    for item in items:
        text, port = item, None
        try:
            if text.startswith("["):  # [v6]:port
                text, _, rest = text[1:].partition("]")
                port = int(rest[1:]) if rest.startswith(":") else None
            elif text.count(":") == 1:  # v4:port
                text, _, number = text.partition(":")
                port = int(number)
            entries.append((ipaddress.ip_network(text, strict=False), port))
        except ValueError:
            raise ValueError(
                f"{item!r} is not an address or a network: write it like 127.0.0.1:11434, "
                "10.1.0.0/16 or [::1]:8080"
            ) from None
    return PrivateHosts(tuple(entries))


def as_ipv4(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped, NAT64, compatible, 6to4), else `ip`."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def _refusal(ip: IPAddress, private: PrivateHosts, port: int | None = None) -> str | None:
    """Why Coppertone will not connect to `ip` (on `port`), or None if it may."""
    ip = as_ipv4(ip)
    if any(ip in net for net in NEVER if net.version == ip.version):
        return "it is a link-local or cloud metadata address, which is never allowed"
    public = ip.is_global and not (ip.version == 6 and ip in _SITE_LOCAL)
    if not public and not private.allows(ip, port):
        return (
            "it is a private or loopback address that this server does not allow (the "
            "operator can add it to LLM_PRIVATE_HOSTS)"
        )
    return None


def _ip(text: str) -> IPAddress | None:
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(text.split("%", 1)[0])
    return None


def check_url(url: str, *, private: PrivateHosts) -> None:
    """Refuse a base URL Coppertone must not fetch. Raises Refused with the reason.

    Only the text is checked here (no DNS lookup, so a form can call it); every
    connection is checked again on the address it actually reaches.
    """
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").rstrip(".").lower()
        _ = parts.port  # raises ValueError on a port that is not a number
    except ValueError:
        raise Refused("The base URL is not a valid URL.") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise Refused("The base URL must start with http:// or https://.")
    if not host:
        raise Refused("The base URL has no host name.")
    if parts.username is not None or parts.password is not None:
        raise Refused("Put the key in the API key field, not in the base URL.")
    if host in METADATA_HOSTS:
        raise Refused(f"Coppertone will not connect to {host}: it is a cloud metadata service.")
    ip = _ip(host)
    if ip is not None:
        reason = _refusal(ip, private, parts.port or _DEFAULT_PORTS.get(parts.scheme.lower()))
        if reason:
            raise Refused(f"Coppertone will not connect to {host}: {reason}.")
    elif host == "localhost" or host.endswith(".localhost"):
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
        reason = _refusal(_LOOPBACK, private, port)
        if reason:
            raise Refused(f"Coppertone will not connect to {host}: {reason}.")


_LOOPBACK = ipaddress.ip_address("127.0.0.1")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def guarded_socket(private: PrivateHosts) -> Callable[[Any], socket.socket]:
    def factory(addr_info: Any) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        ip = _ip(str(sockaddr[0]))
        port = int(sockaddr[1]) if len(sockaddr) > 1 else None
        reason = "it is not an IP address" if ip is None else _refusal(ip, private, port)
        if reason:
            raise GuardRefusal(reason)
        return socket.socket(family=family, type=type_, proto=proto)

    return factory
