"""What the breaker and cap checks add to a turn, in microseconds.

    .venv/bin/python -m bench.resilience            (SQLite in a temporary directory)
    DATABASE_URL=postgres://... python -m bench.resilience

Per turn the engine checks its target's two breakers (llm/breakers.py `gate`: the
configuration's state, which came with the start trip's query, and the open servers
kept in memory) and, for a capped server, takes a slot (llm/capacity.py). This times
the same calls the turn makes, on this process's event loop, for:
  closed      both breakers closed, a hosted API (no cap): the common case;
  capped      the same with a local server's cap of 8 (in-process queue, a free slot);
  refresh     the once-a-second re-read of the open servers, amortised over the
              turns of that second at 100 turns/s.
It prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from typing import Any

import django

ROUNDS = 20_000


def _setup() -> None:
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coppertone.settings")
    os.environ.pop("REDIS_URL", None)  # the in-process queue: what one worker pays itself
    sys.path.insert(0, os.getcwd())
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


async def _time(rounds: int, check: Any) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        await check()
    return (time.perf_counter() - started) / rounds * 1e6


async def _run() -> dict[str, float]:
    from django.utils import timezone

    from llm import breakers, capacity
    from llm.models import ProviderConfig

    hosted = ProviderConfig(kind="openai", base_url="https://api.openai.com/v1")
    local = ProviderConfig(kind="ollama", base_url="http://127.0.0.1:11434/v1")
    await asyncio.to_thread(breakers.servers.refresh)

    def gate(config: ProviderConfig) -> None:
        breakers.servers.read_at = time.monotonic()  # the refresh is timed on its own
        breakers.gate(config, breakers.address(config.effective_base_url), timezone.now())

    async def closed() -> None:
        gate(hosted)
        async with capacity.slot(hosted.effective_base_url, hosted.concurrency):
            pass

    async def capped() -> None:
        gate(local)
        async with capacity.slot(local.effective_base_url, local.concurrency):
            pass

    def refresh() -> None:
        breakers.servers.forget()
        breakers.servers.refresh()

    await _time(1000, closed)  # warm up
    result = {
        "closed_us": await _time(ROUNDS, closed),
        "capped_us": await _time(ROUNDS, capped),
    }
    started = time.perf_counter()
    for _ in range(200):
        await asyncio.to_thread(refresh)
    per_refresh = (time.perf_counter() - started) / 200 * 1e6
    result["refresh_us_per_turn_at_100_per_s"] = per_refresh / 100
    return {name: round(value, 2) for name, value in result.items()}


def main() -> int:
    _setup()
    print(json.dumps(asyncio.run(_run())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
