"""llm/exports.py: a conversation exported as Markdown and JSON, and imported back from our
export, OpenAI's message list or a bare list, with what is wrong said in words."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from accounts.models import User
from llm import exports
from llm.models import Conversation, Message


def sample(user: User) -> Conversation:
    convo = Conversation.objects.create(user=user, title="Trip to Lisbon", pinned=True)
    asked = Message.objects.create(
        conversation=convo, role="user", content="Plan <b>three</b> days\nin Lisbon"
    )
    Message.objects.create(
        conversation=convo,
        role="assistant",
        content="**Day one**: Alfama.\n\n```python\nprint('hi')\n```",
        provider="openai",
        model="gpt-4o",
        input_tokens=12,
        output_tokens=48,
        cost=Decimal("0.000210"),
        thinking="They want a short plan.",
        reply_to=asked,
    )
    Message.objects.create(conversation=convo, role="user", content="And day two?")
    Message.objects.create(
        conversation=convo,
        role="assistant",
        content="Belém",
        status="stopped",
        provider="anthropic",
        model="claude-sonnet-4-5",
    )
    return convo


def shape(convo: Conversation) -> list[tuple[str, str, str, str, str]]:
    """What must survive a round trip: each message's role, text, thinking, provider, model."""
    return [
        (m.role, m.content, m.thinking, m.provider, m.model)
        for m in convo.messages.order_by("created_at", "id")
    ]


def test_json_export_holds_the_conversation_and_its_messages(alice: User) -> None:
    convo = sample(alice)
    data = exports.as_json(convo)
    assert data["format"] == "coppertone.conversation" and data["version"] == 1
    assert (data["id"], data["title"], data["pinned"]) == (convo.pk, "Trip to Lisbon", True)
    first, reply = data["messages"][:2]
    assert first == {**first, "role": "user", "content": "Plan <b>three</b> days\nin Lisbon"}
    assert reply["usage"] == {"input_tokens": 12, "output_tokens": 48}
    assert reply["cost"] == "0.000210" and reply["thinking"] == "They want a short plan."
    assert data["messages"][3]["status"] == "stopped"
    json.dumps(data)  # all of it is JSON


def test_markdown_export_reads_as_the_conversation(alice: User) -> None:
    text = exports.as_markdown(sample(alice))
    assert text.startswith("# Trip to Lisbon\n")
    assert "· 4 messages ·" in text
    assert "## You · " in text
    assert "## Assistant (openai/gpt-4o) · " in text
    assert "```python\nprint('hi')\n```" in text  # the reply's markdown, as written
    assert "Plan <b>three</b> days\nin Lisbon" in text
    assert "*(stopped before the end)*" in text


def test_json_export_then_import_gives_the_same_messages(alice: User) -> None:
    original = sample(alice)
    raw = json.dumps(exports.as_json(original)).encode()

    copy = exports.store(alice, exports.read(raw))

    assert copy.pk != original.pk and copy.user == alice
    assert copy.title == "Trip to Lisbon" and not copy.pinned
    assert shape(copy) == shape(original)
    stored = list(copy.messages.order_by("created_at", "id"))
    assert {m.status for m in stored} == {"complete"}  # no reply is left streaming or stopped
    assert sum(m.cost for m in stored) == 0 and sum(m.output_tokens for m in stored) == 0
    assert stored[1].reply_to == stored[0] and stored[3].reply_to == stored[2]


def test_the_json_file_the_page_serves_imports_back(alice: User) -> None:
    original = sample(alice)
    response = exports.response(original, "json")
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == 'attachment; filename="trip-to-lisbon.json"'
    assert shape(exports.store(alice, exports.read(response.content))) == shape(original)


def test_openai_message_list_and_bare_list_import(alice: User) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}],
        },
        {"role": "assistant", "content": "Hello!", "name": "ignored"},
    ]
    for body in ({"model": "gpt-4o", "messages": messages}, messages):
        convo = exports.store(alice, exports.read(json.dumps(body).encode()))
        assert shape(convo) == [
            ("system", "Be brief.", "", "", ""),
            ("user", "Hi there", "", "", ""),
            ("assistant", "Hello!", "", "", ""),
        ]
        assert convo.title == "Hi there"  # as the engine titles it: the first line asked


def test_a_file_with_a_bom_imports(alice: User) -> None:
    raw = "\ufeff" + json.dumps([{"role": "user", "content": "hi"}])
    assert exports.read(raw.encode()).messages[0]["content"] == "hi"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"not json", "The file is not valid JSON"),
        (b"\xff\xfe", "not UTF-8 text"),
        (b"{}", 'The JSON has no "messages"'),
        (b'{"messages": {}}', '"messages" must be a list'),
        (b"[]", "holds no messages"),
        (b"[3]", "Message 1 is not an object"),
        (b'[{"role": "tool", "content": "x"}]', 'Message 1 has the role "tool": only system, user'),
        (b'[{"role": "user"}]', "Message 1 has no text content (null)"),
        (b'[{"role": "user", "content": 7}]', "Message 1 has no text content (int)"),
        (
            b'[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]',
            'Message 1 has a "image_url" part in its content: only text can be imported.',
        ),
        (b'[{"role": "user", "content": "a\\u0000b"}]', "holds a NUL character"),
        (
            b'[{"role": "user", "content": "ok"}, {"role": "assistant", "content": null}]',
            "Message 2 has no text content",
        ),
    ],
)
def test_what_is_wrong_with_a_file_is_said_in_words(body: bytes, words: str) -> None:
    with pytest.raises(exports.ImportRefused) as refused:
        exports.read(body)
    assert words in refused.value.message
    assert refused.value.code == "bad_request"


def test_size_limits_are_too_large(settings: Any) -> None:
    with pytest.raises(exports.ImportRefused) as big:
        exports.read(b" " * (exports.MAX_IMPORT_BYTES + 1))
    assert big.value.code == "too_large" and "at most 2 MB" in big.value.message
    settings.LLM_MAX_REPLY_CHARS = 10
    with pytest.raises(exports.ImportRefused) as long:
        exports.read(json.dumps([{"role": "assistant", "content": "x" * 11}]).encode())
    assert long.value.code == "too_large" and "at most 10" in long.value.message


def test_a_title_comes_from_the_file_else_the_first_question(alice: User) -> None:
    given = exports.parse(
        {"title": "  My   notes ", "messages": [{"role": "user", "content": "q"}]}
    )
    assert given.title == "My notes"
    untitled = exports.parse([{"role": "assistant", "content": "only a reply"}])
    assert untitled.title == "Imported conversation"
