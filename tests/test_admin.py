"""The Django admin: every model is there, staff-only, and a stored key never shows."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import ApiToken, User
from llm.models import Conversation, DailyUsage, Message, ModelPrice, ProviderConfig

SECRET = "sk-admin-visible-never-1234"


@pytest.fixture
def alice_config(alice: User, settings: Any) -> ProviderConfig:
    settings.LLM_ENCRYPTION_KEYS = [base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()]
    config = ProviderConfig(user=alice, kind="openai", model="gpt-4o")
    config.set_api_key(SECRET)
    config.save()
    return config


@pytest.mark.parametrize(
    "model", [User, ApiToken, ProviderConfig, Conversation, Message, ModelPrice, DailyUsage]
)
def test_every_model_has_an_admin_list(admin_client: Client, model: Any) -> None:
    meta = model._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    assert admin_client.get(url).status_code == 200


def test_key_never_shown_in_admin(admin_client: Client, alice_config: ProviderConfig) -> None:
    pages = [
        reverse("admin:llm_providerconfig_changelist"),
        reverse("admin:llm_providerconfig_change", args=[alice_config.pk]),
    ]
    for url in pages:
        body = admin_client.get(url).content.decode()
        assert SECRET not in body
        assert alice_config.encrypted_key not in body
    assert "1234" in admin_client.get(pages[1]).content.decode()


def test_saving_in_admin_keeps_the_key(admin_client: Client, alice_config: ProviderConfig) -> None:
    url = reverse("admin:llm_providerconfig_change", args=[alice_config.pk])
    response = admin_client.post(
        url,
        {
            "user": alice_config.user_id,
            "kind": "openai",
            "base_url": "",
            "api_version": "",
            "model": "gpt-4o-mini",
            "temperature": "0.5",
            "max_tokens": "512",
            "system_prompt": "",
            "enabled": "on",
            "thinking": "auto",
            "stop": "[]",
            "keep_alive_minutes": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    alice_config.refresh_from_db()
    assert alice_config.model == "gpt-4o-mini"
    assert alice_config.api_key() == SECRET


def test_clients_cannot_reach_the_admin(alice_client: Client) -> None:
    response = alice_client.get(reverse("admin:llm_providerconfig_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_token_digest_not_in_admin(admin_client: Client, alice: User) -> None:
    token, raw = ApiToken.issue(alice, "laptop")
    body = admin_client.get(reverse("admin:accounts_apitoken_change", args=[token.pk])).content
    assert raw.encode() not in body and token.digest.encode() not in body
