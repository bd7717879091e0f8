"""Structured logs: a request id on every line, one line per HTTP request and per turn.

    with_request_id(app)  wraps the whole ASGI application (coppertone/asgi.py): every HTTP
                          request and WebSocket connection, /v1 included, gets a request id
                          (the caller's X-Request-ID when it is a sane token, else a new
                          one), kept in a ContextVar for its log lines, sent back as
                          X-Request-ID on every HTTP response, and logged with the
                          request's line (logger coppertone.access) once it has ended
    RequestIdFilter       puts that id on every log record, as `request_id`
    JsonFormatter         LOG_FORMAT=json: one JSON object a line, tracebacks redacted too
    turn_ended(...)       a turn's line (logger coppertone.turns), where every turn ends

A task copies the context it is created in (asyncio does so for every task, asgiref for
each thread hop), so a reply's runner task, which outlives its request, logs with the id
of the request that started it. Work that serves every request, such as the reply
runner's maintainer, starts in `detached()` so that it carries nobody's id.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.utils.functional import LazyObject
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from llm.events import TurnFinished
from llm.redaction import redact

__all__ = [
    "JsonFormatter",
    "RequestIdFilter",
    "current_request_id",
    "detached",
    "record_user",
    "turn_ended",
    "with_request_id",
]

access_log = logging.getLogger("coppertone.access")
turn_log = logging.getLogger("coppertone.turns")

HEADER = b"x-request-id"
# A caller's id is kept when it is a plain token: it goes into every log line as it is.
_SANE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Request:
    """What the log lines of one request or connection share; the user id is filled in
    by whatever authenticates the caller (record_user)."""

    __slots__ = ("request_id", "user_id")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.user_id: int | None = None


_current: contextvars.ContextVar[_Request | None] = contextvars.ContextVar(
    "coppertone_request", default=None
)


def current_request_id() -> str | None:
    request = _current.get()
    return request.request_id if request is not None else None


def request_id_for(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The caller's X-Request-ID if it is a sane token and no secret, else a new id."""
    for name, value in headers:
        if name.lower() == HEADER:
            try:
                text = value.decode("ascii")
            except UnicodeDecodeError:
                break
            if _SANE.fullmatch(text) and redact(text) == text:
                return text
            break
    return os.urandom(16).hex()


def detached() -> contextvars.Context:
    """A copy of the current context without the request: for tasks that serve everyone."""
    context = contextvars.copy_context()
    context.run(_current.set, None)
    return context


# --- the ASGI wrapper ------------------------------------------------------------------


def with_request_id(app: ASGIApp) -> ASGIApp:
    """`app` with a request id for every HTTP request and WebSocket connection."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await app(scope, receive, send)  # lifespan
            return
        request = _Request(request_id_for(scope.get("headers", ())))
        token = _current.set(request)
        try:
            if kind == "http":
                await _http(app, scope, receive, send, request)
            else:
                await app(scope, receive, send)
        finally:
            _current.reset(token)

    return wrapped


async def _http(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, request: _Request
) -> None:
    header = (HEADER, request.request_id.encode())
    status: int | None = None
    started = time.perf_counter()

    async def sending(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            message = {**message, "headers": [*message.get("headers", ()), header]}
        await send(message)

    try:
        await app(scope, receive, sending)
    finally:
        if access_log.isEnabledFor(logging.INFO):
            ms = (time.perf_counter() - started) * 1000
            # The path alone: a query string may carry what should not be kept.
            method, path = scope.get("method", ""), scope.get("path", "")
            access_log.info(
                "%s %s %s %.1f ms",
                method,
                path,
                status if status is not None else "-",
                ms,
                extra={
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": round(ms, 1),
                    "user_id": request.user_id,
                },
            )


# --- who the caller was -----------------------------------------------------------------


def _unwrapped(user: Any) -> Any:
    # A lazy user nobody looked at stays unread: no session query just for the log.
    if isinstance(user, LazyObject):
        user = user._wrapped  # `empty` until something read it
    return user


def record_user(request: HttpRequest) -> None:
    """Put the request's user on its access line, if the request authenticated one."""
    current = _current.get()
    if current is None:
        return
    fields = request.__dict__
    for name in ("user", "_acached_user"):  # set by a view or decorator; auser()'s cache
        user = _unwrapped(fields.get(name))
        if getattr(user, "is_authenticated", False):
            current.user_id = user.pk
            return


def record_user_middleware(
    get_response: Callable[[HttpRequest], Any],
) -> Callable[[HttpRequest], Any]:
    """Middleware: record_user after the view, in the chain's own mode (no thread hop)."""
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponseBase:
            response: HttpResponseBase = await get_response(request)
            record_user(request)
            return response

        return markcoroutinefunction(middleware)

    def sync_middleware(request: HttpRequest) -> HttpResponseBase:
        response: HttpResponseBase = get_response(request)
        record_user(request)
        return response

    return sync_middleware


record_user_middleware.sync_capable = True  # type: ignore[attr-defined]
record_user_middleware.async_capable = True  # type: ignore[attr-defined]


# --- the lines -------------------------------------------------------------------------


class RequestIdFilter(logging.Filter):
    """Every record gets `request_id`: the id of the request it was logged for, or None."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = _current.get()
        record.request_id = request.request_id if request is not None else None
        return True


class JsonFormatter(_JsonFormatter):
    """One JSON object a line: time, level, logger, message, request_id and any fields.

    python-json-logger formats a traceback from the exception itself, not from the text
    the redaction filter cleaned, so it is redacted here again."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "%(levelname)s %(name)s %(message)s")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", "time")
        super().__init__(*args, **kwargs)

    def formatException(self, ei: Any) -> Any:  # noqa: N802 (logging's name)
        text = super().formatException(ei)
        return [redact(line) for line in text] if isinstance(text, list) else redact(text)

    def formatStack(self, stack_info: str) -> Any:  # noqa: N802 (logging's name)
        text = super().formatStack(stack_info)
        return [redact(line) for line in text] if isinstance(text, list) else redact(text)


def turn_ended(finished: TurnFinished, user_id: int) -> None:
    """The line every ended turn logs: who answered, how it ended, its tokens, cost, times."""
    if not turn_log.isEnabledFor(logging.INFO):
        return
    error = finished.error.code if finished.error is not None else None
    turn_log.info(
        "reply %s %s: %s/%s, %d+%d tokens, $%s, first token %s ms, %.0f ms",
        finished.message_id,
        error or finished.status,
        finished.provider,
        finished.model,
        finished.input_tokens,
        finished.output_tokens,
        finished.cost,
        "-" if finished.ttft_ms is None else f"{finished.ttft_ms:.0f}",
        finished.latency_ms,
        extra={
            "message_id": finished.message_id,
            "conversation_id": finished.conversation_id,
            "user_id": user_id,
            "provider": finished.provider,
            "model": finished.model,
            "status": finished.status,
            "error_code": error,
            "input_tokens": finished.input_tokens,
            "output_tokens": finished.output_tokens,
            "cost": float(finished.cost),
            "ttft_ms": None if finished.ttft_ms is None else round(finished.ttft_ms, 1),
            "latency_ms": round(finished.latency_ms, 1),
            "cached": finished.cached,
        },
    )
