"""The outbound URL guard: which hosts Coppertone may fetch a user-entered base URL from.

http and https only; never link-local or cloud metadata addresses, whatever the
operator allows; loopback and private ranges only with LLM_ALLOW_PRIVATE_HOSTS (local
servers such as Ollama need them). `check_url` judges the text (forms call it when a
base URL is saved, adapters before every call); `guarded_socket` judges the address
each socket actually connects to, so a name that resolves somewhere forbidden, or
changes its answer between the two checks, is still refused.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Callable
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


def _refusal(ip: IPAddress, allow_private: bool) -> str | None:
    """Why Coppertone will not connect to `ip`, or None if it may."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in NEVER if net.version == ip.version):
        return "it is a link-local or cloud metadata address, which is never allowed"
    if not ip.is_global and not allow_private:
        return (
            "it is a private or loopback address, and this server does not allow those "
            "(the operator can turn on LLM_ALLOW_PRIVATE_HOSTS)"
        )
    return None


def _ip(text: str) -> IPAddress | None:
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(text.split("%", 1)[0])
    return None


def check_url(url: str, *, allow_private: bool) -> None:
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
        reason = _refusal(ip, allow_private)
        if reason:
            raise Refused(f"Coppertone will not connect to {host}: {reason}.")
    elif (host == "localhost" or host.endswith(".localhost")) and not allow_private:
        raise Refused(f"Coppertone will not connect to {host}: {_refusal(_LOOPBACK, False)}.")


_LOOPBACK = ipaddress.ip_address("127.0.0.1")


def guarded_socket(allow_private: bool) -> Callable[[Any], socket.socket]:
    def factory(addr_info: Any) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        ip = _ip(str(sockaddr[0]))
        reason = "it is not an IP address" if ip is None else _refusal(ip, allow_private)
        if reason:
            raise GuardRefusal(reason)
        return socket.socket(family=family, type=type_, proto=proto)

    return factory
