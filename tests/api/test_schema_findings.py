"""What schemathesis found against /api/v1 (tests/api/test_openapi_fuzz.py), each pinned here
so that it stays fixed without the fuzzer's luck."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from accounts.models import ApiToken, User
from llm.models import Conversation, Message

pytestmark = pytest.mark.django_db(transaction=True)

CSRF = "c" * 32


@pytest.fixture
def alice_token(alice: User) -> dict[str, Any]:
    _, raw = ApiToken.issue(alice, "tests")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/conversations/null,null",  # not an int: no route matched
        "/api/v1/tokens/-1",
        "/api/v1/providers/a%2Fb/test",
        "/api/v1/no-such-endpoint",
    ],
)
def test_a_path_no_route_takes_is_the_json_404(
    client: Client, alice_token: dict[str, Any], path: str
) -> None:
    response = client.delete(path, **alice_token)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/api/v1/health", "GET, HEAD"),
        ("/api/v1/openapi.json", "GET, HEAD"),
        ("/api/v1/chat", "POST"),
        ("/api/v1/conversations/1", "GET, PATCH, DELETE"),
        ("/api/v1/conversations/1/export", "GET"),
        ("/api/v1/conversations/import", "POST"),
        ("/api/v1/conversations/delete", "POST"),
        ("/api/v1/providers", "GET"),
        ("/api/v1/providers/openai", "GET, PUT, DELETE"),
        ("/api/v1/providers/openai/test", "POST"),
        ("/api/v1/tokens", "GET, POST"),
        ("/api/v1/tokens/1", "DELETE"),
    ],
)
def test_a_wrong_method_is_405_naming_the_right_ones(
    client: Client, alice_token: dict[str, Any], path: str, allowed: str
) -> None:
    response = client.generic("TRACE", path, **alice_token)
    assert response.status_code == 405
    assert response["Allow"] == allowed
    assert response.json()["error"]["code"] == "bad_request"


def test_stopping_a_reply_that_failed_is_200_with_how_it_ended(
    client: Client, alice: User, alice_token: dict[str, Any]
) -> None:
    conversation = Conversation.objects.create(user=alice, title="t")
    failed = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="Hel",
        status="error",
        error_code="provider_timeout",
        error_message="OpenAI did not answer in time.",
        provider="openai",
        model="gpt-4o",
    )
    response = client.post(f"/api/v1/replies/{failed.pk}/stop", **alice_token)
    assert response.status_code == 200  # was 504: the stop worked, the reply failed long ago
    body = response.json()
    assert (body["status"], body["content"]) == ("error", "Hel")
    assert body["error"]["code"] == "provider_timeout"


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary=x"])
def test_a_session_post_whose_body_is_not_json_is_a_json_400(
    alice_client: Client, content_type: str
) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.cookies = alice_client.cookies
    browser.cookies["csrftoken"] = CSRF
    body = b'--x\r\nContent-Disposition: form-data; name="name"\r\n\r\nlaptop\r\n--x--\r\n'
    response = browser.generic(
        "POST", "/api/v1/tokens", body, content_type=content_type, HTTP_X_CSRFTOKEN=CSRF
    )
    # Was Django's HTML 400 without a boundary and a 500 with one (the CSRF check had read
    # the body as a form, so the view could no longer read it).
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]
    assert not ApiToken.objects.exists()


def test_a_session_post_with_its_csrf_token_still_creates_a_token(alice_client: Client) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.cookies = alice_client.cookies
    browser.cookies["csrftoken"] = CSRF
    response = browser.post(
        "/api/v1/tokens", '{"name": "laptop"}', "application/json", HTTP_X_CSRFTOKEN=CSRF
    )
    assert response.status_code == 201 and response.json()["name"] == "laptop"


def test_after_is_checked_even_when_last_event_id_wins(
    client: Client, alice_token: dict[str, Any]
) -> None:
    response = client.get(
        "/api/v1/replies/1/events?after=1000000001", HTTP_LAST_EVENT_ID="0", **alice_token
    )
    assert response.status_code == 400
    assert "after must be between" in response.json()["error"]["message"]


def test_a_whole_number_written_as_a_float_is_a_conversation_id(
    client: Client, alice: User, alice_token: dict[str, Any]
) -> None:
    alice.monthly_budget = Decimal(0)  # refused after validation, before any provider
    alice.save()
    conversation = Conversation.objects.create(user=alice, title="t")
    for conversation_id, code in [(float(conversation.pk), "budget_exceeded"), (9e9, "not_found")]:
        response = client.post(
            "/api/v1/chat",
            json.dumps({"message": "hi", "conversation_id": conversation_id}),
            content_type="application/json",
            **alice_token,
        )
        assert response.json()["error"]["code"] == code  # was "must be a number" (400)
    response = client.post(
        "/api/v1/chat",
        json.dumps({"message": "hi", "conversation_id": 1.5}),
        content_type="application/json",
        **alice_token,
    )
    assert response.status_code == 400


def test_a_field_the_kind_does_not_have_is_refused_not_dropped(
    client: Client, alice_token: dict[str, Any]
) -> None:
    def put(kind: str, body: dict[str, Any]) -> Any:
        return client.put(
            f"/api/v1/providers/{kind}", json.dumps(body), "application/json", **alice_token
        )

    refused = put("local", {"base_url": "https://example.com/v1", "model": "m"})
    assert refused.status_code == 400
    assert refused.json()["error"]["fields"] == {"base_url": ["Local model has no base_url."]}
    assert put("ollama", {"api_version": "2024-10-21"}).status_code == 400
    # Empty or null is what a client that sends every field sends: still fine.
    assert put("local", {"base_url": "", "api_key": None, "model": "m"}).status_code == 200


def test_a_nul_in_chat_text_is_refused_before_anything_is_stored(
    client: Client, alice: User, alice_token: dict[str, Any]
) -> None:
    # PostgreSQL stores no NUL in text: the conversation's insert was a 500 there.
    for body in [{"message": "a\x00b"}, {"message": "hi", "model": "gpt\x00"}]:
        response = client.post(
            "/api/v1/chat", json.dumps(body), content_type="application/json", **alice_token
        )
        assert response.status_code == 400
        assert "NUL" in response.json()["error"]["message"]
    assert not Conversation.objects.exists()
