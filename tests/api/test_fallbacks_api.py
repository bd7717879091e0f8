"""GET and PUT /api/v1/fallbacks: the caller's "if it fails" chain."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from accounts.models import ApiToken, User
from llm.models import FallbackEntry

URL = "/api/v1/fallbacks"


@pytest.fixture
def alice_token(alice: User) -> dict[str, Any]:
    _, raw = ApiToken.issue(alice, "tests")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


@pytest.fixture
def bob_token(bob: User) -> dict[str, Any]:
    _, raw = ApiToken.issue(bob, "tests")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def put(client: Client, body: Any, auth: dict[str, Any]) -> Any:
    return client.put(URL, json.dumps(body), content_type="application/json", **auth)


def stored(user: User) -> list[tuple[int, str, str]]:
    return [(e.position, e.provider, e.model) for e in FallbackEntry.objects.filter(user=user)]


def test_an_empty_chain_to_start_with(client: Client, alice_token: dict[str, Any]) -> None:
    response = client.get(URL, **alice_token)
    assert response.status_code == 200 and response.json() == {"chain": []}


def test_put_replaces_the_chain_and_get_gives_it_back_in_order(
    client: Client, alice: User, alice_token: dict[str, Any]
) -> None:
    body = {
        "chain": [
            {"provider": "anthropic", "model": "claude-sonnet-4-5"},
            {"provider": "local"},
            {"provider": "gemini", "model": None},
        ]
    }
    response = put(client, body, alice_token)
    assert response.status_code == 200, response.content
    expected = [
        {"provider": "anthropic", "model": "claude-sonnet-4-5"},
        {"provider": "local", "model": ""},
        {"provider": "gemini", "model": ""},
    ]
    assert response.json() == {"chain": expected}
    assert client.get(URL, **alice_token).json() == {"chain": expected}
    # Replaced as a whole, not appended to.
    put(client, {"chain": [{"provider": "local", "model": " m "}]}, alice_token)
    assert stored(alice) == [(1, "local", "m")]
    assert put(client, {"chain": []}, alice_token).json() == {"chain": []}
    assert stored(alice) == []


@pytest.mark.parametrize(
    ("chain", "field", "words"),
    [
        ([{"provider": "local"}] * 6, "chain", "At most 5 steps"),
        ([{"provider": "nope"}], "chain[0].provider", "There is no provider “nope”"),
        ([{"provider": ""}], "chain[0].provider", "Choose a provider"),
        ([{"model": "x"}], "chain[0].provider", "Choose a provider"),
        ([{"provider": "local", "model": "m" * 201}], "chain[0].model", "at most 200"),
        ([{"provider": "local", "model": 3}], "chain[0].model", "The model is a name"),
        ([{"provider": "local", "model": "a\x00b"}], "chain[0].model", "NUL"),
        ([{"provider": "local", "extra": 1}], "chain[0]", "Unknown field extra"),
        (["local"], "chain[0]", "Each step is an object"),
        (
            [{"provider": "local"}, {"provider": "openai"}, {"provider": "local", "model": ""}],
            "chain[2]",
            "Step 3 repeats step 1 (Local model)",
        ),
        ("local", "chain", "Send the chain as a list"),
    ],
)
def test_put_refuses_a_bad_chain_with_words_and_keeps_the_old_one(
    client: Client,
    alice: User,
    alice_token: dict[str, Any],
    chain: Any,
    field: str,
    words: str,
) -> None:
    FallbackEntry.objects.create(user=alice, position=1, provider="gemini", model="")
    response = put(client, {"chain": chain}, alice_token)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_request"
    assert words in " ".join(error["fields"][field]), error
    assert stored(alice) == [(1, "gemini", "")]


@pytest.mark.parametrize("body", [{}, {"chain": [], "extra": 1}, {"steps": []}])
def test_the_body_must_be_a_chain(client: Client, alice_token: dict[str, Any], body: Any) -> None:
    response = put(client, body, alice_token)
    assert response.status_code == 400
    assert 'Send {"chain": [' in response.json()["error"]["message"]


def test_a_provider_that_is_not_set_up_is_allowed(
    client: Client, alice: User, alice_token: dict[str, Any]
) -> None:
    assert put(client, {"chain": [{"provider": "openai"}]}, alice_token).status_code == 200
    assert stored(alice) == [(1, "openai", "")]


def test_wrong_method_and_no_sign_in(client: Client, alice_token: dict[str, Any]) -> None:
    response = client.post(URL, **alice_token)
    assert response.status_code == 405 and response["Allow"] == "GET, PUT"
    assert client.get(URL).status_code == 401


def test_a_session_put_needs_csrf(alice: User) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    response = put(browser, {"chain": [{"provider": "local"}]}, {})
    assert response.status_code == 403 and stored(alice) == []


def test_bob_never_sees_or_replaces_alices_chain(
    client: Client,
    alice: User,
    bob: User,
    alice_token: dict[str, Any],
    bob_token: dict[str, Any],
) -> None:
    put(client, {"chain": [{"provider": "anthropic", "model": "alice-model"}]}, alice_token)
    assert client.get(URL, **bob_token).json() == {"chain": []}
    put(client, {"chain": [{"provider": "local"}]}, bob_token)
    assert stored(alice) == [(1, "anthropic", "alice-model")]
    assert stored(bob) == [(1, "local", "")]
