"""The newer provider settings over /api/v1/providers: enabled, sampling, thinking, timeouts,
the cap, keep-alive, the reply cache, and the breaker's state (read-only)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import ApiToken, User
from llm.models import ProviderConfig

KEY = "sk-test-alice-0123456789abcdefWXYZ"


@pytest.fixture
def alice_token(alice: User) -> dict[str, Any]:
    _, raw = ApiToken.issue(alice, "tests")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


@pytest.fixture
def bob_token(bob: User) -> dict[str, Any]:
    _, raw = ApiToken.issue(bob, "tests")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def put(client: Client, kind: str, body: Any, auth: dict[str, Any]) -> Any:
    return client.put(
        f"/api/v1/providers/{kind}", json.dumps(body), content_type="application/json", **auth
    )


def rows(client: Client, auth: dict[str, Any]) -> dict[str, dict[str, Any]]:
    body = client.get("/api/v1/providers", **auth).json()
    return {row["kind"]: row for row in body["providers"]}


def test_the_list_has_the_new_fields_with_their_defaults(
    client: Client, alice_token: dict[str, Any]
) -> None:
    openai = rows(client, alice_token)["openai"]
    assert openai["enabled"] is True and openai["cache_replies"] is False
    assert (openai["top_p"], openai["stop"], openai["thinking"]) == (None, [], "auto")
    assert openai["connect_timeout"] is None and openai["max_concurrent"] is None
    assert openai["breaker"] == {"state": "closed", "retry_at": None, "failure": ""}
    # Keep-alive is a local server's: only their kinds carry it.
    assert "keep_alive_minutes" not in openai
    ollama = rows(client, alice_token)["ollama"]
    assert (ollama["keep_alive_minutes"], ollama["keep_alive_at"]) == (0, None)
    assert ollama["keep_alive_result"] == ""


def test_put_saves_every_new_field_and_get_gives_them_back(
    client: Client, alice_token: dict[str, Any]
) -> None:
    body = {
        "api_key": KEY,
        "enabled": False,
        "top_p": 0.8,
        "stop": ["###", "\n\nUser:"],
        "thinking": "show",
        "connect_timeout": 3,
        "first_byte_timeout": "90",
        "idle_timeout": None,
        "max_concurrent": 2,
        "cache_replies": True,
    }
    response = put(client, "openai", body, alice_token)
    assert response.status_code == 200, response.content
    saved = response.json()
    assert saved["enabled"] is False and saved["cache_replies"] is True
    assert saved["stop"] == ["###", "\n\nUser:"] and saved["thinking"] == "show"
    assert (saved["top_p"], saved["connect_timeout"], saved["first_byte_timeout"]) == (
        0.8,
        3.0,
        90.0,
    )
    assert saved["idle_timeout"] is None and saved["max_concurrent"] == 2
    # What a later PUT omits keeps its stored value.
    again = put(client, "openai", {"temperature": 1}, alice_token).json()
    assert again["stop"] == ["###", "\n\nUser:"] and again["enabled"] is False
    assert rows(client, alice_token)["openai"] == again
    # null empties a field: the provider's default again.
    cleared = put(client, "openai", {"top_p": None, "stop": None}, alice_token).json()
    assert (cleared["top_p"], cleared["stop"]) == (None, [])


def test_a_lone_stop_string_is_one_sequence(client: Client, alice_token: dict[str, Any]) -> None:
    saved = put(client, "openai", {"api_key": KEY, "stop": "END"}, alice_token).json()
    assert saved["stop"] == ["END"]


def test_keep_alive_for_a_local_server(
    client: Client, alice_token: dict[str, Any], settings: Any
) -> None:
    settings.LLM_PRIVATE_HOSTS = ["127.0.0.0/8"]
    saved = put(client, "ollama", {"keep_alive_minutes": 10}, alice_token).json()
    assert saved["keep_alive_minutes"] == 10
    config = ProviderConfig.objects.get(kind="ollama")
    assert config.keep_alive_due is None  # due at once: the next round pings it


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"enabled": "yes"}, "enabled", "Send true or false here."),
        ({"cache_replies": 1}, "cache_replies", "Send true or false here."),
        ({"top_p": 1.01}, "top_p", "Top p cannot be above 1."),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "At most 4 stop sequences"),
        ({"stop": ["x" * 101]}, "stop", "at most 100 characters"),
        ({"stop": [""]}, "stop", "cannot be empty"),
        ({"stop": [1]}, "stop", "Each stop sequence is text"),
        ({"stop": {"a": 1}}, "stop", "a list of strings"),
        ({"thinking": "hard"}, "thinking", "Choose one of: auto"),
        ({"connect_timeout": 0}, "connect_timeout", "At least 1 second."),
        ({"idle_timeout": 601}, "idle_timeout", "At most 600 seconds"),
        ({"max_concurrent": 1000}, "max_concurrent", "At most 256 replies at once."),
        ({"keep_alive_minutes": 5}, "keep_alive_minutes", "OpenAI has no keep_alive_minutes."),
        ({"failures": 0}, "failures", "Unknown field"),
        ({"open_until": None}, "open_until", "Unknown field"),
    ],
)
def test_put_refuses_with_words_next_to_the_field(
    client: Client, alice_token: dict[str, Any], body: dict[str, Any], field: str, words: str
) -> None:
    response = put(client, "openai", {"api_key": KEY, **body}, alice_token)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_request"
    assert words in " ".join(error["fields"][field])
    assert not ProviderConfig.objects.exists()


def test_nothing_for_a_field_the_kind_lacks_is_accepted(
    client: Client, alice_token: dict[str, Any]
) -> None:
    response = put(client, "openai", {"api_key": KEY, "keep_alive_minutes": 0}, alice_token)
    assert response.status_code == 200


def test_the_breaker_is_open_while_its_time_is_ahead(
    client: Client, alice: User, alice_token: dict[str, Any]
) -> None:
    config = ProviderConfig(user=alice, kind="openai")
    config.set_api_key(KEY)
    config.open_until = timezone.now() + timedelta(minutes=2)
    config.failures, config.failure = 5, "OpenAI did not answer in time."
    config.save()
    breaker = rows(client, alice_token)["openai"]["breaker"]
    assert breaker["state"] == "open" and breaker["failure"] == "OpenAI did not answer in time."
    assert breaker["retry_at"] == config.open_until.isoformat()
    config.open_until = timezone.now() - timedelta(seconds=1)
    config.save()
    assert rows(client, alice_token)["openai"]["breaker"]["state"] == "closed"


def test_bob_never_sees_alices_breaker_or_settings(
    client: Client, alice: User, alice_token: dict[str, Any], bob_token: dict[str, Any]
) -> None:
    put(client, "openai", {"api_key": KEY, "enabled": False, "stop": ["A"]}, alice_token)
    ProviderConfig.objects.filter(user=alice).update(
        open_until=timezone.now() + timedelta(minutes=1), failure="alice's failure"
    )
    bobs = rows(client, bob_token)["openai"]
    assert bobs["configured"] is False and bobs["enabled"] is True and bobs["stop"] == []
    assert bobs["breaker"]["state"] == "closed" and "alice" not in json.dumps(bobs)
    assert put(client, "openai", {"enabled": True}, bob_token).status_code == 400
    assert ProviderConfig.objects.get(user=alice).enabled is False
