"""Hole 11: Test connection and Fetch models are outbound requests on a person's
command, counted in the same rate window as chat turns."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from accounts.models import ApiToken, User
from tests.engine.conftest import configure
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.django_db
HTMX: dict[str, Any] = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def _three_a_minute(settings: Any) -> None:
    cache.clear()
    settings.LLM_RATE_LIMIT = "3/m"


def test_the_api_refuses_tests_and_model_lists_past_the_limit(
    client: Client, alice: User, fake_openai: FakeOpenAI
) -> None:
    configure(alice, fake_openai)
    auth: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {ApiToken.issue(alice, 't')[1]}"}
    answers = [
        client.post("/api/v1/providers/openai/test", **auth),
        client.get("/api/v1/providers/openai/models", **auth),
        client.post("/api/v1/providers/openai/test", **auth),
        client.get("/api/v1/providers/openai/models", **auth),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[-1].json()["error"]["code"] == "rate_limited"
    assert int(answers[-1]["Retry-After"]) > 0
    assert len(fake_openai.requests) == 3  # the refused one never left


def test_the_settings_page_says_why_a_test_was_not_sent(
    alice_client: Client, alice: User, fake_openai: FakeOpenAI
) -> None:
    configure(alice, fake_openai)
    for _ in range(3):
        alice_client.post("/settings/llm/openai/test/", **HTMX)
    html = alice_client.post("/settings/llm/openai/test/", **HTMX).content.decode()
    assert "connection tests and model lists count too" in html
    assert len(fake_openai.requests) == 3
