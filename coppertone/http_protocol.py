"""uvicorn's HTTP protocol with a deadline on every request's headers.

uvicorn times out an idle keep-alive connection, but not one that never finishes its
request line and headers: a client that opens sockets and sends a byte a minute
(slowloris), or nothing at all, holds each one for ever, and with it a file
descriptor and memory, before any of the hub's own checks can run. This protocol closes
a connection whose headers are not complete `HTTP_HEADER_TIMEOUT` seconds (default 10)
after it opened, or after the first byte of its next request. A WebSocket upgrade is
covered the same way (its handshake is a request). Run uvicorn with
`--http coppertone.http_protocol:HeaderDeadline` (the Dockerfile and compose.yaml do).
"""

from __future__ import annotations

import asyncio
import os

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT = float(os.environ.get("HTTP_HEADER_TIMEOUT", "10"))


class HeaderDeadline(HttpToolsProtocol):
    """HttpToolsProtocol, closing a connection whose request headers come too slowly."""

    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(HEADER_TIMEOUT, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()
