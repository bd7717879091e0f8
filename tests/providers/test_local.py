"""The embedded model, for real: SmolLM2 through llama.cpp, no fakes.

Replies are kept to a few tokens so the whole file runs in seconds.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import cast

import pytest

from llm.providers import registry
from llm.providers.base import (
    ChatMessage,
    ChatRequest,
    Credentials,
    Done,
    Event,
    Provider,
    ProviderOptions,
    TextDelta,
    Unavailable,
    Usage,
)
from llm.providers.local import LocalProvider

pytestmark = pytest.mark.local_model

NO_CREDS = Credentials()


@pytest.fixture(scope="module")
def provider() -> LocalProvider:
    local = registry.create("local", ProviderOptions())
    assert isinstance(local, LocalProvider)
    return local


def ask(text: str, max_tokens: int = 8, system: str = "") -> ChatRequest:
    return ChatRequest(
        model="SmolLM2-135M-Instruct",
        messages=(ChatMessage("user", text),),
        system=system,
        temperature=0.7,
        max_tokens=max_tokens,
    )


async def collect(local: Provider, request: ChatRequest) -> list[Event]:
    return [event async for event in local.stream(request, NO_CREDS)]


def text_of(events: list[Event]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def wait_for_worker() -> None:
    """Let a cancelled reply's worker thread finish, as the next request would."""
    for thread in threading.enumerate():
        if thread.name == "local-model":
            thread.join(timeout=30)


async def test_short_reply_streams_text_then_usage_then_done(provider: LocalProvider) -> None:
    events = await collect(provider, ask("Name a colour.", max_tokens=8, system="Be brief."))

    assert text_of(events).strip()
    usage, done = events[-2], events[-1]
    assert isinstance(usage, Usage) and isinstance(done, Done)
    assert all(isinstance(event, TextDelta) for event in events[:-2])
    assert usage.input_tokens > 5  # the template, the system prompt and the question
    assert 1 <= usage.output_tokens <= 8
    assert done.finish_reason in {"stop", "length"}


async def test_usage_counts_what_llama_cpp_counts(provider: LocalProvider) -> None:
    request = ChatRequest(
        model="", messages=(ChatMessage("user", "Count to twenty."),), temperature=0.0, max_tokens=6
    )
    events = await collect(provider, request)

    model = await provider.model()
    reference = model.llama.create_chat_completion(
        [{"role": "user", "content": "Count to twenty."}], temperature=0.0, max_tokens=6
    )
    assert events[-2] == Usage(
        input_tokens=reference["usage"]["prompt_tokens"],
        output_tokens=reference["usage"]["completion_tokens"],
    )
    assert events[-1] == Done(finish_reason="length")


async def test_cancel_stops_within_one_token_and_the_next_reply_works(
    provider: LocalProvider,
) -> None:
    model = await provider.model()
    reply = cast(
        AsyncGenerator[Event, None],
        provider.stream(ask("Write a long story about a lighthouse.", max_tokens=200), NO_CREDS),
    )
    deltas = 0
    async for event in reply:
        deltas += isinstance(event, TextDelta)
        if deltas == 3:
            break
    evaluated_at_cancel = model.llama.n_tokens
    await reply.aclose()  # what a consumer does on Stop or disconnect
    wait_for_worker()

    # At most the token being decoded when the flag was set, and not the other ~190.
    assert model.llama.n_tokens - evaluated_at_cancel <= 2
    events = await collect(provider, ask("Say hello.", max_tokens=4))
    assert text_of(events)
    assert isinstance(events[-1], Done)


async def test_cancelled_task_frees_the_model(provider: LocalProvider) -> None:
    started = asyncio.Event()

    async def listen() -> None:
        async for _ in provider.stream(ask("Describe the sea at length.", 200), NO_CREDS):
            started.set()

    task = asyncio.create_task(listen())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    events = await asyncio.wait_for(collect(provider, ask("Say yes.", 4)), timeout=60)
    assert isinstance(events[-1], Done)


async def test_two_requests_queue_and_run_in_order(provider: LocalProvider) -> None:
    await provider.model()  # loaded, so the first request takes the model at once
    timeline: list[tuple[str, str]] = []

    async def run(name: str, question: str) -> list[Event]:
        events = []
        async for event in provider.stream(ask(question, max_tokens=6), NO_CREDS):
            timeline.append((name, type(event).__name__))
            events.append(event)
        return events

    first = asyncio.create_task(run("first", "Name a fruit."))
    second = asyncio.create_task(run("second", "Name a city."))
    first_events, second_events = await asyncio.gather(first, second)

    names = [name for name, _ in timeline]
    assert names == sorted(names, key=["first", "second"].index)  # no interleaving
    assert isinstance(first_events[-1], Done) and isinstance(second_events[-1], Done)
    assert text_of(first_events) and text_of(second_events)


async def test_requests_from_another_event_loop_wait_their_turn(provider: LocalProvider) -> None:
    """A management command's loop in another thread and a consumer's loop share the model."""
    await provider.model()
    other_loop_started = threading.Event()
    timeline: list[str] = []

    def command() -> None:
        async def talk() -> None:
            async for event in provider.stream(ask("Name an animal.", 12), NO_CREDS):
                other_loop_started.set()
                timeline.append(f"command {type(event).__name__}")

        asyncio.run(talk())

    thread = threading.Thread(target=command)
    thread.start()
    await asyncio.to_thread(other_loop_started.wait, 30)
    async for event in provider.stream(ask("Name a river.", 4), NO_CREDS):
        timeline.append(f"consumer {type(event).__name__}")
    await asyncio.to_thread(thread.join, 30)

    assert timeline[-1] == "consumer Done"
    assert "command Done" in timeline
    assert timeline.index("command Done") < timeline.index(
        next(entry for entry in timeline if entry.startswith("consumer"))
    )


async def test_missing_model_file_says_what_to_set(tmp_path: Path) -> None:
    missing = registry.create(
        "local", ProviderOptions(local_model_path=str(tmp_path / "nowhere.gguf"))
    )

    with pytest.raises(Unavailable) as error:
        await collect(missing, ask("Hello?"))
    assert "nowhere.gguf" in error.value.message
    assert "LOCAL_MODEL_PATH" in error.value.message
    assert str(tmp_path) not in error.value.message  # the server's folders stay private
    with pytest.raises(Unavailable):
        await missing.ping(NO_CREDS)


async def test_a_file_that_is_not_a_model_is_unavailable(tmp_path: Path) -> None:
    junk = tmp_path / "notes.gguf"
    junk.write_text("not a model")
    broken = registry.create("local", ProviderOptions(local_model_path=str(junk)))

    with pytest.raises(Unavailable) as error:
        await broken.list_models(NO_CREDS)
    assert "notes.gguf" in error.value.message and "GGUF" in error.value.message


async def test_list_models_and_ping_name_the_loaded_model(provider: LocalProvider) -> None:
    assert await provider.list_models(NO_CREDS) == ["SmolLM2-135M-Instruct"]
    ping = await provider.ping(NO_CREDS)
    assert ping.ok and ping.models == 1
    assert "SmolLM2-135M-Instruct" in ping.detail and "MB" in ping.detail


async def test_a_request_given_up_while_waiting_leaves_the_queue(provider: LocalProvider) -> None:
    await provider.model()
    started = asyncio.Event()

    async def long_reply() -> list[Event]:
        events = []
        async for event in provider.stream(ask("Tell me about the moon.", 24), NO_CREDS):
            started.set()
            events.append(event)
        return events

    running = asyncio.create_task(long_reply())
    await started.wait()
    waiting = asyncio.create_task(collect(provider, ask("Name a tree.", 4)))
    await asyncio.sleep(0.05)  # it is queued behind the running reply
    waiting.cancel()  # the person closed the page before their turn
    with pytest.raises(asyncio.CancelledError):
        await waiting

    assert isinstance((await running)[-1], Done)
    after = await asyncio.wait_for(collect(provider, ask("Name a bird.", 4)), timeout=60)
    assert isinstance(after[-1], Done)


# --- sampling settings and thinking -------------------------------------------------


def greedy(text: str, max_tokens: int = 12, **settings: object) -> ChatRequest:
    return ChatRequest(
        model="",
        messages=(ChatMessage("user", text),),
        max_tokens=max_tokens,
        **{"temperature": 0.0, **settings},  # type: ignore[arg-type]
    )


async def replies(provider: LocalProvider, request: ChatRequest, times: int) -> list[str]:
    """`times` replies after a first, unused one: llama.cpp reuses the prompt it has
    evaluated, and greedy decoding is repeatable only from the same cache state."""
    await collect(provider, request)
    return [text_of(await collect(provider, request)) for _ in range(times)]


async def test_a_stop_sequence_ends_the_reply_where_it_would_appear(
    provider: LocalProvider,
) -> None:
    (reference,) = await replies(provider, greedy("Count from one to twenty in words."), 1)
    middle = len(reference) // 2
    stop = reference[middle : middle + 3]
    assert stop.strip(), reference  # a visible piece of the reply to stop at

    events = await collect(provider, greedy("Count from one to twenty in words.", stop=(stop,)))
    assert text_of(events) == reference[: reference.index(stop)]
    assert events[-1] == Done(finish_reason="stop")


async def test_top_p_reaches_the_sampler(provider: LocalProvider) -> None:
    # A top_p that keeps only the likeliest token makes a hot sampler repeat itself.
    hot = await replies(provider, greedy("Name three colours.", temperature=1.5), 3)
    narrowed = greedy("Name three colours.", temperature=1.5, top_p=1e-9)
    repeated = await replies(provider, narrowed, 3)
    assert len(set(repeated)) == 1
    assert len(set(hot)) > 1  # what the same sampler does with llama.cpp's own top_p


async def test_skip_thinking_adds_qwen3s_no_think_to_the_system_prompt(
    provider: LocalProvider,
) -> None:
    asked = await collect(provider, greedy("Hi.", 2, system="Be brief."))
    skipped = await collect(provider, greedy("Hi.", 2, system="Be brief.", thinking="skip"))
    model = await provider.model()
    extra = len(model.llama.tokenize(b" /no_think", add_bos=False, special=True))
    asked_usage, skipped_usage = asked[-2], skipped[-2]
    assert isinstance(asked_usage, Usage) and isinstance(skipped_usage, Usage)
    assert skipped_usage.input_tokens - asked_usage.input_tokens in (extra - 1, extra, extra + 1)
