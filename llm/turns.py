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
import dataclasses
import logging
import math
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import psycopg
from django.conf import settings
from django.db import OperationalError

from accounts.models import User
from llm import attachments, capacity, crypto, logs, metrics, pg_trips, reply_cache
from llm.events import (
    Attempt,
    Event,
    TextDelta,
    ThinkingDelta,
    TurnError,
    TurnFinished,
    TurnWaiting,
)
from llm.models import ProviderConfig, provider_options
from llm.providers import registry
from llm.providers.base import (
    AuthFailed,
    ChatMessage,
    ContextTooLong,
    Credentials,
    Done,
    Image,
    ProviderError,
    RateLimited,
    TimedOut,
    Unavailable,
    Usage,
)
from llm.providers.base import Event as ProviderEvent
from llm.turn_trips import (
    COMPLETE,
    ERROR,
    SETTINGS_PAGE,
    STOPPED,
    Ask,
    Outcome,
    Plan,
    Replay,
    Target,
    failed_trip,
    fallbacks_trip,
    finish_trip,
    gate_trip,
    progress_trip,
    start_trip,
)

__all__ = ["Turn", "check_message", "run_turn"]

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 0.5
LEAVE_QUEUE_SECONDS = 5.0
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


def check_message(text: str) -> None:
    """What any message must be before anything starts (a compare checks it once for all)."""
    if not text.strip():
        raise TurnError("bad_request", "Type a message before sending.")
    limit = settings.LLM_MAX_MESSAGE_CHARS
    if len(text) > limit:
        raise TurnError(
            "too_large",
            f"That message is {len(text):,} characters; the limit is {limit:,}. "
            "Shorten it or split it into parts.",
        )
    if "\x00" in text:
        # PostgreSQL cannot store a NUL in text: every transport says so, none fails.
        raise TurnError("bad_request", "The message contains a NUL character (\\u0000).")


class _KeyUnreadable(ProviderError):
    code = "not_configured"


class _Stream:
    """What has come of the provider's stream so far."""

    __slots__ = (
        "answered",
        "attempts",
        "cache_key",
        "cached",
        "finish_reason",
        "parts",
        "started_at",
        "target",
        "thinking",
        "thinking_from",
        "thinking_ms",
        "ttft_ms",
        "upstream",
        "usage",
    )

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self.parts: list[str] = []
        self.thinking: list[str] = []
        self.usage: Usage | None = None
        self.finish_reason = "stop"
        self.ttft_ms: float | None = None
        self.thinking_from: float | None = None
        self.thinking_ms: float | None = None
        self.upstream: AsyncIterator[Any] | None = None
        self.answered = False  # a token came: no fallback from here on
        self.target: Target | None = None
        self.attempts: list[Attempt] = []
        self.cached = False
        self.cache_key = ""

    def mark_first(self) -> None:
        self.answered = True
        self.ttft_ms = (time.monotonic() - self.started_at) * 1000


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
        compare_id: uuid.UUID | None = None,
        rate_counted: bool = False,
        attachments: Sequence[int] = (),
        images: Sequence[Image] = (),
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
        self.compare_id = compare_id
        self.rate_counted = rate_counted
        self.attachments = tuple(attachments)
        self.images = tuple(images)
        self.seq = 0  # the number of the last event yielded (or stored, on a stop)
        self.result: TurnFinished | None = None
        self._events: AsyncGenerator[Event, None] | None = None
        self._progress: asyncio.Future[None] | None = None
        self._message_id = 0

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
        check_message(self.text)
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
        attachments.check_count(len(self.attachments) + len(self.images))
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
            compare_id=self.compare_id,
            rate_counted=self.rate_counted,
            attachments=self.attachments,
            images=self.images,
        )

    def _next(self, event: T) -> T:
        self.seq += 1
        return event

    # --- the stream ------------------------------------------------------------------------

    async def _run(self) -> AsyncGenerator[Event, None]:
        stream = _Stream(time.monotonic())
        ask = self._ask()
        start = asyncio.ensure_future(_start(ask))
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
        self._message_id = plan.message_id
        stream.target = plan.first
        status, error = COMPLETE, None
        try:
            yield self._next(plan.started())
            async for event in self._answer(ask, plan, stream):
                yield event
        except _Failed as failed:
            status, error = ERROR, failed.error
        except ProviderError as exc:  # after the first token: the reply stays whose it was
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

    async def _answer(self, ask: Ask, plan: Plan, stream: _Stream) -> AsyncGenerator[Event, None]:
        """The first choice, then each step of the fallback chain, until one answers.

        A step is skipped while its breaker is open, and left for the next when it fails
        before its first token; once a token came, a failure ends the reply (no reply is
        spliced from two models). Raises _Failed when nobody answered.
        """
        target = plan.first
        chain: list[Target | Attempt] | None = None
        while True:
            began = time.monotonic()
            failure = target.blocked.error(target.label) if target.blocked else None
            if failure is None:
                try:
                    async for event in self._ask_target(target, stream):
                        yield event
                    return
                except ProviderError as exc:
                    if stream.answered or not _falls_back(exc):
                        raise
                    failure = TurnError.from_provider(exc)
                    await failed_trip(target, failure)
            if chain is None:
                chain = await fallbacks_trip(ask, plan)
            ms = (time.monotonic() - began) * 1000
            tried: Attempt | None = Attempt(target.kind, target.model, failure, ms)
            step: Target | Attempt | None = None
            while chain and not isinstance(step := chain.pop(0), Target):
                if tried is not None:
                    stream.attempts.append(tried)
                    tried = None
                stream.attempts.append(step)
            if not isinstance(step, Target):
                raise _Failed(failure)  # the last one tried answers for the reply
            if tried is not None:
                stream.attempts.append(tried)
            target = stream.target = await gate_trip(step)

    async def _ask_target(self, target: Target, stream: _Stream) -> AsyncGenerator[Event, None]:
        """One provider's reply: from the person's cache, or upstream (in line for a slot)."""
        config = target.config
        if config is not None and config.cache_replies:
            key = reply_cache.key(
                self.user.pk, target.kind, config.effective_base_url, target.request
            )
            hit = await reply_cache.get_trip(key)
            if hit is not None:
                stream.cached = True
                for delta in (ThinkingDelta(hit.thinking), TextDelta(hit.content)):
                    if delta.text:
                        yield self._took(delta, stream)
                return
            stream.cache_key = key
        provider = registry.create(target.kind, config.options() if config else provider_options())
        credentials = self._credentials(config)
        limit = target.concurrency
        if limit <= 0:
            async for relayed in self._relay(provider.stream(target.request, credentials), stream):
                yield relayed
            return
        line: asyncio.Queue[int] = asyncio.Queue()
        slot = capacity.slot(target.slot_key, limit, waiting=line.put_nowait, shared=target.shared)
        async for ahead in metrics.queued(target.server or target.kind, _in_line(slot, line)):
            yield self._next(TurnWaiting(ahead))
        try:
            async for event in self._relay(provider.stream(target.request, credentials), stream):
                yield event
        finally:
            await slot.__aexit__(None, None, None)

    async def _relay(
        self, upstream: AsyncIterator[ProviderEvent], stream: _Stream
    ) -> AsyncGenerator[Event, None]:
        stream.upstream = upstream
        parts = stream.parts
        last_write = time.monotonic()
        async for event in upstream:
            if type(event) is TextDelta:
                parts.append(event.text)
                if stream.ttft_ms is None:
                    stream.mark_first()
                if stream.thinking_from is not None and stream.thinking_ms is None:
                    stream.thinking_ms = (time.monotonic() - stream.thinking_from) * 1000
                self.seq += 1
                yield event
                now = time.monotonic()
                if now - last_write >= PROGRESS_SECONDS:
                    last_write = now
                    self._schedule_progress(stream)
            elif type(event) is ThinkingDelta:
                yield self._took(event, stream)
            elif isinstance(event, Usage):
                stream.usage = event
            elif isinstance(event, Done):
                stream.finish_reason = event.finish_reason

    def _took(self, event: TextDelta | ThinkingDelta, stream: _Stream) -> Event:
        """Keep an answer or thinking delta that did not come through `_relay`'s fast path."""
        if stream.ttft_ms is None:
            stream.mark_first()
        if type(event) is ThinkingDelta:
            if stream.thinking_from is None:
                stream.thinking_from = time.monotonic()
            stream.thinking.append(event.text)
        else:
            stream.parts.append(event.text)
        return self._next(event)

    def _schedule_progress(self, stream: _Stream) -> None:
        if self._progress is not None and not self._progress.done():
            return  # the database is slower than the stream: skip, the next one catches up
        self._progress = asyncio.ensure_future(
            progress_trip(
                self._message_id, "".join(stream.parts), "".join(stream.thinking), self.seq
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
        if stream.thinking_from is not None and stream.thinking_ms is None:
            stream.thinking_ms = (time.monotonic() - stream.thinking_from) * 1000
        outcome = Outcome(
            status=status,
            content="".join(stream.parts),
            usage=stream.usage,
            error=error,
            ttft_ms=stream.ttft_ms,
            latency_ms=(time.monotonic() - stream.started_at) * 1000,
            finish_reason=stream.finish_reason,
            seq=self.seq,
            answered=stream.target or plan.first,
            thinking="".join(stream.thinking),
            thinking_ms=stream.thinking_ms,
            attempts=tuple(stream.attempts),
            cached=stream.cached,
        )
        if self._progress is not None:
            await asyncio.gather(self._progress, return_exceptions=True)
        for pause in FINISH_RETRY_PAUSES:
            try:
                self.result = await _finish(ask, plan, outcome)
                break
            except (OperationalError, psycopg.OperationalError):
                # A lock held too long (SQLite's one writer) or a dropped connection: the
                # reply must not stay `streaming`, so try again before giving up.
                log.warning("storing reply %s failed; retrying", plan.message_id, exc_info=True)
                await asyncio.sleep(pause)
        else:
            self.result = await _finish(ask, plan, outcome)
        metrics.turn_ended(self.result)
        logs.turn_ended(self.result, ask.user.pk)
        if status == COMPLETE and stream.cache_key and not stream.cached:
            try:
                await reply_cache.put_trip(stream.cache_key, outcome.content, outcome.thinking)
            except Exception:  # a cache that is down costs the next hit, nothing more
                log.warning("caching reply %s failed", plan.message_id, exc_info=True)
        return self.result


async def _start(ask: Ask) -> Plan | Replay:
    """PostgreSQL's one-statement start for the common turn, else the thread trip."""
    if pg_trips.takes(ask):
        plan = await pg_trips.start(ask)
        if plan is not None:
            return plan
        ask = dataclasses.replace(ask, rate_counted=True)  # counted once already
    return await start_trip(ask)


async def _finish(ask: Ask, plan: Plan, outcome: Outcome) -> TurnFinished:
    """PostgreSQL's one-statement finish, else the thread trip."""
    if pg_trips.finishes(outcome):
        return await pg_trips.finish(ask, plan, outcome)
    return await finish_trip(ask, plan, outcome)


async def _in_line(
    slot: AbstractAsyncContextManager[Any], line: asyncio.Queue[int]
) -> AsyncIterator[int]:
    """Enter `slot`, yielding how many are ahead each time that changes while queued.

    Leaving (a Stop cancels the turn) leaves the queue; once this ends, the slot is held
    and the caller exits it.
    """
    entering = asyncio.ensure_future(slot.__aenter__())
    try:
        while not entering.done():
            news = asyncio.ensure_future(line.get())
            await asyncio.wait((entering, news), return_when=asyncio.FIRST_COMPLETED)
            if not news.done():
                news.cancel()
                continue
            ahead = news.result()
            while not line.empty():  # only the latest count matters
                ahead = line.get_nowait()
            if not entering.done():
                yield ahead
        entering.result()
    except BaseException:
        if not entering.done():
            entering.cancel()
            # Bounded: leaving the queue must not hang a Stop on a dead connection.
            await asyncio.wait([entering], timeout=LEAVE_QUEUE_SECONDS)
        elif not entering.cancelled() and entering.exception() is None:
            await slot.__aexit__(None, None, None)
        raise


def _falls_back(exc: ProviderError) -> bool:
    """Whether the next step of the chain may answer instead: the provider could not
    take the request at all (a bad key, limits, down, slow, the context too long)."""
    return isinstance(
        exc, (AuthFailed, RateLimited, TimedOut, Unavailable, ContextTooLong, _KeyUnreadable)
    )


class _Failed(Exception):
    """Nobody in the chain answered: the reply ends with `error`."""

    def __init__(self, error: TurnError) -> None:
        super().__init__(error.message)
        self.error = error


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
    compare_id: uuid.UUID | None = None,
    rate_counted: bool = False,
    attachments: Sequence[int] = (),
    images: Sequence[Image] = (),
) -> Turn:
    """A turn for `user` saying `text`. Nothing happens until it is iterated.

    `history` (with `system`) is the conversation so far as a caller such as /v1 sends
    it; the stored history is then not read, and the turn goes into a new conversation.
    `render_html=False` skips the markdown render for transports that never show it.
    `attachments` are ids of the person's uploaded files (llm/attachments.py), linked to
    the message in the start trip; `images` come inline with the text (/v1's parts).
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
        compare_id=compare_id,
        rate_counted=rate_counted,
        attachments=attachments,
        images=images,
    )
