"""The provider cards' newer parts: the on/off switch, the Advanced section and its
validation, the breaker badge and the keep-alive status."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import User
from llm.forms import ProviderConfigForm
from llm.models import ProviderConfig

KEY = "sk-test-alice-0123456789abcdefWXYZ"
HTMX: dict[str, Any] = {"HTTP_HX_REQUEST": "true"}


def form_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "api_key": KEY,
        "base_url": "https://api.openai.com/v1",
        "model": "gpt-4o-mini",
        "temperature": "0.4",
        "max_tokens": "2048",
        "system_prompt": "",
    }
    data.update(overrides)
    return data


@pytest.fixture
def alice_openai(alice: User) -> ProviderConfig:
    config = ProviderConfig(user=alice, kind="openai", model="gpt-4o")
    config.set_api_key(KEY)
    config.save()
    return config


@pytest.fixture
def alice_ollama(alice: User, settings: Any) -> ProviderConfig:
    settings.LLM_PRIVATE_HOSTS = ["127.0.0.0/8"]
    return ProviderConfig.objects.create(user=alice, kind="ollama", model="llama3.2")


def card(html: str, kind: str) -> str:
    match = re.search(rf'<article [^>]*id="provider-{kind}".*?</article>', html, re.S)
    assert match, f"no card for {kind}"
    return match.group(0)


# --- the switch --------------------------------------------------------------------------------


def test_the_switch_turns_a_provider_off_and_on(
    alice_client: Client, alice_openai: ProviderConfig
) -> None:
    page = card(alice_client.get("/settings/llm/").content.decode(), "openai")
    assert 'role="switch" aria-checked="true"' in page and ">Off</span>" not in page
    response = alice_client.post("/settings/llm/openai/enabled/", {"enabled": "false"}, **HTMX)
    html = response.content.decode()
    assert "OpenAI is off: the chat does not offer it" in html
    assert '<span class="badge off">Off</span>' in html and 'aria-checked="false"' in html
    alice_openai.refresh_from_db()
    assert alice_openai.enabled is False
    assert alice_openai.api_key() == KEY and alice_openai.model == "gpt-4o"  # nothing else moved
    alice_client.post("/settings/llm/openai/enabled/", {"enabled": "true"})
    alice_openai.refresh_from_db()
    assert alice_openai.enabled is True


def test_the_switch_works_without_javascript(
    alice_client: Client, alice_openai: ProviderConfig
) -> None:
    response = alice_client.post("/settings/llm/openai/enabled/", {"enabled": "false"})
    assert response.status_code == 302 and response["Location"].endswith("#provider-openai")
    page = alice_client.get(response["Location"]).content.decode()
    assert "OpenAI is off" in page and '<span class="badge off">Off</span>' in card(page, "openai")


def test_the_local_model_can_be_turned_off_before_any_setup(
    alice_client: Client, alice: User
) -> None:
    assert 'role="switch"' in card(alice_client.get("/settings/llm/").content.decode(), "local")
    alice_client.post("/settings/llm/local/enabled/", {"enabled": "false"})
    assert ProviderConfig.objects.get(user=alice, kind="local").enabled is False


def test_a_kind_that_is_not_set_up_has_no_switch(alice_client: Client) -> None:
    assert 'role="switch"' not in card(
        alice_client.get("/settings/llm/").content.decode(), "openai"
    )
    response = alice_client.post("/settings/llm/openai/enabled/", {"enabled": "false"}, **HTMX)
    assert "Not changed: Paste your OpenAI API key." in response.content.decode()
    assert not ProviderConfig.objects.exists()


def test_saving_the_edit_form_keeps_the_switch_where_it_was(
    alice_client: Client, alice_openai: ProviderConfig
) -> None:
    alice_openai.enabled = False
    alice_openai.save()
    assert alice_client.post("/settings/llm/openai/", form_data(api_key="")).status_code == 302
    alice_openai.refresh_from_db()
    assert alice_openai.enabled is False and alice_openai.model == "gpt-4o-mini"


def test_bob_s_switch_never_touches_alice_s_card(
    bob_client: Client, alice_openai: ProviderConfig
) -> None:
    response = bob_client.post("/settings/llm/openai/enabled/", {"enabled": "false"}, **HTMX)
    assert "Paste your OpenAI API key" in response.content.decode()
    alice_openai.refresh_from_db()
    assert alice_openai.enabled is True
    assert bob_client.post("/settings/llm/nope/enabled/", {"enabled": "false"}).status_code == 404


# --- Advanced ----------------------------------------------------------------------------------


def test_advanced_fields_are_folded_and_saved(
    alice_client: Client, alice_openai: ProviderConfig
) -> None:
    html = alice_client.get("/settings/llm/openai/?mode=edit", **HTMX).content.decode()
    assert '<details class="pc-advanced">' in html and "<summary>Advanced</summary>" in html
    assert 'name="keep_alive_minutes"' not in html  # OpenAI keeps its models loaded itself
    response = alice_client.post(
        "/settings/llm/openai/",
        form_data(
            api_key="",
            top_p="0.9",
            stop="###\r\nUser:\r\n\\n\\n\r\n",
            thinking="skip",
            connect_timeout="5",
            first_byte_timeout="120",
            idle_timeout="",
            max_concurrent="0",
            cache_replies="on",
        ),
    )
    assert response.status_code == 302
    alice_openai.refresh_from_db()
    assert alice_openai.top_p == 0.9
    assert alice_openai.stop == ["###", "User:", "\n\n"]
    assert alice_openai.thinking == "skip"
    assert (alice_openai.connect_timeout, alice_openai.first_byte_timeout) == (5.0, 120.0)
    assert alice_openai.idle_timeout is None and alice_openai.max_concurrent == 0
    assert alice_openai.cache_replies is True
    # The form shows the stored sequences as they were typed, line breaks as \n.
    html = alice_client.get("/settings/llm/openai/?mode=edit", **HTMX).content.decode()
    assert "###\nUser:\n\\n\\n</textarea>" in html


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("top_p", "1.5", "Top p cannot be above 1."),
        ("top_p", "most", "Enter a number between 0 and 1"),
        ("stop", "a\nb\nc\nd\ne", "At most 4 stop sequences"),
        ("stop", "x" * 101, "A stop sequence is at most 100 characters"),
        ("thinking", "deep", "Choose one of: auto"),
        ("connect_timeout", "0.5", "At least 1 second."),
        ("first_byte_timeout", "601", "At most 600 seconds"),
        ("idle_timeout", "soon", "Enter a number of seconds"),
        ("max_concurrent", "257", "At most 256 replies at once."),
        ("max_concurrent", "-1", "Enter 0 for no cap"),
    ],
)
def test_advanced_mistakes_are_explained_with_the_section_open(
    alice_client: Client, field: str, value: str, words: str
) -> None:
    response = alice_client.post("/settings/llm/openai/", form_data(**{field: value}), **HTMX)
    html = response.content.decode()
    assert words in html
    assert '<details class="pc-advanced" open>' in html
    assert not ProviderConfig.objects.exists()


def test_keep_alive_is_offered_for_local_servers_only(
    alice_client: Client, alice_ollama: ProviderConfig
) -> None:
    html = alice_client.get("/settings/llm/ollama/?mode=edit", **HTMX).content.decode()
    assert 'name="keep_alive_minutes"' in html
    # The kind's own cap is what an empty field means.
    assert 'name="max_concurrent"' in html and "the default for Ollama" in html
    response = alice_client.post(
        "/settings/llm/ollama/",
        {
            "base_url": "http://127.0.0.1:11434/v1",
            "model": "llama3.2",
            "temperature": "0.7",
            "max_tokens": "1024",
            "keep_alive_minutes": "1441",
        },
    )
    assert "At most 1440 minutes (a day)." in response.content.decode()


def test_turning_keep_alive_on_makes_it_due_at_once(
    alice_client: Client, alice_ollama: ProviderConfig
) -> None:
    alice_ollama.keep_alive_due = timezone.now() + timedelta(hours=1)
    alice_ollama.save()
    alice_client.post(
        "/settings/llm/ollama/",
        {
            "base_url": "http://127.0.0.1:11434/v1",
            "model": "llama3.2",
            "temperature": "0.7",
            "max_tokens": "1024",
            "keep_alive_minutes": "5",
        },
    )
    alice_ollama.refresh_from_db()
    assert alice_ollama.keep_alive_minutes == 5 and alice_ollama.keep_alive_due is None


def test_stop_sequences_round_trip_through_the_page_escapes() -> None:
    from llm.forms import stop_from_line, stop_line

    for sequence in ["\n\n", "C:\\path", "a\\nb", "tab\there", "\r\n"]:
        assert stop_from_line(stop_line(sequence)) == sequence
        assert "\n" not in stop_line(sequence)


def test_the_form_refuses_an_empty_stop_sequence_from_the_api(alice: User) -> None:
    form = ProviderConfigForm(
        {"temperature": "0.7", "max_tokens": "10", "stop": ["ok", ""]}, kind="local", user=alice
    )
    assert not form.is_valid()
    assert form.errors["stop"] == ["A stop sequence cannot be empty: remove it."]


# --- what the card shows -----------------------------------------------------------------------


def test_an_open_breaker_shows_when_it_retries(
    alice_client: Client, alice_openai: ProviderConfig
) -> None:
    until = timezone.now() + timedelta(minutes=3)
    alice_openai.failures, alice_openai.open_until = 5, until
    alice_openai.failure = "OpenAI answered 503: overloaded."
    alice_openai.save()
    html = card(alice_client.get("/settings/llm/").content.decode(), "openai")
    at = timezone.localtime(until).strftime("%H:%M")
    assert "failing, retrying at <time datetime=" in html and f">{at}</time>" in html
    assert 'title="OpenAI answered 503: overloaded."' in html


def test_a_breaker_whose_time_has_passed_is_not_shown(
    alice_client: Client, alice_openai: ProviderConfig
) -> None:
    alice_openai.open_until = timezone.now() - timedelta(seconds=1)
    alice_openai.failure = "old news"
    alice_openai.save()
    html = card(alice_client.get("/settings/llm/").content.decode(), "openai")
    assert "retrying at" not in html and "old news" not in html


def test_the_card_shows_the_last_keep_alive(
    alice_client: Client, alice_ollama: ProviderConfig
) -> None:
    html = card(alice_client.get("/settings/llm/").content.decode(), "ollama")
    assert "Keep-alive" not in html  # off
    at = timezone.now() - timedelta(minutes=2)
    alice_ollama.keep_alive_minutes = 5
    alice_ollama.keep_alive_at, alice_ollama.keep_alive_result = at, "ok, 41 ms"
    alice_ollama.save()
    html = card(alice_client.get("/settings/llm/").content.decode(), "ollama")
    shown = timezone.localtime(at).strftime("%H:%M")
    assert "every 5 min · ok, 41 ms at" in html and f">{shown}</time>" in html
