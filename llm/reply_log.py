"""The shared reply log on Redis Streams: what lets a follower on another process see
a reply, and stop it.

Per reply, three keys (prefix `coppertone:reply:<message id>`):
  stream   one entry per flush: field `e`, a JSON list of `[seq, kind, data]` events;
           kept LOG_KEEP_SECONDS after the reply ends (the stored message is the record)
  :lease   held by the process running the reply, renewed every LEASE_RENEW_SECONDS;
           a follower that finds it gone knows that process died
  :watched set by remote followers, for LLM_UNWATCHED_REPLY_SECONDS
and one channel, `coppertone:replies:stop`, on which a Stop reaches every process.

The process running replies writes all of one flush (every reply's new events, lease
renewals, expiries) in one pipelined round trip: the cost is one call per worker per
flush, not one per reply, and never one per token (llm/replies.py decides when).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis

from llm.events import (
    Attempt,
    Event,
    TextDelta,
    ThinkingDelta,
    TurnError,
    TurnFinished,
    TurnStarted,
    TurnWaiting,
)

log = logging.getLogger(__name__)

PREFIX = "coppertone:reply:"
STOP_CHANNEL = "coppertone:replies:stop"
LEASE_SECONDS = 3.0
LEASE_RENEW_SECONDS = 1.0
# How long a follower's blocking read waits before it checks the lease.
POLL_SECONDS = 1.0
LOG_KEEP_SECONDS = 300
# A stream whose process never ends it (killed) still goes away.
RUNNING_KEEP_SECONDS = 6 * 3600


def stream_key(message_id: int) -> str:
    return f"{PREFIX}{message_id}"


def lease_key(message_id: int) -> str:
    return f"{PREFIX}{message_id}:lease"


def watched_key(message_id: int) -> str:
    return f"{PREFIX}{message_id}:watched"


# --- the events as JSON ----------------------------------------------------------------


def encode(first_seq: int, events: Sequence[Event]) -> str:
    rows: list[list[Any]] = []
    for seq, event in enumerate(events, first_seq):
        if type(event) is TextDelta:
            rows.append([seq, "d", event.text])
        elif type(event) is ThinkingDelta:
            rows.append([seq, "t", event.text])
        elif isinstance(event, TurnWaiting):
            rows.append([seq, "w", event.ahead])
        elif isinstance(event, TurnStarted):
            rows.append(
                [
                    seq,
                    "s",
                    [
                        event.conversation_id,
                        event.message_id,
                        event.user_message_id,
                        event.provider,
                        event.model,
                        event.compare_id,
                    ],
                ]
            )
        elif isinstance(event, TurnFinished):
            body = event.as_dict()
            body["html"] = event.html
            body["finish_reason"] = event.finish_reason
            body["ttft_ms"] = event.ttft_ms
            body["latency_ms"] = event.latency_ms
            body["thinking_ms"] = event.thinking_ms
            rows.append([seq, "f", body])
    return json.dumps(rows, separators=(",", ":"))


def _finished(body: dict[str, Any]) -> TurnFinished:
    error = body.get("error")
    return TurnFinished(
        conversation_id=body["conversation_id"],
        message_id=body["message_id"],
        status=body["status"],
        content=body["content"],
        html=body["html"],
        provider=body["provider"],
        model=body["model"],
        input_tokens=body["usage"]["input_tokens"],
        output_tokens=body["usage"]["output_tokens"],
        cost=Decimal(body["cost"]),
        ttft_ms=body["ttft_ms"],
        latency_ms=body["latency_ms"],
        error=TurnError(error["code"], error["message"], retry_after=error.get("retry_after"))
        if error
        else None,
        finish_reason=body["finish_reason"],
        thinking=body.get("thinking", ""),
        thinking_ms=body.get("thinking_ms"),
        attempts=tuple(Attempt.from_dict(a) for a in body.get("attempts") or ()),
        cached=bool(body.get("cached")),
    )


def decode(data: str | bytes) -> list[tuple[int, Event]]:
    events: list[tuple[int, Event]] = []
    for seq, kind, value in json.loads(data):
        if kind == "d":
            events.append((seq, TextDelta(value)))
        elif kind == "t":
            events.append((seq, ThinkingDelta(value)))
        elif kind == "w":
            events.append((seq, TurnWaiting(value)))
        elif kind == "s":
            events.append((seq, TurnStarted(*value)))
        elif kind == "f":
            events.append((seq, _finished(value)))
    return events


# --- the log ---------------------------------------------------------------------------


class Interrupted(Exception):
    """The process running the reply went away without ending it."""


class RedisLog:
    """One event loop's connection to the shared log."""

    def __init__(self, url: str) -> None:
        self.redis: Any = aioredis.Redis.from_url(url)

    async def close(self) -> None:
        await self.redis.aclose()

    async def write(
        self,
        appends: Iterable[tuple[int, str, bool]],
        leases: Iterable[int],
        worker: str,
        watch_checks: Sequence[int] = (),
    ) -> list[bool]:
        """One round trip: `(message id, encoded events, ended)` appends, lease renewals
        for the replies still running, and which of `watch_checks` a follower watches."""
        pipe = self.redis.pipeline(transaction=False)
        for message_id, data, ended in appends:
            key = stream_key(message_id)
            pipe.xadd(key, {"e": data})
            if ended:
                pipe.expire(key, LOG_KEEP_SECONDS)
                pipe.delete(lease_key(message_id))
            else:
                pipe.expire(key, RUNNING_KEEP_SECONDS)
        for message_id in leases:
            pipe.set(lease_key(message_id), worker, px=int(LEASE_SECONDS * 1000))
        for message_id in watch_checks:
            pipe.exists(watched_key(message_id))
        results = await pipe.execute()
        return (
            [bool(r) for r in results[len(results) - len(watch_checks) :]] if watch_checks else []
        )

    async def follow(
        self, message_id: int, after: int, *, watch_seconds: float | None = None
    ) -> AsyncIterator[list[tuple[int, Event]]]:
        """Batches of the reply's events after `after`, replayed then live, up to its end.

        Raises Interrupted when the lease is gone and the reply never ended.
        """
        key, lease = stream_key(message_id), lease_key(message_id)
        last_id = "0-0"
        while True:
            if watch_seconds:
                await self.redis.set(watched_key(message_id), 1, px=int(watch_seconds * 1000))
            found = await self.redis.xread({key: last_id}, block=int(POLL_SECONDS * 1000))
            if not found:
                if await self.redis.exists(lease):
                    continue
                # No lease: one last look, in case the end was written as it expired.
                found = await self.redis.xread({key: last_id})
                if not found:
                    raise Interrupted
            batch: list[tuple[int, Event]] = []
            for entry_id, fields in found[0][1]:
                last_id = entry_id
                # By seq, not by entry: a flush cut off mid-write may be written again.
                for event in decode(fields[b"e"]):
                    if event[0] > after:
                        batch.append(event)
                        after = event[0]
            if batch:
                yield batch
                if isinstance(batch[-1][1], TurnFinished):
                    return

    async def is_running(self, message_id: int) -> bool:
        """Whether some process holds the reply's lease or has started its log."""
        lease, stream = await (
            self.redis.pipeline(transaction=False)
            .exists(lease_key(message_id))
            .exists(stream_key(message_id))
            .execute()
        )
        return bool(lease or stream)

    async def send_stop(self, message_id: int) -> None:
        await self.redis.publish(STOP_CHANNEL, str(message_id))

    async def stops(self, ready: asyncio.Future[None]) -> AsyncIterator[int]:
        """Message ids that someone asked to stop, from any process."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(STOP_CHANNEL)
        ready.set_result(None)
        try:
            async for message in pubsub.listen():
                try:
                    yield int(message["data"])
                except (TypeError, ValueError):
                    log.warning("ignored a malformed stop message")
        finally:
            await pubsub.aclose()
