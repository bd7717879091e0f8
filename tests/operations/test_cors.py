"""CORS: off by default; for /api/v1/ and /v1/ (the lean handler too) only an allowed
origin gets the headers; the session-cookie pages never do."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client

from tests.live import serving

pytestmark = pytest.mark.django_db(transaction=True)

ALLOWED = "https://app.example.com"
REFUSED = "https://evil.example.net"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


@pytest.fixture
def origins(settings: Any) -> None:
    settings.CORS_ALLOWED_ORIGINS = [ALLOWED]


def preflight(client: Client, path: str, origin: str) -> Any:
    return client.options(path, headers={"Origin": origin, **PREFLIGHT})


def assert_allowed(headers: Any, origin: str = ALLOWED) -> None:
    assert headers["Access-Control-Allow-Origin"] == origin
    methods = headers["Access-Control-Allow-Methods"]
    assert "POST" in methods and "GET" in methods
    allowed = headers["Access-Control-Allow-Headers"]
    assert "authorization" in allowed and "content-type" in allowed
    assert "Access-Control-Allow-Credentials" not in headers  # tokens, never cookies


def assert_no_cors(headers: Any) -> None:
    assert not [name for name in headers if name.lower().startswith("access-control-")]


@pytest.mark.usefixtures("origins")
@pytest.mark.parametrize("path", ["/api/v1/chat", "/api/v1/conversations/7"])
def test_an_allowed_origins_preflight_on_the_api_gets_the_headers(
    client: Client, path: str
) -> None:
    response = preflight(client, path, ALLOWED)
    assert response.status_code == 200
    assert_allowed(response.headers)
    assert response["Access-Control-Max-Age"]


@pytest.mark.usefixtures("origins")
def test_a_refused_origins_preflight_on_the_api_gets_none(client: Client) -> None:
    response = preflight(client, "/api/v1/chat", REFUSED)
    assert_no_cors(response.headers)


def test_no_origin_is_allowed_by_default(client: Client) -> None:
    assert_no_cors(preflight(client, "/api/v1/chat", ALLOWED).headers)
    assert_no_cors(client.get("/api/v1/health", headers={"Origin": ALLOWED}).headers)


@pytest.mark.usefixtures("origins")
def test_an_allowed_origin_may_read_the_answer_and_its_request_id(client: Client) -> None:
    response = client.get("/api/v1/health", headers={"Origin": ALLOWED})
    assert response["Access-Control-Allow-Origin"] == ALLOWED
    assert "X-Request-ID" in response["Access-Control-Expose-Headers"]
    assert "origin" in response["Vary"].lower()
    assert_no_cors(client.get("/api/v1/health", headers={"Origin": REFUSED}).headers)


@pytest.mark.usefixtures("origins")
@pytest.mark.parametrize("path", ["/", "/accounts/login/", "/conversations/", "/metrics"])
def test_the_pages_never_answer_cross_origin(client: Client, path: str) -> None:
    assert_no_cors(preflight(client, path, ALLOWED).headers)
    assert_no_cors(client.get(path, headers={"Origin": ALLOWED}).headers)


@pytest.fixture
def v1(transactional_db: None, origins: None) -> Iterator[tuple[str, int]]:
    """/v1 is served by the lean handler, which only the whole ASGI app routes to."""
    with serving() as url:
        parts = urlsplit(url)
        yield str(parts.hostname), int(parts.port or 80)


def ask(server: tuple[str, int], method: str, path: str, **headers: str) -> Any:
    conn = http.client.HTTPConnection(*server, timeout=20)
    conn.request(method, path, headers=headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def test_v1_preflight_from_an_allowed_origin_gets_the_headers(v1: tuple[str, int]) -> None:
    response = ask(v1, "OPTIONS", "/v1/chat/completions", Origin=ALLOWED, **PREFLIGHT)
    assert response.status == 200
    assert_allowed(response.headers)
    # The lean handler's own headers are still there.
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_v1_preflight_from_a_refused_origin_gets_none(v1: tuple[str, int]) -> None:
    response = ask(v1, "OPTIONS", "/v1/chat/completions", Origin=REFUSED, **PREFLIGHT)
    assert_no_cors(response.headers)


def test_v1_errors_are_readable_by_an_allowed_origin_only(v1: tuple[str, int]) -> None:
    allowed = ask(v1, "GET", "/v1/models", Origin=ALLOWED)
    assert allowed.status == 401
    assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert_no_cors(ask(v1, "GET", "/v1/models", Origin=REFUSED).headers)
