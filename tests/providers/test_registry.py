"""The registry's data for providers that stay up: caps, keep-alive and the thinking switch."""

from __future__ import annotations

import pytest

from llm.providers import registry
from llm.providers.base import Credentials
from tests.providers.conftest import FAST

LOCAL_SERVERS = {"ollama", "lmstudio", "llamacpp", "vllm", "openai_compatible"}


def test_local_servers_are_capped_and_kept_alive() -> None:
    caps = {kind: e.spec.default_max_concurrent for kind, e in registry.PROVIDERS.items()}
    keep = {kind: e.spec.keep_alive for kind, e in registry.PROVIDERS.items() if e.spec.keep_alive}
    assert {kind for kind, cap in caps.items() if cap == 8} == LOCAL_SERVERS
    assert caps["local"] == 1  # one llama.cpp context in the process
    assert {kind for kind, cap in caps.items() if cap == 0} == set(caps) - LOCAL_SERVERS - {"local"}
    assert keep == {
        "ollama": "ollama",
        "lmstudio": "one_token",
        "llamacpp": "one_token",
        "vllm": "one_token",
        "openai_compatible": "one_token",
    }


def test_every_thinking_switch_is_one_the_openai_adapter_knows() -> None:
    from llm.providers.openai import THINKING_SWITCHES

    for entry in registry.PROVIDERS.values():
        if entry.spec.thinking_switch:
            assert entry.adapter == registry.OPENAI
            assert entry.spec.thinking_switch in THINKING_SWITCHES


@pytest.mark.parametrize(
    "kind", [k for k, e in registry.PROVIDERS.items() if not e.spec.keep_alive]
)
async def test_kinds_without_keep_alive_refuse_it_clearly(kind: str) -> None:
    # Refused before any call: no base URL is needed to say so.
    ping = await registry.create(kind, FAST).keep_alive(Credentials(api_key="k"), "m", 30)
    assert not ping.ok
    assert ping.detail.startswith("Keep-alive is for local servers")
    assert registry.spec(kind).label in ping.detail
    assert ping.error == {"code": "provider_error", "message": ping.detail}
