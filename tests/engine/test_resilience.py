"""Providers that stay up: fallback chains, breakers, the concurrency cap's queue, the
reply cache and reasoning, each against the real fake servers."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from accounts.models import User
from llm import breakers
from llm.events import TextDelta, ThinkingDelta, TurnFinished, TurnWaiting
from llm.models import FallbackEntry, Message, ProviderConfig, Upstream
from llm.turns import Turn, run_turn
from tests.engine.conftest import configure
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.gemini_server import FakeGemini
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.django_db(transaction=True)


async def collect(turn: Turn) -> list[Any]:
    return [event async for event in turn]


def finished(events: list[Any]) -> TurnFinished:
    last = events[-1]
    assert isinstance(last, TurnFinished)
    return last


@sync_to_async
def setup(user: User, fake: Any, kind: str = "openai", **fields: Any) -> ProviderConfig:
    return configure(user, fake, kind, **fields)


@sync_to_async
def chain(user: User, *steps: tuple[str, str]) -> None:
    FallbackEntry.objects.filter(user=user).delete()
    for position, (kind, model) in enumerate(steps):
        FallbackEntry.objects.create(user=user, position=position, provider=kind, model=model)


@sync_to_async
def reload(config: ProviderConfig) -> ProviderConfig:
    config.refresh_from_db()
    return config


@pytest.fixture(autouse=True)
def _fresh_breakers(settings: Any) -> None:
    settings.LLM_BREAKER_FAILURES = 2
    settings.LLM_BREAKER_COOLDOWN_SECONDS = 30
    breakers.servers.forget()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- fallback chains ---------------------------------------------------------------------


async def test_a_chain_skips_a_401_a_429_and_a_timeout_then_answers(
    alice: User, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, fake_gemini: FakeGemini
) -> None:
    await setup(alice, fake_openai, "openai", model="gpt-4o")
    await setup(alice, fake_anthropic, "anthropic", model="claude-sonnet-4-5")
    await setup(alice, fake_gemini, "gemini", model="gemini-2.0-flash", first_byte_timeout=0.3)
    await setup(alice, fake_openai, "vllm", model="qwen3")
    await chain(alice, ("anthropic", ""), ("gemini", ""), ("huggingface", ""), ("vllm", ""))
    fake_openai.fail(401).reply("The last one answers.")
    fake_anthropic.fail(429, retry_after="1")
    fake_gemini.reply("too late", first_byte_delay=2.0)

    events = await collect(run_turn(alice, "Hello?", provider="openai"))

    end = finished(events)
    assert end.status == "complete" and end.content == "The last one answers."
    assert (end.provider, end.model) == ("vllm", "qwen3")
    codes = [(a.provider, a.error.code) for a in end.attempts]
    assert codes == [
        ("openai", "provider_auth"),
        ("anthropic", "provider_rate_limited"),
        ("gemini", "provider_timeout"),
        ("huggingface", "not_configured"),  # no key of hers: skipped, never someone else's
    ]
    assert "Settings" in end.attempts[3].error.message
    assert end.as_dict()["answered_by"] == {"provider": "vllm", "model": "qwen3"}
    row = await Message.objects.aget(pk=end.message_id)
    assert (row.provider, row.model, row.status) == ("vllm", "qwen3", "complete")
    assert [a["error"]["code"] for a in row.attempts] == [c for _k, c in codes]
    assert all(a["ms"] >= 0 for a in row.attempts)


async def test_connection_refused_falls_back(alice: User, fake_openai: FakeOpenAI) -> None:
    config = await setup(alice, fake_openai, "openai")
    config.base_url = f"http://127.0.0.1:{closed_port()}/v1"
    config.set_api_key(fake_openai.api_key)
    await config.asave()
    await setup(alice, fake_openai, "vllm", model="qwen3")
    await chain(alice, ("vllm", ""))
    fake_openai.reply("From the fallback.")

    end = finished(await collect(run_turn(alice, "Hi", provider="openai")))

    assert end.content == "From the fallback." and end.provider == "vllm"
    assert end.attempts[0].error.code == "provider_unavailable"


async def test_no_fallback_after_the_first_token(
    alice: User, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    await setup(alice, fake_openai, "openai")
    await setup(alice, fake_anthropic, "anthropic")
    await chain(alice, ("anthropic", ""))
    fake_openai.scenario("error_midstream", text="Half of an answer, then")

    events = await collect(run_turn(alice, "Hi", provider="openai"))

    end = finished(events)
    assert end.status == "error" and end.provider == "openai" and not end.attempts
    assert end.content and "".join(e.text for e in events if type(e) is TextDelta) == end.content
    assert fake_anthropic.chat_requests == []


async def test_an_error_that_is_not_the_providers_fault_does_not_fall_back(
    alice: User, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    await setup(alice, fake_openai, "openai")
    await setup(alice, fake_anthropic, "anthropic")
    await chain(alice, ("anthropic", ""))
    fake_openai.fail(400)

    end = finished(await collect(run_turn(alice, "Hi", provider="openai")))

    assert end.status == "error" and not end.attempts
    assert fake_anthropic.chat_requests == []


async def test_when_the_whole_chain_fails_the_reply_says_the_last_reason(
    alice: User, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    await setup(alice, fake_openai, "openai")
    await setup(alice, fake_anthropic, "anthropic")
    await chain(alice, ("anthropic", ""))
    fake_openai.fail(500)
    fake_anthropic.fail(529)

    end = finished(await collect(run_turn(alice, "Hi", provider="openai")))

    assert end.status == "error" and end.provider == "anthropic"
    assert end.error is not None and end.error.code == "provider_unavailable"
    assert [a.provider for a in end.attempts] == ["openai"]


# --- circuit breakers ----------------------------------------------------------------------


async def test_a_breaker_opens_after_n_failures_fails_fast_half_opens_and_closes(
    alice: User, fake_openai: FakeOpenAI
) -> None:
    config = await setup(alice, fake_openai, "openai")
    fake_openai.fail(500)
    for _ in range(2):
        end = finished(await collect(run_turn(alice, "Hi", provider="openai")))
        assert end.status == "error"
    config = await reload(config)
    assert config.failures == 2 and config.open_until is not None
    assert config.open_until > timezone.now() + dt.timedelta(seconds=25)
    sent = len(fake_openai.chat_requests)

    # Open: no request goes out, and the words say when it is tried again.
    end = finished(await collect(run_turn(alice, "Hi", provider="openai")))
    assert len(fake_openai.chat_requests) == sent
    assert end.error is not None and end.error.code == "provider_unavailable"
    at = timezone.localtime(config.open_until).strftime("%H:%M")
    assert f"not asked again until {at}" in end.error.message
    assert end.error.retry_after is not None and end.error.retry_after > 20

    # The cool-down is over: one probe goes through; its success closes the breaker.
    past = timezone.now() - dt.timedelta(seconds=1)
    await ProviderConfig.objects.filter(pk=config.pk).aupdate(open_until=past)
    await Upstream.objects.aupdate(open_until=past)  # the server's breaker opened too
    breakers.servers.forget()
    fake_openai.reply("Back up.")
    end = finished(await collect(run_turn(alice, "Hi", provider="openai")))
    assert end.content == "Back up.", end.error
    assert len(fake_openai.chat_requests) == sent + 1
    config = await reload(config)
    assert (config.failures, config.open_until, config.failure) == (0, None, "")


async def test_a_failed_probe_opens_the_breaker_again_and_only_one_probe_goes(
    alice: User, fake_openai: FakeOpenAI
) -> None:
    config = await setup(alice, fake_openai, "openai")
    await ProviderConfig.objects.filter(pk=config.pk).aupdate(
        failures=2, open_until=timezone.now() - dt.timedelta(seconds=1), failure="down"
    )
    fake_openai.fail(503, first_byte_delay=0.5)

    # A second turn while the probe is out fails fast: one probe at a time.
    probe = asyncio.create_task(collect(run_turn(alice, "a", provider="openai")))
    while not fake_openai.chat_requests:
        await asyncio.sleep(0.01)
    second = finished(await collect(run_turn(alice, "b", provider="openai")))
    first = finished(await probe)
    assert len(fake_openai.chat_requests) == 1
    assert first.status == second.status == "error"
    assert second.error is not None and "not asked again until" in second.error.message
    config = await reload(config)
    assert config.failures == 3 and config.open_until is not None
    assert config.open_until > timezone.now()


async def test_an_open_breaker_skips_to_the_fallback_at_once(
    alice: User, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    config = await setup(alice, fake_openai, "openai")
    await setup(alice, fake_anthropic, "anthropic")
    await chain(alice, ("anthropic", ""))
    await ProviderConfig.objects.filter(pk=config.pk).aupdate(
        failures=2, open_until=timezone.now() + dt.timedelta(minutes=5), failure="Bad key."
    )
    fake_anthropic.reply("Claude here.")

    end = finished(await collect(run_turn(alice, "Hi", provider="openai")))

    assert end.content == "Claude here." and fake_openai.chat_requests == []
    assert end.attempts[0].error.code == "provider_unavailable"
    assert "Bad key" in end.attempts[0].error.message


async def test_a_server_that_is_down_opens_its_breaker_for_everyone(
    alice: User, bob: User, fake_openai: FakeOpenAI
) -> None:
    await setup(alice, fake_openai, "vllm", model="m")
    await setup(bob, fake_openai, "vllm", model="m")
    fake_openai.fail(503)
    for _ in range(2):
        await collect(run_turn(alice, "Hi", provider="vllm"))
    server = breakers.address(fake_openai.base_url)
    row = await Upstream.objects.aget(address=server)
    assert row.failures == 2 and row.open_until is not None
    sent = len(fake_openai.chat_requests)

    end = finished(await collect(run_turn(bob, "Hi", provider="vllm")))

    assert len(fake_openai.chat_requests) == sent
    assert end.error is not None and f"The server at {server} keeps failing" in end.error.message


async def test_a_bad_key_opens_only_its_owners_breaker(
    alice: User, bob: User, fake_openai: FakeOpenAI
) -> None:
    await setup(alice, fake_openai, "vllm", model="m")
    await setup(bob, fake_openai, "vllm", model="m")
    fake_openai.fail(401)
    for _ in range(3):
        await collect(run_turn(alice, "Hi", provider="vllm"))
    fake_openai.reply("Bob's reply.")

    end = finished(await collect(run_turn(bob, "Hi", provider="vllm")))

    assert end.content == "Bob's reply."
    assert not await Upstream.objects.filter(open_until__isnull=False).aexists()


# --- the concurrency cap's queue --------------------------------------------------------------


async def test_a_cap_of_2_serves_5_queued_turns_in_order_and_stop_leaves_the_queue(
    alice: User, fake_openai: FakeOpenAI, settings: Any
) -> None:
    settings.LLM_MAX_CONCURRENT_REPLIES = 0
    settings.LLM_RATE_LIMIT = "100/m"
    await setup(alice, fake_openai, "vllm", model="m", max_concurrent=2)
    fake_openai.reply("slow reply", chunks=["slow ", "reply"], delay=0.3)
    seen: dict[int, list[Any]] = {n: [] for n in range(5)}

    async def ask(n: int) -> None:
        async for event in run_turn(alice, f"question {n}", provider="vllm"):
            seen[n].append(event)

    tasks = []
    for n in range(5):  # one after another, so that the queue's order is theirs
        tasks.append(asyncio.create_task(ask(n)))
        while not seen[n]:
            await asyncio.sleep(0.01)
    while not any(isinstance(e, TurnWaiting) for e in seen[4]):
        await asyncio.sleep(0.01)
    tasks[3].cancel()  # Stop while queued
    await asyncio.gather(*tasks, return_exceptions=True)

    asked = [r.json["messages"][-1]["content"] for r in fake_openai.chat_requests]
    assert asked == ["question 0", "question 1", "question 2", "question 4"]
    waiting = {n: [e.ahead for e in seen[n] if isinstance(e, TurnWaiting)] for n in range(5)}
    assert waiting[0] == waiting[1] == []
    assert waiting[2][0] == 0 and waiting[3][0] == 1 and waiting[4][0] == 2
    assert waiting[4][-1] == 0  # moved up as the one ahead left and the first finished
    for n in (0, 1, 2, 4):
        assert finished(seen[n]).content == "slow reply"
    stopped = await Message.objects.aget(role="assistant", reply_to__content="question 3")
    assert stopped.status == "stopped" and stopped.content == ""


# --- the reply cache ---------------------------------------------------------------------------


async def test_a_cached_reply_costs_nothing_and_is_never_shared(
    alice: User, bob: User, fake_openai: FakeOpenAI
) -> None:
    await setup(alice, fake_openai, "openai", cache_replies=True)
    await setup(bob, fake_openai, "openai", cache_replies=True)
    fake_openai.reply("Paris.", usage=(10, 2))

    first = finished(await collect(run_turn(alice, "Capital of France?", provider="openai")))
    again = finished(await collect(run_turn(alice, "Capital of France?", provider="openai")))
    other = finished(await collect(run_turn(bob, "Capital of France?", provider="openai")))

    assert len(fake_openai.chat_requests) == 2  # alice once, bob once
    assert not first.cached and again.cached and not other.cached
    assert again.content == "Paris." and again.cost == 0 and again.output_tokens == 0
    row = await Message.objects.aget(pk=again.message_id)
    assert row.cached and row.content == "Paris."


async def test_the_cache_is_off_unless_asked_for(alice: User, fake_openai: FakeOpenAI) -> None:
    await setup(alice, fake_openai, "openai")
    for _ in range(2):
        await collect(run_turn(alice, "Same question", provider="openai"))
    assert len(fake_openai.chat_requests) == 2


# --- reasoning -----------------------------------------------------------------------------


async def test_thinking_is_streamed_and_stored_apart_and_never_sent_back(
    alice: User, fake_openai: FakeOpenAI
) -> None:
    await setup(alice, fake_openai, "vllm", model="qwen3")
    fake_openai.reply("The answer.", thinking="Let me think about this.")

    events = await collect(run_turn(alice, "Why?", provider="vllm"))

    thinking = "".join(e.text for e in events if type(e) is ThinkingDelta)
    answer = "".join(e.text for e in events if type(e) is TextDelta)
    assert thinking == "Let me think about this." and answer == "The answer."
    end = finished(events)
    assert end.content == "The answer." and end.thinking == thinking
    assert end.thinking_ms is not None
    row = await Message.objects.aget(pk=end.message_id)
    assert row.content == "The answer." and row.thinking == thinking

    fake_openai.reply("More.")
    await collect(run_turn(alice, "And?", provider="vllm", conversation_id=end.conversation_id))
    sent = fake_openai.chat_requests[-1].json["messages"]
    assert {"role": "assistant", "content": "The answer."} in sent
    assert all("think about" not in str(m["content"]) for m in sent)
