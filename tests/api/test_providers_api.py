"""GET/PUT/DELETE /api/v1/providers[/{kind}], test and models: as API.md says."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from accounts.models import ApiToken, User
from llm.models import ProviderConfig
from llm.providers.registry import PROVIDERS
from tests.fakes.openai_server import FakeOpenAI

KEY = "sk-test-alice-0123456789abcdefWXYZ"


@pytest.fixture
def alice_token(alice: User) -> dict[str, Any]:
    _, raw = ApiToken.issue(alice, "tests")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def put(client: Client, kind: str, body: Any, **headers: Any) -> Any:
    return client.put(
        f"/api/v1/providers/{kind}", json.dumps(body), content_type="application/json", **headers
    )


def test_list_has_every_kind_and_never_the_key(
    client: Client, alice: User, alice_token: dict[str, Any]
) -> None:
    config = ProviderConfig(user=alice, kind="openai", model="gpt-4o-mini", temperature=0.3)
    config.set_api_key(KEY)
    config.save()
    response = client.get("/api/v1/providers", **alice_token)
    assert response.status_code == 200
    assert KEY not in response.content.decode()
    rows = {row["kind"]: row for row in response.json()["providers"]}
    assert list(rows) == list(PROVIDERS)
    openai = rows["openai"]
    assert openai["configured"] is True
    assert openai["key_hint"] == "WXYZ"
    assert (openai["model"], openai["temperature"]) == ("gpt-4o-mini", 0.3)
    assert openai["base_url"] == "https://api.openai.com/v1"
    assert rows["anthropic"]["configured"] is False and rows["anthropic"]["key_hint"] == ""


def test_unauthenticated_gets_the_error_body(client: Client) -> None:
    response = client.get("/api/v1/providers")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_put_creates_then_omitting_the_key_keeps_it(
    client: Client, alice_token: dict[str, Any]
) -> None:
    response = put(client, "openai", {"api_key": KEY, "model": "gpt-4o"}, **alice_token)
    assert response.status_code == 200, response.content
    assert response.json()["key_hint"] == "WXYZ" and KEY not in response.content.decode()
    response = put(client, "openai", {"temperature": 1.5, "max_tokens": 500}, **alice_token)
    body = response.json()
    assert (body["temperature"], body["max_tokens"], body["model"]) == (1.5, 500, "gpt-4o")
    config = ProviderConfig.objects.get(kind="openai")
    assert config.api_key() == KEY


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"api_key": KEY, "temperature": 2.5}, "temperature", "cannot be above 2"),
        ({"api_key": KEY, "max_tokens": 0}, "max_tokens", "at least 1 token"),
        ({"api_key": "sk-with space-1234"}, "api_key", "space or a line break"),
        ({"api_key": KEY, "base_url": "http://169.254.169.254/"}, "base_url", "metadata"),
        ({"api_key": KEY, "model": ["a"]}, "model", "string or a number"),
        ({"api_key": KEY, "colour": "red"}, "colour", "Unknown field"),
        ({}, "api_key", "Paste your OpenAI API key"),
    ],
)
def test_put_validation_names_the_field(
    client: Client, alice_token: dict[str, Any], body: dict[str, Any], field: str, words: str
) -> None:
    response = put(client, "openai", body, **alice_token)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_request"
    assert words in " ".join(error["fields"][field])
    assert words in error["message"] or len(error["fields"]) > 1
    assert not ProviderConfig.objects.exists()
    assert "space-1234" not in response.content.decode()


def test_put_with_the_session_needs_csrf(alice: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = put(client, "openai", {"api_key": KEY})
    assert response.status_code == 403
    assert not ProviderConfig.objects.exists()


def test_put_bad_json_is_explained(client: Client, alice_token: dict[str, Any]) -> None:
    response = client.put(
        "/api/v1/providers/openai", "{nope", content_type="application/json", **alice_token
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


def test_unknown_kind_is_404(client: Client, alice_token: dict[str, Any]) -> None:
    response = put(client, "nope", {"api_key": KEY}, **alice_token)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_delete_forgets_the_configuration(
    client: Client, alice: User, alice_token: dict[str, Any]
) -> None:
    put(client, "openai", {"api_key": KEY}, **alice_token)
    assert client.delete("/api/v1/providers/openai", **alice_token).status_code == 204
    assert not ProviderConfig.objects.exists()
    again = client.delete("/api/v1/providers/openai", **alice_token)
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"


def test_test_endpoint_reports_latency_and_model_count(
    client: Client, alice_token: dict[str, Any], fake_openai: FakeOpenAI
) -> None:
    put(
        client,
        "openai",
        {"api_key": fake_openai.api_key, "base_url": fake_openai.base_url},
        **alice_token,
    )
    response = client.post("/api/v1/providers/openai/test", **alice_token)
    body = response.json()
    assert response.status_code == 200
    assert body["ok"] is True and body["models"] == 3
    assert isinstance(body["latency_ms"], float) and body["latency_ms"] >= 0
    assert ProviderConfig.objects.get(kind="openai").last_verified_at is not None


def test_test_endpoint_with_a_refused_key_is_ok_false(
    client: Client, alice_token: dict[str, Any], fake_openai: FakeOpenAI
) -> None:
    put(
        client,
        "openai",
        {"api_key": "sk-wrong-0000", "base_url": fake_openai.base_url},
        **alice_token,
    )
    body = client.post("/api/v1/providers/openai/test", **alice_token).json()
    assert body["ok"] is False
    assert body["error"]["code"] == "provider_auth" and body["error"]["message"]
    assert ProviderConfig.objects.get(kind="openai").last_error == body["error"]["message"]


def test_test_endpoint_before_setup_is_not_configured(
    client: Client, alice_token: dict[str, Any]
) -> None:
    response = client.post("/api/v1/providers/anthropic/test", **alice_token)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_configured"


def test_models_endpoint_lists_the_models(
    client: Client, alice_token: dict[str, Any], fake_openai: FakeOpenAI
) -> None:
    fake_openai.models = ["b-model", "a-model"]
    put(
        client,
        "openai",
        {"api_key": fake_openai.api_key, "base_url": fake_openai.base_url},
        **alice_token,
    )
    response = client.get("/api/v1/providers/openai/models", **alice_token)
    assert response.json() == {"models": ["a-model", "b-model"]}


def test_models_endpoint_passes_a_provider_failure_on(
    client: Client, alice_token: dict[str, Any], fake_openai: FakeOpenAI
) -> None:
    put(
        client,
        "openai",
        {"api_key": "sk-wrong-0000", "base_url": fake_openai.base_url},
        **alice_token,
    )
    response = client.get("/api/v1/providers/openai/models", **alice_token)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "provider_auth"


def test_bob_never_sees_or_changes_alices_settings(
    client: Client, alice: User, bob: User, alice_token: dict[str, Any]
) -> None:
    put(client, "openai", {"api_key": KEY, "model": "alice-model"}, **alice_token)
    _, raw = ApiToken.issue(bob, "bob")
    bob_auth: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    rows = {r["kind"]: r for r in client.get("/api/v1/providers", **bob_auth).json()["providers"]}
    assert rows["openai"]["configured"] is False and rows["openai"]["key_hint"] == ""
    assert client.delete("/api/v1/providers/openai", **bob_auth).status_code == 404
    assert client.post("/api/v1/providers/openai/test", **bob_auth).status_code == 409
    assert client.get("/api/v1/providers/openai/models", **bob_auth).status_code == 409
    config = ProviderConfig.objects.get(user=alice, kind="openai")
    assert config.model == "alice-model" and config.api_key() == KEY
