"""Cases of the hardening issue's acceptance list not proven in a file of their own."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import ApiToken, User
from llm import render
from llm.forms import url_problem
from llm.models import Conversation, Message, ProviderConfig
from tests.consumers.conftest import ORIGIN, TIMEOUT, Connect, open_socket
from tests.consumers.test_chat_consumer import receive
from tests.engine.conftest import configure
from tests.fakes.openai_server import FakeOpenAI

SCRIPT = "<script>alert(1)</script>"
HOSTILE_OUTPUT = [
    '<img src=x onerror="alert(1)">',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](java\tscript:alert(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    '<svg onload="alert(1)">',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph>",
]
SAFE_SCHEMES = ("http:", "https:", "mailto:", "#", "/")


class _Elements(HTMLParser):
    """Every element and attribute a browser would build from some HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


def inert(html: str) -> bool:
    """No element that runs or loads anything, no handler, no link but to a web page
    (text that merely reads like HTML is fine: it is shown as text)."""
    parser = _Elements()
    parser.feed(html)
    for tag, attrs in parser.found:
        if tag in ("script", "img", "svg", "iframe", "math", "style", "object", "embed"):
            return False
        for name, value in attrs:
            if name.startswith("on"):
                return False
            cleaned = (value or "").replace("\t", "").replace("\n", "").strip().lower()
            if name in ("href", "src") and not cleaned.startswith(SAFE_SCHEMES):
                return False
    return True


@pytest.mark.parametrize("output", HOSTILE_OUTPUT)
def test_model_output_is_inert_when_rendered(output: str) -> None:
    assert inert(render.to_html(output)), render.to_html(output)


@pytest.mark.django_db
def test_model_output_is_inert_after_a_reload(alice: User, alice_client: Client) -> None:
    conversation = Conversation.objects.create(user=alice, title="Render")
    for output in HOSTILE_OUTPUT:
        Message.objects.create(conversation=conversation, role="assistant", content=output)
    page = alice_client.get(f"/conversations/{conversation.pk}/").content.decode()
    thread = page[page.index('class="thread') :]
    assert inert(thread.split("</ol>")[0])


@pytest.mark.django_db
def test_script_in_titles_model_names_and_upstream_errors_is_escaped(
    alice: User, alice_client: Client, admin_client: Client
) -> None:
    admin = admin_client
    conversation = Conversation.objects.create(user=alice, title=SCRIPT)
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        status="error",
        model=SCRIPT,
        error_message=f"Upstream said {SCRIPT}",
    )
    pages = [
        alice_client.get("/conversations/"),
        alice_client.get(f"/conversations/{conversation.pk}/"),
        admin.get(reverse("admin:llm_conversation_changelist")),
        admin.get(reverse("admin:llm_message_changelist")),
    ]
    for response in pages:
        body = response.content.decode()
        assert SCRIPT not in body
        assert "&lt;script&gt;" in body


@pytest.mark.django_db
def test_mass_assignment_in_a_body_is_refused_or_ignored(
    alice: User, bob: User, client: Client, fake_openai: FakeOpenAI
) -> None:
    auth: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {ApiToken.issue(alice, 't')[1]}"}
    for field, value in (("user_id", bob.pk), ("owner_id", bob.pk), ("is_staff", True)):
        response = client.put(
            "/api/v1/providers/openai",
            json.dumps({"api_key": "sk-test-0123456789abcdef", field: value}),
            content_type="application/json",
            **auth,
        )
        assert response.status_code == 400 and field in response.json()["error"]["fields"]
    assert not ProviderConfig.objects.filter(user=bob).exists()
    alice.refresh_from_db()
    assert not alice.is_staff


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("replies_end")
async def test_a_chat_body_cannot_redirect_the_call_or_set_its_cost(
    alice: User, fake_openai: FakeOpenAI
) -> None:
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    await sync_to_async(configure)(alice, fake_openai)
    raw = await sync_to_async(ApiToken.issue)(alice, "t")
    fake_openai.reply("Fine.", usage=(10, 10))
    body = {
        "message": "Hi",
        "provider": "openai",
        "api_base": "http://169.254.169.254/",
        "base_url": "http://169.254.169.254/",
        "extra_headers": {"X-Evil": "1"},
        "cost": "-5",
        "user_id": 999,
    }
    response = await AsyncClient().post(
        "/api/v1/chat",
        json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw[1]}"},
    )
    assert response.status_code == 200
    sent = fake_openai.chat_requests[-1]
    assert "x-evil" not in sent.headers
    assert float(response.json()["cost"]) >= 0
    assert await Message.objects.filter(conversation__user=alice).acount() == 2


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/v1",
        "http://[fd00:ec2::254]/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "ftp://example.com/",
    ],
)
def test_metadata_and_other_schemes_are_refused_even_with_private_hosts_allowed(
    url: str, settings: Any
) -> None:
    settings.LLM_PRIVATE_HOSTS = ["127.0.0.0/8"]
    assert url_problem(url) is not None


@pytest.mark.parametrize("url", ["http://127.0.0.1:11434/v1", "http://10.0.0.5/v1"])
def test_loopback_and_private_ranges_are_refused_unless_allowed(url: str, settings: Any) -> None:
    settings.LLM_PRIVATE_HOSTS = []
    assert url_problem(url) is not None


@pytest.mark.django_db(transaction=True)
async def test_handshakes_with_no_session_a_foreign_origin_or_no_origin_are_refused(
    alice: User,
) -> None:
    for user, origin in (
        (None, ORIGIN),
        (alice, (b"origin", b"http://evil.example")),
        (alice, (b"x-no-origin", b"")),
    ):
        socket = await open_socket(user, origin)
        connected, _code = await socket.connect(timeout=TIMEOUT)
        assert not connected, (user, origin)


@pytest.mark.django_db(transaction=True)
async def test_an_oversized_frame_closes_the_socket_with_1009(
    alice: User, connect: Connect
) -> None:
    socket = await connect(alice)
    await socket.send_to(text_data=json.dumps({"type": "send", "text": "x" * 250_000}))
    frame = await receive(socket)
    assert frame["error"]["code"] == "too_large"
    assert await socket.receive_output(timeout=TIMEOUT) == {
        "type": "websocket.close",
        "code": 1009,
    }


@pytest.mark.django_db(transaction=True)
async def test_bad_frames_are_structured_errors_and_the_socket_stays_usable(
    alice: User, connect: Connect
) -> None:
    socket = await connect(alice)
    for raw in ("{not json", "[1, 2]", json.dumps({"type": "send", "text": 5})):
        await socket.send_to(text_data=raw)
        frame = await receive(socket)
        assert frame["type"] == "error" and frame["error"]["code"] == "bad_request"
    await socket.send_json_to({"type": "stop"})  # still listening
    assert await socket.receive_nothing(timeout=0.2)


def test_a_malformed_private_hosts_entry_stops_the_start_with_an_example(settings: Any) -> None:
    from coppertone.checks import production_settings

    settings.LLM_PRIVATE_HOSTS = ["127.0.0.1:11434", "ollama-box"]
    found = [p for p in production_settings() if p.id == "coppertone.E006"]
    assert found and "'ollama-box'" in found[0].msg and "10.1.0.0/16" in (found[0].hint or "")


def test_the_replaced_private_hosts_switch_is_reported(settings: Any) -> None:
    from coppertone.checks import production_settings

    settings.LLM_ALLOW_PRIVATE_HOSTS_LEFT = "true"
    found = [p for p in production_settings() if p.id == "coppertone.W004"]
    assert found and "LLM_PRIVATE_HOSTS=" in (found[0].hint or "")


@pytest.mark.django_db(transaction=True)
async def test_a_nul_character_is_refused_on_the_websocket_too(
    alice: User, connect: Connect
) -> None:
    socket = await connect(alice)
    await socket.send_json_to({"type": "send", "text": "a\x00b"})
    frame = await receive(socket)
    assert frame["error"]["code"] == "bad_request" and "NUL" in frame["error"]["message"]
    assert await Message.objects.acount() == 0
