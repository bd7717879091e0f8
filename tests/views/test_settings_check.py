"""Test connection and Fetch models on the settings page, against real fake servers."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from llm.connection import UNREADABLE_KEY
from llm.models import ProviderConfig
from tests.fakes.openai_server import FakeOpenAI

HTMX: dict[str, Any] = {"HTTP_HX_REQUEST": "true"}


def saved_openai(user: User, base_url: str, key: str) -> ProviderConfig:
    config = ProviderConfig(user=user, kind="openai", base_url=base_url)
    config.set_api_key(key)
    config.save()
    return config


def form_data(fake: FakeOpenAI, **overrides: Any) -> dict[str, Any]:
    data = {
        "api_key": fake.api_key,
        "base_url": fake.base_url,
        "model": "",
        "temperature": "0.7",
        "max_tokens": "1024",
        "system_prompt": "",
    }
    data.update(overrides)
    return data


@pytest.fixture
def black_hole(settings: Any) -> Iterator[str]:
    """A base URL whose server accepts connections and never answers."""
    settings.LLM_PRIVATE_HOSTS = ["127.0.0.0/8"]
    settings.LLM_FIRST_BYTE_TIMEOUT = settings.LLM_IDLE_TIMEOUT = 0.5
    settings.LLM_MAX_RETRIES = 0
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel completes the handshake; nobody ever reads
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"


def test_stored_settings_test_shows_latency_and_model_count_and_records_it(
    alice_client: Client, alice: User, fake_openai: FakeOpenAI
) -> None:
    config = saved_openai(alice, fake_openai.base_url, fake_openai.api_key)
    response = alice_client.post("/settings/llm/openai/test/", **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "✓ Connected in" in html and " ms</strong>" in html
    assert "3 models available" in html
    assert "✓ Verified" in html
    assert fake_openai.api_key not in html
    config.refresh_from_db()
    assert config.last_verified_at is not None and config.last_error == ""


def test_a_refused_key_is_explained_and_recorded_as_failing(
    alice_client: Client, alice: User, fake_openai: FakeOpenAI
) -> None:
    config = saved_openai(alice, fake_openai.base_url, "sk-wrong-key-0000")
    html = alice_client.post("/settings/llm/openai/test/", **HTMX).content.decode()
    assert "Could not connect." in html
    assert "✕ Failing" in html
    assert "sk-wrong-key-0000" not in html
    config.refresh_from_db()
    assert config.last_error and "key" in config.last_error.lower()
    assert config.last_error in html
    page = alice_client.get("/settings/llm/").content.decode()
    assert "Last test failed:" in page and config.last_error in page


def test_a_server_that_never_answers_is_a_timeout(
    alice_client: Client, alice: User, black_hole: str
) -> None:
    config = saved_openai(alice, black_hole, "sk-some-key-1234")
    html = alice_client.post("/settings/llm/openai/test/", **HTMX).content.decode()
    assert "Could not connect." in html
    config.refresh_from_db()
    assert config.last_verified_at is None
    assert config.last_error in html
    assert "0.5" in config.last_error or "time" in config.last_error.lower()


def test_a_stored_url_the_guard_now_refuses_is_explained(
    alice_client: Client, alice: User, fake_openai: FakeOpenAI, settings: Any
) -> None:
    config = saved_openai(alice, fake_openai.base_url, fake_openai.api_key)
    settings.LLM_PRIVATE_HOSTS = []  # the operator turned private hosts off since
    html = alice_client.post("/settings/llm/openai/test/", **HTMX).content.decode()
    assert "Coppertone will not connect to 127.0.0.1" in html
    assert fake_openai.requests == []
    config.refresh_from_db()
    assert "will not connect" in config.last_error


def test_a_key_that_no_longer_decrypts_says_enter_it_again(
    alice_client: Client, alice: User, fake_openai: FakeOpenAI
) -> None:
    config = saved_openai(alice, fake_openai.base_url, fake_openai.api_key)
    ProviderConfig.objects.filter(pk=config.pk).update(encrypted_key="AAAA" + "B" * 60)
    html = alice_client.post("/settings/llm/openai/test/", **HTMX).content.decode()
    assert UNREADABLE_KEY.replace("'", "&#x27;") in html
    assert fake_openai.requests == []


def test_testing_the_form_then_saving_shows_verified(
    alice_client: Client, fake_openai: FakeOpenAI
) -> None:
    data = form_data(fake_openai)
    tested = alice_client.post("/settings/llm/openai/test/", data, **HTMX).content.decode()
    assert "✓ Connected in" in tested and "3 models available" in tested
    assert "Press Save to keep these settings." in tested
    # Nothing is stored until Save, and the datalist fills out of band.
    assert not ProviderConfig.objects.exists()
    assert 'hx-swap-oob="true"' in tested and '<option value="gpt-4o-mini">' in tested
    token = tested.split('name="verified" value="')[1].split('"')[0]
    saved = alice_client.post("/settings/llm/openai/", {**data, "verified": token}, **HTMX)
    html = saved.content.decode()
    assert "OpenAI saved." in html and "✓ Verified" in html
    assert fake_openai.api_key not in html
    assert ProviderConfig.objects.get(kind="openai").last_verified_at is not None


def test_a_verified_token_does_not_vouch_for_other_values(
    alice_client: Client, fake_openai: FakeOpenAI
) -> None:
    data = form_data(fake_openai)
    tested = alice_client.post("/settings/llm/openai/test/", data, **HTMX).content.decode()
    token = tested.split('name="verified" value="')[1].split('"')[0]
    other = {**data, "api_key": "sk-another-key-5678", "verified": token}
    html = alice_client.post("/settings/llm/openai/", other, **HTMX).content.decode()
    assert "Configured · not tested" in html
    assert ProviderConfig.objects.get(kind="openai").last_verified_at is None


def test_testing_the_form_with_an_invalid_field_shows_the_field_error(
    alice_client: Client, fake_openai: FakeOpenAI
) -> None:
    data = form_data(fake_openai, temperature="9")
    response = alice_client.post("/settings/llm/openai/test/", data, **HTMX)
    assert "The temperature cannot be above 2." in response.content.decode()
    assert response["HX-Retarget"] == "#provider-openai"
    assert fake_openai.requests == []


def test_testing_without_javascript_renders_the_page_with_the_result(
    alice_client: Client, fake_openai: FakeOpenAI
) -> None:
    html = alice_client.post("/settings/llm/openai/test/", form_data(fake_openai)).content.decode()
    assert "<html" in html and "✓ Connected in" in html
    assert f'value="{fake_openai.base_url}"' in html  # the form stays as typed
    assert fake_openai.api_key not in html


def test_fetch_models_fills_the_model_picker(alice_client: Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.models = ["gpt-4o", "gpt-4.1-nano"]
    data = form_data(fake_openai, model="my-own-name")
    html = alice_client.post("/settings/llm/openai/models/", data, **HTMX).content.decode()
    assert html.lstrip().startswith('<div class="field" id="model-field-openai">')
    assert '<option value="gpt-4.1-nano">' in html and '<option value="gpt-4o">' in html
    assert "2 models found" in html
    assert 'value="my-own-name"' in html  # free text is still allowed and kept


def test_fetch_models_with_a_bad_key_says_why(
    alice_client: Client, fake_openai: FakeOpenAI
) -> None:
    data = form_data(fake_openai, api_key="sk-nope-nope-1111")
    html = alice_client.post("/settings/llm/openai/models/", data, **HTMX).content.decode()
    assert 'class="field-error"' in html and "<option" not in html
    assert "sk-nope-nope-1111" not in html


def test_fetch_models_without_javascript_opens_the_form_with_the_list(
    alice_client: Client, alice: User, fake_openai: FakeOpenAI
) -> None:
    saved_openai(alice, fake_openai.base_url, fake_openai.api_key)
    html = alice_client.post("/settings/llm/openai/models/").content.decode()
    assert "<html" in html and '<option value="o3-mini">' in html
    assert fake_openai.api_key not in html


def test_a_kind_that_needs_a_key_cannot_be_tested_before_setup(alice_client: Client) -> None:
    html = alice_client.post("/settings/llm/anthropic/test/", **HTMX).content.decode()
    assert "Set up Anthropic first" in html


def test_bob_testing_openai_never_uses_alices_key(
    bob_client: Client, alice: User, fake_openai: FakeOpenAI
) -> None:
    config = saved_openai(alice, fake_openai.base_url, fake_openai.api_key)
    html = bob_client.post("/settings/llm/openai/test/", **HTMX).content.decode()
    assert "Set up OpenAI first" in html
    assert fake_openai.requests == []
    config.refresh_from_db()
    assert config.last_verified_at is None and config.last_error == ""


@pytest.mark.parametrize(
    ("kind", "fake_name"), [("anthropic", "fake_anthropic"), ("gemini", "fake_gemini")]
)
def test_every_wire_protocol_can_be_tested_from_its_card(
    alice_client: Client, alice: User, kind: str, fake_name: str, request: pytest.FixtureRequest
) -> None:
    fake = request.getfixturevalue(fake_name)
    config = ProviderConfig(user=alice, kind=kind, base_url=fake.base_url)
    config.set_api_key(fake.api_key)
    config.save()
    html = alice_client.post(f"/settings/llm/{kind}/test/", **HTMX).content.decode()
    assert "✓ Connected in" in html and "✓ Verified" in html
    # Gemini lists only the models that can chat (no embedding models).
    assert re.search(r"· [1-9]\d* models? available", html)
    ProviderConfig.objects.filter(pk=config.pk).update(last_verified_at=None)
    config.set_api_key("wrong-key-0000")
    config.save()
    html = alice_client.post(f"/settings/llm/{kind}/test/", **HTMX).content.decode()
    assert "Could not connect." in html and "✕ Failing" in html
    assert "wrong-key-0000" not in html and fake.api_key not in html
