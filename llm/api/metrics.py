"""GET /metrics: every worker's Prometheus metrics, for the operator's scraper only.

Readable by a direct request from METRICS_ALLOWED_NETWORKS (default loopback), or by any
request with `Authorization: Bearer <METRICS_TOKEN>` (compared in constant time). A
request that came through a proxy (X-Forwarded-For, Forwarded, X-Real-IP) is not judged
by its address: behind a proxy on the same machine every caller would look local, so
it needs the token. Everyone else gets 404, the answer for a path that does not exist,
so that the endpoint is not revealed.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.http.response import HttpResponseBase
from prometheus_client import CONTENT_TYPE_LATEST

from llm import metrics_store
from llm.api.base import bearer_token

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


def parse_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """METRICS_ALLOWED_NETWORKS as networks; ValueError names the entry that is not one."""
    networks: list[Network] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an address or a network (like 10.0.0.0/8 or ::1)"
            ) from None
    return tuple(networks)


@functools.cache
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    try:
        return parse_networks(entries)
    except ValueError:
        return ()  # the system check says what is wrong; meanwhile nobody is let in


def _digest(text: str) -> bytes:
    # Digests of both sides: the comparison takes as long whatever their lengths.
    return hashlib.sha256(text.encode()).digest()


def _token_matches(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    presented = bearer_token(request)
    if not expected or presented is None:
        return False
    return hmac.compare_digest(_digest(presented), _digest(expected))


def _from_allowed_network(request: HttpRequest) -> bool:
    if any(name in request.headers for name in PROXY_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    networks = _networks(tuple(settings.METRICS_ALLOWED_NETWORKS))
    return any(address in network for network in networks)


def allowed(request: HttpRequest) -> bool:
    """Whether this request may read the metrics: the token, or a direct allowed address."""
    return _token_matches(request) or _from_allowed_network(request)


def metrics(request: HttpRequest) -> HttpResponseBase:
    if not allowed(request):
        raise Http404  # before the method: a refused caller learns nothing
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    return HttpResponse(metrics_store.exposition(), content_type=CONTENT_TYPE_LATEST)
