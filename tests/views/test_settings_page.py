"""The LLM settings page: cards from the registry, editing in place, validation, ownership."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from llm.models import ProviderConfig
from llm.providers.registry import PROVIDERS

URL = "/settings/llm/"
KEY = "sk-test-alice-0123456789abcdefWXYZ"
HTMX: dict[str, Any] = {"HTTP_HX_REQUEST": "true"}


def form_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "api_key": KEY,
        "base_url": "https://api.openai.com/v1",
        "model": "gpt-4o-mini",
        "temperature": "0.4",
        "max_tokens": "2048",
        "system_prompt": "Be brief.",
    }
    data.update(overrides)
    return data


@pytest.fixture
def alice_openai(alice: User) -> ProviderConfig:
    config = ProviderConfig(user=alice, kind="openai", model="gpt-4o")
    config.set_api_key(KEY)
    config.save()
    return config


def test_anonymous_is_sent_to_sign_in(client: Client) -> None:
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_page_shows_a_card_for_every_registry_kind(alice_client: Client) -> None:
    response = alice_client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    for kind, entry in PROVIDERS.items():
        assert f'id="provider-{kind}"' in html
        assert entry.spec.label in html
    assert "Not configured" in html
    # The embedded model needs no setup at all.
    assert "Ready · no setup needed" in html


def test_saving_a_key_shows_only_its_last_four_characters(alice_client: Client) -> None:
    response = alice_client.post("/settings/llm/openai/", form_data())
    assert response.status_code == 302
    config = ProviderConfig.objects.get(user__username="alice", kind="openai")
    assert config.api_key() == KEY
    assert config.encrypted_key and KEY not in config.encrypted_key
    assert (config.model, config.temperature, config.max_tokens) == ("gpt-4o-mini", 0.4, 2048)
    # The default base URL is stored as empty, so that it follows the registry.
    assert config.base_url == ""
    page = alice_client.get(URL).content.decode()
    assert "OpenAI saved." in page
    assert "••••WXYZ" in page
    assert KEY not in page
    assert "Configured · not tested" in page


def test_htmx_save_answers_with_the_card_alone(alice_client: Client) -> None:
    response = alice_client.post("/settings/llm/openai/", form_data(), **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert html.lstrip().startswith('<article class="provider-card')
    assert "OpenAI saved." in html and "••••WXYZ" in html
    assert KEY not in html


def test_htmx_edit_form_never_renders_the_stored_key(
    alice_client: Client, alice_openai: ProviderConfig
) -> None:
    response = alice_client.get("/settings/llm/openai/?mode=edit", **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<form" in html and "<html" not in html
    assert 'name="api_key"' in html and "Leave empty to keep it" in html
    assert "••••WXYZ" in html
    assert KEY not in html


def test_edit_without_javascript_is_the_whole_page_with_the_form_open(
    alice_client: Client, alice_openai: ProviderConfig
) -> None:
    redirect = alice_client.get("/settings/llm/openai/?mode=edit")
    assert redirect.status_code == 302
    page = alice_client.get(redirect["Location"]).content.decode()
    assert "<html" in page and 'name="api_key"' in page
    assert 'value="gpt-4o"' in page
    assert KEY not in page


def test_an_empty_key_field_keeps_the_stored_key(
    alice_client: Client, alice_openai: ProviderConfig
) -> None:
    response = alice_client.post("/settings/llm/openai/", form_data(api_key="", model="o3-mini"))
    assert response.status_code == 302
    alice_openai.refresh_from_db()
    assert alice_openai.api_key() == KEY
    assert alice_openai.model == "o3-mini"


def test_a_new_key_is_required_the_first_time(alice_client: Client) -> None:
    response = alice_client.post("/settings/llm/openai/", form_data(api_key=""))
    assert response.status_code == 200
    assert "Paste your OpenAI API key." in response.content.decode()
    assert not ProviderConfig.objects.exists()


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("sk-abc def123456", "contains a space or a line break"),
        ("sk-abcdef123456\n", "contains a space or a line break"),
        ("“sk-abcdef123456”", "characters that API keys never contain"),
    ],
)
def test_a_pasted_key_with_whitespace_is_refused_and_the_form_keeps_the_rest(
    alice_client: Client, key: str, message: str
) -> None:
    response = alice_client.post(
        "/settings/llm/openai/",
        form_data(api_key=key, model="my-model", system_prompt="Hi!"),
        **HTMX,
    )
    html = response.content.decode()
    assert message in html
    assert 'value="my-model"' in html and "Hi!</textarea>" in html
    assert key.strip() not in html
    assert not ProviderConfig.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", "3", "The temperature cannot be above 2."),
        ("temperature", "-0.1", "The temperature cannot be below 0."),
        ("temperature", "warm", "Enter a number between 0 and 2"),
        ("max_tokens", "0", "A reply needs at least 1 token."),
        ("max_tokens", "32001", "At most 32000 tokens per reply."),
    ],
)
def test_out_of_range_numbers_are_explained_next_to_the_field(
    alice_client: Client, field: str, value: str, message: str
) -> None:
    response = alice_client.post("/settings/llm/openai/", form_data(**{field: value}))
    html = response.content.decode()
    assert response.status_code == 200
    assert message in html
    assert f'value="{value}"' in html  # what the person typed stays
    assert not ProviderConfig.objects.exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://169.254.169.254/v1", "link-local or cloud metadata address"),
        ("http://127.0.0.1:11434/v1", "Coppertone will not connect to 127.0.0.1"),
        ("ftp://example.com/v1", "must start with http:// or https://"),
    ],
)
def test_a_base_url_the_guard_refuses_is_explained(
    alice_client: Client, settings: Any, url: str, message: str
) -> None:
    settings.LLM_PRIVATE_HOSTS = []
    response = alice_client.post("/settings/llm/openai/", form_data(base_url=url))
    html = response.content.decode()
    assert message in html
    assert f'value="{url}"' in html
    assert not ProviderConfig.objects.exists()


def test_loopback_is_allowed_when_the_operator_allows_private_hosts(
    alice_client: Client, settings: Any
) -> None:
    settings.LLM_PRIVATE_HOSTS = ["127.0.0.0/8"]
    response = alice_client.post(
        "/settings/llm/ollama/",
        {
            "base_url": "http://127.0.0.1:11434/v1",
            "model": "llama3.2",
            "temperature": "0.7",
            "max_tokens": "1024",
        },
    )
    assert response.status_code == 302
    assert ProviderConfig.objects.get(kind="ollama").api_key() == ""


def test_a_kind_without_a_standard_address_needs_one(alice_client: Client) -> None:
    response = alice_client.post(
        "/settings/llm/openai_compatible/",
        {"base_url": "", "model": "", "temperature": "0.7", "max_tokens": "1024"},
    )
    assert "enter your server&#x27;s base URL" in response.content.decode()


def test_azure_has_an_api_version_field(alice_client: Client) -> None:
    html = alice_client.get("/settings/llm/?edit=azure_openai").content.decode()
    assert 'name="api_version"' in html
    html = alice_client.get("/settings/llm/?edit=openai").content.decode()
    assert 'name="api_version"' not in html


def test_the_local_model_has_no_key_and_no_url(alice_client: Client) -> None:
    html = alice_client.get("/settings/llm/local/?mode=edit", **HTMX).content.decode()
    assert 'name="api_key"' not in html and 'name="base_url"' not in html


def test_delete_asks_first_then_forgets_the_key(
    alice_client: Client, alice_openai: ProviderConfig, alice: User
) -> None:
    alice.default_provider = "openai"
    alice.save()
    confirm = alice_client.get("/settings/llm/openai/delete/", **HTMX).content.decode()
    assert "Remove your OpenAI settings?" in confirm and "Yes, remove" in confirm
    assert ProviderConfig.objects.filter(pk=alice_openai.pk).exists()
    response = alice_client.post("/settings/llm/openai/delete/", **HTMX)
    assert "OpenAI removed, with its key." in response.content.decode()
    assert not ProviderConfig.objects.filter(pk=alice_openai.pk).exists()
    alice.refresh_from_db()
    assert alice.default_provider == ""


def test_default_provider_can_be_any_configured_kind(
    alice_client: Client, alice_openai: ProviderConfig, alice: User
) -> None:
    response = alice_client.post("/settings/llm/default/", {"default_provider": "openai"}, **HTMX)
    assert "The chat starts with OpenAI." in response.content.decode()
    alice.refresh_from_db()
    assert alice.default_provider == "openai"
    page = alice_client.get(URL).content.decode()
    assert ">Default</span>" in page


def test_default_provider_refuses_a_kind_that_is_not_set_up(
    alice_client: Client, alice: User
) -> None:
    response = alice_client.post("/settings/llm/default/", {"default_provider": "anthropic"})
    assert response.status_code == 302
    assert "Choose a provider you have configured." in alice_client.get(URL).content.decode()
    alice.refresh_from_db()
    assert alice.default_provider == ""


def test_unknown_kind_is_404(alice_client: Client) -> None:
    assert alice_client.get("/settings/llm/nope/?mode=edit", **HTMX).status_code == 404
    assert alice_client.post("/settings/llm/nope/", form_data()).status_code == 404


def test_bob_never_sees_or_changes_alices_settings(
    bob_client: Client, alice_openai: ProviderConfig
) -> None:
    page = bob_client.get(URL).content.decode()
    assert "••••WXYZ" not in page and KEY not in page
    edit = bob_client.get("/settings/llm/openai/?mode=edit", **HTMX).content.decode()
    assert "WXYZ" not in edit and "Leave empty to keep it" not in edit
    # Bob's delete and save act on bob's own (absent) row, never alice's.
    bob_client.post("/settings/llm/openai/delete/")
    assert ProviderConfig.objects.filter(pk=alice_openai.pk).exists()
    bob_client.post("/settings/llm/openai/", form_data(api_key="sk-bobs-key-9999", model="x"))
    alice_openai.refresh_from_db()
    assert alice_openai.api_key() == KEY and alice_openai.model == "gpt-4o"
    assert ProviderConfig.objects.filter(kind="openai").count() == 2
