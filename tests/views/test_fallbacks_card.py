"""The "If it fails" card on /settings/llm/: add, move, remove, save; validation; ownership."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from llm.models import FallbackEntry, ProviderConfig

URL = "/settings/llm/fallbacks/"
HTMX: dict[str, Any] = {"HTTP_HX_REQUEST": "true"}


def chain(user: User) -> list[tuple[str, str]]:
    return [(e.provider, e.model) for e in FallbackEntry.objects.filter(user=user)]


def post(client: Client, rows: list[tuple[str, str]], action: str, **headers: Any) -> Any:
    return client.post(
        URL,
        {"provider": [p for p, _ in rows], "model": [m for _, m in rows], "action": action},
        **headers,
    )


@pytest.fixture
def alice_anthropic(alice: User) -> ProviderConfig:
    config = ProviderConfig(user=alice, kind="anthropic", model="claude-sonnet-4-5")
    config.set_api_key("sk-ant-test-0000WXYZ")
    config.save()
    return config


def test_the_page_has_the_card_with_the_stored_chain(alice_client: Client, alice: User) -> None:
    html = alice_client.get("/settings/llm/").content.decode()
    assert 'id="fallbacks"' in html and "If it fails" in html
    assert "No fallbacks: a reply that fails shows its error." in html
    FallbackEntry.objects.create(user=alice, position=1, provider="local", model="")
    html = alice_client.get("/settings/llm/").content.decode()
    assert '<option value="local" selected>' in html and "No fallbacks" not in html


def test_add_offers_a_provider_that_is_set_up_and_saves_nothing(
    alice_client: Client, alice: User, alice_anthropic: ProviderConfig
) -> None:
    html = post(alice_client, [], "add", **HTMX).content.decode()
    assert '<option value="anthropic" selected>' in html
    assert 'placeholder="claude-sonnet-4-5 (the card\'s model)"' in html
    assert "Not saved yet: press Save" in html
    assert chain(alice) == []


def test_move_remove_and_save_without_javascript(alice_client: Client, alice: User) -> None:
    rows = [("local", ""), ("ollama", "llama3.2"), ("anthropic", "claude-sonnet-4-5")]
    moved = post(alice_client, rows, "up:2")
    assert moved.status_code == 200 and "<html" in moved.content.decode()
    html = moved.content.decode()
    assert html.index('value="claude-sonnet-4-5"') < html.index('value="llama3.2"')
    assert chain(alice) == []
    response = post(alice_client, [rows[0], rows[2], rows[1]], "remove:0")
    assert 'value="local" selected' not in response.content.decode()
    saved = post(alice_client, [rows[2], rows[1]], "save")
    assert saved.status_code == 302 and saved["Location"].endswith("#fallbacks")
    assert chain(alice) == [("anthropic", "claude-sonnet-4-5"), ("ollama", "llama3.2")]
    page = alice_client.get(saved["Location"]).content.decode()
    assert "Saved. When a reply fails, Coppertone asks these in order." in page


def test_a_provider_that_is_not_set_up_is_kept_and_marked_skipped(
    alice_client: Client, alice: User, alice_anthropic: ProviderConfig
) -> None:
    alice_anthropic.enabled = False
    alice_anthropic.save()
    html = post(alice_client, [("openai", ""), ("anthropic", ""), ("local", "")], "save", **HTMX)
    text = html.content.decode()
    assert chain(alice) == [("openai", ""), ("anthropic", ""), ("local", "")]
    assert text.count("not set up: will be skipped") == 1  # openai
    assert text.count("turned off: will be skipped") == 1  # anthropic
    assert "Saved." in text


@pytest.mark.parametrize(
    ("rows", "words"),
    [
        ([("local", "")] * 2, "Step 2 repeats step 1 (Local model)"),
        ([("nope", "")], "There is no provider “nope”"),
        ([("local", "m" * 201)], "A model name is at most 200 characters"),
        ([("local", str(n)) for n in range(6)], "At most 5 steps"),
    ],
)
def test_save_refuses_a_chain_with_words_and_keeps_the_old_one(
    alice_client: Client, alice: User, rows: list[tuple[str, str]], words: str
) -> None:
    FallbackEntry.objects.create(user=alice, position=1, provider="gemini", model="")
    response = post(alice_client, rows, "save", **HTMX)
    html = response.content.decode()
    assert words in html and "Not saved: fix what is marked below." in html
    assert chain(alice) == [("gemini", "")]


def test_add_stops_at_five_steps(alice_client: Client) -> None:
    rows = [("local", str(n)) for n in range(5)]
    html = post(alice_client, rows, "add", **HTMX).content.decode()
    assert html.count('name="provider"') == 5
    assert 'value="add" disabled' in html


def test_bob_s_save_never_touches_alice_s_chain(bob_client: Client, bob: User, alice: User) -> None:
    FallbackEntry.objects.create(user=alice, position=1, provider="gemini", model="g")
    html = bob_client.get("/settings/llm/").content.decode()
    assert 'value="g"' not in html
    post(bob_client, [("local", "")], "save")
    assert chain(alice) == [("gemini", "g")] and chain(bob) == [("local", "")]


def test_anonymous_is_sent_to_sign_in(client: Client) -> None:
    response = client.post(URL, {"action": "save"})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
