"""/v1/ served by Django without the middleware stack: the benchmark's hot path.

Under ASGI, every classic middleware (sessions, CSRF, auth, messages, security,
common, clickjacking, htmx) runs its request and response hooks through a thread
hop, in a thread Django starts for each request: about 14 hops a request, which cost
more than the whole turn. /v1/ needs none of them: it takes only bearer tokens (no
session, no cookie, so no CSRF), answers JSON, and checks the Host header itself.
Everything else (URL resolution, exception handling, the request signals, a client
disconnect cancelling the view) is Django's own ASGIHandler.

The security headers the middleware would have added (SecurityMiddleware's nosniff,
Referrer-Policy, Cross-Origin-Opener-Policy and HSTS, X-Frame-Options, a CSP) are a
fixed list built once from the settings and set on every response here: no hop. CORS
(an allowlist of origins, off by default) is django-cors-headers' own middleware, which
runs async and so costs no hop either.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import IO, Any, cast

from corsheaders.middleware import CorsMiddleware
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler, ASGIRequest
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponseBase

from llm.logs import record_user

OPENAI_PREFIX = "/v1/"

Scope = dict[str, Any]
Receive = Any
Send = Any

# JSON answers load nothing and belong in no frame.
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def security_headers() -> list[tuple[str, str]]:
    """What SecurityMiddleware, XFrameOptionsMiddleware and the CSP middleware put on every
    response, from the same settings (the CSP stricter: an API answer loads nothing);
    HSTS is apart (secure requests only)."""
    headers = [
        ("Content-Security-Policy", API_CSP),
        ("X-Frame-Options", settings.X_FRAME_OPTIONS),
    ]
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append(("X-Content-Type-Options", "nosniff"))
    policy = settings.SECURE_REFERRER_POLICY
    if policy:
        values = policy.split(",") if isinstance(policy, str) else policy
        headers.append(("Referrer-Policy", ",".join(v.strip() for v in values)))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
    return headers


def hsts_header() -> str | None:
    """Strict-Transport-Security as SecurityMiddleware writes it, or None when it is off."""
    if not settings.SECURE_HSTS_SECONDS:
        return None
    value = f"max-age={settings.SECURE_HSTS_SECONDS}"
    if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
        value += "; includeSubDomains"
    if settings.SECURE_HSTS_PRELOAD:
        value += "; preload"
    return value


class LeanASGIHandler(ASGIHandler):
    """Django's ASGI handler with an empty middleware list and the security headers."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        get_response = getattr(self, "_get_response_async")  # noqa: B009 (not in the stubs)
        # It wraps an async function, so it returns an awaitable (the stubs allow both).
        handler = Callable[[HttpRequest], Awaitable[HttpResponseBase]]
        chain = cast(
            handler, CorsMiddleware(cast(handler, convert_exception_to_response(get_response)))
        )
        self.headers = security_headers()
        hsts = hsts_header()

        async def secured(request: HttpRequest) -> HttpResponseBase:
            response = await chain(request)
            self.add_headers(response)
            # As SecurityMiddleware: HSTS only over HTTPS (SECURE_PROXY_SSL_HEADER counts).
            if hsts and request.is_secure():
                response.headers.setdefault("Strict-Transport-Security", hsts)
            record_user(request)  # for the request's log line (llm/logs.py)
            return response

        self._middleware_chain = secured

    def add_headers(self, response: HttpResponseBase) -> None:
        for name, value in self.headers:
            response.headers.setdefault(name, value)

    def create_request(
        self, scope: Mapping[str, Any], body_file: IO[bytes]
    ) -> tuple[ASGIRequest, None] | tuple[None, HttpResponseBase]:
        # A request Django cannot even build (undecodable path, body too large) is
        # answered without the chain: it gets the headers too.
        built = super().create_request(scope, body_file)
        if built[1] is not None:
            self.add_headers(built[1])
        return built

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
