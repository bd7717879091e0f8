"""Finding and tidying a person's conversations: search, filters, pinning, renaming and
deleting in bulk. The one rule for the conversations page, the widget's list and
/api/v1/conversations.

Every list puts pinned conversations first, then the latest activity. Search is
PostgreSQL full-text search over titles and message text, ranked (config "simple":
conversations are in any language, so words are matched as written, not stemmed); on
SQLite it is a plain case-insensitive match of the whole query. A snippet is HTML in
which every character of the text is escaped and only the match is wrapped in <mark>.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from typing import Any

from django import forms
from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchRank, SearchVector
from django.db import connection, transaction
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    FloatField,
    IntegerField,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Replace
from django.utils import timezone
from django.utils.html import conditional_escape, format_html, format_html_join
from django.utils.safestring import SafeString

from accounts.models import User
from llm.models import Conversation, Message
from llm.providers import registry

CONFIG = "simple"
MAX_QUERY_CHARS = 200
MAX_TITLE_CHARS = Conversation._meta.get_field("title").max_length or 200
MAX_MODEL_CHARS = Message._meta.get_field("model").max_length or 200
MAX_BULK = 500  # ids in one bulk delete
# A SQLite snippet: this much text before the match, and this much in all.
LEAD_CHARS = 50
SNIPPET_CHARS = 180
# ts_headline marks matches with these; they are removed from the text first, so that
# nothing a person typed can open or close a mark (Unicode private-use characters).
START, STOP = "\ue000", "\ue001"
# Dates outside these match every conversation anyway; inside, they stay convertible to
# any time zone's UTC offset.
EARLIEST, LATEST = dt.date(1900, 1, 1), dt.date(9000, 12, 31)


def _on_postgres() -> bool:
    return connection.vendor == "postgresql"


def ordered(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """Pinned first, then the newest activity: the order of every list."""
    return conversations.order_by("-pinned", "-updated_at", "-pk")


def _message_count() -> Coalesce:
    # A subquery, not Count(): no GROUP BY to mix with the search's annotations.
    counted = (
        Message.objects.filter(conversation=OuterRef("pk"))
        .order_by()
        .values("conversation")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def message_count(conversation: Conversation) -> int:
    """The count `search` annotated its rows with."""
    return int(getattr(conversation, "message_count", 0))


def _day_start(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def search(
    user: User,
    query: str = "",
    *,
    provider: str = "",
    model: str = "",
    since: dt.date | None = None,
    until: dt.date | None = None,
    pinned: bool | None = None,
) -> QuerySet[Conversation]:
    """The person's conversations that match, each with `message_count`, pinned first.

    `provider` and `model`: a reply came from them. `since` and `until`: the last
    activity was on or between those days (inclusive, in the site's time zone). With a
    `query`, the best matches come first within the pinned and the rest.
    """
    found = Conversation.objects.filter(user=user)
    if pinned is not None:
        found = found.filter(pinned=pinned)
    if (since is not None and since > LATEST) or (until is not None and until < EARLIEST):
        found = found.none()
    elif since is not None and since > EARLIEST:
        found = found.filter(updated_at__gte=_day_start(since))
    if until is not None and EARLIEST <= until < LATEST:
        found = found.filter(updated_at__lt=_day_start(until + dt.timedelta(days=1)))
    if provider or model:
        replies = Message.objects.filter(conversation=OuterRef("pk"), role=Message.Role.ASSISTANT)
        if provider:
            replies = replies.filter(provider=provider)
        if model:
            replies = replies.filter(model=model)
        found = found.filter(Exists(replies))
    found = found.annotate(message_count=_message_count())
    query = query.strip()
    if not query:
        return ordered(found)
    matched = _full_text(found, query) if _on_postgres() else _contains(found, query)
    return matched.order_by("-pinned", F("rank").desc(), "-updated_at", "-pk")


def _contains(found: QuerySet[Conversation], query: str) -> QuerySet[Conversation]:
    in_messages = Message.objects.filter(conversation=OuterRef("pk"), content__icontains=query)
    return found.filter(Q(title__icontains=query) | Exists(in_messages)).annotate(
        rank=Case(
            When(title__icontains=query, then=Value(1.0)),
            default=Value(0.0),
            output_field=FloatField(),
        )
    )


def _tsquery(query: str) -> SearchQuery:
    # websearch: what people type into a search box ("quoted phrase", -word, or).
    return SearchQuery(query, config=CONFIG, search_type="websearch")


def _matching_messages(tsquery: SearchQuery) -> QuerySet[Message]:
    documents = Message.objects.annotate(document=SearchVector("content", config=CONFIG))
    return documents.filter(document=tsquery)


def _full_text(found: QuerySet[Conversation], query: str) -> QuerySet[Conversation]:
    tsquery = _tsquery(query)
    in_messages = _matching_messages(tsquery).filter(conversation=OuterRef("pk"))
    best = (
        in_messages.annotate(rank=SearchRank(F("document"), tsquery))
        .order_by("-rank")
        .values("rank")[:1]
    )
    # The ranking subquery appears once: SQL repeats an expression wherever it is used,
    # and each copy reads every message of the conversation again (EXISTS stops early).
    return (
        found.alias(title_document=SearchVector("title", config=CONFIG))
        .filter(Q(title_document=tsquery) | Exists(in_messages))
        .annotate(
            # A match in the title counts twice a match in one message.
            rank=Value(2.0) * SearchRank(F("title_document"), tsquery)
            + Coalesce(Subquery(best, output_field=FloatField()), Value(0.0))
        )
    )


# --- snippets ------------------------------------------------------------------------------


def marked(text: str, spans: Iterable[tuple[int, int]]) -> SafeString:
    """`text` as HTML: all of it escaped, the (start, end) spans wrapped in <mark>."""
    pairs, at = [], 0
    for start, end in sorted(spans):
        if start < at or end <= start:
            continue  # overlapping or empty: the earlier span already shows it
        pairs.append((text[at:start], text[start:end]))
        at = end
    return format_html_join("", "{}<mark>{}</mark>", pairs) + conditional_escape(text[at:])


def excerpt(text: str, query: str) -> SafeString:
    """The part of `text` around the first case-insensitive match of `query`, marked."""
    pattern = re.compile(re.escape(query), re.IGNORECASE)
    hit = pattern.search(text)
    start = max(0, hit.start() - LEAD_CHARS) if hit else 0
    if start:
        # Begin at a word: skip the cut one, unless that would skip into the match.
        space = text.find(" ", start, hit.start() if hit else start)
        start = space + 1 if space != -1 else start
    end = min(len(text), max(start + SNIPPET_CHARS, hit.end() if hit else 0))
    piece = text[start:end]
    body = marked(piece, ((m.start(), m.end()) for m in pattern.finditer(piece)))
    return format_html("{}{}{}", "…" if start else "", body, "…" if end < len(text) else "")


def _from_headline(text: str) -> SafeString:
    """ts_headline's output (matches between START and STOP) as marked HTML."""
    plain: list[str] = []
    spans: list[tuple[int, int]] = []
    at, opened = 0, None
    for piece in re.split(f"([{START}{STOP}])", text):
        if piece == START:
            opened = at
        elif piece == STOP:
            if opened is not None:
                spans.append((opened, at))
            opened = None
        else:
            plain.append(piece)
            at += len(piece)
    return marked("".join(plain), spans)


def _headline(field: str, tsquery: SearchQuery) -> SearchHeadline:
    clean = Replace(Replace(F(field), Value(START), Value("")), Value(STOP), Value(""))
    return SearchHeadline(
        clean,
        tsquery,
        config=CONFIG,
        start_sel=START,
        stop_sel=STOP,
        max_words=30,
        min_words=12,
        max_fragments=2,
        fragment_delimiter=" … ",
    )


def snippets(conversations: Sequence[Conversation], query: str) -> dict[int, SafeString]:
    """For each conversation (a page of `search`'s results): where `query` matched, as
    HTML. From its best-matching message, else from its title. Two queries at most."""
    query = query.strip()
    ids = [c.pk for c in conversations]
    if not query or not ids:
        return {}
    if _on_postgres():
        return _headlines(ids, query)
    firsts = (
        Message.objects.filter(conversation_id__in=ids, content__icontains=query)
        .order_by()
        .values("conversation_id")
        .annotate(first=Min("pk"))
        .values("first")
    )
    texts = dict(
        Message.objects.filter(pk__in=Subquery(firsts)).values_list("conversation", "content")
    )
    return {c.pk: excerpt(texts.get(c.pk, c.title), query) for c in conversations}


def _headlines(ids: list[int], query: str) -> dict[int, SafeString]:
    tsquery = _tsquery(query)
    best = (
        _matching_messages(tsquery)
        .filter(conversation_id__in=ids)
        .annotate(rank=SearchRank(F("document"), tsquery))
        .order_by("conversation_id", "-rank", "pk")
        .distinct("conversation_id")
        .values("pk")
    )
    shown: dict[int, str] = dict(
        Message.objects.filter(pk__in=Subquery(best))
        .annotate(headline=_headline("content", tsquery))
        .values_list("conversation", "headline")
    )
    titles_only = [pk for pk in ids if pk not in shown]
    if titles_only:
        shown.update(
            Conversation.objects.filter(pk__in=titles_only)
            .annotate(headline=_headline("title", tsquery))
            .values_list("pk", "headline")
        )
    return {pk: _from_headline(shown.get(pk, "")) for pk in ids}


class Found:
    """A conversation as a list shows it: the row, and where the search matched."""

    def __init__(self, conversation: Conversation, snippet: SafeString | str = "") -> None:
        self.conversation = conversation
        self.snippet = snippet

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conversation, name)

    def __str__(self) -> str:
        return str(self.conversation)


def found(conversations: Iterable[Conversation], query: str) -> list[Found]:
    rows = list(conversations)
    shown = snippets(rows, query)
    return [Found(c, shown.get(c.pk, "")) for c in rows]


# --- the filters: one form for the page and the API ----------------------------------------

DATE_WORDS = "Enter a date as YYYY-MM-DD, like 2026-01-31."


class DayField(forms.DateField):
    """A day as YYYY-MM-DD exactly (what a date input sends), nothing looser."""

    widget = forms.DateInput(attrs={"type": "date"})
    default_error_messages = {"invalid": DATE_WORDS}

    def to_python(self, value: Any) -> dt.date | None:
        if value in self.empty_values:
            return None
        if isinstance(value, dt.date):
            return value
        if not (isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value)):
            raise forms.ValidationError(DATE_WORDS, code="invalid")
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise forms.ValidationError(DATE_WORDS, code="invalid") from None


class FilterForm(forms.Form):
    # Not stripped here (search strips): the length limit is on what was sent.
    q = forms.CharField(
        required=False,
        strip=False,
        max_length=MAX_QUERY_CHARS,
        label="Search",
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": "Words in titles and messages"}
        ),
    )
    provider = forms.ChoiceField(required=False, label="Provider")
    model = forms.CharField(required=False, strip=False, max_length=MAX_MODEL_CHARS, label="Model")
    since = DayField(required=False, label="Active from")
    until = DayField(required=False, label="until")
    pinned = forms.TypedChoiceField(
        required=False,
        label="Pinned",
        choices=[("", "Pinned or not"), ("true", "Pinned only"), ("false", "Not pinned")],
        coerce=lambda value: value == "true",
        empty_value=None,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        provider = self.fields["provider"]
        assert isinstance(provider, forms.ChoiceField)
        provider.choices = [("", "Any provider"), *registry.choices()]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            raise forms.ValidationError(
                f"The range starts ({since.isoformat()}) after it ends ({until.isoformat()}): "
                "swap the two dates."
            )
        return data

    def criteria(self) -> dict[str, Any]:
        """`search`'s arguments (call once the form is valid)."""
        data = self.cleaned_data
        return {
            "query": (data.get("q") or "").strip(),
            "provider": data.get("provider") or "",
            "model": (data.get("model") or "").strip(),
            "since": data.get("since"),
            "until": data.get("until"),
            "pinned": data.get("pinned"),
        }


# --- rename and pin ---------------------------------------------------------------------------


class EditForm(forms.Form):
    """What may change about a conversation: its title and whether it is pinned. Bound with
    only the fields being changed (`fields`), so a rename does not unpin."""

    title = forms.CharField(max_length=MAX_TITLE_CHARS, strip=False, label="Title")
    pinned = forms.BooleanField(required=False, label="Pinned")

    def __init__(
        self, data: Any = None, *, fields: Iterable[str], initial: dict[str, Any] | None = None
    ) -> None:
        super().__init__(data, initial=initial)
        keep = set(fields)
        for name in list(self.fields):
            if name not in keep:
                del self.fields[name]

    def clean_title(self) -> str:
        # Stripped after the length check, so the limit is on what was sent.
        title = " ".join(str(self.cleaned_data.get("title") or "").split())
        if not title:
            raise forms.ValidationError("Give the conversation a title: a word or two will do.")
        return title


def edit(conversation: Conversation, changes: dict[str, Any]) -> None:
    """Store a valid EditForm's cleaned_data. An UPDATE, not save(): renaming or pinning
    is no activity, so it leaves updated_at (and the list's order) alone."""
    if changes:
        Conversation.objects.filter(pk=conversation.pk).update(**changes)
        for name, value in changes.items():
            setattr(conversation, name, value)


# --- deleting in bulk ----------------------------------------------------------------------


def delete_owned(user: User, ids: Iterable[int]) -> list[int]:
    """Delete those of `ids` that are the person's; anyone else's are ignored (they are
    not theirs to know about). The ids deleted, in order."""
    with transaction.atomic():
        mine = sorted(
            Conversation.objects.filter(user=user, pk__in=list(ids)).values_list("pk", flat=True)
        )
        Conversation.objects.filter(pk__in=mine).delete()
    return mine


def clear_provider(user: User, provider: str) -> list[int]:
    """Delete every conversation of the person's with a reply from `provider` (the same
    conversations the provider filter shows)."""
    with transaction.atomic():
        ids = list(search(user, provider=provider).values_list("pk", flat=True))
        Conversation.objects.filter(pk__in=ids).delete()
    return sorted(ids)


def providers_used(user: User) -> list[dict[str, Any]]:
    """The providers that replied in the person's conversations, each with how many
    conversations (for "clear by provider" and its confirmation)."""
    rows = (
        Message.objects.filter(conversation__user=user, role=Message.Role.ASSISTANT)
        .exclude(provider="")
        .order_by()
        .values("provider")
        .annotate(conversations=Count("conversation", distinct=True))
    )
    labels = dict(registry.choices())
    return sorted(
        (
            {"kind": r["provider"], "label": labels.get(r["provider"], r["provider"]), **r}
            for r in rows
        ),
        key=lambda r: str(r["label"]),
    )


def provider_label(kind: str) -> str:
    return dict(registry.choices()).get(kind, kind)
