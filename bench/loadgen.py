"""The load generator: an aiohttp client that runs in its own process.

`python -m bench.loadgen '<json spec>'` runs one scenario and prints one JSON
result line. It runs apart from the servers it measures (and from the mock) so that
on two cores its own work shows up as its own process, and it reports the CPU it
used so a reader can tell whether it, not the server, was the limit.

Modes:
- `http`: non-streaming POSTs from `concurrency` workers, closed loop.
- `sse`: streaming POSTs (OpenAI `chat.completion.chunk` events): time to first byte,
  time to first token, tokens received per second, streams that ended with [DONE].
- `ws`: Coppertone's WebSocket (`send` frames, `start`/`delta`/`done` back).
- `ws_attach`, `ws_follow`: a reply started on one socket and followed from another,
  perhaps on another process (bench/followers.py).
- `ws_idle`: open `connections` signed-in WebSockets and hold them; prints
  `{"event": "warm"}` and `{"event": "ready"}` lines and waits for a line on stdin
  between phases, so the caller can read the server's memory at each point.

Every scenario is bounded: `duration` seconds or `requests` in all, plus `timeout`
per request; nothing runs past `deadline` seconds.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.mock_upstream import TOKEN_CHARS, run_fast


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/mean/max in milliseconds, from seconds (nearest rank)."""
    if not values:
        return {}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))] * 1000

    return {
        "p50": rank(50),
        "p95": rank(95),
        "p99": rank(99),
        "mean": sum(ordered) / len(ordered) * 1000,
        "max": ordered[-1] * 1000,
        "n": len(ordered),
    }


@dataclass
class Stats:
    """What the workers record. Only events inside the measurement window count."""

    ok: int = 0
    errors: int = 0
    all_done: int = 0  # every finished request, warm-up included (for CPU per request)
    complete: int = 0
    incomplete: int = 0
    chars: int = 0  # reply characters received inside the window
    events: int = 0  # frames or SSE events with text inside the window (may hold several tokens)
    latency: list[float] = field(default_factory=list)
    ttfb: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    # Text events per second from the first to the last of each stream (a real model's
    # tokens/s, where each event carries one token of any length).
    event_rates: list[float] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.samples) < 5:
            self.samples.append(what[:300])


class Window:
    """The measurement window: after `warmup` seconds, for `duration` seconds."""

    def __init__(self, warmup: float, duration: float | None) -> None:
        self.start = time.perf_counter() + warmup
        self.end = self.start + duration if duration else float("inf")
        self.opened = time.perf_counter()

    def inside(self, t: float | None = None) -> bool:
        t = time.perf_counter() if t is None else t
        return self.start <= t <= self.end

    def over(self) -> bool:
        return time.perf_counter() > self.end


def text_of(event: dict[str, Any]) -> str:
    """Reply text in an OpenAI chunk (`choices[0].delta.content`) or a Coppertone frame."""
    choices = event.get("choices")
    if choices:
        return (choices[0].get("delta") or {}).get("content") or ""
    if event.get("type") == "delta" or "text" in event:
        return str(event.get("text") or "")
    return ""


class Scenario:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.mode: str = spec["mode"]
        self.url: str = spec["url"]
        self.headers: dict[str, str] = spec.get("headers", {})
        self.concurrency: int = int(spec.get("concurrency", 1))
        self.requests: int | None = spec.get("requests")
        self.expect_tokens: int = int(spec.get("expect_tokens", 0))
        self.timeout = float(spec.get("timeout", 30))
        self.stagger = float(spec.get("stagger", 0))
        self.stats = Stats()
        self.issued = 0
        self.window = Window(float(spec.get("warmup", 0)), spec.get("duration"))

    def take(self) -> bool:
        """May a worker start another request? Bounded by count and by time."""
        if self.window.over():
            return False
        if self.requests is not None and self.issued >= self.requests:
            return False
        self.issued += 1
        return True

    async def run(self) -> dict[str, Any]:
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            self.window = Window(float(self.spec.get("warmup", 0)), self.spec.get("duration"))
            workers = [
                asyncio.create_task(self.worker(session, i)) for i in range(self.concurrency)
            ]
            deadline = float(self.spec.get("deadline", 120))
            done, pending = await asyncio.wait(workers, timeout=deadline)
            for task in pending:
                task.cancel()
            if pending:
                self.stats.error(f"{len(pending)} workers still busy at the {deadline}s deadline")
            for task in done:
                if task.exception() is not None:
                    self.stats.error(f"worker crashed: {task.exception()!r}")
        finished = time.perf_counter()
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        measured = min(finished, self.window.end) - self.window.start
        if measured <= 0:  # a count-bounded run: the whole of it is the window
            measured = finished - self.window.opened
        cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        s = self.stats
        return {
            "mode": self.mode,
            "concurrency": self.concurrency,
            "ok": s.ok,
            "errors": s.errors,
            "error_samples": s.samples,
            "all_done": s.all_done,
            "complete": s.complete,
            "incomplete": s.incomplete,
            "seconds": measured,
            "rps": s.ok / measured if measured > 0 else 0.0,
            "tokens": s.chars // TOKEN_CHARS,
            "tokens_per_s": s.chars / TOKEN_CHARS / measured if measured > 0 else 0.0,
            "frames_per_s": s.events / measured if measured > 0 else 0.0,
            "latency_ms": percentiles(s.latency),
            "ttfb_ms": percentiles(s.ttfb),
            "ttft_ms": percentiles(s.ttft),
            "events_per_s_p50": sorted(s.event_rates)[len(s.event_rates) // 2]
            if s.event_rates
            else None,
            "loadgen_cpu_s": cpu,
            "loadgen_cpu_share": cpu / (finished - self.window.opened),
            **self.extra(measured),
        }

    def extra(self, measured: float) -> dict[str, Any]:
        """Figures of a mode beyond the common ones."""
        return {}

    async def worker(self, session: aiohttp.ClientSession, index: int) -> None:
        if self.stagger:
            await asyncio.sleep(self.stagger * index / max(1, self.concurrency))
        if self.mode == "ws":
            await self.ws_worker(session)
            return
        body = json.dumps(self.spec["body"]).encode()
        headers = {"Content-Type": "application/json", **self.headers}
        while self.take():
            if self.spec.get("vary_prompt"):
                # A new first line each time, so no server-side prompt cache can answer it.
                varied = json.loads(body)
                last = varied["messages"][-1]
                last["content"] = f"({self.issued}) {last['content']}"
                body = json.dumps(varied).encode()
            try:
                await asyncio.wait_for(
                    self.http_once(session, body, headers)
                    if self.mode == "http"
                    else self.sse_once(session, body, headers),
                    self.timeout,
                )
            except TimeoutError:
                self.stats.error(f"no complete answer within {self.timeout}s")
            except aiohttp.ClientError as exc:
                self.stats.error(f"{type(exc).__name__}: {exc}")
            self.stats.all_done += 1

    async def http_once(
        self, session: aiohttp.ClientSession, body: bytes, headers: dict[str, str]
    ) -> None:
        t0 = time.perf_counter()
        async with session.post(self.url, data=body, headers=headers) as response:
            data = await response.read()
        t1 = time.perf_counter()
        if response.status != 200:
            self.stats.error(f"HTTP {response.status}: {data[:200]!r}")
            return
        tail = self.spec.get("expect_tail", "").encode()
        if tail and tail not in data:
            self.stats.error(f"reply lacks the expected text: {data[:200]!r}")
            return
        if self.window.inside(t1):
            self.stats.ok += 1
            self.stats.latency.append(t1 - t0)

    async def sse_once(
        self, session: aiohttp.ClientSession, body: bytes, headers: dict[str, str]
    ) -> None:
        t0 = time.perf_counter()
        first_byte = first_token = None
        last_token = 0.0
        chars = pieces = 0
        finished = False
        buffer = b""
        async with session.post(self.url, data=body, headers=headers) as response:
            if response.status != 200:
                self.stats.error(f"HTTP {response.status}: {(await response.read())[:200]!r}")
                return
            async for data in response.content.iter_any():
                now = time.perf_counter()
                if first_byte is None:
                    first_byte = now
                buffer += data
                *events, buffer = buffer.split(b"\n\n")
                for raw in events:
                    for line in raw.split(b"\n"):
                        if not line.startswith(b"data:"):
                            continue
                        payload = line[5:].strip()
                        if payload == b"[DONE]":
                            finished = True
                            continue
                        event = json.loads(payload)
                        if "error" in event:
                            self.stats.error(f"error event: {payload[:200]!r}")
                            return
                        text = text_of(event)
                        if text:
                            if first_token is None:
                                first_token = now
                            last_token = now
                            pieces += 1
                            chars += len(text)
                            if self.window.inside(now):
                                self.stats.chars += len(text)
                                self.stats.events += 1
        if pieces > 1 and first_token is not None and last_token > first_token:
            self.stats.event_rates.append((pieces - 1) / (last_token - first_token))
        self.finish_stream(t0, first_byte, first_token, chars, finished)

    def finish_stream(
        self,
        t0: float,
        first_byte: float | None,
        first_token: float | None,
        chars: int,
        finished: bool,
    ) -> None:
        t1 = time.perf_counter()
        complete = finished and (
            not self.expect_tokens or chars == self.expect_tokens * TOKEN_CHARS
        )
        if not complete:
            self.stats.incomplete += 1
            self.stats.error(
                f"stream ended after {chars // TOKEN_CHARS} of {self.expect_tokens} tokens"
                + ("" if finished else " without its end marker")
            )
            return
        self.stats.complete += 1
        # A stream counts where it began, so a 2,000-token reply is not cut off at the end.
        if self.window.inside(t0) or self.requests is not None:
            self.stats.ok += 1
            self.stats.latency.append(t1 - t0)
            if first_byte is not None:
                self.stats.ttfb.append(first_byte - t0)
            if first_token is not None:
                self.stats.ttft.append(first_token - t0)

    async def ws_worker(self, session: aiohttp.ClientSession) -> None:
        message = json.dumps(self.spec["ws_message"])
        try:
            ws = await session.ws_connect(self.url, headers=self.headers, heartbeat=None)
        except aiohttp.ClientError as exc:
            self.stats.error(f"WebSocket refused: {type(exc).__name__}: {exc}")
            return
        async with ws:
            while self.take():
                try:
                    await asyncio.wait_for(self.ws_once(ws, message), self.timeout)
                except TimeoutError:
                    self.stats.error(f"no done frame within {self.timeout}s")
                    return
                self.stats.all_done += 1
                if ws.closed:
                    self.stats.error(f"the server closed the socket (code {ws.close_code})")
                    return

    async def ws_once(self, ws: aiohttp.ClientWebSocketResponse, message: str) -> None:
        t0 = time.perf_counter()
        first_byte = first_token = None
        chars = 0
        await ws.send_str(message)
        async for frame in ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            now = time.perf_counter()
            if first_byte is None:
                first_byte = now
            event = json.loads(frame.data)
            kind = event.get("type")
            if kind == "delta":
                text = str(event.get("text") or "")
                if first_token is None:
                    first_token = now
                chars += len(text)
                if self.window.inside(now):
                    self.stats.chars += len(text)
                    self.stats.events += 1
            elif kind == "done":
                self.finish_stream(t0, first_byte, first_token, chars, True)
                return
            elif kind == "error":
                self.stats.error(f"error frame: {frame.data[:200]}")
                return
        self.finish_stream(t0, first_byte, first_token, chars, False)


async def hold_idle(spec: dict[str, Any]) -> dict[str, Any]:
    """Open signed-in WebSockets in two steps and hold them while the caller reads memory."""
    url, headers = spec["url"], spec.get("headers", {})
    gate = asyncio.Semaphore(int(spec.get("open_concurrency", 100)))
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    refused: list[str] = []
    readers: list[asyncio.Task[None]] = []
    connector = aiohttp.TCPConnector(limit=0)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    hold = float(spec.get("hold", 60))

    async def drain(ws: aiohttp.ClientWebSocketResponse) -> None:
        # Reading is how a client notices that the server closed the socket.
        async for _ in ws:
            pass

    async def open_one(session: aiohttp.ClientSession) -> None:
        async with gate:
            try:
                ws = await session.ws_connect(url, headers=headers, heartbeat=None)
                sockets.append(ws)
                readers.append(asyncio.create_task(drain(ws)))
            except (aiohttp.ClientError, TimeoutError) as exc:
                if len(refused) < 5:
                    refused.append(f"{type(exc).__name__}: {exc}"[:200])
                else:
                    refused.append("")

    async def step(count: int, event: str) -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(open_one(session) for _ in range(count)))
        took = time.perf_counter() - t0
        # Give the server a moment to close anything it refused after the handshake.
        await asyncio.sleep(float(spec.get("settle", 1.0)))
        alive = sum(1 for ws in sockets if not ws.closed)
        print(json.dumps({"event": event, "open": alive}), flush=True)
        await asyncio.wait_for(reader.readline(), hold)
        return took

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await step(int(spec.get("warm", 20)), "warm")
        open_seconds = await step(int(spec["connections"]), "ready")
        alive = sum(1 for ws in sockets if not ws.closed)
        codes = sorted({ws.close_code for ws in sockets if ws.closed and ws.close_code})
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        await asyncio.gather(*readers, return_exceptions=True)
    return {
        "mode": "ws_idle",
        "opened": len(sockets),
        "alive": alive,
        "refused": len(refused),
        "error_samples": [r for r in refused if r],
        "close_codes": codes,
        "open_seconds": open_seconds,
    }


async def main_async(spec: dict[str, Any]) -> dict[str, Any]:
    if spec["mode"] == "ws_idle":
        return await hold_idle(spec)
    if spec["mode"] in ("ws_attach", "ws_follow"):
        from bench import followers  # builds on Scenario, so it is imported here, after it

        return await followers.SCENARIOS[spec["mode"]](spec).run()
    return await Scenario(spec).run()


def main() -> None:
    spec = json.loads(sys.argv[1])
    result: dict[str, Any] = {}

    async def runner() -> None:
        result.update(await main_async(spec))

    run_fast(runner())
    print(json.dumps({"event": "result", **result}), flush=True)


if __name__ == "__main__":
    main()
