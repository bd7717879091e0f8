"""Acceptance cases: an idle unauthenticated socket and a slowloris client are timed out
by the server's protocol (coppertone/http_protocol.py), while a prompt request, a
keep-alive connection and a WebSocket handshake are served as before."""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from coppertone import http_protocol
from coppertone.http_protocol import HeaderDeadline
from tests.live import serving

pytestmark = pytest.mark.django_db(transaction=True)

DEADLINE = 0.5


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, int]]:
    monkeypatch.setattr(http_protocol, "HEADER_TIMEOUT", DEADLINE)
    with serving(http=HeaderDeadline) as base:
        parts = urlsplit(base)
        assert parts.hostname is not None and parts.port is not None
        yield parts.hostname, parts.port


def closed_after(sock: socket.socket, limit: float, trickle: bytes = b"") -> float:
    """Seconds until the server closed `sock`, sending `trickle` a byte at a time."""
    started = time.monotonic()
    sock.settimeout(0.1)
    sent = 0
    while time.monotonic() - started < limit:
        if sent < len(trickle):
            try:
                sock.sendall(trickle[sent : sent + 1])
            except OSError:
                return time.monotonic() - started
            sent += 1
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
    raise AssertionError(f"still open after {limit} s")


def test_an_idle_unauthenticated_socket_is_closed(server: tuple[str, int]) -> None:
    with socket.create_connection(server) as sock:
        assert closed_after(sock, 5) < DEADLINE + 1.5


def test_a_slowloris_client_is_closed_however_it_trickles(server: tuple[str, int]) -> None:
    headers = b"GET /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"a" * 500
    with socket.create_connection(server) as sock:
        # A byte every 0.1 s keeps arriving, yet the headers never complete in time.
        assert closed_after(sock, 5, trickle=headers) < DEADLINE + 1.5


def test_a_prompt_request_and_its_keep_alive_successor_are_served(
    server: tuple[str, int],
) -> None:
    connection = http.client.HTTPConnection(*server, timeout=5)
    sockets = []
    for _ in range(2):
        time.sleep(DEADLINE * 1.5)  # longer than the deadline, between requests
        connection.request("GET", "/accounts/login/")
        response = connection.getresponse()
        assert response.status == 200 and b"Sign in" in response.read()
        sockets.append(connection.sock)
    assert sockets[0] is sockets[1] is not None  # one connection, kept alive
    connection.close()


def test_a_websocket_handshake_is_answered_by_the_hub(server: tuple[str, int]) -> None:
    handshake = (
        b"GET /ws/chat/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1\r\n\r\n"
    )
    with socket.create_connection(server) as sock:
        sock.settimeout(5)
        sock.sendall(handshake)
        answer = sock.recv(4096)
        # No session: refused by the hub itself (403), not cut by the deadline.
        assert answer.startswith(b"HTTP/1.1 403")
