"""Concurrency caps per upstream, with one fair first-come, first-served queue per cap.

    async with capacity.slot("http://127.0.0.1:11434", 2, waiting=show):
        ...  # call the upstream

At most `limit` blocks run at once per key; the rest wait in arrival order, and
`waiting(ahead)` tells each how many will get a slot before it (0: next). A Stop (a
cancel) while queued leaves the queue at once; leaving the block in any way (an error,
a cancel) frees the slot. `limit <= 0` is no cap and costs no I/O at all.

Two backends, one queue per key each:
- in-process (no REDIS_URL, or `shared=False` for what lives in each process, the
  embedded model): per event loop, a counter and a deque of futures; a release hands
  its slot straight to the oldest waiter, no polling;
- shared (REDIS_URL): one queue across every worker process, on Redis.

Redis layout, per key (prefix `coppertone:slots:<key>`):
  :queue    sorted set of waiting tickets, score = arrival order (tail's score + 1)
  :waiting  sorted set of the same tickets, score = lease end (ms, Redis's clock)
  :holders  sorted set of tickets holding a slot, score = lease end
(each kept 20 leases past the last call that touched it, so an unused key goes away)
and one channel, `coppertone:slots:released`, carrying the key whenever its queue moves.

Every change is one Lua script (`_ACQUIRE`), one round trip: it drops expired holders
and waiters, removes the tickets that leave, then for each ticket asked about either
grants it (its rank in the queue is below the free slots: nobody ahead is passed over)
or refreshes its lease and returns its rank; it publishes on the channel when the queue
moved and someone still waits. Per event loop and key one pump task asks about all of
that loop's waiters at once, on a release message, a local release, or a short poll
(sooner when a lease ends soon), so a SIGKILLed holder or waiter frees the queue after
its lease without anyone's help. Holders' leases are renewed for all of a loop's
slots in one round trip a second (`_RENEW`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from contextlib import AbstractAsyncContextManager, suppress
from types import TracebackType
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings
from redis.exceptions import RedisError

__all__ = ["close", "depth", "slot"]

log = logging.getLogger(__name__)

PREFIX = "coppertone:slots:"
CHANNEL = "coppertone:slots:released"
# A holder or waiter whose process died frees its place this long after its last renewal.
LEASE_SECONDS = 3.0
RENEW_SECONDS = 1.0
# The safety net under the release channel (a lost message, a resubscribe).
POLL_SECONDS = 0.5

Waiting = Callable[[int], None]

# KEYS: queue, waiting, holders. ARGV: limit, lease ms, channel, key, n, the n tickets
# that leave (queued or holding), then the tickets to grant or place, in arrival order.
# Returns: ms to the nearest lease end while someone waits (-1 otherwise), holders,
# waiters, then per ticket asked about -1 (it holds a slot) or its rank in the queue.
_ACQUIRE = """
local queue, waiting, holders = KEYS[1], KEYS[2], KEYS[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local moved = redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', waiting, '-inf', now)) do
  moved = moved + redis.call('ZREM', queue, dead)
  redis.call('ZREM', waiting, dead)
end
local n = tonumber(ARGV[5])
for i = 6, 5 + n do
  moved = moved + redis.call('ZREM', queue, ARGV[i]) + redis.call('ZREM', holders, ARGV[i])
  redis.call('ZREM', waiting, ARGV[i])
end
local out = {-1, 0, 0}
for i = 6 + n, #ARGV do
  local ticket = ARGV[i]
  local rank = -1
  if not redis.call('ZSCORE', holders, ticket) then
    rank = redis.call('ZRANK', queue, ticket)
    if not rank then
      local last = redis.call('ZRANGE', queue, -1, -1, 'WITHSCORES')
      redis.call('ZADD', queue, last[2] and tonumber(last[2]) + 1 or 0, ticket)
      rank = redis.call('ZCARD', queue) - 1
    end
    if rank < limit - redis.call('ZCARD', holders) then
      redis.call('ZREM', queue, ticket)
      redis.call('ZREM', waiting, ticket)
      redis.call('ZADD', holders, now + lease, ticket)
      moved = moved + 1
      rank = -1
    else
      redis.call('ZADD', waiting, now + lease, ticket)
    end
  end
  out[#out + 1] = rank
end
local held, waiters = redis.call('ZCARD', holders), redis.call('ZCARD', queue)
if waiters > 0 then
  if moved > 0 then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
  local soonest = nil
  for _, zset in ipairs({holders, waiting}) do
    local first = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
    if first[2] and (not soonest or tonumber(first[2]) < soonest) then
      soonest = tonumber(first[2])
    end
  end
  if soonest then out[1] = math.max(soonest - now, 0) end
end
-- Kept while anyone calls or renews; a key nobody alive uses goes away by itself.
for _, zset in ipairs(KEYS) do redis.call('PEXPIRE', zset, lease * 20) end
out[2], out[3] = held, waiters
return out
"""

# KEYS: holders of each key. ARGV: lease ms, then per key a count and its tickets.
# Extends the leases still there (never adds one back: a release may have won the race)
# and returns the tickets that were gone.
_RENEW = """
local t = redis.call('TIME')
local lease = tonumber(ARGV[1])
local ends = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + lease
local lost, i = {}, 2
for k = 1, #KEYS do
  redis.call('PEXPIRE', KEYS[k], lease * 20)
  local n = tonumber(ARGV[i])
  for j = i + 1, i + n do
    if redis.call('ZSCORE', KEYS[k], ARGV[j]) then
      redis.call('ZADD', KEYS[k], ends, ARGV[j])
    else
      lost[#lost + 1] = ARGV[j]
    end
  end
  i = i + n + 1
end
return lost
"""


def slot(
    key: str, limit: int, *, waiting: Waiting | None = None, shared: bool = True
) -> AbstractAsyncContextManager[None]:
    """A place among at most `limit` concurrent users of `key`, in arrival order.

    `waiting(ahead)` is called once when queued and whenever `ahead` changes, from
    whichever task moved the queue: it must not block. `shared=False` keeps the cap in
    this process (per event loop) even with REDIS_URL.
    """
    if limit <= 0:
        return _NO_CAP
    url = settings.REDIS_URL if shared else ""
    if url:
        return _SharedSlot(url, key, limit, waiting)
    return _LocalSlot(key, limit, waiting)


async def depth(key: str, *, shared: bool = True) -> tuple[int, int]:
    """(holders, waiting) for `key`, in the backend `slot` would use."""
    url = settings.REDIS_URL if shared else ""
    if url:
        _, held, waiters, _ = await _here().shared_for(url).call(key, 0)
        return held, waiters
    gate = _here().gates.get(key)
    if gate is None:
        return 0, 0
    return gate.holders, sum(1 for w in gate.queue if not w.future.done())


async def close() -> None:
    """Stop this event loop's background tasks and close its Redis connections.

    For tests and benches, whose loops end: a server's loop simply keeps them.
    """
    here = _loops.pop(asyncio.get_running_loop(), None)
    if here is not None:
        for shared in here.shared.values():
            await shared.close()


# --- no cap ---------------------------------------------------------------------------


class _NoCap:
    __slots__ = ()

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


# One object for every uncapped call: nothing to allocate on the common path.
_NO_CAP = _NoCap()


# --- in-process -----------------------------------------------------------------------


class _Waiter:
    """One queued request: the future its task waits on and its `waiting` callback."""

    __slots__ = ("ahead", "future", "waiting")

    def __init__(self, future: asyncio.Future[None], waiting: Waiting | None) -> None:
        self.future = future
        self.waiting = waiting
        self.ahead = -1

    def tell(self, ahead: int) -> None:
        if ahead == self.ahead or self.future.done():
            return
        self.ahead = ahead
        if self.waiting is not None:
            try:
                self.waiting(ahead)
            except Exception:  # the caller's bug must not break the queue for the others
                log.exception("a capacity waiting callback failed")


class _LocalGate:
    """One key's cap on one event loop. Invariant: while holders < limit, nobody waits."""

    __slots__ = ("holders", "limit", "queue")

    def __init__(self, limit: int) -> None:
        self.holders = 0
        self.limit = limit
        self.queue: deque[_Waiter] = deque()

    def release(self) -> None:
        self.holders -= 1
        self.grant()

    def grant(self) -> None:
        """Hand free slots straight to the oldest waiters, then renumber the rest."""
        queue = self.queue
        moved = False
        while queue and self.holders < self.limit:
            waiter = queue.popleft()
            moved = True
            if waiter.future.done():  # stopped; its task has not run its cleanup yet
                continue
            self.holders += 1
            waiter.future.set_result(None)
        if moved:
            self.renumber()

    def renumber(self) -> None:
        ahead = 0
        for waiter in self.queue:
            if not waiter.future.done():
                waiter.tell(ahead)
                ahead += 1

    @property
    def idle(self) -> bool:
        return self.holders == 0 and not self.queue


class _LocalSlot:
    __slots__ = ("gate", "gates", "key", "limit", "waiting")

    def __init__(self, key: str, limit: int, waiting: Waiting | None) -> None:
        self.key = key
        self.limit = limit
        self.waiting = waiting

    async def __aenter__(self) -> None:
        gates = self.gates = _here().gates
        gate = gates.get(self.key)
        if gate is None:
            gate = gates[self.key] = _LocalGate(self.limit)
        elif gate.limit != self.limit:  # the setting changed: a raise frees slots now
            gate.limit = self.limit
            gate.grant()
        self.gate = gate
        if gate.holders < gate.limit and not gate.queue:
            gate.holders += 1
            return
        waiter = _Waiter(asyncio.get_running_loop().create_future(), self.waiting)
        waiter.tell(len(gate.queue))
        gate.queue.append(waiter)
        try:
            await waiter.future
        except BaseException:
            if waiter.future.done() and not waiter.future.cancelled():
                gate.release()  # granted just as the Stop came: pass the slot on
            else:
                waiter.future.cancel()
                with suppress(ValueError):  # a release may have dropped it already
                    gate.queue.remove(waiter)
                gate.renumber()
            self._forget_if_idle()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.gate.release()
        self._forget_if_idle()

    def _forget_if_idle(self) -> None:
        gates = self.gates
        if self.gate.idle and gates.get(self.key) is self.gate:
            del gates[self.key]


# --- shared, on Redis -----------------------------------------------------------------


class _SharedGate:
    """One key's waiters on one event loop, and the pump that speaks to Redis for them."""

    __slots__ = ("key", "leaving", "limit", "pump", "waiters", "wake")

    def __init__(self, key: str) -> None:
        self.key = key
        self.limit = 0  # the latest waiter's: it only matters while someone waits
        self.waiters: dict[str, _Waiter] = {}  # ticket -> waiter, in arrival order
        self.leaving: set[str] = set()  # tickets to take out of Redis on the next call
        self.pump: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()


class _Shared:
    """One event loop's side of the shared caps: its connection, tickets and tasks."""

    def __init__(self, url: str) -> None:
        self.redis: Any = aioredis.Redis.from_url(url)
        self._acquire = self.redis.register_script(_ACQUIRE)
        self._renew = self.redis.register_script(_RENEW)
        # Readable in redis-cli: which host, process and loop a ticket belongs to.
        self._prefix = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}:"
        self._count = 0
        self.gates: dict[str, _SharedGate] = {}
        self.holding: dict[str, set[str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._renewer: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._listening: asyncio.Future[None] | None = None

    def ticket(self) -> str:
        self._count += 1
        return f"{self._prefix}{self._count}"

    async def call(
        self, key: str, limit: int, leaving: Iterable[str] = (), tickets: Iterable[str] = ()
    ) -> tuple[float, int, int, list[int]]:
        """One `_ACQUIRE`: (seconds to the nearest lease end or -1, holders, waiters,
        per ticket -1 if it holds a slot, else its rank)."""
        base = PREFIX + key
        out = list(leaving)
        result = await self._acquire(
            keys=[f"{base}:queue", f"{base}:waiting", f"{base}:holders"],
            args=[limit, int(LEASE_SECONDS * 1000), CHANNEL, key, len(out), *out, *tickets],
        )
        soonest = result[0] / 1000 if result[0] >= 0 else -1.0
        return soonest, int(result[1]), int(result[2]), [int(r) for r in result[3:]]

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        # The loop keeps only weak references to tasks: hold each until it ends.
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def gate(self, key: str) -> _SharedGate:
        gate = self.gates.get(key)
        if gate is None:
            gate = self.gates[key] = _SharedGate(key)
        return gate

    def hold(self, key: str, ticket: str) -> None:
        self.holding.setdefault(key, set()).add(ticket)
        if self._renewer is None or self._renewer.done():
            self._renewer = self.spawn(self._renew_leases())

    def unhold(self, key: str, ticket: str) -> None:
        tickets = self.holding.get(key)
        if tickets is not None:
            tickets.discard(ticket)
            if not tickets:
                del self.holding[key]

    def leave(self, key: str, ticket: str) -> None:
        """Take `ticket` out of the queue or the holders, through the key's pump: after
        any call about it already sent, so nothing puts it back."""
        gate = self.gate(key)
        gate.leaving.add(ticket)
        self.pump(gate)

    async def release(self, key: str, ticket: str) -> None:
        self.unhold(key, ticket)
        try:
            await self.call(key, 0, leaving=(ticket,))
        except RedisError:
            log.warning("releasing a slot of %s failed: it frees when its lease ends", key)
        gate = self.gates.get(key)
        if gate is not None:  # this loop's own waiters need not wait for the message
            gate.wake.set()

    def pump(self, gate: _SharedGate) -> None:
        if gate.pump is None:
            gate.pump = self.spawn(self._pump(gate))
        else:
            gate.wake.set()

    async def _pump(self, gate: _SharedGate) -> None:
        try:
            if gate.waiters:
                # Subscribed before the first look, so no release after it is missed.
                await asyncio.wait([self._ensure_listening()], timeout=2.0)
            while gate.waiters or gate.leaving:
                gate.wake.clear()
                leaving, gate.leaving = gate.leaving, set()
                tickets = list(gate.waiters)
                try:
                    soonest, _, _, ranks = await self.call(gate.key, gate.limit, leaving, tickets)
                except RedisError:
                    gate.leaving |= leaving
                    log.warning("the capacity queue of %s: Redis failed", gate.key, exc_info=True)
                    await asyncio.sleep(POLL_SECONDS)
                    continue
                for ticket, rank in zip(tickets, ranks, strict=True):
                    waiter = gate.waiters.get(ticket)
                    if waiter is None or waiter.future.done():  # stopped meanwhile
                        gate.waiters.pop(ticket, None)
                        gate.leaving.add(ticket)
                    elif rank < 0:
                        del gate.waiters[ticket]
                        self.hold(gate.key, ticket)
                        waiter.future.set_result(None)
                    else:
                        waiter.tell(rank)
                if gate.leaving or not gate.waiters:
                    continue
                self._ensure_listening()  # restarts a listener that failed
                pause = POLL_SECONDS if soonest < 0 else min(POLL_SECONDS, soonest + 0.005)
                with suppress(TimeoutError):
                    await asyncio.wait_for(gate.wake.wait(), pause)
        except Exception as exc:  # a bug here: fail the waiters rather than strand them
            log.exception("the capacity queue of %s failed", gate.key)
            for waiter in gate.waiters.values():
                if not waiter.future.done():
                    waiter.future.set_exception(exc)
            raise
        finally:
            gate.pump = None
            if not gate.waiters and not gate.leaving and self.gates.get(gate.key) is gate:
                del self.gates[gate.key]
            if self._listener is not None and all(g.pump is None for g in self.gates.values()):
                self._listener.cancel()  # nobody waits on this loop: unsubscribe
                self._listener = None

    def _ensure_listening(self) -> asyncio.Future[None]:
        if self._listener is None or self._listener.done() or self._listening is None:
            self._listening = asyncio.get_running_loop().create_future()
            self._listener = self.spawn(self._listen(self._listening))
        return self._listening

    async def _listen(self, ready: asyncio.Future[None]) -> None:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(CHANNEL)
            ready.set_result(None)
            async for message in pubsub.listen():
                gate = self.gates.get(message["data"].decode(errors="replace"))
                if gate is not None:
                    gate.wake.set()
        except RedisError:
            log.warning("the capacity release channel failed; polling meanwhile", exc_info=True)
        finally:
            if not ready.done():
                ready.set_result(None)
            with suppress(Exception):
                await pubsub.aclose()

    async def _renew_leases(self) -> None:
        while self.holding:
            await asyncio.sleep(RENEW_SECONDS)
            held = {key: list(tickets) for key, tickets in self.holding.items()}
            if not held:
                return
            args: list[Any] = [int(LEASE_SECONDS * 1000)]
            for tickets in held.values():
                args += [len(tickets), *tickets]
            try:
                lost = await self._renew(keys=[f"{PREFIX}{k}:holders" for k in held], args=args)
            except RedisError:
                log.warning("renewing capacity leases failed; will retry", exc_info=True)
                continue
            mine = {t for tickets in self.holding.values() for t in tickets}
            gone = [t for t in (x.decode() for x in lost) if t in mine]
            if gone:  # the loop stalled past a lease: someone else may have the slot
                log.warning("%d capacity slot(s) outlived their lease", len(gone))

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.redis.aclose()


class _SharedSlot:
    __slots__ = ("fallback", "key", "limit", "shared", "ticket", "url", "waiting")

    def __init__(self, url: str, key: str, limit: int, waiting: Waiting | None) -> None:
        self.url = url
        self.key = key
        self.limit = limit
        self.waiting = waiting
        self.fallback: _LocalSlot | None = None

    async def __aenter__(self) -> None:
        shared = self.shared = _here().shared_for(self.url)
        key = self.key
        ticket = self.ticket = shared.ticket()
        # Shielded: a Stop mid-call must wait for the call's outcome before undoing it.
        attempt = asyncio.ensure_future(shared.call(key, self.limit, tickets=(ticket,)))
        try:
            _, _, _, (rank,) = await asyncio.shield(attempt)
        except asyncio.CancelledError:
            attempt.add_done_callback(lambda _: shared.leave(key, ticket))
            raise
        except RedisError:
            log.warning("capacity for %s: Redis failed, capping this process only", key)
            self.fallback = _LocalSlot(key, self.limit, self.waiting)
            await self.fallback.__aenter__()
            return
        if rank < 0:
            shared.hold(key, ticket)
            return
        gate = shared.gate(key)
        gate.limit = self.limit
        waiter = _Waiter(asyncio.get_running_loop().create_future(), self.waiting)
        gate.waiters[ticket] = waiter
        waiter.tell(rank)
        shared.pump(gate)
        try:
            await waiter.future
        except BaseException:
            gate.waiters.pop(ticket, None)
            if waiter.future.done() and not waiter.future.cancelled():
                shared.unhold(key, ticket)  # granted just as the Stop came
            waiter.future.cancel()
            shared.leave(key, ticket)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.fallback is not None:
            await self.fallback.__aexit__(exc_type, exc, tb)
            return
        # Shielded: a cancel while releasing still releases.
        await asyncio.shield(self.shared.spawn(self.shared.release(self.key, self.ticket)))


# --- per event loop -------------------------------------------------------------------


class _Loop:
    __slots__ = ("gates", "shared")

    def __init__(self) -> None:
        self.gates: dict[str, _LocalGate] = {}
        self.shared: dict[str, _Shared] = {}  # by REDIS_URL (tests switch it)

    def shared_for(self, url: str) -> _Shared:
        found = self.shared.get(url)
        if found is None:
            found = self.shared[url] = _Shared(url)
        return found


_loops: dict[asyncio.AbstractEventLoop, _Loop] = {}


def _here() -> _Loop:
    loop = asyncio.get_running_loop()
    found = _loops.get(loop)
    if found is None:
        for stale in [k for k in list(_loops) if k.is_closed()]:
            _loops.pop(stale, None)
        found = _loops[loop] = _Loop()
    return found
