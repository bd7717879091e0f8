"""/api/v1/conversations: search and filters, PATCH (rename, pin), export, import, bulk
delete and clear by provider; another person's conversation is a 404 on every path."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import AsyncClient, Client

from accounts.models import User
from llm import exports
from llm.models import Conversation, Message
from tests.api.test_chat_api import post_chat
from tests.fakes.openai_server import FakeOpenAI
from tests.test_conversation_search import ON_POSTGRES, talk


def send(client: Client, method: str, url: str, headers: dict[str, str], body: Any = None) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body) if body is not None else ""
    return client.generic(method, url, data, content_type="application/json", headers=headers)


def test_list_carries_pinned_and_puts_them_first(alice: User, alice_auth: dict[str, str]) -> None:
    talk(alice, "Newest", "hi", days_ago=0)
    talk(alice, "Pinned", "hi", "ho", days_ago=4, pinned=True)
    body = Client().get("/api/v1/conversations", headers=alice_auth).json()
    assert [(c["title"], c["pinned"], c["messages"]) for c in body["conversations"]] == [
        ("Pinned", True, 2),
        ("Newest", False, 1),
    ]
    assert body["total"] == 2
    assert all("snippet" not in c for c in body["conversations"])


def test_search_gives_a_marked_and_escaped_snippet(alice: User, alice_auth: dict[str, str]) -> None:
    talk(alice, "Evil", "<script>alert(1)</script> the password is swordfish", "ok")
    talk(alice, "Plain", "nothing")
    body = Client().get("/api/v1/conversations?q=swordfish", headers=alice_auth).json()
    [found] = body["conversations"]
    assert found["title"] == "Evil" and body["total"] == 1
    assert "<mark>swordfish</mark>" in found["snippet"]
    assert "<script" not in found["snippet"]
    if not ON_POSTGRES:
        assert found["snippet"] == (
            "&lt;script&gt;alert(1)&lt;/script&gt; the password is <mark>swordfish</mark>"
        )


def test_filters_by_provider_model_dates_and_pinned(
    alice: User, alice_auth: dict[str, str]
) -> None:
    talk(alice, "GPT", "q", "a", provider="openai", model="gpt-4o", days_ago=0)
    talk(alice, "Claude", "q", "a", provider="anthropic", model="claude-x", days_ago=10)
    talk(alice, "Pinned GPT", "q", "a", provider="openai", model="gpt-4o-mini", pinned=True)
    client = Client()

    def titles(query: str) -> list[str]:
        response = client.get(f"/api/v1/conversations?{query}", headers=alice_auth)
        assert response.status_code == 200, response.json()
        return [c["title"] for c in response.json()["conversations"]]

    assert titles("provider=openai") == ["Pinned GPT", "GPT"]
    assert titles("model=gpt-4o") == ["GPT"]
    assert titles("pinned=false&provider=openai") == ["GPT"]
    assert titles("pinned=true") == ["Pinned GPT"]
    old = Conversation.objects.get(title="Claude").updated_at.date().isoformat()
    assert titles(f"until={old}") == ["Claude"]
    assert titles(f"since={old}&until={old}") == ["Claude"]


def test_bad_filters_are_400_with_the_field_named(alice_auth: dict[str, str]) -> None:
    client = Client()
    swapped = client.get(
        "/api/v1/conversations?since=2026-03-02&until=2026-03-01", headers=alice_auth
    )
    assert swapped.status_code == 400
    assert swapped.json()["error"]["message"].endswith("swap the two dates.")
    bad = client.get("/api/v1/conversations?since=soon&pinned=yes", headers=alice_auth).json()
    assert bad["error"]["code"] == "bad_request"
    assert bad["error"]["fields"]["since"] == ["Enter a date as YYYY-MM-DD, like 2026-01-31."]
    assert "pinned" in bad["error"]["fields"]


def test_patch_renames_and_pins_without_moving_it(alice: User, alice_auth: dict[str, str]) -> None:
    convo = talk(alice, "Old", "hi", days_ago=2)
    before = convo.updated_at
    client = Client()
    url = f"/api/v1/conversations/{convo.pk}"

    renamed = send(client, "PATCH", url, alice_auth, {"title": "  New   name "})
    assert renamed.status_code == 200
    assert renamed.json() == {**renamed.json(), "title": "New name", "pinned": False}
    pinned = send(client, "PATCH", url, alice_auth, {"pinned": True}).json()
    assert pinned["pinned"] is True and pinned["title"] == "New name" and pinned["messages"] == 1
    convo.refresh_from_db()
    assert (convo.title, convo.pinned, convo.updated_at) == ("New name", True, before)
    detail = client.get(url, headers=alice_auth).json()
    assert detail["pinned"] is True


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"title": "   "}, "title: Give the conversation a title"),
        ({"title": "x" * 201}, "at most 200 characters"),
        ({"title": 7}, "title must be text."),
        ({"pinned": "yes"}, "pinned must be true or false."),
        ({"messages": []}, "Only title and pinned can be changed, not messages."),
    ],
)
def test_patch_refusals_say_what_is_wrong(
    alice: User, alice_auth: dict[str, str], body: dict[str, Any], words: str
) -> None:
    convo = talk(alice, "Keep", "hi")
    response = send(Client(), "PATCH", f"/api/v1/conversations/{convo.pk}", alice_auth, body)
    assert response.status_code == 400
    assert words in response.json()["error"]["message"]
    convo.refresh_from_db()
    assert (convo.title, convo.pinned) == ("Keep", False)


def test_export_as_json_and_markdown(alice: User, alice_auth: dict[str, str]) -> None:
    convo = talk(alice, "Trip", "Where?", "Lisbon.")
    client = Client()
    url = f"/api/v1/conversations/{convo.pk}/export"
    as_json = client.get(url, headers=alice_auth)
    assert as_json["Content-Type"] == "application/json"
    assert [m["content"] for m in as_json.json()["messages"]] == ["Where?", "Lisbon."]
    as_md = client.get(url + "?format=md", headers=alice_auth)
    assert as_md["Content-Type"].startswith("text/markdown")
    assert as_md["Content-Disposition"] == 'attachment; filename="trip.md"'
    assert "Lisbon." in as_md.content.decode()
    wrong = client.get(url + "?format=pdf", headers=alice_auth)
    assert wrong.status_code == 400 and "md (Markdown) or json" in wrong.json()["error"]["message"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("replies_end")
async def test_a_real_conversation_exported_then_imported_has_the_same_messages(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    client = AsyncClient()
    fake_openai.reply("Lisbon: Alfama, Belém, the river.")
    first = (await post_chat(client, alice_auth, message="Three days where?")).json()
    fake_openai.reply("Day two: Sintra.")
    await post_chat(
        client, alice_auth, message="And then?", conversation_id=first["conversation_id"]
    )
    requests = len(fake_openai.chat_requests)
    url = f"/api/v1/conversations/{first['conversation_id']}"

    exported = await client.get(f"{url}/export?format=json", headers=alice_auth)
    imported = await client.post(
        "/api/v1/conversations/import",
        exported.content,
        content_type="application/json",
        headers=alice_auth,
    )

    assert imported.status_code == 201
    made = imported.json()
    assert made["title"] == "Three days where?" and made["messages"] == 4
    original = (await client.get(url, headers=alice_auth)).json()["messages"]
    copy = (await client.get(f"/api/v1/conversations/{made['id']}", headers=alice_auth)).json()
    fields = ("role", "content", "provider", "model", "status")
    assert [tuple(m[f] for f in fields) for m in copy["messages"]] == [
        tuple(m[f] for f in fields) for m in original
    ]
    assert len(fake_openai.chat_requests) == requests  # no provider was asked


def test_import_takes_the_openai_list_and_refuses_in_words(
    alice: User, alice_auth: dict[str, str]
) -> None:
    client = Client()
    openai_body = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    }
    made = send(client, "POST", "/api/v1/conversations/import", alice_auth, openai_body)
    assert made.status_code == 201 and made.json()["messages"] == 2
    bare = send(
        client,
        "POST",
        "/api/v1/conversations/import",
        alice_auth,
        [{"role": "user", "content": "x"}],
    )
    assert bare.status_code == 201

    refused = send(
        client,
        "POST",
        "/api/v1/conversations/import",
        alice_auth,
        [{"role": "tool", "content": "x"}],
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["message"].startswith('Message 1 has the role "tool"')
    broken = send(client, "POST", "/api/v1/conversations/import", alice_auth, b"{nope")
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]["message"]
    huge = send(
        client,
        "POST",
        "/api/v1/conversations/import",
        alice_auth,
        b" " * (exports.MAX_IMPORT_BYTES + 1),
    )
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "too_large"
    assert Conversation.objects.filter(user=alice).count() == 2


def test_bulk_delete_by_ids_deletes_only_mine(
    alice: User, bob: User, alice_auth: dict[str, str]
) -> None:
    one, two, keep = talk(alice, "One"), talk(alice, "Two"), talk(alice, "Keep")
    theirs = talk(bob, "Bob's")
    body = {"ids": [two.pk, one.pk, theirs.pk, 99999]}
    response = send(Client(), "POST", "/api/v1/conversations/delete", alice_auth, body)
    assert response.status_code == 200
    assert response.json() == {"deleted": 2, "ids": sorted([one.pk, two.pk])}
    assert set(Conversation.objects.values_list("pk", flat=True)) == {keep.pk, theirs.pk}


def test_clear_by_provider_deletes_only_mine(
    alice: User, bob: User, alice_auth: dict[str, str]
) -> None:
    talk(alice, "GPT", "q", "a", provider="openai")
    talk(alice, "Claude", "q", "a", provider="anthropic")
    talk(bob, "Bob's GPT", "q", "a", provider="openai")
    response = send(
        Client(), "POST", "/api/v1/conversations/delete", alice_auth, {"provider": "openai"}
    )
    assert response.json()["deleted"] == 1
    assert set(Conversation.objects.values_list("title", flat=True)) == {"Claude", "Bob's GPT"}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, 'Send either "ids"'),
        ({"ids": [1], "provider": "openai"}, 'Send either "ids"'),
        ({"ids": []}, "ids must be a list of conversation ids"),
        ({"ids": [True]}, "ids must hold conversation ids"),
        ({"ids": [2**63]}, "ids must hold conversation ids"),
        ({"ids": list(range(1, 502))}, "At most 500 ids at once"),
        ({"provider": "nope"}, "provider must be one of"),
        ({"provider": ["openai"]}, "provider must be one of"),
        ({"everything": True}, "Send ids or provider, not everything."),
    ],
)
def test_bulk_delete_refusals_say_what_is_wrong(
    alice: User, alice_auth: dict[str, str], body: dict[str, Any], words: str
) -> None:
    talk(alice, "Survivor", "q", "a")
    response = send(Client(), "POST", "/api/v1/conversations/delete", alice_auth, body)
    assert response.status_code == 400 and words in response.json()["error"]["message"]
    assert Conversation.objects.count() == 1


def test_bob_gets_404_for_alices_conversation_on_every_path(
    alice: User, bob_auth: dict[str, str]
) -> None:
    convo = talk(alice, "Alice's", "secret words", "reply", provider="openai")
    client = Client()
    url = f"/api/v1/conversations/{convo.pk}"
    for method, path, body in [
        ("PATCH", url, {"title": "Bob's now"}),
        ("PATCH", url, {"pinned": True}),
        ("GET", f"{url}/export", None),
        ("GET", f"{url}/export?format=md", None),
    ]:
        response = send(client, method, path, bob_auth, body)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "not_found"
    by_ids = send(client, "POST", "/api/v1/conversations/delete", bob_auth, {"ids": [convo.pk]})
    assert by_ids.json() == {"deleted": 0, "ids": []}
    by_kind = send(client, "POST", "/api/v1/conversations/delete", bob_auth, {"provider": "openai"})
    assert by_kind.json() == {"deleted": 0, "ids": []}
    listed = client.get("/api/v1/conversations?q=secret", headers=bob_auth).json()
    assert listed == {"conversations": [], "total": 0}
    convo.refresh_from_db()
    assert (convo.title, convo.pinned, convo.messages.count()) == ("Alice's", False, 2)
    assert Message.objects.filter(conversation__user=alice).count() == 2
