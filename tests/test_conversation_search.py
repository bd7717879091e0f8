"""llm/conversations.py: the one search, the order of every list, snippets, filters and
bulk deletes. SQLite's plain match runs everywhere; the full-text tests run where CI runs
the suite on PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from accounts.models import User
from llm import conversations
from llm.models import Conversation, Message

ON_POSTGRES = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
postgres_only = pytest.mark.skipif(not ON_POSTGRES, reason="full-text search is PostgreSQL's")
sqlite_only = pytest.mark.skipif(ON_POSTGRES, reason="the plain fallback is SQLite's")


def talk(
    user: User,
    title: str,
    *texts: str,
    provider: str = "openai",
    model: str = "gpt-4o",
    days_ago: int = 0,
    pinned: bool = False,
) -> Conversation:
    """A conversation whose texts alternate user, assistant; last active `days_ago`."""
    convo = Conversation.objects.create(user=user, title=title, pinned=pinned)
    for n, text in enumerate(texts):
        assistant = n % 2 == 1
        Message.objects.create(
            conversation=convo,
            role="assistant" if assistant else "user",
            content=text,
            provider=provider if assistant else "",
            model=model if assistant else "",
            cost=Decimal("0.0001") if assistant else Decimal(0),
        )
    when = timezone.now() - dt.timedelta(days=days_ago)
    Conversation.objects.filter(pk=convo.pk).update(updated_at=when)
    convo.refresh_from_db()
    return convo


def titles(found: object) -> list[str]:
    return [c.title for c in found]  # type: ignore[attr-defined]


# --- order --------------------------------------------------------------------------------


def test_every_list_puts_pinned_first_then_the_newest(alice: User) -> None:
    talk(alice, "Old", days_ago=3)
    talk(alice, "Pinned long ago", days_ago=9, pinned=True)
    talk(alice, "New", days_ago=0)
    talk(alice, "Pinned yesterday", days_ago=1, pinned=True)

    assert titles(conversations.search(alice)) == [
        "Pinned yesterday",
        "Pinned long ago",
        "New",
        "Old",
    ]


def test_rename_and_pin_are_no_activity(alice: User) -> None:
    older = talk(alice, "Older", "hi", days_ago=2)
    talk(alice, "Newer", "hi", days_ago=1)
    before = older.updated_at

    form = conversations.EditForm({"title": "  Trip   to Porto "}, fields=["title"])
    assert form.is_valid()
    conversations.edit(older, form.cleaned_data)

    older.refresh_from_db()
    assert older.title == "Trip to Porto"
    assert older.updated_at == before
    assert titles(conversations.search(alice)) == ["Newer", "Trip to Porto"]


def test_a_blank_or_too_long_title_is_refused_in_words(alice: User) -> None:
    blank = conversations.EditForm({"title": "   "}, fields=["title"])
    assert not blank.is_valid()
    assert blank.errors["title"] == ["Give the conversation a title: a word or two will do."]
    long = conversations.EditForm({"title": "x" * 201}, fields=["title"])
    assert not long.is_valid()
    assert "at most 200 characters" in long.errors["title"][0]


def test_each_row_counts_its_messages(alice: User) -> None:
    talk(alice, "Three", "a", "b", "c")
    talk(alice, "None")
    counts = {c.title: c.message_count for c in conversations.search(alice)}  # type: ignore[attr-defined]
    assert counts == {"Three": 3, "None": 0}


# --- search -------------------------------------------------------------------------------


def test_search_finds_titles_and_message_text_of_mine_only(alice: User, bob: User) -> None:
    talk(alice, "Trip to Lisbon", "Plan three days", "Day one: Alfama")
    talk(alice, "Taxes", "What can I deduct?", "Your Lisbon flat's repairs")
    talk(alice, "Cooking", "Pasta?", "Boil water")
    talk(bob, "Bob in Lisbon", "Lisbon", "Lisbon")

    assert set(titles(conversations.search(alice, "lisbon"))) == {"Trip to Lisbon", "Taxes"}
    assert titles(conversations.search(alice, "alfama")) == ["Trip to Lisbon"]
    assert titles(conversations.search(alice, "nowhere")) == []


def test_search_ranks_a_title_match_first_and_pinned_before_all(alice: User) -> None:
    talk(alice, "Groceries", "buy a lisbon guide", days_ago=0)
    talk(alice, "Lisbon", "hello", days_ago=5)
    assert titles(conversations.search(alice, "lisbon")) == ["Lisbon", "Groceries"]

    talk(alice, "Pinned notes", "lisbon again", days_ago=9, pinned=True)
    assert titles(conversations.search(alice, "lisbon"))[0] == "Pinned notes"


@sqlite_only
def test_sqlite_matches_the_phrase_as_written_in_any_case(alice: User) -> None:
    talk(alice, "A", "The Trip To Lisbon was long")
    talk(alice, "B", "lisbon, then a trip")
    assert titles(conversations.search(alice, "trip to lisbon")) == ["A"]


@postgres_only
def test_postgres_matches_words_in_any_order_and_ranks_the_better_match(alice: User) -> None:
    talk(alice, "Once", "a trip somewhere, and lisbon mentioned later", days_ago=0)
    talk(alice, "Twice", "lisbon trip: lisbon trip, lisbon again", days_ago=3)
    talk(alice, "Neither", "a walk", days_ago=1)
    assert titles(conversations.search(alice, "lisbon trip")) == ["Twice", "Once"]
    assert titles(conversations.search(alice, '"trip to lisbon"')) == []
    assert titles(conversations.search(alice, "lisbon -again")) == ["Once"]


@postgres_only
def test_postgres_snippet_is_the_headline_with_the_words_marked(alice: User) -> None:
    convo = talk(alice, "Notes", "We walked all day in Alfama <b>and</b> ate sardines.")
    [row] = conversations.found(conversations.search(alice, "sardines"), "sardines")
    assert row.pk == convo.pk
    assert "<mark>sardines</mark>" in row.snippet
    assert "Alfama" in row.snippet
    assert "<b>" not in row.snippet


def test_snippet_marks_the_match_in_the_message(alice: User) -> None:
    talk(alice, "Notes", "x " * 200 + "we ate Sardines by the river" + " y" * 200)
    [row] = conversations.found(conversations.search(alice, "sardines"), "sardines")
    assert "<mark>Sardines</mark>" in row.snippet
    if not ON_POSTGRES:  # SQLite's excerpt is cut around the match
        assert row.snippet.startswith("…") and row.snippet.endswith("…")
        assert len(row.snippet) < 260


def test_snippet_of_a_title_match_is_the_title(alice: User) -> None:
    talk(alice, "Sardines in Lisbon", "unrelated")
    [row] = conversations.found(conversations.search(alice, "sardines"), "sardines")
    assert row.snippet == "<mark>Sardines</mark> in Lisbon"


def test_snippet_escapes_everything_and_marks_only_the_match(alice: User) -> None:
    talk(alice, "Evil", "<script>alert('owned')</script> then the secret word & <i>more</i>")
    [row] = conversations.found(conversations.search(alice, "secret"), "secret")
    assert "<script" not in row.snippet and "<i>" not in row.snippet
    assert "<mark>secret</mark>" in row.snippet
    # The only markup is ours (PostgreSQL's ts_headline also drops simple tags).
    assert row.snippet.count("<") == row.snippet.count("<mark>") + row.snippet.count("</mark>")
    if not ON_POSTGRES:
        assert "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt;" in row.snippet
        assert "&amp; &lt;i&gt;more&lt;/i&gt;" in row.snippet


def test_text_that_looks_like_our_markers_cannot_open_a_mark(alice: User) -> None:
    talk(alice, "Markers", f"a {conversations.START}fake{conversations.STOP} then word")
    [row] = conversations.found(conversations.search(alice, "word"), "word")
    assert row.snippet.count("<mark>") == 1 and "<mark>word</mark>" in row.snippet


def test_marked_escapes_inside_and_outside_the_span() -> None:
    html = conversations.marked("a<b>c & d", [(1, 4)])
    assert html == "a<mark>&lt;b&gt;</mark>c &amp; d"


def test_a_query_with_like_wildcards_is_taken_literally(alice: User) -> None:
    talk(alice, "Percent", "100% sure")
    talk(alice, "Other", "100 sure")
    assert "Percent" in titles(conversations.search(alice, "100%"))
    if not ON_POSTGRES:
        assert titles(conversations.search(alice, "100%")) == ["Percent"]


# --- filters --------------------------------------------------------------------------------


def test_filter_by_provider_model_and_pinned(alice: User) -> None:
    talk(alice, "OpenAI", "q", "a", provider="openai", model="gpt-4o")
    talk(alice, "Claude", "q", "a", provider="anthropic", model="claude-sonnet-4-5", pinned=True)
    talk(alice, "Mini", "q", "a", provider="openai", model="gpt-4o-mini")
    talk(alice, "Unanswered", "q")

    assert titles(conversations.search(alice, provider="openai")) == ["Mini", "OpenAI"]
    assert titles(conversations.search(alice, model="gpt-4o")) == ["OpenAI"]
    assert titles(conversations.search(alice, provider="anthropic", model="gpt-4o")) == []
    assert titles(conversations.search(alice, pinned=True)) == ["Claude"]
    assert "Claude" not in titles(conversations.search(alice, pinned=False))


def test_filter_by_date_range_of_last_activity(alice: User) -> None:
    talk(alice, "Today", days_ago=0)
    talk(alice, "Last week", days_ago=7)
    talk(alice, "Last month", days_ago=30)
    today = timezone.localdate()

    week = conversations.search(alice, since=today - dt.timedelta(days=10))
    assert titles(week) == ["Today", "Last week"]
    older = conversations.search(alice, until=today - dt.timedelta(days=7))
    assert titles(older) == ["Last week", "Last month"]
    one_day = today - dt.timedelta(days=7)
    assert titles(conversations.search(alice, since=one_day, until=one_day)) == ["Last week"]
    # The ends of the calendar match everything instead of overflowing a time zone.
    assert len(conversations.search(alice, since=dt.date(1, 1, 1), until=dt.date.max)) == 3


def test_filter_form_says_what_is_wrong(db: None) -> None:
    form = conversations.FilterForm(
        {"since": "2026-03-02", "until": "2026-03-01", "provider": "nope", "pinned": "maybe"}
    )
    assert not form.is_valid()
    assert form.non_field_errors() == [
        "The range starts (2026-03-02) after it ends (2026-03-01): swap the two dates."
    ]
    assert "nope is not one of the available choices" in form.errors["provider"][0]
    assert "maybe" in form.errors["pinned"][0]
    bad_date = conversations.FilterForm({"since": "yesterday"})
    assert not bad_date.is_valid()
    assert bad_date.errors["since"] == ["Enter a date as YYYY-MM-DD, like 2026-01-31."]
    nul = conversations.FilterForm({"q": "a\x00b"})
    assert not nul.is_valid()


def test_filter_form_gives_search_its_arguments(db: None) -> None:
    form = conversations.FilterForm({"q": "  lisbon ", "provider": "openai", "pinned": "true"})
    assert form.is_valid()
    assert form.criteria() == {
        "query": "lisbon",
        "provider": "openai",
        "model": "",
        "since": None,
        "until": None,
        "pinned": True,
    }


# --- bulk delete ----------------------------------------------------------------------------


def test_delete_owned_ignores_anyone_elses_ids(alice: User, bob: User) -> None:
    one, two = talk(alice, "One", "a"), talk(alice, "Two", "b")
    keep = talk(alice, "Keep")
    theirs = talk(bob, "Bob's", "c")

    gone = conversations.delete_owned(alice, [two.pk, one.pk, theirs.pk, 10**9])

    assert gone == sorted([one.pk, two.pk])
    assert list(Conversation.objects.values_list("pk", flat=True).order_by("pk")) == sorted(
        [keep.pk, theirs.pk]
    )
    assert not Message.objects.filter(conversation_id__in=gone).exists()


def test_clear_provider_deletes_mine_with_a_reply_from_it_only(alice: User, bob: User) -> None:
    talk(alice, "OpenAI 1", "q", "a", provider="openai")
    talk(alice, "OpenAI 2", "q", "a", provider="openai")
    talk(alice, "Claude", "q", "a", provider="anthropic")
    talk(alice, "Unanswered", "q")
    talk(bob, "Bob's OpenAI", "q", "a", provider="openai")

    used = {p["kind"]: p["conversations"] for p in conversations.providers_used(alice)}
    assert used == {"openai": 2, "anthropic": 1}

    assert len(conversations.clear_provider(alice, "openai")) == 2
    assert set(Conversation.objects.values_list("title", flat=True)) == {
        "Claude",
        "Unanswered",
        "Bob's OpenAI",
    }
