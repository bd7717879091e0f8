"""Keep-alive (llm/keep_alive.py): who is due, claimed once per interval, and a real ping
against the fake OpenAI-compatible server (Ollama's load request, or one token)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from accounts.models import User
from llm import keep_alive
from llm.models import ProviderConfig
from tests.engine.conftest import configure
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.django_db(transaction=True)


def local_server(
    user: User, fake: FakeOpenAI, kind: str = "ollama", **fields: Any
) -> ProviderConfig:
    fields.setdefault("keep_alive_minutes", 5)
    return configure(user, fake, kind=kind, model=fields.pop("model", "llama3.2"), **fields)


def test_a_due_configuration_is_claimed_once_per_interval(
    alice: User, fake_openai: FakeOpenAI
) -> None:
    config = local_server(alice, fake_openai)
    now = timezone.now()
    first = keep_alive.claim_due(now)
    assert [c.pk for c in first] == [config.pk]
    # A second worker claiming right after finds nothing left to do.
    assert keep_alive.claim_due(now) == []
    assert keep_alive.claim_due(now + dt.timedelta(minutes=4, seconds=59)) == []
    config.refresh_from_db()
    assert config.keep_alive_due == now + dt.timedelta(minutes=5)
    # One interval later it is due again, for one claim.
    later = now + dt.timedelta(minutes=5)
    assert [c.pk for c in keep_alive.claim_due(later)] == [config.pk]
    assert keep_alive.claim_due(later) == []


def test_only_enabled_local_servers_with_keep_alive_on_are_due(
    alice: User, bob: User, charlie: User, fake_openai: FakeOpenAI
) -> None:
    now = timezone.now()
    local_server(alice, fake_openai, enabled=False)
    local_server(bob, fake_openai, keep_alive_minutes=0)
    local_server(charlie, fake_openai, keep_alive_due=now + dt.timedelta(minutes=1))
    # A kind without keep-alive, switched on past the form (the admin, SQL).
    configure(alice, fake_openai, kind="openai", keep_alive_minutes=5)
    assert keep_alive.claim_due(now) == []


async def test_a_ping_loads_the_model_and_stores_how_long_it_took(
    alice: User, fake_openai: FakeOpenAI
) -> None:
    config = await sync_to_async(local_server)(alice, fake_openai)
    words = await keep_alive.run_once()
    assert len(words) == 1 and words[0].startswith("ok, ") and words[0].endswith(" ms")
    [load] = fake_openai.keep_alive_requests
    assert load.path == "/api/generate"
    assert load.json == {"model": "llama3.2", "keep_alive": "5m", "stream": False}
    await config.arefresh_from_db()
    assert config.keep_alive_result == words[0]
    assert config.keep_alive_at is not None
    assert timezone.now() - config.keep_alive_at < dt.timedelta(seconds=30)
    # The next round, straight after, pings nothing.
    assert await keep_alive.run_once() == []
    assert len(fake_openai.keep_alive_requests) == 1


async def test_a_server_without_ollama_s_api_gets_one_token(
    alice: User, fake_openai: FakeOpenAI
) -> None:
    config = await sync_to_async(local_server)(alice, fake_openai, kind="lmstudio", model="qwen3")
    assert (await keep_alive.run_once())[0].startswith("ok, ")
    [asked] = fake_openai.keep_alive_requests
    assert asked.path == "/v1/chat/completions" and asked.json["model"] == "qwen3"
    await config.arefresh_from_db()
    assert config.keep_alive_result.startswith("ok, ")


async def test_a_failed_ping_is_stored_in_words(alice: User, fake_openai: FakeOpenAI) -> None:
    config = await sync_to_async(local_server)(alice, fake_openai, kind="lmstudio")
    fake_openai.fail(500)
    [words] = await keep_alive.run_once()
    assert not words.startswith("ok") and words
    await config.arefresh_from_db()
    assert config.keep_alive_result == words and config.keep_alive_at is not None


async def test_a_key_that_no_longer_decrypts_is_said_so(
    alice: User, fake_openai: FakeOpenAI
) -> None:
    config = await sync_to_async(local_server)(alice, fake_openai)
    await ProviderConfig.objects.filter(pk=config.pk).aupdate(base_url="http://127.0.0.1:9/v1")
    [words] = await keep_alive.run_once()
    assert "can no longer be read" in words
    assert fake_openai.keep_alive_requests == []
