"""The machinery every fake provider shares: a real aiohttp server in its own thread.

Each fake (OpenAI-compatible, Anthropic, Gemini) is one `FakeServer` subclass that
knows its wire format; this module runs it on 127.0.0.1 on a free port, in a thread
with its own event loop, so one session-scoped server serves sync tests, async tests
on any loop, and a live server or browser alike. See tests/fakes/fixtures.py for the
handle's API as tests use it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Self

from aiohttp import web

from llm.providers.base import Credentials

End = Literal[
    "done",
    "early",
    "silence",
    "drop",
    "error",
    "hold",
    "huge_line",
    "huge_event",
    "drip",
    "endless",
]
Split = Literal["", "utf8", "event"]

# Long enough for any test to give up first; short enough that a forgotten stream ends.
SILENCE_SECONDS = 30.0
# A hostile stream (drip, endless) stops by itself after this long, if nobody hung up.
HOSTILE_SECONDS = 300.0
HUGE_BYTES = 16 * 1024 * 1024
DEFAULT_TEXT = "Hello from the fake provider."


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    json: Any
    url: str  # path and query string, exactly as sent
    peer_port: int = 0  # the client's port: the same port twice means a reused connection


@dataclass(frozen=True)
class Plan:
    """How the fake answers one chat request."""

    text: str = DEFAULT_TEXT
    chunks: tuple[str, ...] | None = None
    delay: float = 0.0
    first_byte_delay: float = 0.0
    usage: tuple[int, int] | None = None
    finish_reason: str = ""  # the wire format's own "stopped normally" when empty
    status: int = 200
    retry_after: str | None = None
    body: str | dict[str, Any] | None = None
    html: bool = False
    end: End = "done"
    malformed: bool = False
    line_ending: str = "\n"
    keepalive: bool = False
    split: Split = ""
    content_type: str = "text/event-stream; charset=utf-8"
    huge_bytes: int = HUGE_BYTES  # the size of a huge_line or huge_event ending
    drip_every: float = 59.0  # seconds between the bytes of a drip ending
    # Reasoning streamed before the text, in the wire format's own shape.
    thinking: str = ""
    # OpenAI dialect: "reasoning_content" (DeepSeek, vLLM), "reasoning" (Ollama,
    # newer vLLM) or "think_tags" (<think>…</think> at the start of the content).
    thinking_field: str = "reasoning_content"
    redacted_thinking: bool = False  # Anthropic: a redacted_thinking block too
    null_finish: bool = False  # Gemini dialect: "finishReason": null until the last chunk

    def pieces(self) -> list[str]:
        if self.chunks is not None:
            return list(self.chunks)
        return chunked(self.text) or [""]

    def thinking_pieces(self) -> list[str]:
        return chunked(self.thinking)

    def tokens(self) -> tuple[int, int]:
        return self.usage if self.usage is not None else (12, len(self.pieces()))


def chunked(text: str, size: int = 4) -> list[str]:
    """A few characters each, like real token streams; never splits a code point."""
    return [text[i : i + size] for i in range(0, len(text), size)]


@dataclass
class Frames:
    """A streamed reply in one wire format, as SSE frames (each ends with a blank line)."""

    head: list[str]
    content: list[str]
    tail: list[str]
    tail_early: list[str]  # the tail without the event that marks a finished reply
    error: str  # an error event sent in the middle of the stream
    malformed: str  # a frame whose JSON does not parse
    # For formats whose last content frame carries the end (Gemini's finishReason):
    # the content without it, for the "early" ending.
    early_content: list[str] | None = None


def sse(data: Any, event: str | None = None) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n"


HTML_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
    "<body><h1>Welcome to the router admin</h1><p>Please sign in.</p></body></html>\n"
)

SCENARIOS: dict[str, dict[str, Any]] = {
    "silence": {"end": "silence"},
    "drop": {"end": "drop"},
    "early_end": {"end": "early"},
    "hold_open": {"end": "hold"},
    "error_midstream": {"end": "error"},
    "malformed_json": {"malformed": True},
    "html_200": {"html": True},
    "split_utf8": {"split": "utf8", "text": "Café ☕ naïve 😀 ok"},
    "split_event": {"split": "event"},
    "crlf": {"line_ending": "\r\n"},
    "keepalive": {"keepalive": True},
    # A Gemini-dialect server (LiteLLM's) that sends "finishReason": null on every chunk.
    "finish_reason_null": {"null_finish": True},
    # A hostile upstream: half the reply, then one 16 MB `data:` line with no newline...
    "huge_line": {"end": "huge_line"},
    # ...or one event of 16 MB in `data:` lines of 64 KB that never reaches its blank line,
    "huge_event": {"end": "huge_event"},
    # ...or one byte (a newline) every `drip_every` seconds, forever, each within any
    # idle timeout,
    "drip": {"end": "drip"},
    # ...or the reply's content frames over and over, never the end.
    "endless": {"end": "endless"},
}


class FakeServer:
    """A fake provider. Subclasses add routes and speak their wire format."""

    name = "fake"
    api_key = "sk-fake-key-0000"
    default_models: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.port = 0
        self.host = "127.0.0.1"
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._closed = threading.Event()
        self.reset()

    # --- the handle tests use ---------------------------------------------------

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What a user pastes as the base URL for this kind."""
        return self.origin

    def credentials(self, **overrides: str) -> Credentials:
        values = {"api_key": self.api_key, "base_url": self.base_url, **overrides}
        return Credentials(**values)

    def reset(self) -> None:
        with self._lock:
            self._plans: list[Plan] = []
            self._last_used = False  # the repeating last answer has served a request
            self.requests: list[Recorded] = []
            self.models: list[str] = list(self.default_models)
            self.require_key = True
            self.chunked_json = False
        self._closed.clear()

    def reply(
        self,
        text: str = DEFAULT_TEXT,
        *,
        chunks: list[str] | tuple[str, ...] | None = None,
        delay: float = 0.0,
        first_byte_delay: float = 0.0,
        usage: tuple[int, int] | None = None,
        finish_reason: str = "",
        thinking: str = "",
        **scenario: Any,
    ) -> Self:
        chunk_tuple = tuple(chunks) if chunks is not None else None
        plan = Plan(
            text="".join(chunk_tuple) if chunk_tuple is not None else text,
            chunks=chunk_tuple,
            delay=delay,
            first_byte_delay=first_byte_delay,
            usage=usage,
            finish_reason=finish_reason,
            thinking=thinking,
            **scenario,
        )
        return self._queue(plan)

    def fail(
        self,
        status: int,
        *,
        retry_after: float | str | None = None,
        body: str | dict[str, Any] | None = None,
        first_byte_delay: float = 0.0,
    ) -> Self:
        ra = None if retry_after is None else str(retry_after)
        return self._queue(
            Plan(status=status, retry_after=ra, body=body, first_byte_delay=first_byte_delay)
        )

    def scenario(self, name: str, text: str | None = None, **overrides: Any) -> Self:
        """Queue a named misbehaviour (see SCENARIOS); keyword arguments as for reply()."""
        options = {**SCENARIOS[name], **overrides}
        if text is not None:
            options["text"] = text
        return self.reply(**options)

    def wait_closed(self, timeout: float) -> bool:
        """Block until a client closed a stream before it finished (sync tests)."""
        return self._closed.wait(timeout)

    async def closed(self, timeout: float) -> bool:
        """Like wait_closed, without blocking the caller's event loop (async tests)."""
        deadline = time.monotonic() + timeout
        while not self._closed.is_set():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    @property
    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST"]

    # --- running -----------------------------------------------------------------

    def start(self) -> Self:
        quiet_server_logs()
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"fake-{self.name}", daemon=True
        )
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"the fake {self.name} server did not start")
        return self

    def stop(self) -> None:
        loop, runner = self._loop, self._runner
        if loop is None or runner is None:
            return
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        app = web.Application(middlewares=[self._record])
        self.routes(app)
        # handler_cancellation: a client closing the connection cancels the handler,
        # which is how a stream that goes silent notices the client left.
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, self.host, 0)
        loop.run_until_complete(site.start())
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]
        self._runner = runner
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        recorded = Recorded(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            json=body,
            url=request.path_qs,
            peer_port=_peer_port(request),
        )
        with self._lock:
            self.requests.append(recorded)
        response: web.StreamResponse = await handler(request)
        return response

    def next_plan(self) -> Plan:
        """The queued answers are used in order; the last one repeats."""
        with self._lock:
            if not self._plans:
                return Plan()
            if len(self._plans) > 1:
                return self._plans.pop(0)
            self._last_used = True
            return self._plans[0]

    def _queue(self, plan: Plan) -> Self:
        with self._lock:
            # Once the repeating answer has been used, what is queued next replaces it:
            # reply("a"), a request, reply("b") answers the next request with "b".
            if self._last_used:
                self._plans.clear()
                self._last_used = False
            self._plans.append(plan)
        return self

    # --- answering ---------------------------------------------------------------

    async def answer_chat(
        self,
        request: web.Request,
        *,
        stream: bool,
        frames: Callable[[Plan], Frames],
        whole: Callable[[Plan], dict[str, Any]],
        error: Callable[[Plan], web.Response],
        adjust: Callable[[Plan], Plan] | None = None,
    ) -> web.StreamResponse:
        """Answer one chat request by the next plan, in the subclass's wire format."""
        plan = self.next_plan()
        if adjust is not None:
            plan = adjust(plan)
        try:
            if plan.first_byte_delay:
                await asyncio.sleep(plan.first_byte_delay)
            if plan.status != 200 or plan.body is not None:
                return error(plan)  # fail(200, body=...) is an error body with status 200
            if plan.html:
                return web.Response(text=HTML_PAGE, content_type="text/html")
            if not stream:
                if plan.malformed:
                    return web.Response(
                        text='{"id": "broken", "choices": [', content_type="application/json"
                    )
                return web.json_response(whole(plan))
            return await self._write_stream(request, plan, frames(plan))
        except (asyncio.CancelledError, ConnectionError):
            self._closed.set()
            raise

    async def _write_stream(
        self, request: web.Request, plan: Plan, frames: Frames
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": plan.content_type,
                "Cache-Control": "no-cache",
            }
        )
        await response.prepare(request)
        content = list(frames.content)
        if plan.malformed:
            content[0] = frames.malformed
        half = content[: max(1, len(content) // 2)]
        sequence: Iterable[str]
        if plan.end in ("done", "hold"):
            sequence, tail = content, frames.tail
        elif plan.end == "early":
            sequence, tail = frames.early_content or content, frames.tail_early
        elif plan.end == "error":
            sequence, tail = half, [frames.error]
        elif plan.end == "endless":
            until = time.monotonic() + HOSTILE_SECONDS
            endless = itertools.cycle(frames.early_content or content)
            sequence = itertools.takewhile(lambda _: time.monotonic() < until, endless)
            tail = []
        else:
            sequence, tail = half, []

        for frame in frames.head:
            await self._send(response, plan, frame)
        for i, frame in enumerate(sequence):
            if i and plan.delay:
                await asyncio.sleep(plan.delay)
            if plan.keepalive:
                await self._send(response, plan, ": keep-alive\n\n")
            await self._send(response, plan, frame)
        for frame in tail:
            await self._send(response, plan, frame)

        if plan.end in ("huge_line", "huge_event", "drip"):
            await self._hostile(response, plan)
        if plan.end in ("silence", "hold", "huge_line", "huge_event"):
            await asyncio.sleep(SILENCE_SECONDS)
        elif plan.end == "drop":
            # Close the socket without the final empty chunk: the client sees the
            # connection vanish in the middle of the body.
            transport = request.transport
            if transport is not None:
                transport.close()
            return response
        await response.write_eof()
        return response

    async def _hostile(self, response: web.StreamResponse, plan: Plan) -> None:
        """The ending of a server that means harm; it stops only when the client hangs up."""
        if plan.end == "drip":
            until = time.monotonic() + HOSTILE_SECONDS
            while time.monotonic() < until:
                await asyncio.sleep(plan.drip_every)
                await response.write(b"\n")  # a blank line: no event, but a byte
            return
        piece = 64 * 1024
        if plan.end == "huge_line":
            await response.write(b'data: {"choices": "')
            filler = b"x" * piece
        else:
            filler = b"data: " + b"x" * (piece - 7) + b"\n"
        for _ in range(plan.huge_bytes // piece):
            await response.write(filler)

    async def _send(self, response: web.StreamResponse, plan: Plan, frame: str) -> None:
        data = frame.replace("\n", plan.line_ending).encode()
        cut = 0
        if plan.split == "event":
            cut = len(data) // 2
        elif plan.split == "utf8":
            # After the first byte of the first multi-byte character: the rest of that
            # character arrives in the next network write.
            lead = next((i for i, b in enumerate(data) if b >= 0xC0), -1)
            cut = lead + 1 if lead >= 0 else 0
        if cut:
            await response.write(data[:cut])
            await asyncio.sleep(0.005)  # so the two halves reach the client as two reads
            await response.write(data[cut:])
        else:
            await response.write(data)

    async def json_answer(self, request: web.Request, data: Any) -> web.StreamResponse:
        """A JSON document; with `chunked_json`, sent in two writes and no Content-Length."""
        if not self.chunked_json:
            return web.json_response(data)
        body = json.dumps(data).encode()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        await asyncio.sleep(0.02)  # so the client sees the two halves as two reads
        await response.write(body[len(body) // 2 :])
        await response.write_eof()
        return response

    def auth_ok(self, presented: str | None) -> bool:
        if not self.require_key:
            return True
        return presented == self.api_key


def quiet_server_logs() -> None:
    """A dropped connection is the point of some scenarios, not news."""
    for name in ("aiohttp.server", "aiohttp.web", "aiohttp.access"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _peer_port(request: web.Request) -> int:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return int(peer[1]) if peer else 0
