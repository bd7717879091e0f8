"""Load generator modes for replies that outlive their sockets (run by bench.loadgen).

- `ws_attach`: one socket starts a paced reply, another (on `attach_url`, which may be
  another process) attaches to it mid-stream: the time from the `attach` frame to the
  first replayed frame.
- `ws_follow`: each worker starts long replies on one socket while `followers` sockets
  on `attach_url` attach to each as it starts: the followers' chunks/s, counted apart
  from the starting socket's.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, NamedTuple

import aiohttp

from bench.loadgen import Scenario, Stats, percentiles
from bench.mock_upstream import TOKEN_CHARS

Socket = aiohttp.ClientWebSocketResponse


async def next_event(ws: Socket) -> dict[str, Any] | None:
    """The next frame as JSON, or None once the socket is closed."""
    frame = await ws.receive()
    if frame.type != aiohttp.WSMsgType.TEXT:
        return None
    event: dict[str, Any] = json.loads(frame.data)
    return event


async def read_to_end(ws: Socket) -> dict[str, Any] | None:
    """Read a reply's frames up to its `done` or `error`; return that last frame."""
    while True:
        event = await next_event(ws)
        if event is None or event.get("type") in ("done", "error"):
            return event


def shown(event: dict[str, Any] | None) -> str:
    return "the socket closing" if event is None else json.dumps(event)[:200]


def is_done(event: dict[str, Any] | None) -> bool:
    return event is not None and event.get("type") == "done"


async def connect_all(
    session: aiohttp.ClientSession, targets: list[tuple[str, dict[str, str]]]
) -> list[Socket]:
    """Open a socket per (url, headers); if one is refused, close the others and raise."""
    sockets: list[Socket] = []
    try:
        for url, headers in targets:
            sockets.append(await session.ws_connect(url, headers=headers, heartbeat=None))
    except BaseException:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        raise
    return sockets


class Attaching(Scenario):
    """What both modes share: a starting socket on `url`, others on `attach_url`."""

    followers = 1

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.attach_url: str = spec.get("attach_url") or self.url
        self.attach_headers: dict[str, str] = spec.get("attach_headers") or self.headers

    async def worker(self, session: aiohttp.ClientSession, index: int) -> None:
        targets = [(self.url, self.headers)]
        targets += [(self.attach_url, self.attach_headers)] * self.followers
        try:
            starter, *followers = await connect_all(session, targets)
        except aiohttp.ClientError as exc:
            self.stats.error(f"WebSocket refused: {type(exc).__name__}: {exc}")
            return
        try:
            while self.take():
                try:
                    await asyncio.wait_for(self.once(starter, followers), self.timeout)
                except TimeoutError:
                    self.stats.error(f"no end of the reply within {self.timeout}s")
                    return
                self.stats.all_done += 1
        finally:
            await asyncio.gather(starter.close(), *(ws.close() for ws in followers))

    async def once(self, starter: Socket, followers: list[Socket]) -> None:
        raise NotImplementedError


class Attach(Attaching):
    """`ws_attach`: attach to a reply another socket started, while it streams.

    The starting socket reads until seq `after_seq`, waits `settle` seconds (longer than
    the runner's flush interval, so the shared log holds what was sent), and the other
    socket sends `attach` with `after: 1`. Timed: from sending that frame to the first
    frame back, which must be a replayed delta. Then the starter stops the reply and
    both read to its end, so one attach costs a fraction of a second.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.after_seq = int(spec.get("after_seq", 10))
        self.settle = float(spec.get("settle", 0.1))
        self.attach_times: list[float] = []
        self.replayed_chars: list[int] = []

    async def once(self, starter: Socket, followers: list[Socket]) -> None:
        (follower,) = followers
        await starter.send_str(json.dumps(self.spec["ws_message"]))
        message_id, seq = None, 0
        while message_id is None or seq < self.after_seq:
            event = await next_event(starter)
            if event is None or event.get("type") in ("done", "error"):
                self.stats.error(f"the reply ended before the attach: {shown(event)}")
                return
            if event.get("type") == "start":
                message_id = int(event["message_id"])
            seq = int(event.get("seq") or seq)
        await asyncio.sleep(self.settle)
        attach = json.dumps({"type": "attach", "message_id": message_id, "after": 1})
        t0 = time.perf_counter()
        await follower.send_str(attach)
        first = await next_event(follower)
        took = time.perf_counter() - t0
        await starter.send_str(json.dumps({"type": "stop", "message_id": message_id}))
        last = await read_to_end(starter)
        if first is not None and first.get("type") not in ("done", "error"):
            last = await read_to_end(follower)
        if first is None or first.get("type") != "delta" or int(first.get("seq") or 0) < 2:
            self.stats.error(f"the first frame after attach was not a replay: {shown(first)}")
        elif not is_done(last):
            self.stats.error(f"the attached reply ended with {shown(last)}")
        else:
            self.stats.ok += 1
            self.attach_times.append(took)
            self.replayed_chars.append(len(str(first.get("text") or "")))

    def extra(self, measured: float) -> dict[str, Any]:
        chars = sorted(self.replayed_chars)
        return {
            "attach_ms": percentiles(self.attach_times),
            "after_seq": self.after_seq,
            "replayed_tokens_p50": chars[len(chars) // 2] // TOKEN_CHARS if chars else None,
        }


class Reading(NamedTuple):
    chars: int
    first_token: float | None
    ended: float
    last: dict[str, Any] | None  # the `done` or `error` frame, None if the socket closed


class Follow(Attaching):
    """`ws_follow`: followers on `attach_url` read each reply a worker's socket started.

    Each follower attaches with `after: 0` as soon as the `start` frame arrives and reads
    to the end; its deltas are counted apart from the starting socket's (which count as
    in `ws`). A follower that attached after the reply had ended gets the `done` frame
    alone: it is counted as late, not as relayed.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.followers = int(spec.get("followers", 1))
        self.following = Stats()
        self.late = 0
        self.end_lag: list[float] = []  # a follower's `done` after the starting socket's

    async def once(self, starter: Socket, followers: list[Socket]) -> None:
        t0 = time.perf_counter()
        await starter.send_str(json.dumps(self.spec["ws_message"]))
        first = await next_event(starter)
        first_byte = time.perf_counter()
        if first is None or first.get("type") != "start":
            self.stats.error(f"no start frame: {shown(first)}")
            return
        attach = json.dumps({"type": "attach", "message_id": first["message_id"], "after": 0})
        own, *followed = await asyncio.gather(
            self.read(starter, self.stats), *(self.follow(ws, attach) for ws in followers)
        )
        if own.last is not None and not is_done(own.last):
            self.stats.error(f"the starting socket got {shown(own.last)}")
        self.finish_stream(t0, first_byte, own.first_token, own.chars, is_done(own.last))
        expected = self.expect_tokens * TOKEN_CHARS
        for reading in followed:
            if is_done(reading.last) and reading.chars == 0:
                self.late += 1
            elif is_done(reading.last) and (not expected or reading.chars == expected):
                self.following.complete += 1
                self.end_lag.append(reading.ended - own.ended)
            else:
                self.following.incomplete += 1
                self.stats.error(
                    f"a follower got {reading.chars // TOKEN_CHARS} of {self.expect_tokens} "
                    f"tokens, then {shown(reading.last)}"
                )

    async def follow(self, ws: Socket, attach: str) -> Reading:
        await ws.send_str(attach)
        return await self.read(ws, self.following)

    async def read(self, ws: Socket, stats: Stats) -> Reading:
        """One reply's frames to its end, counting the deltas inside the window in `stats`."""
        chars, first_token = 0, None
        while True:
            event = await next_event(ws)
            now = time.perf_counter()
            kind = None if event is None else event.get("type")
            if kind == "delta":
                assert event is not None
                text = str(event.get("text") or "")
                if first_token is None:
                    first_token = now
                chars += len(text)
                if self.window.inside(now):
                    stats.chars += len(text)
                    stats.events += 1
            elif kind != "start":
                return Reading(chars, first_token, now, event)

    def extra(self, measured: float) -> dict[str, Any]:
        f, count = self.following, self.concurrency * self.followers
        tokens_per_s = f.chars / TOKEN_CHARS / measured if measured > 0 else 0.0
        return {
            "followers": {
                "sockets": count,
                "per_reply": self.followers,
                "complete": f.complete,
                "late": self.late,
                "incomplete": f.incomplete,
                "tokens_per_s": tokens_per_s,
                "tokens_per_s_each": tokens_per_s / max(1, count),
                "frames_per_s": f.events / measured if measured > 0 else 0.0,
                "end_lag_ms": percentiles(self.end_lag),
            }
        }


SCENARIOS: dict[str, type[Scenario]] = {"ws_attach": Attach, "ws_follow": Follow}
