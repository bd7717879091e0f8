"""Helpers for the provider tests: short timeouts and a way to run a whole stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from llm.providers.base import (
    Done,
    Event,
    ProviderError,
    ProviderOptions,
    TextDelta,
    ThinkingDelta,
    Usage,
)

# Short enough that the timeout tests are quick, long enough for a loaded 2-core machine.
FAST = ProviderOptions(
    connect_timeout=2.0,
    first_byte_timeout=1.0,
    idle_timeout=0.5,
    max_retries=2,
    max_retry_wait=3.0,
    private_hosts=("127.0.0.0/8",),
)

# Only for the tests that wait for a timeout to fire.
TIGHT = ProviderOptions(
    connect_timeout=1.0,
    first_byte_timeout=0.3,
    idle_timeout=0.2,
    max_retries=0,
    max_retry_wait=0.0,
    private_hosts=("127.0.0.0/8",),
)


@dataclass
class Outcome:
    """Everything a stream produced, as the engine would see it."""

    text: str = ""
    deltas: list[str] = field(default_factory=list)
    thinking: str = ""
    thinking_deltas: list[str] = field(default_factory=list)
    usage: Usage | None = None
    done: Done | None = None
    error: ProviderError | None = None


async def collect(events: AsyncIterator[Event]) -> Outcome:
    outcome = Outcome()
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                outcome.deltas.append(event.text)
                outcome.text += event.text
            elif isinstance(event, ThinkingDelta):
                outcome.thinking_deltas.append(event.text)
                outcome.thinking += event.text
            elif isinstance(event, Usage):
                outcome.usage = event
            elif isinstance(event, Done):
                outcome.done = event
    except ProviderError as exc:
        outcome.error = exc
    return outcome


@pytest.fixture
def fast() -> ProviderOptions:
    return FAST
