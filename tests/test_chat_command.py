"""`manage.py chat` against the fake OpenAI server."""

from __future__ import annotations

import _thread
import io
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command

from accounts.models import User
from llm.models import Conversation, Message
from tests.engine.conftest import configure
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _alice_uses_the_fake(alice: User, fake_openai: FakeOpenAI, settings: Any) -> None:
    cache.clear()
    settings.LLM_MAX_RETRIES = 0
    configure(alice, fake_openai)


def chat(*args: str, stdin: str | None = None, **options: Any) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    if stdin is not None:
        options["stdin"] = io.StringIO(stdin)
    call_command("chat", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def test_one_message_streams_the_reply_to_stdout(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply("A sonnet has fourteen lines.", usage=(9, 6))
    out, err = chat("What is a sonnet?", user="alice", provider="openai")

    assert out == "A sonnet has fourteen lines.\n"
    assert "openai/gpt-4o" in err and "9 in, 6 out" in err
    reply = Message.objects.get(role="assistant")
    assert (reply.content, reply.status) == ("A sonnet has fourteen lines.", "complete")


def test_message_from_stdin_and_continuing_a_conversation(fake_openai: FakeOpenAI) -> None:
    chat(user="alice", provider="openai", stdin="First\n")
    conversation = Conversation.objects.get()
    chat("Second", user="alice", provider="openai", conversation=conversation.pk)

    assert [m.content for m in conversation.messages.filter(role="user")] == ["First\n", "Second"]
    sent = [m["content"] for m in fake_openai.chat_requests[-1].json["messages"]]
    assert sent[0] == "First\n" and sent[-1] == "Second"


def test_refusals_are_command_errors_in_words(bob: User) -> None:
    chat("Mine", user="alice", provider="openai")
    alices = Conversation.objects.get()
    with pytest.raises(CommandError, match="does not exist"):
        chat("Hi", user="bob", conversation=alices.pk)
    with pytest.raises(CommandError, match="Anthropic is not set up"):
        chat("Hi", user="alice", provider="anthropic")
    with pytest.raises(CommandError, match="no active user"):
        chat("Hi", user="nobody")


def test_provider_error_keeps_the_message_and_fails(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail(401)
    with pytest.raises(CommandError, match="failed"):
        chat("Hi", user="alice", provider="openai")
    assert Message.objects.get(role="user").content == "Hi"
    assert Message.objects.get(role="assistant").error_code == "provider_auth"


class CtrlCAfterFirstDelta(io.StringIO):
    """stdout that presses Ctrl-C once the first text of the reply has been printed:
    the interrupt lands mid-reply by construction, not by a timer racing the stream."""

    def __init__(self) -> None:
        super().__init__()
        self.pressed = False

    def write(self, text: str) -> int:
        written = super().write(text)
        if text.strip() and not self.pressed:
            self.pressed = True
            _thread.interrupt_main()  # SIGINT: asyncio's runner cancels the turn
        return written


def test_ctrl_c_stops_the_reply_and_keeps_the_partial_text(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply(chunks=[f"w{i} " for i in range(100)], delay=0.05)
    out, err = CtrlCAfterFirstDelta(), io.StringIO()
    call_command("chat", "Count", user="alice", provider="openai", stdout=out, stderr=err)

    assert out.pressed
    reply = Message.objects.get(role="assistant")
    assert reply.status == "stopped"
    assert reply.content.startswith("w0 ") and len(reply.content) < len("w00 ") * 100
    assert out.getvalue().startswith(reply.content)
    assert f"the {len(reply.content)} characters so far are kept" in err.getvalue()
    assert fake_openai.wait_closed(2.0)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_session_reads_lines_into_one_conversation(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply("ok")
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "chat",
        user="alice",
        provider="openai",
        stdin=Terminal("one\n\ntwo\n"),
        stdout=out,
        stderr=err,
    )

    conversation = Conversation.objects.get()
    assert [m.content for m in conversation.messages.order_by("id")] == ["one", "ok", "two", "ok"]
    assert out.getvalue().count("you> ") == 4  # two messages, one blank line, then end of input
