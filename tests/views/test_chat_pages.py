"""The chat pages: home, the conversations list, one conversation, delete, widget panels."""

from __future__ import annotations

from decimal import Decimal

from django.test import Client

from accounts.models import User
from llm.models import Conversation, Message, ProviderConfig


def _conversation(user: User, title: str = "Trip to Lisbon") -> Conversation:
    convo = Conversation.objects.create(user=user, title=title)
    Message.objects.create(conversation=convo, role="user", content="Plan <b>three</b> days")
    Message.objects.create(
        conversation=convo,
        role="assistant",
        content="**Day one**: walk.\n\n<script>alert('x')</script>\n\n```python\nprint('hi')\n```",
        provider="openai",
        model="gpt-4o",
        input_tokens=12,
        output_tokens=48,
        cost=Decimal("0.000210"),
        latency_ms=1900,
    )
    return convo


def htmx(target: str = "") -> dict[str, str]:
    return {"HX-Request": "true", "HX-Target": target}


def test_home_needs_sign_in() -> None:
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_signed_in_pages_carry_the_widget(alice_client: Client) -> None:
    body = alice_client.get("/").content.decode()
    assert 'id="cw-launcher"' in body
    assert "coppertone/widget.js" in body
    assert 'aria-live="polite"' in body


def test_sign_in_page_has_no_widget(db: None) -> None:
    body = Client().get("/accounts/login/").content.decode()
    assert "cw-launcher" not in body
    assert "widget.js" not in body


def test_list_shows_title_date_and_message_count(alice: User, alice_client: Client) -> None:
    _conversation(alice)
    response = alice_client.get("/conversations/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "Trip to Lisbon" in body
    assert '<td class="num">2</td>' in body


def test_list_shows_only_my_conversations(alice: User, bob: User, bob_client: Client) -> None:
    _conversation(alice)
    body = bob_client.get("/conversations/").content.decode()
    assert "Trip to Lisbon" not in body
    assert "No conversations yet" in body


def test_conversation_renders_sanitized_markdown(alice: User, alice_client: Client) -> None:
    convo = _conversation(alice)
    body = alice_client.get(f"/conversations/{convo.pk}/").content.decode()
    assert "<strong>Day one</strong>" in body
    assert "<script>alert" not in body
    assert "<pre" in body
    # What the person typed is text, never markup.
    assert "Plan &lt;b&gt;three&lt;/b&gt; days" in body
    assert "12 in · 48 out" in body
    assert "$0.00021" in body
    assert "1.9 s" in body


def test_stopped_reply_is_marked(alice: User, alice_client: Client) -> None:
    convo = _conversation(alice)
    Message.objects.filter(conversation=convo, role="assistant").update(status="stopped")
    body = alice_client.get(f"/conversations/{convo.pk}/").content.decode()
    assert "msg-stopped" in body
    assert ">Stopped<" in body


def test_bob_gets_404_for_alices_conversation(alice: User, bob_client: Client) -> None:
    convo = _conversation(alice)
    assert bob_client.get(f"/conversations/{convo.pk}/").status_code == 404
    assert bob_client.get(f"/conversations/{convo.pk}/delete/").status_code == 404
    assert bob_client.post(f"/conversations/{convo.pk}/delete/").status_code == 404
    assert bob_client.get(f"/conversations/{convo.pk}/", headers=htmx("cw-log")).status_code == 404
    assert Conversation.objects.filter(pk=convo.pk).exists()


def test_delete_asks_then_deletes(alice: User, alice_client: Client) -> None:
    convo = _conversation(alice)
    confirm = alice_client.get(f"/conversations/{convo.pk}/delete/")
    assert "Delete this conversation?" in confirm.content.decode()
    assert Conversation.objects.filter(pk=convo.pk).exists()

    response = alice_client.post(f"/conversations/{convo.pk}/delete/", follow=True)
    assert response.redirect_chain[-1][0] == "/conversations/"
    assert "Deleted “Trip to Lisbon”" in response.content.decode()
    assert not Conversation.objects.filter(pk=convo.pk).exists()
    assert not Message.objects.filter(conversation_id=convo.pk).exists()


def test_delete_from_the_list_with_htmx_removes_the_row(alice: User, alice_client: Client) -> None:
    convo = _conversation(alice)
    response = alice_client.post(
        f"/conversations/{convo.pk}/delete/", headers=htmx(f"conversation-{convo.pk}")
    )
    assert response.status_code == 200
    assert response.content == b""
    assert not Conversation.objects.filter(pk=convo.pk).exists()


def test_widget_list_partial(alice: User, bob: User, alice_client: Client) -> None:
    _conversation(alice)
    _conversation(bob, title="Bob's secret plans")
    response = alice_client.get("/conversations/", headers=htmx("cw-history"))
    body = response.content.decode()
    assert "<html" not in body
    assert "Trip to Lisbon" in body
    assert "2 messages" in body
    assert "Bob's secret plans" not in body


def test_widget_history_partial(alice: User, alice_client: Client) -> None:
    convo = _conversation(alice)
    response = alice_client.get(f"/conversations/{convo.pk}/", headers=htmx("cw-log"))
    body = response.content.decode()
    assert "<html" not in body
    assert 'data-title="Trip to Lisbon"' in body
    assert "<strong>Day one</strong>" in body


def test_picker_offers_local_model_alone_at_first(alice_client: Client) -> None:
    body = alice_client.get("/chat/picker/", headers=htmx("cw-picker")).content.decode()
    assert 'value="local"' in body
    assert 'value="openai"' not in body
    assert "Add a provider" in body


def test_picker_lists_my_configured_providers(alice: User, bob: User, alice_client: Client) -> None:
    ProviderConfig.objects.create(user=alice, kind="openai", model="gpt-4o-mini")
    ProviderConfig.objects.create(user=bob, kind="anthropic")
    alice.default_provider = "openai"
    alice.save()
    body = alice_client.get("/chat/picker/", headers=htmx()).content.decode()
    assert 'value="openai" data-model="gpt-4o-mini"' in body
    assert (
        '<option value="openai" data-model="gpt-4o-mini" data-models="gpt-4o|gpt-4o-mini" selected>'
        in body
    )
    assert 'value="local"' in body
    assert 'value="anthropic"' not in body


def test_failed_reply_shows_why_and_offers_retry_in_the_widget(
    alice: User, alice_client: Client
) -> None:
    convo = _conversation(alice)
    Message.objects.filter(conversation=convo, role="assistant").update(
        status="error",
        error_code="provider_auth",
        error_message="OpenAI rejected the API key: check it in Settings.",
    )
    page = alice_client.get(f"/conversations/{convo.pk}/").content.decode()
    assert "OpenAI rejected the API key" in page
    assert ">Failed<" in page
    assert "data-cw-retry" not in page
    widget = alice_client.get(f"/conversations/{convo.pk}/", headers=htmx("cw-log")).content
    assert b"data-cw-retry" in widget
