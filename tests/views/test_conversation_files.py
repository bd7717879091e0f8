"""A conversation page (and the widget's history of it) shows each message's files as
chips that download for their owner; bob gets 404 for the page and the file."""

from __future__ import annotations

from django.test import Client

from accounts.models import User
from llm import attachments
from llm.models import Conversation, Message


def _conversation_with_a_file(alice: User) -> tuple[Conversation, int]:
    conversation = Conversation.objects.create(user=alice, title="With a file")
    asked = Message.objects.create(conversation=conversation, role="user", content="Read it")
    stored = attachments.store(alice, "notes <b>.md", b"# Notes\n" * 200)
    stored.message = asked
    stored.save()
    return conversation, stored.pk


def test_the_page_and_the_widget_show_the_chip_with_name_size_and_link(
    alice: User, alice_client: Client
) -> None:
    conversation, file_id = _conversation_with_a_file(alice)

    page = alice_client.get(f"/conversations/{conversation.pk}/").content.decode()
    widget = alice_client.get(
        f"/conversations/{conversation.pk}/", headers={"HX-Request": "true", "HX-Target": "cw-log"}
    ).content.decode()

    for body in (page, widget):
        assert f'href="/api/v1/files/{file_id}"' in body
        assert "notes &lt;b&gt;.md" in body  # the name is text, never markup
        assert '<span class="file-chip-size">1.6 kB</span>' in body
    download = alice_client.get(f"/api/v1/files/{file_id}")
    assert download.status_code == 200 and download.content == b"# Notes\n" * 200


def test_bob_gets_404_for_the_page_and_the_file(alice: User, bob_client: Client) -> None:
    conversation, file_id = _conversation_with_a_file(alice)

    assert bob_client.get(f"/conversations/{conversation.pk}/").status_code == 404
    assert bob_client.get(f"/api/v1/files/{file_id}").status_code == 404
