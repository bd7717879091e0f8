"""What the operations hooks cost: a turn's metrics and log line, a request's id and line.

    .venv/bin/python -m bench.metrics [--rounds 5] [--count 100000]

Each case is timed `--rounds` times over `--count` calls; the best round is reported,
in microseconds per call:
  turn metrics     metrics.turn_ended: every counter and histogram of one ended turn,
                   in prometheus-client's multiprocess mode (the default), one provider
                   and model (the children are looked up once)
  turn line        logs.turn_ended written to /dev/null, plain and JSON
  refusal, reply   metrics.refused, and reply_started + reply_ended together
  request id       llm/logs.py's ASGI wrapper around an app that answers at once,
                   beyond that app's own cost: with the request line off (plain, the
                   default) and on (LOG_FORMAT=json)

The metrics go to a temporary PROMETHEUS_MULTIPROC_DIR, not the machine's.
`measure()` is importable with no side effects.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import django


def _per_call(run: Callable[[], None], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        run()
    return (time.perf_counter() - started) / count * 1e6


def _best(rounds: int, count: int, run: Callable[[], None]) -> float:
    _per_call(run, min(count, 1000))  # warm: first label lookups, files opened
    return min(_per_call(run, count) for _ in range(rounds))


def _to_devnull(formatter: logging.Formatter) -> logging.Handler:
    from llm.logs import RequestIdFilter
    from llm.redaction import RedactSecrets

    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 (closed below)
    handler.setFormatter(formatter)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactSecrets())
    return handler


def _with_handler(handler: logging.Handler, run: Callable[[], float]) -> float:
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [handler]
    try:
        return run()
    finally:
        root.handlers = saved
        handler.close()


async def _answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _requests(app: Any, count: int) -> float:
    scope = {"type": "http", "method": "GET", "path": "/v1/models", "headers": []}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        return None

    async def many() -> float:
        started = time.perf_counter()
        for _ in range(count):
            await app(scope, receive, send)
        return (time.perf_counter() - started) / count * 1e6

    return asyncio.run(many())


def _measure(rounds: int, count: int) -> dict[str, Any]:
    from llm import logs, metrics
    from llm.events import TurnFinished

    finished = TurnFinished(
        conversation_id=7,
        message_id=41,
        status="complete",
        content="",
        html="",
        provider="openai",
        model="gpt-4o",
        input_tokens=120,
        output_tokens=300,
        cost=Decimal("0.003300"),
        ttft_ms=230.0,
        latency_ms=1900.0,
        error=None,
    )
    result: dict[str, Any] = {"rounds": rounds, "count": count}
    result["turn_metrics_us"] = _best(rounds, count, lambda: metrics.turn_ended(finished))
    result["refusal_us"] = _best(rounds, count, lambda: metrics.refused("rate_limited"))

    def reply() -> None:
        metrics.reply_started()
        metrics.reply_ended()

    result["reply_us"] = _best(rounds, count, reply)
    plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    line_count = max(count // 10, 1000)
    result["line_count"] = line_count
    for name, formatter in (("plain", plain), ("json", logs.JsonFormatter())):
        result[f"turn_line_{name}_us"] = _with_handler(
            _to_devnull(formatter),
            lambda: _best(rounds, line_count, lambda: logs.turn_ended(finished, 3)),
        )

    wrapped = logs.with_request_id(_answer)
    access = logging.getLogger("coppertone.access")
    bare = min(_requests(_answer, line_count) for _ in range(rounds))
    access.setLevel(logging.WARNING)
    result["request_id_off_us"] = min(_requests(wrapped, line_count) for _ in range(rounds)) - bare
    access.setLevel(logging.INFO)
    result["request_id_json_us"] = _with_handler(
        _to_devnull(logs.JsonFormatter()),
        lambda: min(_requests(wrapped, line_count) for _ in range(rounds)) - bare,
    )
    return result


def measure(rounds: int = 5, count: int = 100_000) -> dict[str, Any]:
    result = _measure(rounds, count)
    _print(result)
    return result


def _print(result: dict[str, Any]) -> None:
    print(f"best of {result['rounds']} rounds; {result['count']} calls, lines and requests a tenth")
    print(f"  turn metrics (metrics.turn_ended)      {result['turn_metrics_us']:8.2f} us a turn")
    print(f"  turn line, plain                        {result['turn_line_plain_us']:8.2f} us")
    print(f"  turn line, json                         {result['turn_line_json_us']:8.2f} us")
    print(f"  refusal (metrics.refused)               {result['refusal_us']:8.2f} us")
    print(f"  live reply (started + ended)            {result['reply_us']:8.2f} us")
    print(f"  request id, request line off (plain)    {result['request_id_off_us']:8.2f} us")
    print(f"  request id + request line (json)        {result['request_id_json_us']:8.2f} us")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=100_000)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coppertone.settings")
    # Before the settings are read: the bench's values must not reach the real /metrics.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-metrics-")
    django.setup()
    measure(rounds=args.rounds, count=args.count)


if __name__ == "__main__":
    main()
