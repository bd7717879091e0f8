"""The conversations page and its steps: search and filters, rename, pin, export, import,
bulk delete and clear by provider, and the widget's list (htmx partials). Bob gets 404
for every one of alice's conversations."""

from __future__ import annotations

import json

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from accounts.models import User
from llm import exports
from llm.models import Conversation, Message
from tests.test_conversation_search import ON_POSTGRES, talk


def htmx(target: str) -> dict[str, str]:
    return {"HX-Request": "true", "HX-Target": target}


# --- the list -----------------------------------------------------------------------------


def test_list_shows_pinned_first_with_a_badge_and_the_tools(
    alice: User, alice_client: Client
) -> None:
    talk(alice, "Newest", "hi", days_ago=0)
    talk(alice, "Pinned old", "hi", days_ago=5, pinned=True)
    body = alice_client.get("/conversations/").content.decode()
    assert body.index("Pinned old") < body.index("Newest")
    assert '<span class="badge">Pinned</span>' in body
    assert 'action="/conversations/import/"' in body and 'enctype="multipart/form-data"' in body
    assert 'name="ids"' in body and 'form="bulk-delete"' in body
    assert "coppertone/conversations.js" in body


def test_search_on_the_page_shows_the_match_marked_and_escaped(
    alice: User, alice_client: Client
) -> None:
    talk(alice, "Notes", "<script>alert(1)</script> the secret plan", "ok")
    talk(alice, "Other", "nothing here")
    response = alice_client.get("/conversations/?q=secret")
    body = response.content.decode()
    assert response.status_code == 200
    assert "Notes" in body and "Other" not in body
    assert "<mark>secret</mark>" in body
    assert "<script>alert(1)" not in body
    if not ON_POSTGRES:
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_filters_keep_their_values_and_the_pager_keeps_them(
    alice: User, alice_client: Client
) -> None:
    for n in range(52):
        talk(alice, f"Claude {n}", "q", "a", provider="anthropic")
    talk(alice, "GPT", "q", "a", provider="openai")
    body = alice_client.get("/conversations/?provider=anthropic").content.decode()
    assert "GPT" not in body and "Claude 51" in body
    assert '<option value="anthropic" selected>' in body
    assert "Page 1 of 2 · 52 conversations" in body
    assert 'href="?provider=anthropic&amp;page=2"' in body
    page_two = alice_client.get("/conversations/?provider=anthropic&page=2").content.decode()
    assert "Claude 0" in page_two and "GPT" not in page_two


def test_bad_filters_are_explained_next_to_the_fields(alice: User, alice_client: Client) -> None:
    talk(alice, "Anything", "hi")
    response = alice_client.get("/conversations/?since=2026-03-02&until=2026-03-01")
    body = response.content.decode()
    assert response.status_code == 400
    assert "after it ends (2026-03-01): swap the two dates." in body
    assert "Fix the search above" in body and "Anything" not in body
    bad = alice_client.get("/conversations/?since=soon&provider=nope").content.decode()
    assert "Enter a date as YYYY-MM-DD, like 2026-01-31." in bad
    assert "Select a valid choice." in bad


def test_nothing_matches_says_so(alice: User, alice_client: Client) -> None:
    talk(alice, "Anything", "hi")
    body = alice_client.get("/conversations/?q=zebra").content.decode()
    assert "No conversation matches this search." in body


# --- the widget's list ----------------------------------------------------------------------


def test_widget_list_has_a_search_box_and_rows_with_rename_and_pin(
    alice: User, bob: User, alice_client: Client
) -> None:
    mine = talk(alice, "Lisbon", "hi")
    talk(bob, "Bob's secret", "hi")
    response = alice_client.get("/conversations/", headers=htmx("cw-history"))
    body = response.content.decode()
    assert "<html" not in body
    assert 'id="cw-search"' in body and 'hx-target="#cw-conv-results"' in body
    assert f'id="cw-conv-{mine.pk}"' in body
    assert f'hx-get="/conversations/{mine.pk}/rename/"' in body
    assert f'hx-post="/conversations/{mine.pk}/pin/"' in body
    assert "Bob's secret" not in body


def test_widget_search_answers_with_the_results_alone(alice: User, alice_client: Client) -> None:
    talk(alice, "Lisbon", "sardines <b>grilled</b>")
    talk(alice, "Paris", "croissants")
    response = alice_client.get("/conversations/?q=sardines", headers=htmx("cw-conv-results"))
    body = response.content.decode()
    assert 'id="cw-search"' not in body and "Paris" not in body
    assert "<mark>sardines</mark>" in body and "<b>grilled" not in body
    none = alice_client.get("/conversations/?q=zebra", headers=htmx("cw-conv-results"))
    assert "Nothing matches “zebra”." in none.content.decode()


# --- rename ----------------------------------------------------------------------------------


def test_rename_without_javascript(alice: User, alice_client: Client) -> None:
    convo = talk(alice, "Old title", "hi")
    form = alice_client.get(f"/conversations/{convo.pk}/rename/")
    assert form.status_code == 200 and 'value="Old title"' in form.content.decode()
    done = alice_client.post(f"/conversations/{convo.pk}/rename/", {"title": "New title"})
    assert done.status_code == 302 and done["Location"] == f"/conversations/{convo.pk}/"
    convo.refresh_from_db()
    assert convo.title == "New title"


def test_a_blank_title_is_refused_in_words(alice: User, alice_client: Client) -> None:
    convo = talk(alice, "Keep me", "hi")
    response = alice_client.post(f"/conversations/{convo.pk}/rename/", {"title": "  "})
    assert response.status_code == 400
    assert "Give the conversation a title: a word or two will do." in response.content.decode()
    convo.refresh_from_db()
    assert convo.title == "Keep me"


def test_rename_in_the_widget_swaps_the_row_and_tells_the_header(
    alice: User, alice_client: Client
) -> None:
    convo = talk(alice, "Old", "hi")
    target = htmx(f"cw-conv-{convo.pk}")
    form = alice_client.get(f"/conversations/{convo.pk}/rename/", headers=target)
    assert 'class="cw-rename"' in form.content.decode() and "<html" not in form.content.decode()
    saved = alice_client.post(
        f"/conversations/{convo.pk}/rename/", {"title": "<i>New</i>"}, headers=target
    )
    body = saved.content.decode()
    assert f'id="cw-conv-{convo.pk}"' in body and "&lt;i&gt;New&lt;/i&gt;" in body
    assert json.loads(saved["HX-Trigger"]) == {
        "cw-renamed": {"id": convo.pk, "title": "<i>New</i>"}
    }


def test_rename_on_the_conversation_page_swaps_the_title(alice: User, alice_client: Client) -> None:
    convo = talk(alice, "Old", "hi")
    page = alice_client.get(f"/conversations/{convo.pk}/").content.decode()
    assert 'id="conversation-title"' in page and 'hx-target="#conversation-title"' in page
    form = alice_client.get(
        f"/conversations/{convo.pk}/rename/", headers=htmx("conversation-title")
    )
    assert 'id="conv-title"' in form.content.decode()
    saved = alice_client.post(
        f"/conversations/{convo.pk}/rename/", {"title": "Fresh"}, headers=htmx("conversation-title")
    )
    assert "<h1>Fresh</h1>" in saved.content.decode()


# --- pin --------------------------------------------------------------------------------------


def test_pin_and_unpin_from_the_page_go_back_where_they_were(
    alice: User, alice_client: Client
) -> None:
    convo = talk(alice, "Pin me", "hi")
    pinned = alice_client.post(
        f"/conversations/{convo.pk}/pin/", {"pinned": "true", "next": "/conversations/?q=pin"}
    )
    assert pinned.status_code == 302 and pinned["Location"] == "/conversations/?q=pin"
    convo.refresh_from_db()
    assert convo.pinned
    elsewhere = alice_client.post(
        f"/conversations/{convo.pk}/pin/", {"pinned": "false", "next": "https://evil.example/"}
    )
    assert elsewhere["Location"] == f"/conversations/{convo.pk}/"
    convo.refresh_from_db()
    assert not convo.pinned


def test_pin_in_the_widget_reorders_the_results(alice: User, alice_client: Client) -> None:
    talk(alice, "Newer", "hi", days_ago=0)
    older = talk(alice, "Older", "hi", days_ago=3)
    response = alice_client.post(
        f"/conversations/{older.pk}/pin/",
        {"pinned": "true", "q": ""},
        headers=htmx("cw-conv-results"),
    )
    body = response.content.decode()
    assert body.index("Older") < body.index("Newer")
    assert "Unpin “Older”" in body


# --- export and import ------------------------------------------------------------------------


def test_export_links_download_markdown_and_json(alice: User, alice_client: Client) -> None:
    convo = talk(alice, "Trip", "Where to?", "Lisbon.")
    page = alice_client.get(f"/conversations/{convo.pk}/").content.decode()
    assert f'href="/conversations/{convo.pk}/export.md"' in page
    md = alice_client.get(f"/conversations/{convo.pk}/export.md")
    assert md["Content-Type"] == "text/markdown; charset=utf-8"
    assert md["Content-Disposition"] == 'attachment; filename="trip.md"'
    assert md.content.decode().startswith("# Trip\n")
    js = alice_client.get(f"/conversations/{convo.pk}/export.json")
    assert [m["content"] for m in js.json()["messages"]] == ["Where to?", "Lisbon."]


def test_import_an_export_through_the_page(alice: User, alice_client: Client) -> None:
    original = talk(alice, "Trip", "Where to?", "Lisbon.")
    exported = alice_client.get(f"/conversations/{original.pk}/export.json").content
    upload = SimpleUploadedFile("trip.json", exported, content_type="application/json")

    response = alice_client.post("/conversations/import/", {"file": upload})

    copy = Conversation.objects.exclude(pk=original.pk).get()
    assert response.status_code == 302 and response["Location"] == f"/conversations/{copy.pk}/"
    assert [(m.role, m.content) for m in copy.messages.all()] == [
        ("user", "Where to?"),
        ("assistant", "Lisbon."),
    ]
    shown = alice_client.get(response["Location"]).content.decode()
    assert "Imported “Trip”: 2 messages." in shown


def test_import_refusals_are_shown_on_the_form(alice: User, alice_client: Client) -> None:
    bad = SimpleUploadedFile("x.json", b'[{"role": "tool", "content": "x"}]')
    response = alice_client.post("/conversations/import/", {"file": bad})
    body = response.content.decode()
    assert response.status_code == 400
    assert "Message 1 has the role &quot;tool&quot;" in body
    big = SimpleUploadedFile("big.json", b" " * (exports.MAX_IMPORT_BYTES + 1))
    too_big = alice_client.post("/conversations/import/", {"file": big}).content.decode()
    assert "an import takes at most 2 MB" in too_big
    none = alice_client.post("/conversations/import/", {}).content.decode()
    assert "Choose the JSON file to import." in none
    assert not Conversation.objects.exists()


# --- bulk delete and clear by provider ------------------------------------------------------


def test_bulk_delete_asks_first_then_deletes_only_mine(
    alice: User, bob: User, alice_client: Client
) -> None:
    one, two = talk(alice, "One", "a"), talk(alice, "Two", "b")
    keep = talk(alice, "Keep")
    theirs = talk(bob, "Bob's", "c")
    ids = [one.pk, two.pk, theirs.pk]

    asked = alice_client.post("/conversations/delete/", {"ids": ids})
    body = asked.content.decode()
    assert asked.status_code == 200 and "Delete 2 conversations?" in body
    assert "One" in body and "Two" in body and "Bob's" not in body
    assert Conversation.objects.count() == 4  # nothing is gone before the confirmation

    done = alice_client.post("/conversations/delete/", {"ids": ids, "confirm": "yes"})
    assert done.status_code == 302
    assert set(Conversation.objects.values_list("pk", flat=True)) == {keep.pk, theirs.pk}
    assert "Deleted 2 conversations." in alice_client.get("/conversations/").content.decode()


def test_bulk_delete_with_nothing_ticked_says_what_to_do(alice_client: Client) -> None:
    response = alice_client.post("/conversations/delete/", {}, follow=True)
    assert "Tick the conversations to delete first" in response.content.decode()


def test_clear_by_provider_shows_how_many_then_deletes(
    alice: User, bob: User, alice_client: Client
) -> None:
    talk(alice, "GPT 1", "q", "a", provider="openai")
    talk(alice, "GPT 2", "q", "a", provider="openai")
    talk(alice, "Claude", "q", "a", provider="anthropic")
    talk(bob, "Bob's GPT", "q", "a", provider="openai")
    page = alice_client.get("/conversations/").content.decode()
    assert '<option value="openai">OpenAI (2 conversations)</option>' in page

    asked = alice_client.get("/conversations/delete/?provider=openai").content.decode()
    assert "Delete 2 conversations?" in asked and "with a reply from OpenAI" in asked
    alice_client.post("/conversations/delete/", {"provider": "openai", "confirm": "yes"})
    assert set(Conversation.objects.values_list("title", flat=True)) == {"Claude", "Bob's GPT"}


# --- another person's conversation is a 404 on every path -----------------------------------


def test_bob_gets_404_for_alices_conversation_on_every_path(
    alice: User, bob_client: Client
) -> None:
    convo = talk(alice, "Alice's", "secret", "reply")
    base = f"/conversations/{convo.pk}"
    for url in (f"{base}/rename/", f"{base}/export.md", f"{base}/export.json"):
        assert bob_client.get(url).status_code == 404, url
    assert bob_client.post(f"{base}/rename/", {"title": "Bob's now"}).status_code == 404
    assert bob_client.post(f"{base}/pin/", {"pinned": "true"}).status_code == 404
    for target in (f"cw-conv-{convo.pk}", "conversation-title"):
        assert bob_client.get(f"{base}/rename/", headers=htmx(target)).status_code == 404
    bob_client.post("/conversations/delete/", {"ids": [convo.pk], "confirm": "yes"})
    bob_client.post("/conversations/delete/", {"provider": "openai", "confirm": "yes"})
    listed = bob_client.get("/conversations/?q=secret").content.decode()
    widget = bob_client.get("/conversations/?q=secret", headers=htmx("cw-conv-results"))
    assert "Alice's" not in listed and "Alice's" not in widget.content.decode()
    convo.refresh_from_db()
    assert (convo.title, convo.pinned) == ("Alice's", False)
    assert Message.objects.filter(conversation=convo).count() == 2


def test_every_step_needs_sign_in(alice: User) -> None:
    convo = talk(alice, "Alice's", "hi")
    anonymous = Client()
    for url in (
        "/conversations/",
        f"/conversations/{convo.pk}/rename/",
        f"/conversations/{convo.pk}/export.json",
        "/conversations/import/",
        "/conversations/delete/?provider=openai",
    ):
        response = anonymous.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
