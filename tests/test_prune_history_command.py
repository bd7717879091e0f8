"""`manage.py prune_history` over seeded conversations of different ages."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import User
from llm.models import Attachment, Conversation, DailyUsage, Message
from llm.pruning import parse_age

pytestmark = pytest.mark.django_db


def conversation(user: User, *, days_idle: int, replies: str = "complete") -> Conversation:
    """A conversation of a question and its reply, last active `days_idle` days ago."""
    talk = Conversation.objects.create(user=user, title=f"{days_idle} days idle")
    question = Message.objects.create(conversation=talk, role="user", content="Hi")
    Message.objects.create(
        conversation=talk, role="assistant", content="Hello", status=replies, reply_to=question
    )
    Conversation.objects.filter(pk=talk.pk).update(
        updated_at=timezone.now() - dt.timedelta(days=days_idle)
    )
    return talk


@pytest.fixture
def seeded(alice: User, bob: User) -> dict[str, Any]:
    old = [conversation(alice, days_idle=91 + i) for i in range(5)]
    DailyUsage.objects.create(
        user=alice, day=dt.date(2026, 1, 5), provider="openai", model="gpt-4o",
        requests=10, input_tokens=100, output_tokens=50, cost=Decimal("0.25"),
    )  # fmt: skip
    return {
        "old": old,
        "recent": conversation(alice, days_idle=89),
        "bobs_old": conversation(bob, days_idle=200),
    }


def prune(*args: str) -> str:
    out = io.StringIO()
    call_command("prune_history", *args, stdout=out)
    return out.getvalue()


def test_removes_only_the_old_ones_and_keeps_the_usage_roll_ups(seeded: dict[str, Any]) -> None:
    out = prune("--older-than", "90d")

    assert "Deleted 6 conversation(s), 12 message(s) and 0 attachment(s)" in out
    assert "in 1 batch(es). Usage roll-ups are kept." in out
    assert list(Conversation.objects.all()) == [seeded["recent"]]
    assert Message.objects.count() == 2
    assert DailyUsage.objects.get().cost == Decimal("0.25")


def test_dry_run_counts_and_deletes_nothing(seeded: dict[str, Any]) -> None:
    out = prune("--older-than", "90d", "--dry-run")

    assert out.startswith("Would delete 6 conversation(s), 12 message(s) and 0 attachment(s), ")
    assert "Nothing was deleted (--dry-run)." in out
    assert (Conversation.objects.count(), Message.objects.count()) == (7, 14)


def test_batches_of_two(seeded: dict[str, Any]) -> None:
    out = prune("--older-than", "90d", "--user", "alice", "--batch", "2", "--verbosity", "2")

    assert out.splitlines()[:3] == [
        "  batch: 2 conversation(s), 4 message(s) and 0 attachment(s)",
        "  batch: 2 conversation(s), 4 message(s) and 0 attachment(s)",
        "  batch: 1 conversation(s), 2 message(s) and 0 attachment(s)",
    ]
    assert "Deleted 5 conversation(s), 10 message(s) and 0 attachment(s) of alice," in out
    assert "in 3 batch(es)" in out
    # --user: bob's old conversation is not alice's to prune.
    assert set(Conversation.objects.all()) == {seeded["recent"], seeded["bobs_old"]}


def test_a_conversation_with_a_reply_still_streaming_is_never_touched(alice: User) -> None:
    streaming = conversation(alice, days_idle=400, replies="streaming")
    conversation(alice, days_idle=400)

    dry = prune("--older-than", "1y", "--dry-run")
    out = prune("--older-than", "1y")

    assert "Would delete 1 conversation(s)" in dry
    assert "Deleted 1 conversation(s), 2 message(s)" in out
    for text in (dry, out):
        assert "Left 1 old conversation(s) alone: a reply in them is still streaming." in text
    assert list(Conversation.objects.all()) == [streaming]
    assert streaming.messages.count() == 2


def test_attachments_go_with_their_messages_files_and_all(
    alice: User, settings: Any, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path
    talk = conversation(alice, days_idle=100)
    question = talk.messages.get(role="user")
    attached = Attachment.objects.create(
        user=alice, file=ContentFile(b"notes", name="notes.txt"), name="notes.txt",
        content_type="text/plain", size=5, kind="text", text="notes", message=question,
    )  # fmt: skip
    unsent = Attachment.objects.create(
        user=alice, file=ContentFile(b"draft", name="draft.txt"), name="draft.txt",
        content_type="text/plain", size=5, kind="text", text="draft",
    )  # fmt: skip
    stored, kept = Path(attached.file.path), Path(unsent.file.path)
    assert stored.exists()

    with django_capture_on_commit_callbacks(execute=True):
        out = prune("--older-than", "90d")

    assert "Deleted 1 conversation(s), 2 message(s) and 1 attachment(s)" in out
    assert list(Attachment.objects.all()) == [unsent]  # an upload never sent is no one's history
    assert not stored.exists()
    assert kept.exists()


@pytest.mark.parametrize(
    ("text", "days"),
    [("90d", 90), ("12w", 84), ("6m", 180), ("1y", 365), (" 2W ", 14), ("1d", 1)],
)
def test_ages(text: str, days: int) -> None:
    assert parse_age(text) == dt.timedelta(days=days)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--older-than", "90"], "--older-than '90' is not an age: write a number and a unit"),
        (["--older-than", "90x"], "--older-than '90x' is not an age"),
        (["--older-than", "1.5d"], "--older-than '1.5d' is not an age"),
        (["--older-than=-1d"], "--older-than '-1d' is not an age"),
        (["--older-than", "0d"], "--older-than '0d' would prune every conversation"),
        (["--older-than", "90d", "--batch", "0"], "--batch must be from 1 to 100,000"),
        (["--older-than", "90d", "--user", "nobody"], "There is no user called 'nobody'"),
        ([], "Error: the following arguments are required: --older-than"),
    ],
)
def test_bad_arguments_are_refused_in_words(
    seeded: dict[str, Any], args: list[str], words: str
) -> None:
    with pytest.raises(CommandError) as refused:
        prune(*args)
    assert str(refused.value).startswith(words)
    assert Conversation.objects.count() == 7


def test_help_shows_a_readable_example() -> None:
    from llm.management.commands.prune_history import Command

    text = Command().create_parser("manage.py", "prune_history").format_help()
    assert "\n  manage.py prune_history --older-than 90d --dry-run" in text
    assert "m (months of 30 days)" in text
