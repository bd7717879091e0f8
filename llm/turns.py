"""THE engine: one chat turn, from a person's text to a finished, stored reply.

Every transport (WebSocket, HTTP/SSE, /v1, MQTT, the `chat` command) iterates a `Turn`:

    TurnStarted, TextDelta…, TurnFinished        or TurnError before anything at all

The database work is two trips off the event loop, each one transaction
(DESIGN.md, "The one data flow"):
  start   limits, the person's provider settings, the conversation (created, or locked
          and touched), the user's message and the assistant's row (`streaming`) in one
          INSERT, and the history the provider is sent;
  finish  the reply's text, status, tokens, cost and timings, and the DailyUsage row.
Between them the text is written at most every PROGRESS_SECONDS, never per token, in
a background task so that a slow write never holds a token back.

Stop and disconnect: the transport cancels the task iterating the turn. The engine
closes the upstream request, stores the text so far as `stopped`, sets `turn.result`
and lets the CancelledError go on. When the cancel lands in the transport's own code
instead (between two events), `await turn.aclose()` does the same; transports iterate
inside `contextlib.aclosing(turn)` so that this always happens.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, TypeVar

from django.conf import settings
from django.db import OperationalError

from accounts.models import User
from llm import crypto
from llm.models import ProviderConfig, provider_options
from llm.providers import registry
from llm.providers.base import (
    ChatMessage,
    Credentials,
    Done,
    ProviderError,
    TextDelta,
    Usage,
)
from llm.turn_trips import (
    COMPLETE,
    ERROR,
    INTERRUPTED,
    SETTINGS_PAGE,
    STOPPED,
    Plan,
    TurnError,
    TurnFinished,
    TurnStarted,
    TurnTrips,
    estimate_tokens,
    finish_trip,
    progress_trip,
    start_trip,
    sweep_interrupted,
)

__all__ = [
    "INTERRUPTED",
    "Turn",
    "TurnError",
    "TurnFinished",
    "TurnStarted",
    "estimate_tokens",
    "run_turn",
    "sweep_interrupted",
]

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 0.5
FINISH_RETRY_PAUSES = (0.05, 0.2, 1.0)

T = TypeVar("T")


async def _shielded(task: asyncio.Future[T]) -> T:
    """Await `task` to the end even if this task is cancelled meanwhile (then re-raise).

    A write that was started must land: a Stop followed by a disconnect must not lose
    the partial reply, and a start trip that committed must not leave a row `streaming`.
    """
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done() and task.cancelled():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


# --- the turn ----------------------------------------------------------------------


class Turn(TurnTrips):
    """One chat turn. Iterate it once; `result` is set once the reply is stored."""

    def __init__(
        self,
        user: User,
        text: str,
        *,
        conversation_id: int | None,
        provider: str | None,
        model: str | None,
        client_message_id: uuid.UUID | None,
        conversation_key: str,
        history: Sequence[ChatMessage] | None,
        system: str | None,
        temperature: float | None,
        max_tokens: int | None,
        render_html: bool,
    ) -> None:
        self.user = user
        self.text = text
        self.conversation_id = conversation_id
        self.provider_name = provider
        self.model_name = model
        self.client_message_id = client_message_id
        self.conversation_key = conversation_key
        self.history = history
        self.system = system
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.render_html = render_html
        self.result: TurnFinished | None = None
        self.kind = ""
        self.model = ""
        self._events: AsyncGenerator[TurnStarted | TextDelta | TurnFinished, None] | None = None
        self._progress: asyncio.Future[None] | None = None
        self.user_message_id = 0

    def __aiter__(self) -> AsyncIterator[TurnStarted | TextDelta | TurnFinished]:
        if self._events is not None:
            raise RuntimeError("A Turn can be iterated only once.")
        self._events = self._run()
        return self._events

    async def aclose(self) -> None:
        """Stop the turn where it stands: close upstream, store the text so far as stopped."""
        if self._events is not None:
            await self._events.aclose()

    # --- validation, before any trip ------------------------------------------------

    def _validate(self) -> None:
        if not self.text.strip():
            raise TurnError("bad_request", "Type a message before sending.")
        limit = settings.LLM_MAX_MESSAGE_CHARS
        if len(self.text) > limit:
            raise TurnError(
                "too_large",
                f"That message is {len(self.text):,} characters; the limit is {limit:,}. "
                "Shorten it or split it into parts.",
            )
        kind = self.provider_name
        if kind:
            if kind not in registry.PROVIDERS:
                raise TurnError(
                    "bad_request",
                    f"There is no provider called {kind!r}. Choose one of: "
                    f"{', '.join(registry.PROVIDERS)}.",
                )
        else:
            kind = (
                (registry.kind_for_model(self.model_name) if self.model_name else None)
                or (
                    self.user.default_provider
                    if self.user.default_provider in registry.PROVIDERS
                    else None
                )
                or registry.LOCAL
            )
        self.kind = kind

    def _schedule_progress(self, message_id: int, parts: list[str]) -> None:
        if self._progress is not None and not self._progress.done():
            return  # the database is slower than the stream: skip, the next one catches up
        self._progress = asyncio.ensure_future(progress_trip(message_id, "".join(parts)))

    # --- the stream ------------------------------------------------------------------------

    async def _run(self) -> AsyncGenerator[TurnStarted | TextDelta | TurnFinished, None]:
        started_at = time.monotonic()
        self._validate()
        start = asyncio.ensure_future(start_trip(self))
        try:
            outcome = await _shielded(start)
        except asyncio.CancelledError:
            # Cancelled while the rows were being written: they exist, so close the reply.
            if not start.cancelled() and start.exception() is None:
                done = start.result()
                if isinstance(done, Plan):
                    await self._store_stopped(None, done, [], None, None, started_at, "stop")
            raise
        if isinstance(outcome, TurnFinished):  # a resend: replay the stored reply
            self.result = outcome
            yield TurnStarted(
                outcome.conversation_id,
                outcome.message_id,
                self.user_message_id,
                outcome.provider,
                outcome.model,
            )
            if outcome.content:
                yield TextDelta(outcome.content)
            yield outcome
            return

        plan = outcome
        parts: list[str] = []
        usage: Usage | None = None
        finish_reason = "stop"
        ttft_ms: float | None = None
        status, error = COMPLETE, None
        stream: AsyncIterator[Any] | None = None
        try:
            yield TurnStarted(
                plan.conversation_id, plan.message_id, plan.user_message_id, self.kind, self.model
            )
            provider = registry.create(self.kind, provider_options())
            stream = provider.stream(plan.request, self._credentials(plan.config))
            last_write = time.monotonic()
            async for event in stream:
                if isinstance(event, TextDelta):
                    if ttft_ms is None:
                        ttft_ms = (time.monotonic() - started_at) * 1000
                    parts.append(event.text)
                    yield event
                    now = time.monotonic()
                    if now - last_write >= PROGRESS_SECONDS:
                        last_write = now
                        self._schedule_progress(plan.message_id, parts)
                elif isinstance(event, Usage):
                    usage = event
                elif isinstance(event, Done):
                    finish_reason = event.finish_reason
        except ProviderError as exc:
            status, error = ERROR, {"code": exc.code, "message": exc.message}
        except (asyncio.CancelledError, GeneratorExit):
            # Stop or a lost client: close upstream now, keep what came, then go on.
            await self._store_stopped(
                stream, plan, parts, usage, ttft_ms, started_at, finish_reason
            )
            raise
        except Exception:
            log.exception("chat turn %s failed", plan.message_id)
            status = ERROR
            error = {
                "code": "internal",
                "message": "Something went wrong on our side; your message is kept. Try again.",
            }
        result = await _shielded(
            asyncio.ensure_future(
                self._close_and_store(
                    stream, plan, status, parts, usage, error, ttft_ms, started_at, finish_reason
                )
            )
        )
        yield result

    async def _store_stopped(
        self,
        stream: AsyncIterator[Any] | None,
        plan: Plan,
        parts: list[str],
        usage: Usage | None,
        ttft_ms: float | None,
        started_at: float,
        finish_reason: str,
    ) -> None:
        await _shielded(
            asyncio.ensure_future(
                self._close_and_store(
                    stream, plan, STOPPED, parts, usage, None, ttft_ms, started_at, finish_reason
                )
            )
        )

    def _credentials(self, config: ProviderConfig | None) -> Credentials:
        """Decrypted here, just before the call that uses the key, and nowhere else."""
        if config is None:
            return Credentials()
        try:
            return config.credentials()
        except crypto.DecryptError:
            raise _KeyUnreadable(
                f"Your saved {config.label} key can no longer be read (the server's "
                f"encryption keys changed): enter it again in Settings ({SETTINGS_PAGE})."
            ) from None

    async def _close_and_store(
        self,
        stream: AsyncIterator[Any] | None,
        plan: Plan,
        status: str,
        parts: list[str],
        usage: Usage | None,
        error: dict[str, Any] | None,
        ttft_ms: float | None,
        started_at: float,
        finish_reason: str,
    ) -> TurnFinished:
        close = getattr(stream, "aclose", None)
        if close is not None:
            try:
                await close()
            except Exception:  # closing a broken connection may complain; it is closed
                log.debug("closing the provider stream failed", exc_info=True)
        latency_ms = (time.monotonic() - started_at) * 1000
        if self._progress is not None:
            await asyncio.gather(self._progress, return_exceptions=True)
        content = "".join(parts)
        for pause in FINISH_RETRY_PAUSES:
            try:
                self.result = await finish_trip(
                    self, plan, status, content, usage, error, ttft_ms, latency_ms, finish_reason
                )
                return self.result
            except OperationalError:
                # A lock held too long (SQLite's one writer) or a dropped connection: the
                # reply must not stay `streaming`, so try again before giving up.
                log.warning("storing reply %s failed; retrying", plan.message_id, exc_info=True)
                await asyncio.sleep(pause)
        self.result = await finish_trip(
            self, plan, status, content, usage, error, ttft_ms, latency_ms, finish_reason
        )
        return self.result


class _KeyUnreadable(ProviderError):
    code = "not_configured"


def run_turn(
    user: User,
    text: str,
    *,
    conversation_id: int | None = None,
    provider: str | None = None,
    model: str | None = None,
    client_message_id: uuid.UUID | None = None,
    conversation_key: str = "",
    history: Sequence[ChatMessage] | None = None,
    system: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    render_html: bool = True,
) -> Turn:
    """A turn for `user` saying `text`. Nothing happens until it is iterated.

    `history` (with `system`) is the conversation so far as a caller such as /v1 sends
    it; the stored history is then not read, and the turn goes into a new conversation.
    `render_html=False` skips the markdown render for transports that never show it.
    """
    return Turn(
        user,
        text,
        conversation_id=conversation_id,
        provider=provider,
        model=model,
        client_message_id=client_message_id,
        conversation_key=conversation_key,
        history=history,
        system=system,
        temperature=temperature,
        max_tokens=max_tokens,
        render_html=render_html,
    )
