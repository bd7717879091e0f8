"""`manage.py usage_report` over seeded DailyUsage roll-ups."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import User
from llm.models import Conversation, DailyUsage, Message

pytestmark = pytest.mark.django_db

NOV = "--since", "2026-11-01", "--until", "2026-11-30"


def usage(user: User, day: str, provider: str, model: str, *figures: Any) -> None:
    requests, errors, tokens_in, tokens_out, cost = figures
    DailyUsage.objects.create(
        user=user,
        day=dt.date.fromisoformat(day),
        provider=provider,
        model=model,
        requests=requests,
        errors=errors,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cost=Decimal(cost),
    )


@pytest.fixture(autouse=True)
def _november(alice: User, bob: User) -> None:
    usage(alice, "2026-11-01", "openai", "gpt-4o", 10, 1, 12000, 3400, "0.120000")
    usage(alice, "2026-11-15", "openai", "gpt-4o", 5, 0, 1000, 600, "0.015000")
    usage(alice, "2026-11-15", "anthropic", "claude-sonnet-4-5", 2, 0, 800, 200, "0.005400")
    usage(bob, "2026-11-30", "openai", "gpt-4o-mini", 7, 2, 7000, 1400, "0.001890")
    # Outside November: never counted in it.
    usage(alice, "2026-10-31", "openai", "gpt-4o", 100, 0, 1, 1, "9.000000")
    usage(bob, "2026-12-01", "openai", "gpt-4o-mini", 100, 0, 1, 1, "9.000000")


def report(*args: str) -> str:
    out = io.StringIO()
    call_command("usage_report", *args, stdout=out)
    return out.getvalue()


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_table_per_user_provider_model_with_a_total_row() -> None:
    lines = report(*NOV).splitlines()

    assert lines[0] == "Usage from 2026-11-01 to 2026-11-30 (all users, all providers):"
    head, *body = lines[2:]
    assert head.split() == [
        "user", "provider", "model", "requests", "errors", "tokens", "in", "tokens", "out",
        "cost", "USD",
    ]  # fmt: skip
    rule, alice_anthropic, alice_openai, bob_openai, rule_again, total = body
    assert set(rule) == {"-", " "} and rule_again == rule
    assert [row.split() for row in (alice_anthropic, alice_openai, bob_openai, total)] == [
        ["alice", "anthropic", "claude-sonnet-4-5", "2", "0", "800", "200", "0.005400"],
        ["alice", "openai", "gpt-4o", "15", "1", "13,000", "4,000", "0.135000"],
        ["bob", "openai", "gpt-4o-mini", "7", "2", "7,000", "1,400", "0.001890"],
        ["total", "24", "3", "20,800", "5,600", "0.142290"],
    ]
    # Numbers are aligned right: each column's cells end where its header ends.
    end = head.index("cost USD") + len("cost USD")
    assert all(len(row) == end for row in body)


def test_csv_parses_and_its_sums_equal_the_seeded_roll_ups() -> None:
    rows = rows_of(report(*NOV, "--csv"))

    assert list(rows[0]) == [
        "user", "provider", "model", "requests", "errors", "input_tokens", "output_tokens",
        "cost",
    ]  # fmt: skip
    assert rows[1] == {
        "user": "alice",
        "provider": "openai",
        "model": "gpt-4o",
        "requests": "15",
        "errors": "1",
        "input_tokens": "13000",
        "output_tokens": "4000",
        "cost": "0.135000",
    }
    seeded = DailyUsage.objects.filter(day__month=11)
    assert sum(int(r["requests"]) for r in rows) == sum(u.requests for u in seeded) == 24
    assert sum(Decimal(r["cost"]) for r in rows) == sum(u.cost for u in seeded)
    assert sum(int(r["input_tokens"]) for r in rows) == 20800


def test_by_day_and_filters() -> None:
    rows = rows_of(report(*NOV, "--by", "day", "--csv"))
    assert [(r["day"], r["requests"], r["cost"]) for r in rows] == [
        ("2026-11-01", "10", "0.120000"),
        ("2026-11-15", "7", "0.020400"),
        ("2026-11-30", "7", "0.001890"),
    ]

    text = report(*NOV, "--user", "alice", "--provider", "openai", "--by", "model,day")
    assert (
        text.splitlines()[0] == "Usage from 2026-11-01 to 2026-11-30 (user alice, provider openai):"
    )
    assert "bob" not in text and "anthropic" not in text
    assert text.splitlines()[-1].split() == ["total", "15", "1", "13,000", "4,000", "0.135000"]

    rows = rows_of(
        report("--since", "2026-11-15", "--until", "2026-11-15", "--by", "provider", "--csv")
    )
    assert [(r["provider"], r["requests"]) for r in rows] == [("anthropic", "2"), ("openai", "5")]


def test_nothing_in_the_span_says_so() -> None:
    assert report("--since", "2026-01-01", "--until", "2026-01-31") == (
        "No usage from 2026-01-01 to 2026-01-31 (all users, all providers).\n"
    )
    assert report("--since", "2026-01-01", "--until", "2026-01-31", "--csv").splitlines() == [
        "user,provider,model,requests,errors,input_tokens,output_tokens,cost"
    ]


def test_defaults_to_this_month_so_far(alice: User) -> None:
    today = timezone.localdate()
    usage(alice, today.isoformat(), "local", "SmolLM2", 3, 0, 30, 40, "0")
    last_month = today.replace(day=1) - dt.timedelta(days=1)
    usage(alice, last_month.isoformat(), "local", "SmolLM2", 50, 0, 1, 1, "0")

    rows = rows_of(report("--csv", "--provider", "local"))
    assert [(r["user"], r["requests"]) for r in rows] == [("alice", "3")]
    text = report("--provider", "local")
    assert text.startswith(f"Usage from {today.replace(day=1)} to {today} ")


def test_pruned_conversations_still_count(alice: User) -> None:
    before = report(*NOV, "--csv")
    conversation = Conversation.objects.create(user=alice, title="November's")
    Message.objects.create(
        conversation=conversation, role="assistant", provider="openai", model="gpt-4o",
        input_tokens=12000, output_tokens=3400, cost=Decimal("0.12"),
    )  # fmt: skip
    Conversation.objects.filter(pk=conversation.pk).update(
        updated_at=timezone.now() - dt.timedelta(days=400)
    )
    call_command("prune_history", "--older-than", "1y", stdout=io.StringIO())

    assert not Conversation.objects.exists()
    assert report(*NOV, "--csv") == before


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--since", "2026-13-01"], "--since '2026-13-01' is not a date: write it as YYYY-MM-DD"),
        (["--until", "yesterday"], "--until 'yesterday' is not a date"),
        (
            ["--since", "2026-11-30", "--until", "2026-11-01"],
            "--since 2026-11-30 is after --until 2026-11-01",
        ),
        (["--user", "nobody"], "There is no user called 'nobody'"),
        (["--provider", "nope"], "There is no provider called 'nope'"),
        (["--by", "week"], "--by 'week' is not a grouping: use a comma-separated list of user,"),
        (["--by", "day,day"], "--by 'day,day' names a grouping twice"),
    ],
)
def test_bad_arguments_are_refused_in_words(args: list[str], words: str) -> None:
    with pytest.raises(CommandError) as refused:
        report(*args)
    assert str(refused.value).startswith(words)


def test_help_shows_a_readable_example() -> None:
    from llm.management.commands.usage_report import Command

    text = Command().create_parser("manage.py", "usage_report").format_help()
    assert "\n  manage.py usage_report --provider openai --by day" in text
