"""The SQL of the engine's start and finish trips: the reads and writes of one turn.

Plain SQL, the same on PostgreSQL and SQLite (3.35+ for RETURNING), because on this
path the ORM's own Python cost was larger than the database's: about 1.7 ms of CPU
to insert the two messages with bulk_create against 0.25 ms for this INSERT, on a
path that runs for every turn on every transport (measured on PostgreSQL, this
machine). Values go through Django's field adapters, so types match what the ORM
would have written. Everything here runs inside the engine's worker-thread trips;
PostgreSQL's async start (llm/pg_trips.py) builds on standing_select and LOCK_PERSON.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection, models
from django.utils import timezone

from accounts.models import User
from llm.events import TurnFinished
from llm.models import Conversation, Message, ProviderConfig

INTERRUPTED = "interrupted by a server restart"


def table(model: type[models.Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _stamp(now: dt.datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(now)


def _money(amount: Decimal) -> Any:
    return connection.ops.adapt_decimalfield_value(amount, 12, 6)


# The columns a turn reads from the person's settings for a provider.
CONFIG_FIELDS = (
    "id", "user_id", "kind", "encrypted_key", "key_id", "key_hint", "base_url", "api_version",
    "model", "temperature", "max_tokens", "system_prompt", "enabled", "top_p", "stop",
    "thinking", "connect_timeout", "first_byte_timeout", "idle_timeout", "max_concurrent",
    "cache_replies", "failures", "open_until", "failure",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Standing:
    """What the start trip checks about the person before anything is written."""

    active: bool  # a socket keeps the user it was opened with: read it afresh
    streaming: int  # their replies still being written (stale ones from dead processes aside)
    config: ProviderConfig | None  # their settings for the kind, the key still sealed


def lock_person(user_id: int) -> None:
    """Hold the person's row until the transaction ends (PostgreSQL; SQLite's one writer
    already serialises the start's transaction)."""
    if connection.features.has_select_for_update:
        with connection.cursor() as cursor:
            cursor.execute(LOCK_PERSON, [user_id])


LOCK_PERSON = f"SELECT id FROM {table(User)} WHERE id = %s FOR UPDATE"


def standing(user_id: int, kind: str, live_since: dt.datetime) -> Standing:
    """The account, how many of its replies stream (rows written since `live_since`), and
    its settings for `kind`: one query for all three."""
    with connection.cursor() as cursor:
        cursor.execute(standing_select() + " WHERE u.id = %s", [_stamp(live_since), kind, user_id])
        row = cursor.fetchone()
    return standing_from(row)


def standing_select(live: str = "%s", kind: str = "%s") -> str:
    """The standing's SELECT (u: the user, c: their settings for the kind), with the
    placeholders of its two parameters; PostgreSQL's one-statement start (llm/pg_trips.py)
    reads it as its first step."""
    config = ", ".join(f"c.{name}" for name in CONFIG_FIELDS)
    live_rows = (
        f"SELECT conversation_id FROM {table(Message)} "
        f"WHERE status = 'streaming' AND updated_at >= {live}"
    )
    if connection.vendor == "postgresql":
        # A fence: read the few streaming rows (their partial index) first, then their
        # conversations. Flattened, the planner may walk all of the person's
        # conversations instead: 10 ms a start for one with 7,752 (measured here),
        # against under 0.5 ms.
        live_rows += " OFFSET 0"
    return (
        f"SELECT u.is_active, (SELECT COUNT(*) FROM ({live_rows}) m "
        f"JOIN {table(Conversation)} v ON v.id = m.conversation_id WHERE v.user_id = u.id) "
        f"AS streaming, {config} FROM {table(User)} u "
        f"LEFT JOIN {table(ProviderConfig)} c ON c.user_id = u.id AND c.kind = {kind}"
    )


def standing_from(row: Sequence[Any] | None) -> Standing:
    """A Standing from a row of standing_select() (None: no such account)."""
    if row is None:
        return Standing(active=False, streaming=0, config=None)
    active, streaming, values = bool(row[0]), int(row[1]), row[2:]
    if values[0] is None:  # no settings for this kind
        return Standing(active, streaming, None)
    fields = dict(zip(CONFIG_FIELDS, values, strict=True))
    # Raw rows come as the driver gives them (SQLite: 0/1, JSON text, naive UTC times).
    fields["enabled"], fields["cache_replies"] = (
        bool(fields["enabled"]),
        bool(fields["cache_replies"]),
    )
    if isinstance(fields["stop"], str):
        fields["stop"] = json.loads(fields["stop"])
    until = fields["open_until"]
    if isinstance(until, str):
        until = dt.datetime.fromisoformat(until)
    if until is not None and timezone.is_naive(until):
        until = until.replace(tzinfo=dt.UTC)
    fields["open_until"] = until
    return Standing(active, streaming, ProviderConfig(**fields))


def insert_conversation(user_id: int, title: str, external_key: str, now: dt.datetime) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table(Conversation)} "
            "(user_id, title, external_key, created_at, updated_at) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING id",
            [user_id, title, external_key, _stamp(now), _stamp(now)],
        )
        (conversation_id,) = cursor.fetchone()
    return int(conversation_id)


def insert_exchange(
    conversation_id: int,
    text: str,
    client_message_id: uuid.UUID | None,
    provider: str,
    model: str,
    now: dt.datetime,
    reserved_cost: Decimal = Decimal(0),
    *,
    compare_id: uuid.UUID | None = None,
) -> tuple[int, int]:
    """The user's message and the assistant's `streaming` row, in one INSERT.

    Returns (user message id, assistant message id). The assistant row is linked to
    its question (reply_to) by the finish trip.
    """
    client_id = Message._meta.get_field("client_message_id").get_db_prep_value(
        client_message_id, connection
    )
    compared = Message._meta.get_field("compare_id").get_db_prep_value(compare_id, connection)
    stamp = _stamp(now)
    columns = (
        "conversation_id, role, content, status, error_code, error_message, provider, "
        "model, input_tokens, output_tokens, cost, reserved_cost, client_message_id, seq, "
        "compare_id, created_at, updated_at"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table(Message)} ({columns}) VALUES "
            "(%s, 'user', %s, 'complete', '', '', '', '', 0, 0, 0, 0, %s, 0, %s, %s, %s), "
            "(%s, 'assistant', '', 'streaming', '', '', %s, %s, 0, 0, 0, %s, NULL, 1, %s, "
            "%s, %s) RETURNING id, role",
            [conversation_id, text, client_id, compared, stamp, stamp]
            + [conversation_id, provider, model, _money(reserved_cost), compared, stamp, stamp],
        )
        # RETURNING's row order is not promised (SQLite): tell the rows apart by role.
        ids = {role: int(pk) for pk, role in cursor.fetchall()}
    return ids["user"], ids["assistant"]


def store_reply(reply: TurnFinished, user_message_id: int, *, seq: int, now: dt.datetime) -> None:
    """Write how the reply ended onto its row (and link it to its question)."""
    error = reply.error
    attempts = Message._meta.get_field("attempts").get_db_prep_value(
        [attempt.as_dict() for attempt in reply.attempts], connection
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table(Message)} SET content = %s, status = %s, input_tokens = %s, "
            "output_tokens = %s, cost = %s, ttft_ms = %s, latency_ms = %s, error_code = %s, "
            "error_message = %s, reply_to_id = %s, seq = %s, reserved_cost = 0, updated_at = %s, "
            "provider = %s, model = %s, thinking = %s, thinking_ms = %s, attempts = %s, "
            "cached = %s WHERE id = %s",
            [
                reply.content,
                reply.status,
                reply.input_tokens,
                reply.output_tokens,
                _money(reply.cost),
                reply.ttft_ms,
                reply.latency_ms,
                error.code if error else "",
                error.message if error else "",
                user_message_id,
                seq,
                _stamp(now),
                reply.provider,
                reply.model,
                reply.thinking,
                reply.thinking_ms,
                attempts,
                reply.cached,
                reply.message_id,
            ],
        )


def write_progress(message_id: int, content: str, thinking: str, seq: int) -> None:
    """The text (and thinking) so far, as of event `seq`; only while still streaming, so
    that a late write never undoes the finish."""
    Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
        content=content, thinking=thinking, seq=seq, updated_at=timezone.now()
    )


def sweep_interrupted(before: dt.datetime) -> int:
    """Mark replies left `streaming` and last written before `before` as failed."""
    return Message.objects.filter(status=Message.Status.STREAMING, updated_at__lt=before).update(
        status=Message.Status.ERROR,
        error_code="internal",
        error_message=INTERRUPTED,
        updated_at=timezone.now(),
    )


def mark_interrupted(message_id: int) -> bool:
    """Fail one reply whose process died (its lease ran out); False if it had ended."""
    return bool(
        Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
            status=Message.Status.ERROR,
            error_code="internal",
            error_message=INTERRUPTED,
            updated_at=timezone.now(),
        )
    )
