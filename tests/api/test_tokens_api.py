"""POST/GET /api/v1/tokens and DELETE /api/v1/tokens/{id}."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client

from accounts.models import ApiToken, User


def create(client: Client, name: object, **headers: Any) -> Any:
    return client.post(
        "/api/v1/tokens", json.dumps({"name": name}), content_type="application/json", **headers
    )


def test_create_shows_the_token_once_and_it_works(alice_client: Client, client: Client) -> None:
    response = create(alice_client, "laptop")
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "laptop" and body["token"].startswith("cpt_")
    assert body["prefix"] == body["token"][:12]
    listed = client.get("/api/v1/tokens", HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    assert listed.status_code == 200
    tokens = listed.json()["tokens"]
    assert [t["name"] for t in tokens] == ["laptop"]
    assert set(tokens[0]) == {"id", "name", "prefix", "created_at", "last_used_at"}
    assert body["token"] not in listed.content.decode()


def test_a_token_cannot_create_tokens(alice: User, client: Client) -> None:
    _, raw = ApiToken.issue(alice, "script")
    response = create(client, "another", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 403
    assert "signed in" in response.json()["error"]["message"]
    assert ApiToken.objects.count() == 1


def test_a_name_is_required(alice_client: Client) -> None:
    for name in ("", None, 5):
        response = create(alice_client, name)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "bad_request" and error["fields"]["name"]
    assert not ApiToken.objects.exists()


def test_revoked_tokens_are_refused_everywhere(alice: User, client: Client) -> None:
    token, raw = ApiToken.issue(alice, "old")
    auth: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    assert client.delete(f"/api/v1/tokens/{token.pk}", **auth).status_code == 204
    response = client.get("/api/v1/tokens", **auth)
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]


def test_bob_cannot_see_or_revoke_alices_tokens(alice: User, bob: User, client: Client) -> None:
    token, _ = ApiToken.issue(alice, "alice-laptop")
    _, raw = ApiToken.issue(bob, "bob")
    auth: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    listed = client.get("/api/v1/tokens", **auth).json()["tokens"]
    assert [t["name"] for t in listed] == ["bob"]
    response = client.delete(f"/api/v1/tokens/{token.pk}", **auth)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert ApiToken.objects.filter(pk=token.pk).exists()
