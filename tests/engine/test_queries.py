"""A turn's database cost does not grow with the reply: the same statements for 10 and
2,000 tokens, and at most 6 (DESIGN.md: two trips, never a write per token)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.db.backends.utils import CursorWrapper

from accounts.models import User
from llm import pg_trips, turns
from llm.turns import run_turn
from tests.engine.conftest import configure
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.django_db(transaction=True)

# Transaction control is not a query the turn asks for (SQLite logs its BEGIN; PostgreSQL
# begins implicitly).
CONTROL = ("BEGIN", "SAVEPOINT", "RELEASE", "ROLLBACK")


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every SQL statement run on any thread (the engine's trips run in worker threads)."""
    seen: list[str] = []
    lock = threading.Lock()
    original = getattr(CursorWrapper, "_execute_with_wrappers")  # noqa: B009 (not in the stubs)

    def counting(self: CursorWrapper, sql: str, *args: Any, **kwargs: Any) -> Any:
        if not sql.lstrip().upper().startswith(CONTROL):
            with lock:
                seen.append(sql)
        return original(self, sql, *args, **kwargs)

    monkeypatch.setattr(CursorWrapper, "_execute_with_wrappers", counting)
    monkeypatch.setattr(pg_trips, "observer", seen.append)  # PostgreSQL's async pool
    yield seen


async def _turn(user: User, chunks: int, statements: list[str], **options: Any) -> list[str]:
    statements.clear()
    async for _ in run_turn(user, "Count for me", provider="openai", **options):
        pass
    return list(statements)


async def test_queries_per_turn_do_not_grow_with_the_reply(
    alice: User, fake_openai: FakeOpenAI, statements: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Progress writes follow the clock, not the tokens (test_progress_is_written_while_
    # streaming): keep a slow machine from adding one to the long reply here.
    monkeypatch.setattr(turns, "PROGRESS_SECONDS", 60.0)
    await sync_to_async(configure)(alice, fake_openai)
    fake_openai.reply("warm up")  # the once-per-process sweep and the price table load
    first: list[Any] = [e async for e in run_turn(alice, "Hello", provider="openai")]
    conversation_id = first[0].conversation_id

    fake_openai.reply(chunks=["tok "] * 10)
    new_short = await _turn(alice, 10, statements)
    fake_openai.reply(chunks=["tok "] * 2000)
    new_long = await _turn(alice, 2000, statements)
    fake_openai.reply(chunks=["tok "] * 10)
    continued_short = await _turn(alice, 10, statements, conversation_id=conversation_id)
    fake_openai.reply(chunks=["tok "] * 2000)
    continued_long = await _turn(alice, 2000, statements, conversation_id=conversation_id)

    if connection.vendor == "postgresql":
        # New conversation: the person's lock, then standing, conversation and both
        # messages in one statement; reply and usage in one (llm/pg_trips.py).
        assert len(new_short) == len(new_long) == 3, new_long
        # Continued: the lock, settings, touch+lock, history, both messages; reply and usage.
        assert len(continued_short) == len(continued_long) == 6, continued_long
    else:
        # New conversation: settings, conversation, both messages; reply, usage.
        assert len(new_short) == len(new_long) == 5, new_long
        # Continued: settings, touch+lock, history, both messages; reply, usage.
        assert len(continued_short) == len(continued_long) == 6, continued_long
