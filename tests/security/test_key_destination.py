"""Hole 1: where a stored key is sent is part of the key.

A stolen hub token, a page session or a staff member in the admin cannot send a
person's stored key to a new address: changing the address needs the key again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import ApiToken, User
from llm import crypto
from llm.models import ProviderConfig
from tests.fakes.openai_server import FakeOpenAI

KEY = "sk-test-alice-real-key-0123456789WXYZ"
HTMX: dict[str, Any] = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def attacker(settings: Any) -> Iterator[FakeOpenAI]:
    """A server someone would like alice's key to reach (it records every request)."""
    settings.LLM_PRIVATE_HOSTS = ["127.0.0.0/8"]
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def alice_openai(alice: User, fake_openai: FakeOpenAI) -> ProviderConfig:
    config = ProviderConfig(user=alice, kind="openai", base_url=fake_openai.base_url)
    config.set_api_key(KEY)
    config.save()
    return config


def bearer(user: User) -> dict[str, Any]:
    return {"HTTP_AUTHORIZATION": f"Bearer {ApiToken.issue(user, 'stolen')[1]}"}


def reached(server: FakeOpenAI) -> list[str]:
    return [r.headers.get("authorization", "") for r in server.requests]


def test_a_stolen_token_cannot_point_the_stored_key_elsewhere(
    client: Client, alice: User, alice_openai: ProviderConfig, attacker: FakeOpenAI
) -> None:
    token = bearer(alice)
    response = client.put(
        "/api/v1/providers/openai",
        json.dumps({"base_url": attacker.base_url}),
        content_type="application/json",
        **token,
    )
    assert response.status_code == 400
    assert "paste the key again" in response.json()["error"]["fields"]["api_key"][0]
    client.post("/api/v1/providers/openai/test", **token)
    client.get("/api/v1/providers/openai/models", **token)

    assert reached(attacker) == []
    alice_openai.refresh_from_db()
    assert alice_openai.base_url != attacker.base_url


def test_the_settings_page_cannot_test_or_save_a_new_address_with_the_stored_key(
    alice_client: Client, alice_openai: ProviderConfig, attacker: FakeOpenAI
) -> None:
    form = {
        "api_key": "",
        "base_url": attacker.base_url,
        "model": "",
        "temperature": "0.7",
        "max_tokens": "1024",
        "system_prompt": "",
    }
    tested = alice_client.post("/settings/llm/openai/test/", form, **HTMX).content.decode()
    saved = alice_client.post("/settings/llm/openai/", form, **HTMX).content.decode()

    assert "paste the key again" in tested and "paste the key again" in saved
    assert reached(attacker) == []


def test_entering_the_key_again_moves_it(
    client: Client, alice: User, alice_openai: ProviderConfig, attacker: FakeOpenAI
) -> None:
    response = client.put(
        "/api/v1/providers/openai",
        json.dumps({"base_url": attacker.base_url, "api_key": "sk-another-key-for-there-9999"}),
        content_type="application/json",
        **bearer(alice),
    )
    assert response.status_code == 200
    alice_openai.refresh_from_db()
    assert alice_openai.api_key() == "sk-another-key-for-there-9999"


def test_the_admin_cannot_redirect_a_key(
    alice_openai: ProviderConfig, attacker: FakeOpenAI, admin_client: Client
) -> None:
    admin = admin_client
    url = reverse("admin:llm_providerconfig_change", args=[alice_openai.pk])
    page = admin.get(url).content.decode()
    assert 'name="base_url"' not in page  # shown, but not editable

    admin.post(
        url,
        {
            "user": alice_openai.user_id,
            "kind": "openai",
            "base_url": attacker.base_url,
            "api_version": "",
            "model": "gpt-4o",
            "temperature": "0.7",
            "max_tokens": "1024",
            "system_prompt": "",
            "enabled": "on",
        },
    )
    alice_openai.refresh_from_db()
    assert alice_openai.base_url != attacker.base_url
    assert alice_openai.api_key() == KEY


def test_an_address_changed_past_every_form_leaves_the_key_unreadable(
    alice: User, alice_openai: ProviderConfig, attacker: FakeOpenAI
) -> None:
    # A path that skips the forms (SQL, a future view that forgets the rule).
    ProviderConfig.objects.filter(pk=alice_openai.pk).update(base_url=attacker.base_url)
    moved = ProviderConfig.objects.get(pk=alice_openai.pk)
    with pytest.raises(crypto.DecryptError):
        moved.api_key()

    client = Client()
    client.force_login(alice)
    html = client.post("/settings/llm/openai/test/", **HTMX).content.decode()
    assert "enter this key again" in html
    assert reached(attacker) == []
