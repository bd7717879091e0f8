"""Server-sent events out: one socket write for every frame that is ready at once.

A socket write per token was the largest single cost of relaying a stream (uvicorn
writes each ASGI body message straight to the socket). Providers send tokens in
bursts: one read upstream often holds several events. `batched` lets the turn run
ahead in its own task and hands Django whatever frames piled up since the last write,
joined, so a burst goes out as one write, while a lone token still goes out at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


async def batched(frames: AsyncIterator[str]) -> AsyncIterator[str]:
    """Re-yield `frames`, joining those produced while the previous write was going out.

    Closing or cancelling this generator cancels the producer, which is how a client
    that leaves reaches the turn (stored as stopped) before this generator ends.
    """
    pending: list[str] = []
    ready = asyncio.Event()
    finished = False

    async def produce() -> None:
        nonlocal finished
        try:
            async for frame in frames:
                pending.append(frame)
                ready.set()
        finally:
            finished = True
            ready.set()

    producer = asyncio.create_task(produce())
    try:
        while True:
            if not pending and not finished:
                await ready.wait()
                ready.clear()
            if pending:
                batch = "".join(pending)
                pending.clear()
                yield batch
            elif finished:
                break
        await producer  # its exception, if it failed, is this response's
    finally:
        if not producer.done():
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer
