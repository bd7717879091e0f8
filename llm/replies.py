"""The reply runner: a reply belongs to its conversation, not to whoever asked for it.

    transport --start(turn)--> Runner (one per event loop) --iterates--> Turn (llm/turns.py)
                                 |  keeps every event, numbered by seq, on the Reply
                                 |  with REDIS_URL: flushes new events to the shared log
                                 v  (llm/reply_log.py) in one pipelined call per flush
    transports --follow(user, message_id, after)--> replay, then live, until the end
               --stop(user, message_id)--> wherever the reply runs

A reply runs to its end whether or not anyone follows it; only a Stop from its owner
(or LLM_UNWATCHED_REPLY_SECONDS with nobody following) ends it early. The transport
that started a reply follows it in-process, with no Redis hop on its path; a follower
on another process reads the shared log. Consecutive deltas reach a follower as one
(the seq of the last), so a burst of tokens is one frame on every transport.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager, suppress
from decimal import Decimal
from types import FrameType
from typing import Any

from django.conf import settings

from accounts.models import User
from llm import keep_alive, logs, metrics, pg_trips, reply_log, trips, turn_sql
from llm.events import Event, TextDelta, ThinkingDelta, TurnError, TurnFinished, TurnStarted
from llm.models import Message
from llm.turn_trips import stored_reply
from llm.turns import Turn

__all__ = ["Reply", "follow", "lifespan", "owned", "runner", "start", "stop"]

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.05
TICK_SECONDS = 1.0
# A finished reply stays in memory this long, for followers that attach late.
KEEP_SECONDS = 60.0
# How long shutdown waits for each of its helpers (the shared log's, keep-alive) to stop.
HELPER_STOP_SECONDS = 5.0
# How long shutdown waits for replies to end on their own before it stops them.
SHUTDOWN_GRACE_SECONDS = 10.0

Item = tuple[int, Event]  # (seq, event)


def _not_found() -> TurnError:
    return TurnError("not_found", "That reply does not exist, or it was deleted.")


class Reply:
    """One reply running in this process: its events so far and the task writing them."""

    __slots__ = (
        "_changed",
        "conversation_id",
        "events",
        "flushed",
        "followers",
        "last_watched",
        "message_id",
        "owner_id",
        "task",
    )

    def __init__(self, started: TurnStarted, owner_id: int, task: asyncio.Task[None]) -> None:
        self.message_id = started.message_id
        self.conversation_id = started.conversation_id
        self.owner_id = owner_id
        self.task = task
        self.events: list[Event] = []  # events[i] is seq i + 1
        self.flushed = 0  # how many of them are in the shared log
        self.followers = 0
        self.last_watched = time.monotonic()
        self._changed: asyncio.Future[None] | None = None

    @property
    def result(self) -> TurnFinished | None:
        last = self.events[-1] if self.events else None
        return last if isinstance(last, TurnFinished) else None

    def append(self, event: Event) -> None:
        self.events.append(event)
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set_result(None)

    def stop(self) -> None:
        """End the reply now; the text so far is stored as `stopped`."""
        if not self.task.done():
            self.task.cancel()

    async def stop_and_wait(self) -> None:
        """Stop the reply if it still runs, and wait until the text so far is stored."""
        if not self.task.done():
            self.stop()
            with suppress(asyncio.CancelledError):
                await asyncio.shield(self.task)

    async def ended(self) -> TurnFinished:
        """Wait for the reply's end (however it ends) and return it."""
        await asyncio.shield(self.task)
        result = self.result
        assert result is not None  # the runner always ends a started reply's log
        return result

    async def follow(self, after: int = 0) -> AsyncIterator[Item]:
        """The events after seq `after`, then each as it comes, until the end."""
        self.followers += 1
        try:
            seen = after
            while True:
                events = self.events
                if len(events) > seen:
                    batch = events[seen:]
                    first, seen = seen + 1, len(events)
                    for item in coalesce(first, batch):
                        yield item
                    if isinstance(batch[-1], TurnFinished):
                        return
                else:
                    if self._changed is None:
                        self._changed = asyncio.get_running_loop().create_future()
                    # Shielded: one follower leaving must not cancel the others' wait.
                    await asyncio.shield(self._changed)
        finally:
            self.followers -= 1
            self.last_watched = time.monotonic()


def coalesce(first_seq: int, events: list[Event]) -> list[Item]:
    """Number `events` from `first_seq`, joining each run of deltas (answer or thinking)
    into one with the seq of its last."""
    items: list[Item] = []
    texts: list[str] = []
    run: type[TextDelta] | type[ThinkingDelta] = TextDelta
    seq = first_seq - 1
    for seq, event in enumerate(events, first_seq):  # noqa: B007 (seq is used after)
        if isinstance(event, TextDelta | ThinkingDelta):
            if texts and type(event) is not run:
                items.append((seq - 1, run("".join(texts))))
                texts = []
            run = type(event)
            texts.append(event.text)
            continue
        if texts:
            items.append((seq - 1, run("".join(texts))))
            texts = []
        items.append((seq, event))
    if texts:
        items.append((seq, run(texts[0] if len(texts) == 1 else "".join(texts))))
    return items


def _batch_coalesced(batch: list[Item]) -> list[Item]:
    """`coalesce` for events that arrive numbered (from the shared log)."""
    if len(batch) == 1:
        return batch
    return coalesce(batch[0][0], [event for _seq, event in batch])


class Runner:
    """The replies running on one event loop, and their link to the shared log."""

    def __init__(self) -> None:
        self.replies: dict[int, Reply] = {}
        self.worker = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.log: reply_log.RedisLog | None = (
            reply_log.RedisLog(settings.REDIS_URL) if settings.REDIS_URL else None
        )
        self._dirty: set[int] = set()
        self._wake = asyncio.Event()
        self._maintainer: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._listening: asyncio.Future[None] | None = None
        self._last_flush = 0.0
        self._closing = False
        self._shutdown: asyncio.Future[None] | None = None
        self._keep_alive: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # --- starting ------------------------------------------------------------------------

    async def start(self, turn: Turn) -> Reply:
        """Run `turn` as a reply; return once it has started. Raises TurnError on a refusal.

        The reply goes on if the caller is cancelled meanwhile (use `owned` for replies
        that must end with their caller).
        """
        if self._closing:
            raise TurnError(
                "internal", "The server is restarting: send your message again in a moment."
            )
        await self._ensure_running()
        started: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._run(turn, started))
        # The loop keeps only weak references to tasks: hold it until it ends.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(started)

    async def _run(self, turn: Turn, started: asyncio.Future[Reply]) -> None:
        reply: Reply | None = None
        try:
            async with aclosing(turn):
                async for event in turn:
                    if reply is None:
                        assert isinstance(event, TurnStarted)
                        task = asyncio.current_task()
                        assert task is not None
                        reply = Reply(event, turn.user.pk, task)
                        self.replies[reply.message_id] = reply
                        metrics.reply_started()
                        self._maintain_soon()
                        started.set_result(reply)
                    reply.append(event)
                    if self.log is not None:
                        self._mark_dirty(reply.message_id)
        except TurnError as exc:
            if not started.done():
                started.set_exception(exc)
        except asyncio.CancelledError:
            # A Stop (or shutdown): the engine stored the text so far and set the result.
            if reply is not None and turn.result is not None and reply.result is None:
                reply.append(turn.result)
        except Exception:
            log.exception("reply failed outside the engine")
            if not started.done():
                started.set_exception(TurnError.internal())
        finally:
            if not started.done():  # cancelled before it began: nothing to follow
                started.set_exception(TurnError("internal", "The reply was stopped."))
            if reply is not None:
                if reply.result is None:  # the engine could not store the end
                    reply.append(_lost(reply))
                self._ended(reply)

    def _ended(self, reply: Reply) -> None:
        metrics.reply_ended()
        if self.log is not None:
            self._mark_dirty(reply.message_id)
        asyncio.get_running_loop().call_later(KEEP_SECONDS, self._forget, reply)

    def _forget(self, reply: Reply) -> None:
        if self.replies.get(reply.message_id) is reply:
            del self.replies[reply.message_id]

    def running(self) -> list[Reply]:
        return [r for r in self.replies.values() if not r.task.done()]

    # --- following and stopping ----------------------------------------------------------

    async def follow(self, user: User, message_id: int, after: int = 0) -> AsyncIterator[Item]:
        """The reply's events after `after`, from wherever it runs. Raises TurnError
        (not_found) for anyone but its owner, before anything is sent."""
        reply = self.replies.get(message_id)
        if reply is not None:
            if reply.owner_id != user.pk:
                raise _not_found()
            return reply.follow(after)
        message = await _own_reply(user, message_id)
        if message.status != Message.Status.STREAMING:
            return _one(message.seq, stored_reply(message))
        if self.log is None:
            raise TurnError(
                "not_found",
                "That reply is being written by another process (the chat command or the "
                "MQTT bridge) and cannot be followed here; it appears once it is finished.",
            )
        return self._follow_shared(self.log, user, message_id, after)

    async def _follow_shared(
        self, shared: reply_log.RedisLog, user: User, message_id: int, after: int
    ) -> AsyncIterator[Item]:
        unwatched = settings.LLM_UNWATCHED_REPLY_SECONDS
        try:
            async for batch in shared.follow(message_id, after, watch_seconds=unwatched):
                for item in _batch_coalesced(batch):
                    yield item
        except reply_log.Interrupted:
            await _mark_interrupted(message_id)
            message = await _own_reply(user, message_id)
            yield message.seq + 1, stored_reply(message)

    async def stop(self, user: User, message_id: int) -> bool:
        """Ask the reply to stop wherever it runs. False if it is not running (anymore)."""
        reply = self.replies.get(message_id)
        if reply is not None:
            if reply.owner_id != user.pk:
                raise _not_found()
            if reply.task.done():
                return False
            reply.stop()
            return True
        message = await _own_reply(user, message_id)
        if message.status != Message.Status.STREAMING or self.log is None:
            return False
        await self.log.send_stop(message_id)
        return True

    # --- the shared log, leases, the unwatched timeout ------------------------------------

    async def _ensure_running(self) -> None:
        if self.log is not None and (self._listener is None or self._listener.done()):
            self._listening = asyncio.get_running_loop().create_future()
            self._listener = asyncio.create_task(
                self._listen(self.log, self._listening), context=logs.detached()
            )
        if self._listening is not None and not self._listening.done():
            # Subscribed before the first reply starts, so no Stop for it is missed.
            await asyncio.wait([self._listening], timeout=2.0)

    def _maintain_soon(self) -> None:
        """Run the maintainer while replies are kept, if there is anything to maintain."""
        needed = self.log is not None or settings.LLM_UNWATCHED_REPLY_SECONDS
        if needed and (self._maintainer is None or self._maintainer.done()):
            # Detached: it serves every reply, so its lines carry no one request's id.
            self._maintainer = asyncio.create_task(self._maintain(), context=logs.detached())

    def _mark_dirty(self, message_id: int) -> None:
        dirty = self._dirty
        if message_id not in dirty:  # once per reply per flush, not per token
            dirty.add(message_id)
            self._wake.set()

    async def _maintain(self) -> None:
        next_tick = time.monotonic()
        while self.replies or self._dirty:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_tick - time.monotonic()))
            now = time.monotonic()
            # Coalesce: at most one flush every FLUSH_SECONDS, the first one at once.
            pause = self._last_flush + FLUSH_SECONDS - now
            if pause > 0 and now < next_tick:
                await asyncio.sleep(pause)
                now = time.monotonic()
            self._wake.clear()
            tick = now >= next_tick
            if tick:
                next_tick = now + TICK_SECONDS
            try:
                await self._flush(tick)
            except Exception:
                log.warning("writing the shared reply log failed; will retry", exc_info=True)
                await asyncio.sleep(FLUSH_SECONDS)
            self._last_flush = time.monotonic()

    async def _flush(self, tick: bool) -> None:
        dirty, self._dirty = self._dirty, set()
        unwatched = settings.LLM_UNWATCHED_REPLY_SECONDS
        candidates: list[Reply] = []
        if tick and unwatched:
            now = time.monotonic()
            candidates = [
                r for r in self.running() if r.followers == 0 and now - r.last_watched >= unwatched
            ]
        if self.log is None:
            for unwatched_reply in candidates:
                log.info("stopping reply %s: nobody followed it", unwatched_reply.message_id)
                unwatched_reply.stop()
            return
        appends: list[tuple[int, str, bool]] = []
        pending: list[tuple[Reply, int]] = []
        for message_id in dirty:
            reply = self.replies.get(message_id)
            if reply is None or reply.flushed == len(reply.events):
                continue
            upto = len(reply.events)
            data = reply_log.encode(reply.flushed + 1, reply.events[reply.flushed : upto])
            appends.append((message_id, data, reply.result is not None))
            pending.append((reply, upto))
        # Every reply written to now holds its lease from this flush on (a young reply's
        # first follower elsewhere must not take it for dead); all of them on a tick.
        leases = {message_id for message_id, _data, ended in appends if not ended}
        if tick:
            leases.update(r.message_id for r in self.running())
        if not appends and not leases:
            return
        try:
            watched = await self.log.write(
                appends, leases, self.worker, [r.message_id for r in candidates]
            )
        except BaseException:
            self._dirty |= dirty
            raise
        for reply, upto in pending:
            reply.flushed = max(reply.flushed, upto)
        for reply, seen in zip(candidates, watched, strict=True):
            if not seen:
                log.info("stopping reply %s: nobody followed it", reply.message_id)
                reply.stop()

    async def _listen(self, shared: reply_log.RedisLog, ready: asyncio.Future[None]) -> None:
        while not self._closing:
            try:
                async for message_id in shared.stops(ready):
                    reply = self.replies.get(message_id)
                    if reply is not None:
                        reply.stop()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("the stop channel failed; resubscribing", exc_info=True)
                if not ready.done():
                    ready.set_result(None)
                await asyncio.sleep(1.0)
            ready = asyncio.get_running_loop().create_future()

    # --- keep-alive ------------------------------------------------------------------------

    def keep_models_loaded(self) -> None:
        """Run this worker's keep-alive pings (llm/keep_alive.py) from now on, once. Each
        worker runs them; a claim per configuration keeps it to one ping per interval."""
        if self._keep_alive is None and not self._closing:
            self._keep_alive = asyncio.create_task(
                self._keep_alive_rounds(), context=logs.detached()
            )

    async def _keep_alive_rounds(self) -> None:
        await asyncio.sleep(keep_alive.TICK_SECONDS)  # the worker's start is busy enough
        await keep_alive.run_forever()

    # --- shutting down ---------------------------------------------------------------------

    async def shutdown(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Let running replies finish for up to `grace` seconds, stop the rest (stored as
        `stopped`), and write their ends to the shared log. Later calls wait for the first."""
        if self._shutdown is None:
            self._shutdown = asyncio.ensure_future(self._shut_down(grace))
        await asyncio.shield(self._shutdown)

    async def _shut_down(self, grace: float) -> None:
        self._closing = True
        running = [r.task for r in self.running()]
        if running:
            _, late = await asyncio.wait(running, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=max(grace, 5.0))
        # The maintainer first: cancelled mid-write, it puts its batch back in `_dirty`,
        # so the last flush below writes every reply's end exactly once more at most.
        # Each wait is bounded: a helper stuck on a dead connection must not hold the
        # worker's shutdown (and every later one) forever.
        helpers = [h for h in (self._listener, self._maintainer, self._keep_alive) if h]
        for helper in helpers:
            helper.cancel()
        if helpers:
            await asyncio.wait(helpers, timeout=HELPER_STOP_SECONDS)
        if self.log is not None:
            with suppress(Exception):
                await asyncio.wait_for(self._flush(tick=False), HELPER_STOP_SECONDS)
            with suppress(Exception):
                await asyncio.wait_for(self.log.close(), HELPER_STOP_SECONDS)
        with suppress(Exception):  # the replies' finishes above were its last use
            await asyncio.wait_for(pg_trips.close(), HELPER_STOP_SECONDS)
        if _runners.get(asyncio.get_running_loop()) is self:
            del _runners[asyncio.get_running_loop()]


async def _one(seq: int, event: Event) -> AsyncIterator[Item]:
    yield seq, event


def _lost(reply: Reply) -> TurnFinished:
    """The end of a reply whose end could not be stored (the engine's writes failed)."""
    error = TurnError.internal()
    return TurnFinished(
        conversation_id=reply.conversation_id,
        message_id=reply.message_id,
        status="error",
        content="".join(e.text for e in reply.events if type(e) is TextDelta),
        html="",
        provider="",
        model="",
        input_tokens=0,
        output_tokens=0,
        cost=Decimal(0),
        ttft_ms=None,
        latency_ms=0.0,
        error=error,
    )


def _owned_message(user_id: int, message_id: int) -> Message | None:
    return (
        Message.objects.filter(
            pk=message_id, conversation__user_id=user_id, role=Message.Role.ASSISTANT
        )
        .only(*(f.attname for f in Message._meta.concrete_fields))
        .first()
    )


_owned_message_trip = trips.trip(_owned_message)
_mark_interrupted = trips.trip(turn_sql.mark_interrupted)


async def _own_reply(user: User, message_id: int) -> Message:
    message = await _owned_message_trip(user.pk, message_id)
    if message is None:
        raise _not_found()
    return message


# --- the runner of the running loop, and the module's interface ---------------------------

_runners: dict[asyncio.AbstractEventLoop, Runner] = {}


def runner() -> Runner:
    loop = asyncio.get_running_loop()
    found = _runners.get(loop)
    if found is None:
        for stale in [k for k in _runners if k.is_closed()]:
            del _runners[stale]
        found = _runners[loop] = Runner()
    return found


async def start(turn: Turn) -> Reply:
    return await runner().start(turn)


async def follow(user: User, message_id: int, after: int = 0) -> AsyncIterator[Item]:
    return await runner().follow(user, message_id, after)


async def stop(user: User, message_id: int) -> bool:
    return await runner().stop(user, message_id)


@asynccontextmanager
async def owned(turn: Turn) -> AsyncIterator[Reply]:
    """A reply that ends with its caller: leaving the block early (an error, a cancel, a
    client that went away) stops it, and waits until the text so far is stored."""
    reply = await start(turn)
    try:
        yield reply
    finally:
        await reply.stop_and_wait()


async def lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI lifespan: a worker asked to stop (SIGTERM) ends its replies cleanly.

    The shutdown starts at the signal itself, not at the lifespan's shutdown event:
    uvicorn sends that only once every connection has closed, and a follower's socket
    stays open until its reply ends, so the replies must end first.
    """
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _end_replies_on_sigterm(asyncio.get_running_loop())
            runner().keep_models_loaded()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await runner().shutdown(settings.LLM_SHUTDOWN_GRACE_SECONDS)
            await send({"type": "lifespan.shutdown.complete"})
            return


def _end_replies_on_sigterm(loop: asyncio.AbstractEventLoop) -> None:
    """Chain onto the server's SIGTERM handler: it stops accepting, this ends replies."""
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set handlers (a server run in a test thread)
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(_begin_shutdown, loop)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def _begin_shutdown(loop: asyncio.AbstractEventLoop) -> None:
    found = _runners.get(loop)
    if found is not None:
        asyncio.ensure_future(found.shutdown(settings.LLM_SHUTDOWN_GRACE_SECONDS))
