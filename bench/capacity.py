"""What a `capacity.slot()` costs the engine: one enter + exit, with the slot free.

    .venv/bin/python -m bench.capacity [--rounds 5] [--count 100000]
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python -m bench.capacity

Three cases, each timed `--rounds` times over `--count` enters and exits on one event
loop (Redis: a tenth as many, each is two round trips); the best round is reported,
in microseconds per enter + exit:
  no cap       limit 0, the hosted APIs' case: no I/O at all
  in-process   a cap of 1 with the slot free (no REDIS_URL, or shared=False)
  redis        a cap of 1 shared on Redis with the slot free (skipped without REDIS_URL),
               beside one PING round trip on the same connection, for scale

`measure()` is importable with no side effects.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import django


async def _round(key: str, limit: int, count: int, shared: bool) -> float:
    from llm import capacity

    slot = capacity.slot
    started = time.perf_counter()
    for _ in range(count):
        async with slot(key, limit, shared=shared):
            pass
    return (time.perf_counter() - started) / count * 1e6


async def _pings(url: str, count: int) -> float:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        started = time.perf_counter()
        for _ in range(count):
            await client.ping()
        return (time.perf_counter() - started) / count * 1e6
    finally:
        await client.aclose()


async def _best(rounds: int, run: Callable[[], Any]) -> float:
    await run()  # warm: imports, the Redis connection, the script's first load
    return min([await run() for _ in range(rounds)])


async def _measure(rounds: int, count: int) -> dict[str, Any]:
    from django.conf import settings

    from llm import capacity

    key = f"bench-{uuid.uuid4().hex[:8]}"
    result: dict[str, Any] = {"rounds": rounds, "count": count}
    result["no_cap_us"] = await _best(rounds, lambda: _round(key, 0, count, True))
    result["in_process_us"] = await _best(rounds, lambda: _round(key, 1, count, False))
    result["redis_us"] = None
    if settings.REDIS_URL:
        shared_count = max(count // 10, 100)
        result["redis_count"] = shared_count
        result["redis_us"] = await _best(rounds, lambda: _round(key, 1, shared_count, True))
        result["ping_us"] = await _best(rounds, lambda: _pings(settings.REDIS_URL, shared_count))
    await capacity.close()
    return result


def measure(rounds: int = 5, count: int = 100_000) -> dict[str, Any]:
    result = asyncio.run(_measure(rounds, count))
    _print(result)
    return result


def _print(result: dict[str, Any]) -> None:
    print(
        f"capacity.slot() enter + exit, slot free, best of {result['rounds']} rounds "
        f"of {result['count']}"
    )
    print(f"  no cap (limit 0)  {result['no_cap_us']:8.2f} us")
    print(f"  in-process        {result['in_process_us']:8.2f} us")
    if result["redis_us"] is None:
        print("  redis             skipped (no REDIS_URL)")
    else:
        print(
            f"  redis             {result['redis_us']:8.2f} us "
            f"(rounds of {result['redis_count']}: two round trips each; "
            f"one PING {result['ping_us']:.2f} us)"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=100_000)
    args = parser.parse_args(argv)
    # The project's settings, as the engine sees them: REDIS_URL comes from there.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coppertone.settings")
    django.setup()
    measure(rounds=args.rounds, count=args.count)


if __name__ == "__main__":
    main()
