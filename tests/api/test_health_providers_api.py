"""GET /api/v1/health/providers: staff see provider health; everyone else sees nothing there."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import ApiToken, User
from llm.health import p95, provider_health
from llm.models import Conversation, Message, ProviderConfig, Upstream

URL = "/api/v1/health/providers"


def token(user: User) -> dict[str, Any]:
    _, raw = ApiToken.issue(user, "tests")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def reply(
    user: User,
    provider: str,
    *,
    status: str = "complete",
    ttft: float | None = 100.0,
    minutes_ago: float = 1,
    cached: bool = False,
) -> Message:
    conversation = Conversation.objects.create(user=user)
    message = Message.objects.create(
        conversation=conversation,
        role="assistant",
        status=status,
        provider=provider,
        model="m",
        ttft_ms=ttft,
        cached=cached,
    )
    when = timezone.now() - timedelta(minutes=minutes_ago)
    Message.objects.filter(pk=message.pk).update(created_at=when)
    return message


def test_p95_is_the_nearest_rank() -> None:
    assert p95([]) is None
    assert p95([5.0]) == 5.0
    assert p95([float(n) for n in range(1, 101)]) == 95.0
    assert p95([float(n) for n in range(1, 21)]) == 19.0


def test_staff_get_requests_errors_and_p95_per_kind(
    client: Client, alice: User, charlie: User
) -> None:
    for ttft in range(10, 210, 10):  # 20 replies: 10 ms ... 200 ms
        reply(alice, "openai", ttft=float(ttft))
    reply(alice, "openai", status="error", ttft=None)
    reply(alice, "anthropic", status="error", ttft=None)
    reply(alice, "anthropic", minutes_ago=20)  # before the window
    reply(alice, "anthropic", status="streaming")  # not ended yet
    reply(alice, "anthropic", cached=True)  # never reached the provider
    response = client.get(URL, **token(charlie))
    assert response.status_code == 200
    body = response.json()
    assert body["window_minutes"] == 15
    by_kind = {row["provider"]: row for row in body["providers"]}
    assert list(by_kind) == ["openai", "anthropic"]  # the registry's order
    openai = by_kind["openai"]
    assert (openai["requests"], openai["errors"]) == (21, 1)
    assert openai["error_rate"] == round(1 / 21, 4)
    assert openai["p95_ttft_ms"] == 190.0 and openai["label"] == "OpenAI"
    anthropic = by_kind["anthropic"]
    assert (anthropic["requests"], anthropic["errors"], anthropic["error_rate"]) == (1, 1, 1.0)
    assert anthropic["p95_ttft_ms"] is None
    assert body["open_upstreams"] == []


def test_open_breakers_are_counted_and_listed(client: Client, alice: User, charlie: User) -> None:
    soon = timezone.now() + timedelta(minutes=2)
    ProviderConfig.objects.create(user=alice, kind="ollama", open_until=soon, failure="down")
    ProviderConfig.objects.create(
        user=charlie, kind="ollama", open_until=timezone.now() - timedelta(minutes=1)
    )
    Upstream.objects.create(address="http://10.0.0.5:11434", open_until=soon, failure="refused")
    Upstream.objects.create(address="http://10.0.0.6:11434", open_until=None)
    body = client.get(URL, **token(charlie)).json()
    assert body["providers"] == [
        {
            "provider": "ollama",
            "label": "Ollama",
            "requests": 0,
            "errors": 0,
            "error_rate": 0.0,
            "p95_ttft_ms": None,
            "open_breakers": 1,
        }
    ]
    assert body["open_upstreams"] == [
        {"address": "http://10.0.0.5:11434", "retry_at": soon.isoformat(), "failure": "refused"}
    ]


def test_a_person_who_is_not_staff_gets_404(client: Client, alice: User, bob: User) -> None:
    reply(alice, "openai")
    for user in (alice, bob):
        response = client.get(URL, **token(user))
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        assert "openai" not in response.content.decode()


def test_without_a_sign_in_it_is_401(client: Client) -> None:
    response = client.get(URL)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_a_wrong_method_is_405(client: Client, charlie: User) -> None:
    response = client.post(URL, **token(charlie))
    assert response.status_code == 405 and response["Allow"] == "GET, HEAD"


@pytest.mark.django_db
def test_the_public_health_stays_as_it_was(client: Client) -> None:
    body = client.get("/api/v1/health").json()
    assert set(body) == {"status", "database", "channel_layer"}


def test_the_computation_is_bounded_to_its_window(alice: User) -> None:
    reply(alice, "gemini", minutes_ago=14)
    now = timezone.now()
    assert [r.provider for r in provider_health(now).providers] == ["gemini"]
    assert provider_health(now + timedelta(minutes=2)).providers == []
