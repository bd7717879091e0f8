"""THE engine: one chat turn, from a person's text to a finished, stored reply.

A `Turn` is iterated once and yields the reply's events (llm/events.py):

    TurnStarted, TextDelta…, TurnFinished        or raises TurnError before anything

numbering them as it goes (`turn.seq`: the start is 1), so that the reply's log, the
stored message and every follower agree on what event N was. Transports do not
iterate a turn themselves: the reply runner (llm/replies.py) does, so that a reply
outlives whoever asked for it.

The database work is two trips off the event loop (llm/turn_trips.py), each one
transaction. Between them the text is written at most every PROGRESS_SECONDS, never
per token, in a background task so that a slow write never holds a token back.

Stop: the runner cancels the task iterating the turn. The engine closes the upstream
request, stores the text so far as `stopped`, sets `turn.result` and lets the
CancelledError go on. When the cancel lands between two events instead,
`await turn.aclose()` does the same; the runner iterates inside
`contextlib.aclosing(turn)` so that this always happens.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, TypeVar

from django.conf import settings
from django.db import OperationalError

from accounts.models import User
from llm import crypto
from llm.events import Event, TextDelta, TurnError, TurnFinished
from llm.models import ProviderConfig, provider_options
from llm.providers import registry
from llm.providers.base import ChatMessage, Credentials, Done, ProviderError, Usage
from llm.turn_trips import (
    COMPLETE,
    ERROR,
    SETTINGS_PAGE,
    STOPPED,
    Ask,
    Outcome,
    Plan,
    Replay,
    finish_trip,
    progress_trip,
    start_trip,
)

__all__ = ["Turn", "run_turn"]

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 0.5
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.0, 2.0
MAX_TOKENS = 32000
FINISH_RETRY_PAUSES = (0.05, 0.2, 1.0)

T = TypeVar("T")


async def _shielded(task: asyncio.Future[T]) -> T:
    """Await `task` to the end even if this task is cancelled meanwhile (then re-raise).

    A write that was started must land: a Stop followed by a shutdown must not lose
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


def _check_sampling(temperature: float | None, max_tokens: int | None) -> None:
    """The ranges every transport's caller may ask for (the settings form's, too)."""
    if temperature is not None and not (
        math.isfinite(temperature) and MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE
    ):
        raise TurnError(
            "bad_request",
            f"temperature must be between {MIN_TEMPERATURE:g} and {MAX_TEMPERATURE:g}, "
            f"not {temperature}.",
        )
    if max_tokens is not None and not 1 <= max_tokens <= MAX_TOKENS:
        raise TurnError("bad_request", f"max_tokens must be a whole number from 1 to {MAX_TOKENS}.")


class _KeyUnreadable(ProviderError):
    code = "not_configured"


class _Stream:
    """What has come of the provider's stream so far."""

    __slots__ = ("finish_reason", "parts", "started_at", "ttft_ms", "upstream", "usage")

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self.parts: list[str] = []
        self.usage: Usage | None = None
        self.finish_reason = "stop"
        self.ttft_ms: float | None = None
        self.upstream: AsyncIterator[Any] | None = None


class Turn:
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
        self.provider = provider
        self.model = model
        self.client_message_id = client_message_id
        self.conversation_key = conversation_key
        self.history = history
        self.system = system
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.render_html = render_html
        self.seq = 0  # the number of the last event yielded (or stored, on a stop)
        self.result: TurnFinished | None = None
        self._events: AsyncGenerator[Event, None] | None = None
        self._progress: asyncio.Future[None] | None = None

    def __aiter__(self) -> AsyncIterator[Event]:
        if self._events is not None:
            raise RuntimeError("A Turn can be iterated only once.")
        self._events = self._run()
        return self._events

    async def aclose(self) -> None:
        """Stop the turn where it stands: close upstream, store the text so far as stopped."""
        if self._events is not None:
            await self._events.aclose()

    # --- validation, before any trip ------------------------------------------------

    def _ask(self) -> Ask:
        if not self.text.strip():
            raise TurnError("bad_request", "Type a message before sending.")
        limit = settings.LLM_MAX_MESSAGE_CHARS
        if len(self.text) > limit:
            raise TurnError(
                "too_large",
                f"That message is {len(self.text):,} characters; the limit is {limit:,}. "
                "Shorten it or split it into parts.",
            )
        sent = [self.text, self.system or "", self.model or "", self.provider or ""]
        if any("\x00" in part for part in sent + [m.content for m in self.history or ()]):
            # PostgreSQL cannot store a NUL in text: every transport says so, none fails.
            raise TurnError(
                "bad_request", "The message or the model contains a NUL character (\\u0000)."
            )
        if self.history is not None:
            total = len(self.text) + len(self.system or "")
            total += sum(len(m.content) for m in self.history)
            cap = settings.LLM_MAX_CONVERSATION_CHARS
            if total > cap:
                raise TurnError(
                    "too_large",
                    f"The messages sent are {total:,} characters together; the limit is "
                    f"{cap:,}. Send fewer or shorter earlier messages.",
                )
        _check_sampling(self.temperature, self.max_tokens)
        kind = self.provider
        if kind and kind not in registry.PROVIDERS:
            raise TurnError(
                "bad_request",
                f"There is no provider called {kind!r}. Choose one of: "
                f"{', '.join(registry.PROVIDERS)}.",
            )
        if not kind:
            default = self.user.default_provider
            kind = (
                (registry.kind_for_model(self.model) if self.model else None)
                or (default if default in registry.PROVIDERS else None)
                or registry.LOCAL
            )
        return Ask(
            user=self.user,
            text=self.text,
            kind=kind,
            model_name=self.model,
            conversation_id=self.conversation_id,
            conversation_key=self.conversation_key,
            client_message_id=self.client_message_id,
            history=self.history,
            system=self.system,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            render_html=self.render_html,
        )

    def _next(self, event: T) -> T:
        self.seq += 1
        return event

    # --- the stream ------------------------------------------------------------------------

    async def _run(self) -> AsyncGenerator[Event, None]:
        stream = _Stream(time.monotonic())
        ask = self._ask()
        start = asyncio.ensure_future(start_trip(ask))
        try:
            planned = await _shielded(start)
        except asyncio.CancelledError:
            # Cancelled while the rows were being written: they exist, so close the reply.
            if not start.cancelled() and start.exception() is None:
                done = start.result()
                if isinstance(done, Plan):
                    self.seq = 1
                    await self._store(ask, done, stream, STOPPED, None)
            raise
        if isinstance(planned, Replay):  # a resend: play the stored reply back
            yield self._next(planned.started)
            if planned.finished.content:
                yield self._next(TextDelta(planned.finished.content))
            self.result = planned.finished
            yield self._next(planned.finished)
            return

        plan = planned
        status, error = COMPLETE, None
        try:
            yield self._next(plan.started())
            provider = registry.create(plan.kind, provider_options())
            stream.upstream = provider.stream(plan.request, self._credentials(plan.config))
            parts = stream.parts
            last_write = time.monotonic()
            async for event in stream.upstream:
                if type(event) is TextDelta:
                    if stream.ttft_ms is None:
                        stream.ttft_ms = (time.monotonic() - stream.started_at) * 1000
                    parts.append(event.text)
                    self.seq += 1
                    yield event
                    now = time.monotonic()
                    if now - last_write >= PROGRESS_SECONDS:
                        last_write = now
                        self._schedule_progress(plan.message_id, parts)
                elif isinstance(event, Usage):
                    stream.usage = event
                elif isinstance(event, Done):
                    stream.finish_reason = event.finish_reason
        except ProviderError as exc:
            status, error = ERROR, TurnError.from_provider(exc)
        except (asyncio.CancelledError, GeneratorExit):
            # Stop, or the runner shutting down: close upstream now, keep what came, go on.
            self.seq += 1
            await _shielded(asyncio.ensure_future(self._store(ask, plan, stream, STOPPED, None)))
            raise
        except Exception:
            log.exception("chat turn %s failed", plan.message_id)
            status, error = ERROR, TurnError.internal()
        self.seq += 1
        result = await _shielded(
            asyncio.ensure_future(self._store(ask, plan, stream, status, error))
        )
        yield result

    def _schedule_progress(self, message_id: int, parts: list[str]) -> None:
        if self._progress is not None and not self._progress.done():
            return  # the database is slower than the stream: skip, the next one catches up
        self._progress = asyncio.ensure_future(progress_trip(message_id, "".join(parts), self.seq))

    def _credentials(self, config: ProviderConfig | None) -> Credentials:
        """Decrypted here, just before the call that uses the key, and nowhere else."""
        if config is None:
            return Credentials()
        try:
            return config.credentials()
        except crypto.DecryptError:
            raise _KeyUnreadable(
                f"Your saved {config.label} key can no longer be read (the server's "
                "encryption keys changed, or its address was changed without it): enter it "
                f"again in Settings ({SETTINGS_PAGE})."
            ) from None

    async def _store(
        self, ask: Ask, plan: Plan, stream: _Stream, status: str, error: TurnError | None
    ) -> TurnFinished:
        """Close upstream and write the reply's end; `self.seq` is already its number."""
        close = getattr(stream.upstream, "aclose", None)
        if close is not None:
            try:
                await close()
            except Exception:  # closing a broken connection may complain; it is closed
                log.debug("closing the provider stream failed", exc_info=True)
        outcome = Outcome(
            status=status,
            content="".join(stream.parts),
            usage=stream.usage,
            error=error,
            ttft_ms=stream.ttft_ms,
            latency_ms=(time.monotonic() - stream.started_at) * 1000,
            finish_reason=stream.finish_reason,
            seq=self.seq,
        )
        if self._progress is not None:
            await asyncio.gather(self._progress, return_exceptions=True)
        for pause in FINISH_RETRY_PAUSES:
            try:
                self.result = await finish_trip(ask, plan, outcome)
                return self.result
            except OperationalError:
                # A lock held too long (SQLite's one writer) or a dropped connection: the
                # reply must not stay `streaming`, so try again before giving up.
                log.warning("storing reply %s failed; retrying", plan.message_id, exc_info=True)
                await asyncio.sleep(pause)
        self.result = await finish_trip(ask, plan, outcome)
        return self.result


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
