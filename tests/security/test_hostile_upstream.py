"""Hole 2: a hostile upstream cannot freeze the hub, nor keep a turn open forever.

Alice points her provider at a server that means harm (tests/fakes: a 16 MB `data:`
line with no newline, a byte every so often, a reply without end). Her turn ends with
an error that says what happened, her partial reply is stored, and bob's turns on
another provider carry on as if nothing happened.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.db import OperationalError

from accounts.models import User
from llm.events import TextDelta, TurnFinished
from llm.models import Message
from llm.turns import run_turn
from tests.engine.conftest import configure
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.django_db(transaction=True)

PARTIAL = "Here is the start of an answer"
TRIALS = 7
# The bound: another person's first token is not delayed by more than this.
FAIRNESS_MS = 50.0


@pytest.fixture(autouse=True)
def _engine(settings: Any, replies_end: None) -> None:
    cache.clear()  # empty rate-limit windows
    settings.LLM_MAX_RETRIES = 0
    settings.LLM_RATE_LIMIT = "1000/m"


@sync_to_async
def _setup(user: User, fake: FakeOpenAI | FakeAnthropic, kind: str, model: str) -> None:
    configure(user, fake, kind=kind, model=model)


@sync_to_async
def _stored(message_id: int) -> Message:
    return Message.objects.get(pk=message_id)


async def _finish(user: User, provider: str, started: asyncio.Event | None = None) -> TurnFinished:
    """Run one turn to its end; `started` is set at its first token."""
    last: Any = None
    async for last in run_turn(user, "Tell me something", provider=provider):
        if started is not None and isinstance(last, TextDelta):
            started.set()
    assert isinstance(last, TurnFinished)
    return last


async def test_a_16_mb_line_ends_the_turn_in_words_and_keeps_the_text(
    alice: User, fake_openai: FakeOpenAI
) -> None:
    await _setup(alice, fake_openai, "openai", "gpt-4o")
    fake_openai.scenario("huge_line", PARTIAL)

    began = time.monotonic()
    async with asyncio.timeout(10):
        finished = await _finish(alice, "openai")
    elapsed = time.monotonic() - began

    assert elapsed < 2.0  # it took 11.6 s of a blocked event loop, measured, before
    assert finished.status == "error" and finished.error is not None
    assert finished.error.message == (
        "OpenAI sent a line longer than 1 MB, more than Coppertone accepts; the reply was "
        "stopped there and what arrived is kept. Is the base URL right?"
    )
    reply = await _stored(finished.message_id)
    assert reply.status == "error" and reply.error_message == finished.error.message
    assert reply.content and PARTIAL.startswith(reply.content)
    assert await fake_openai.closed(2)  # hung up on, not read to its end


async def test_a_drip_fed_turn_ends_at_the_turn_deadline(
    alice: User, fake_openai: FakeOpenAI, settings: Any
) -> None:
    # A byte every 0.2 s never trips the 1 s idle timeout, as a byte every 59 s never
    # trips the default 60 s one; the turn deadline ends it.
    settings.LLM_IDLE_TIMEOUT = 1.0
    settings.LLM_TURN_DEADLINE_SECONDS = 1.5
    await _setup(alice, fake_openai, "openai", "gpt-4o")
    fake_openai.scenario("drip", PARTIAL, drip_every=0.2)

    began = time.monotonic()
    async with asyncio.timeout(10):
        finished = await _finish(alice, "openai")

    assert 1.5 <= time.monotonic() - began < 4.0
    assert finished.status == "error" and finished.error is not None
    assert finished.error.code == "provider_timeout"
    assert finished.error.message == (
        "OpenAI took longer than 1.5 s, the most one reply may take; it was stopped there "
        "and what arrived is kept. Try again."
    )
    reply = await _stored(finished.message_id)
    assert reply.status == "error" and reply.content and PARTIAL.startswith(reply.content)
    assert await fake_openai.closed(2)


async def test_an_endless_reply_stops_at_the_reply_cap(
    alice: User, fake_openai: FakeOpenAI, settings: Any
) -> None:
    settings.LLM_MAX_REPLY_CHARS = 2000
    await _setup(alice, fake_openai, "openai", "gpt-4o")
    fake_openai.scenario("endless", "and again ")

    async with asyncio.timeout(10):
        finished = await _finish(alice, "openai")

    assert finished.status == "error" and finished.error is not None
    assert finished.error.message == (
        "The reply grew past 2,000 characters, the most Coppertone keeps of one reply; it "
        "was stopped there and what arrived is kept."
    )
    reply = await _stored(finished.message_id)
    assert reply.status == "error" and reply.content == ("and again " * 200)
    assert await fake_openai.closed(2)


async def _first_token(user: User, provider: str) -> tuple[float, asyncio.Future[TurnFinished]]:
    """Start a turn; the milliseconds to its first token, and the turn to await."""
    began = time.monotonic()
    started = asyncio.Event()
    turn = asyncio.ensure_future(_finish(user, provider, started))
    token = asyncio.ensure_future(started.wait())
    await asyncio.wait({turn, token}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    ms = (time.monotonic() - began) * 1000
    token.cancel()
    if not started.is_set():
        if not turn.done():
            turn.cancel()
        await turn  # raises what ended it
        raise AssertionError(f"{user}'s turn ended without a token")
    return ms, turn


async def _bob_alone(bob: User) -> float:
    ms, turn = await _first_token(bob, "anthropic")
    assert (await turn).status == "complete"
    return ms


async def _bob_beside_the_line(alice: User, bob: User) -> float:
    _, hostile = await _first_token(alice, "openai")  # the 16 MB line comes right after
    try:
        ms, turn = await _first_token(bob, "anthropic")
        assert (await turn).status == "complete"
    finally:
        async with asyncio.timeout(10):
            ended = await hostile
    assert ended.status == "error"
    return ms


async def _trials(measure: Callable[[], Awaitable[float]]) -> list[float]:
    times: list[float] = []
    for _ in range(TRIALS * 3):
        try:
            times.append(await measure())
        except OperationalError:
            # The in-memory SQLite database of the tests refuses a write at once while
            # another turn writes ("database table is locked"), where a database file
            # waits its turn: that trial says nothing about the event loop.
            continue
        if len(times) == TRIALS:
            return times
    raise AssertionError(f"only {len(times)} of {TRIALS} trials ran")


async def test_a_parallel_turn_is_not_delayed_by_a_16_mb_line(
    alice: User,
    bob: User,
    fake_openai: FakeOpenAI,
    fake_anthropic: FakeAnthropic,
) -> None:
    """Bob's first token comes as fast while alice's provider sends her a 16 MB line.

    Each trial starts bob's turn at alice's first token, when her provider starts on
    the line, and lasts until her turn ended. Medians of several trials with and without
    her are compared, so one slow turn on a loaded machine does not decide it. (That all
    16 MB, were the cap raised, are parsed in linear time is shown in
    tests/providers/test_hostile_streams.py.)
    """
    await _setup(alice, fake_openai, "openai", "gpt-4o")
    await _setup(bob, fake_anthropic, "anthropic", "claude-sonnet-4-5")
    fake_anthropic.reply("Hello bob, nothing to see here.")
    fake_openai.scenario("huge_line", PARTIAL)

    await _bob_alone(bob)  # warm up: connections, prices, the runner
    alone = await _trials(lambda: _bob_alone(bob))
    beside = await _trials(lambda: _bob_beside_the_line(alice, bob))

    delay = statistics.median(beside) - statistics.median(alone)
    assert delay <= FAIRNESS_MS, (
        f"bob's first token: {statistics.median(alone):.1f} ms alone, "
        f"{statistics.median(beside):.1f} ms beside the 16 MB line ({beside})"
    )
