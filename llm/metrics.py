"""Prometheus metrics: every update the hub makes is a function here, one line at its hook.

    turn_ended(finished)     where every turn ends (llm/turns.py Turn._store)
    refused(code)            a limit refused a turn (llm/turn_trips.py)
    reply_started/_ended()   a live reply (llm/replies.py)
    queued(upstream, line)   a turn waiting for a capped upstream (llm/turns.py)
    breaker_opened(scope)    a circuit breaker opened (llm/breakers.py)

Values live in prometheus-client's multiprocess files (llm/metrics_store.py), so GET
/metrics adds up every worker. A turn's updates cost a few microseconds
(bench/metrics.py): the labelled children are looked up once per provider and model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from llm import metrics_store
from llm.events import TurnFinished
from llm.redaction import redact

__all__ = [
    "breaker_opened",
    "queued",
    "refused",
    "reply_ended",
    "reply_started",
    "turn_ended",
]

# Before the first value: a fresh run empties the directory, a worker joining keeps it.
metrics_store.prepare()

FIRST_TOKEN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
TURN_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# Model names and base URLs come from callers: past this many distinct ones in a
# process, the rest share the label "other" rather than grow the files without end.
MAX_SERIES = 200
OTHER = "other"
LABEL_CHARS = 100

TURNS = Counter(
    "coppertone_turns", "Chat turns that ended, by how.", ["provider", "model", "status"]
)
TOKENS = Counter(
    "coppertone_tokens",
    "Tokens of ended turns: input (the prompt) and output (the reply).",
    ["provider", "model", "direction"],
)
COST = Counter(
    "coppertone_cost_usd", "What ended turns cost, in US dollars.", ["provider", "model"]
)
FIRST_TOKEN = Histogram(
    "coppertone_first_token_seconds",
    "From a turn's start to its first token (replies from the reply cache not counted).",
    ["provider", "model"],
    buckets=FIRST_TOKEN_BUCKETS,
)
TURN_TIME = Histogram(
    "coppertone_turn_seconds",
    "From a turn's start to its end, however it ended (reply cache hits not counted).",
    ["provider", "model"],
    buckets=TURN_BUCKETS,
)
LIVE_REPLIES = Gauge(
    "coppertone_live_replies", "Replies being written now.", multiprocess_mode="livesum"
)
QUEUED = Gauge(
    "coppertone_queued_turns",
    "Turns waiting for a slot of a capped upstream server.",
    ["upstream"],
    multiprocess_mode="livesum",
)
REFUSALS = Counter(
    "coppertone_refusals", "Turns a rate limit or budget refused, by error code.", ["code"]
)
BREAKER_OPENS = Counter(
    "coppertone_breaker_opens",
    "Circuit breakers opened (again, after a failed probe), per person's configuration "
    "or per upstream server.",
    ["scope"],
)


def _label(text: str) -> str:
    return redact(text)[:LABEL_CHARS]


class _Series:
    """One provider and model's children, so that a turn looks up no labels."""

    __slots__ = ("cost", "first_token", "input", "labels", "output", "turn_time", "turns")

    def __init__(self, provider: str, model: str) -> None:
        self.labels = (_label(provider), _label(model))
        self.turns: dict[str, Any] = {}
        self.input = TOKENS.labels(*self.labels, "input")
        self.output = TOKENS.labels(*self.labels, "output")
        self.cost = COST.labels(*self.labels)
        self.first_token = FIRST_TOKEN.labels(*self.labels)
        self.turn_time = TURN_TIME.labels(*self.labels)

    def ended(self, status: str) -> Any:
        found = self.turns.get(status)
        if found is None:
            found = self.turns[status] = TURNS.labels(*self.labels, status)
        return found


_series: dict[tuple[str, str], _Series] = {}
_upstreams: dict[str, Any] = {}


def _series_for(provider: str, model: str) -> _Series:
    found = _series.get((provider, model))
    if found is None:
        key = (provider, model) if len(_series) < MAX_SERIES else (provider, OTHER)
        found = _series.get(key)
        if found is None:
            found = _series[key] = _Series(*key)
    return found


def turn_ended(finished: TurnFinished) -> None:
    series = _series_for(finished.provider, finished.model)
    series.ended(finished.status).inc()
    if finished.input_tokens:
        series.input.inc(finished.input_tokens)
    if finished.output_tokens:
        series.output.inc(finished.output_tokens)
    if finished.cost:
        series.cost.inc(float(finished.cost))
    if finished.cached:
        return  # no upstream call: its times say nothing about the provider
    if finished.ttft_ms is not None:
        series.first_token.observe(finished.ttft_ms / 1000)
    series.turn_time.observe(finished.latency_ms / 1000)


def refused(code: str) -> None:
    REFUSALS.labels(code).inc()


def reply_started() -> None:
    LIVE_REPLIES.inc()


def reply_ended() -> None:
    LIVE_REPLIES.dec()


def breaker_opened(scope: str, count: int = 1) -> None:
    """`scope`: "configuration" (a person's) or "server"; `count`: how many opened."""
    if count:
        BREAKER_OPENS.labels(scope).inc(count)


def _queue_gauge(upstream: str) -> Any:
    found = _upstreams.get(upstream)
    if found is None:
        key = upstream if len(_upstreams) < MAX_SERIES else OTHER
        found = _upstreams.get(key)
        if found is None:
            found = _upstreams[key] = QUEUED.labels(_label(key))
    return found


async def queued(upstream: str, line: AsyncIterator[int]) -> AsyncIterator[int]:
    """`line` (a turn's place in a capped upstream's queue), counted as waiting from its
    first place to its end (the slot granted, a Stop, an error)."""
    gauge = None
    try:
        async for ahead in line:
            if gauge is None:
                gauge = _queue_gauge(upstream)
                gauge.inc()
            yield ahead
    finally:
        if gauge is not None:
            gauge.dec()
