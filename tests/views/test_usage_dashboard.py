"""The staff usage dashboard under /admin/usage/."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal
from html import unescape
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from llm.models import DailyUsage
from llm.templatetags.humanize_costs import usd
from tests.views.tables import table_rows


def record(
    user: User, days_ago: int, cost: str, provider: str = "openai", model: str = "gpt-4o"
) -> None:
    DailyUsage.objects.create(
        user=user,
        day=timezone.localdate() - timedelta(days=days_ago),
        provider=provider,
        model=model,
        requests=3,
        errors=1,
        input_tokens=1200,
        output_tokens=800,
        cost=Decimal(cost),
    )


def test_staff_see_spend_per_day_model_and_person(
    charlie_client: Client, alice: User, bob: User
) -> None:
    record(alice, 0, "1.25")
    record(bob, 3, "0.0042", provider="anthropic", model="claude-sonnet-4-5")
    record(alice, 60, "99.00")  # outside the default 30 days
    body = charlie_client.get(reverse("usage_dashboard")).content.decode()
    assert "$1.25<" in body  # the total of the period, without the old row
    assert "claude-sonnet-4-5" in body and "gpt-4o" in body
    assert "alice" in body and "bob" in body
    assert "$99" not in body


def test_period_can_be_chosen(charlie_client: Client, alice: User) -> None:
    record(alice, 60, "99.00")
    body = charlie_client.get(reverse("usage_dashboard"), {"days": 90}).content.decode()
    assert "$99.00" in body
    assert charlie_client.get(reverse("usage_dashboard"), {"days": "x"}).status_code == 200


def test_clients_are_sent_to_the_admin_sign_in(alice_client: Client) -> None:
    response = alice_client.get(reverse("usage_dashboard"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_admin_index_links_to_the_dashboard(charlie_client: Client) -> None:
    assert reverse("usage_dashboard").encode() in charlie_client.get(reverse("admin:index")).content


def test_staff_see_provider_health_of_the_last_15_minutes(
    charlie_client: Client, alice: User
) -> None:
    from llm.models import Conversation, Message, ProviderConfig

    conversation = Conversation.objects.create(user=alice)
    for status in ("complete", "complete", "complete", "error"):
        Message.objects.create(
            conversation=conversation,
            role="assistant",
            status=status,
            provider="anthropic",
            ttft_ms=250.0,
        )
    ProviderConfig.objects.create(
        user=alice, kind="anthropic", open_until=timezone.now() + timedelta(minutes=1)
    )
    body = charlie_client.get(reverse("usage_dashboard")).content.decode()
    assert "Provider health, last 15 minutes" in body
    row = body[body.index("<td>Anthropic</td>") :].split("</tr>", 1)[0]
    cells = [cell.split(">", 1)[1] for cell in row.split("</td>")[1:-1]]
    assert cells == ["4", "1", "25%", "250 ms", "1"]


def test_provider_health_says_when_there_is_nothing(charlie_client: Client) -> None:
    body = charlie_client.get(reverse("usage_dashboard")).content.decode()
    assert "No replies and no open breakers in the last 15 minutes." in body


# --- filters, the CSV, speed ---------------------------------------------------------------


def usage_rows(client: Client, **params: Any) -> list[list[str]]:
    response = client.get(reverse("usage_dashboard"), params)
    assert response.status_code == 200
    return table_rows(response.content.decode(), "usage-table")


def csv_rows(client: Client, **params: Any) -> list[list[str]]:
    response = client.get(reverse("usage_export"), params)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="usage-')
    header, *rows = csv.reader(io.StringIO(response.content.decode()))
    assert header == [
        "User", "Provider", "Model", "Requests", "Failed", "Input tokens", "Output tokens",
        "Cost (USD)",
    ]  # fmt: skip
    return rows


def as_shown(row: list[str]) -> list[str]:
    """A CSV row as the table writes it: thousands separated, cost in dollars."""
    *text, cost = row
    return [f"{int(t):,}" if t.isdigit() else t for t in text] + [usd(Decimal(cost))]


@pytest.fixture
def spread(alice: User, bob: User) -> None:
    record(alice, 0, "1.25")
    record(alice, 2, "0.75", provider="anthropic", model="claude-sonnet-4-5")
    record(alice, 10, "2.00")
    record(bob, 1, "0.0042", provider="anthropic", model="claude-sonnet-4-5")
    record(bob, 40, "5.00")


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"provider": "anthropic"},
        {"user": "bob"},
        {"days": "7"},
        {"days": "90", "user": "alice", "provider": "openai"},
        {"since": "2020-01-01", "until": "2020-01-31"},
    ],
)
def test_the_csv_is_the_table(charlie_client: Client, spread: None, params: dict[str, str]) -> None:
    if "since" not in params and "days" not in params:
        params = {**params, "days": "90"}
    table = usage_rows(charlie_client, **params)
    exported = [as_shown(row) for row in csv_rows(charlie_client, **params)]
    if "since" in params:  # nothing then: the table says so, the CSV has its header alone
        assert (table, exported) == ([["Nothing in this period."]], [])
    else:
        assert table == exported and table


def test_filters_narrow_every_number(charlie_client: Client, spread: None) -> None:
    today = timezone.localdate()
    rows = usage_rows(
        charlie_client, since=f"{today - timedelta(days=5)}", until=f"{today}", user="alice"
    )
    assert [(r[0], r[1], r[-1]) for r in rows] == [
        ("alice", "openai", "$1.25"), ("alice", "anthropic", "$0.7500"),
    ]  # fmt: skip
    body = charlie_client.get(
        reverse("usage_dashboard"), {"provider": "anthropic", "days": "90"}
    ).content.decode()
    assert "<strong>$0.7542</strong>" in body  # alice's 0.75 and bob's 0.0042, nothing else
    body = charlie_client.get(reverse("usage_dashboard"), {"days": "1"}).content.decode()
    assert "<strong>$1.25</strong>" in body


def test_each_person_links_to_their_own_usage(charlie_client: Client, spread: None) -> None:
    body = charlie_client.get(reverse("usage_dashboard")).content.decode()
    assert 'href="?since=' in body and "&amp;user=bob" in body
    user_list = charlie_client.get(reverse("admin:accounts_user_changelist"))
    if user_list.status_code == 200:  # staff without the user permission see no list
        assert "/admin/usage/?user=alice" in user_list.content.decode()


def test_the_admin_user_list_links_to_the_dashboard(admin_client: Client, alice: User) -> None:
    body = admin_client.get(reverse("admin:accounts_user_changelist")).content.decode()
    assert '<a href="/admin/usage/?user=alice">Usage of alice</a>' in body


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"since": "2026-02-10", "until": "2026-02-01"}, "The first day comes after the last one"),
        ({"since": "2020-01-01", "until": "2026-01-01"}, "Pick at most 366 days at once"),
        ({"user": "nobody"}, "No one has the user name “nobody”"),
        ({"since": "yesterday"}, "Enter a valid date."),
        ({"provider": "nope"}, "Select a valid choice."),
    ],
)
def test_bad_filters_are_explained(
    charlie_client: Client, params: dict[str, str], words: str
) -> None:
    response = charlie_client.get(reverse("usage_dashboard"), params)
    assert response.status_code == 200 and words in unescape(response.content.decode())
    export = charlie_client.get(reverse("usage_export"), params)
    assert export.status_code == 400 and words in export.content.decode()


def test_no_dashboard_and_no_csv_for_anyone_but_staff(
    alice_client: Client, bob_client: Client, client: Client, spread: None
) -> None:
    for who in (alice_client, bob_client, client):
        for name in ("usage_dashboard", "usage_export"):
            response = who.get(reverse(name), {"user": "alice"})
            assert response.status_code == 302 and "/admin/login/" in response["Location"]
            assert b"alice" not in response.content


def test_latency_percentiles_and_error_rate_per_provider(
    charlie_client: Client, alice: User
) -> None:
    from llm.models import Conversation, Message

    conversation = Conversation.objects.create(user=alice)
    for n in range(1, 21):  # 100, 200, ... 2000 ms
        Message.objects.create(
            conversation=conversation, role="assistant", provider="gemini", latency_ms=100.0 * n,
            ttft_ms=10.0 * n, status="error" if n <= 2 else "complete",
        )  # fmt: skip
    Message.objects.create(  # still streaming and from the cache: neither counts
        conversation=conversation, role="assistant", provider="gemini", latency_ms=99999.0,
        status="streaming",
    )  # fmt: skip
    Message.objects.create(
        conversation=conversation, role="assistant", provider="gemini", latency_ms=99999.0,
        cached=True,
    )  # fmt: skip
    DailyUsage.objects.create(
        user=alice, day=timezone.localdate(), provider="gemini", model="gemini-2.5-flash",
        requests=20, errors=2,
    )  # fmt: skip
    body = charlie_client.get(reverse("usage_dashboard")).content.decode()
    row = next(r for r in table_rows(body, "speed-table") if r[0] == "Google Gemini")
    assert row == ["Google Gemini", "20", "2", "10%", "1000 ms", "1900 ms", "100 / 190 ms"]
    assert "Google Gemini: p50 1000 ms, p95 1900 ms" in body  # the chart's description


def test_the_csv_never_holds_a_formula(charlie_client: Client, alice: User) -> None:
    record(alice, 0, "1.00", model='=HYPERLINK("http://x")')
    (row,) = csv_rows(charlie_client)
    assert row[2] == '\'=HYPERLINK("http://x")'
