"""/v1/ served by Django without the middleware stack: the benchmark's hot path.

Under ASGI, every classic middleware (sessions, CSRF, auth, messages, security,
common, clickjacking, htmx) runs its request and response hooks through a thread
hop, in a thread Django starts for each request: about 14 hops a request, which cost
more than the whole turn. /v1/ needs none of them: it takes only bearer tokens (no
session, no cookie, so no CSRF), answers JSON, and checks the Host header itself.
Everything else (URL resolution, exception handling, the request signals, a client
disconnect cancelling the view) is Django's own ASGIHandler.
"""

from __future__ import annotations

from typing import Any

from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response

OPENAI_PREFIX = "/v1/"

Scope = dict[str, Any]
Receive = Any
Send = Any


class LeanASGIHandler(ASGIHandler):
    """Django's ASGI handler with an empty middleware list."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        get_response = getattr(self, "_get_response_async")  # noqa: B009 (not in the stubs)
        self._middleware_chain = convert_exception_to_response(get_response)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # No ThreadSensitiveContext: it starts a thread per request for the few
        # thread-sensitive calls left (the request signals), which then share
        # Django's one sync thread instead.
        await self.handle(scope, receive, send)


def with_lean_openai(app: Any) -> Any:
    """An ASGI app that sends /v1/ to the lean handler and everything else to `app`."""
    lean = LeanASGIHandler()

    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(OPENAI_PREFIX):
            await lean(scope, receive, send)
        else:
            await app(scope, receive, send)

    return route
