"""The turn's hot path on PostgreSQL: psycopg's async pool, one round trip a step.

On the thread path (llm/trips.py) each database step is a hop to a worker thread and
back, with Django's connection handling around plain SQL; on PostgreSQL the common
turn skips all of it. A token lookup, a start and a finish are each one round trip on
a connection of this event loop's pool (CTEs and INSERT ... RETURNING), no thread hop:

  authenticate  the token and its user, last_used_at touched at most once a minute
                (accounts/models.py holds its SQL);
  start         the person's row lock (where replies at once are capped), then the
                account, its replies streaming, its settings for the kind and, only if
                they admit the turn, the new conversation and both messages (one
                statement, pipelined after the lock);
  finish        the reply's row and the person's DailyUsage row.

Why (bench --profile, /v1 non-streaming on PostgreSQL + Redis, one process pinned to a
core of this 2-core machine, before and after): server CPU per stored turn went from
3.8-4.5 ms to 2.4-3.0 ms at c=1/10/50, statements per /v1 request from 6 to 3, and
ThreadPoolExecutor.submit from 14% to 8-11% of the profile; README has the whole run.

Only the common turn comes here: a new conversation (every /v1 call, a first message
in the widget) with no files, no images, no resend id, no budget to reserve against,
and breakers that need no database read. Anything else, and SQLite, keeps the thread
path (llm/turn_trips.py), which decides the same: the refusals are worded there.
LLM_ASYNC_DATABASE=off turns this module off.
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone
from psycopg import AsyncConnection
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from llm import breakers, limits, pricing, render, turn_sql
from llm.events import TurnFinished
from llm.models import Conversation, DailyUsage, Message
from llm.providers import registry
from llm.turn_trips import (
    ERROR,
    Ask,
    Outcome,
    Plan,
    admit,
    conversation_title,
    finished_event,
    first_request,
    gate,
    gate_trip,
    live_since,
    refused,
    swept,
)

POOL_SIZE = 10
# A reply of up to this many characters renders its markdown on the loop (measured
# here: 0.2 ms for 200 characters, 0.8 ms for 1,000, 3.7 ms for 4,000); a longer one
# renders on a thread while its row is written, so other replies' tokens do not wait.
RENDER_INLINE_CHARS = 1000

# A statement observer for the benchmark's query count (bench/queries.py); None otherwise.
observer: Callable[[str], None] | None = None


class _Pool:
    """One event loop's pool, and the connections it opened (to close if the loop dies)."""

    def __init__(self) -> None:
        self.opened: weakref.WeakSet[AsyncConnection[Any]] = weakref.WeakSet()
        self.pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            _conninfo(),
            min_size=1,
            max_size=POOL_SIZE,
            kwargs={"autocommit": True},
            configure=self._configure,
            open=False,
            name="coppertone-hot-path",
        )

    async def _configure(self, conn: AsyncConnection[Any]) -> None:
        self.opened.add(conn)


_pools: dict[asyncio.AbstractEventLoop, _Pool] = {}


def usable() -> bool:
    """Whether this process's database is PostgreSQL and the async path is on."""
    return settings.LLM_ASYNC_DATABASE and connection.vendor == "postgresql"


def _conninfo() -> str:
    # The settings as Django holds them now (a test run renames the database).
    db = connection.settings_dict
    extra = {k: v for k, v in (db.get("OPTIONS") or {}).items() if k in ("sslmode", "sslrootcert")}
    return make_conninfo(
        "",
        dbname=db["NAME"],
        user=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        host=db.get("HOST") or None,
        port=str(db["PORT"]) if db.get("PORT") else None,
        options="-c TimeZone=UTC",  # as Django's own connections: datetimes in UTC
        **extra,
    )


def _loop_pool() -> AsyncConnectionPool[Any]:
    """This event loop's pool (a pool's connections belong to the loop that opened them)."""
    loop = asyncio.get_running_loop()
    found = _pools.get(loop)
    if found is None:
        for stale in [k for k in _pools if k.is_closed()]:
            # Its loop will never hand these back: close them where they lie.
            for conn in list(_pools.pop(stale).opened):
                conn.pgconn.finish()
        found = _pools[loop] = _Pool()
    return found.pool


@asynccontextmanager
async def _connection() -> AsyncIterator[AsyncConnection[Any]]:
    pool = _loop_pool()
    if pool.closed:
        await pool.open(wait=False)
    async with pool.connection() as conn:
        yield conn


async def fetchone(sql: str, params: Sequence[Any] | dict[str, Any]) -> tuple[Any, ...] | None:
    """One statement on this loop's pool; its first row."""
    if observer is not None:
        observer(sql)
    async with _connection() as conn:
        cursor = await conn.execute(sql, params)
        return await cursor.fetchone()


async def _locked(user_id: int, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """`sql` in a transaction that first takes the person's row lock (as the thread path's
    start does, llm/turn_sql.py lock_person), so that two starts of one person never
    both count the same free slot. Pipelined: BEGIN, the lock, `sql` and COMMIT leave
    together, one round trip; `sql` reads after the lock (a statement of its own)."""
    if observer is not None:
        observer(turn_sql.LOCK_PERSON)
        observer(sql)
    async with _connection() as conn:
        async with conn.pipeline(), conn.transaction():
            await conn.execute(turn_sql.LOCK_PERSON, [user_id])
            cursor = await conn.execute(sql, params)
        return await cursor.fetchone()


async def close() -> None:
    """Close this loop's pool (a server's shutdown)."""
    found = _pools.pop(asyncio.get_running_loop(), None)
    if found is not None and not found.pool.closed:
        await found.pool.close()


# --- the start -------------------------------------------------------------------------

_MESSAGES, _CONVERSATIONS = turn_sql.table(Message), turn_sql.table(Conversation)
_EXCHANGE_COLUMNS = (
    "conversation_id, role, content, status, error_code, error_message, provider, model, "
    "input_tokens, output_tokens, cost, reserved_cost, client_message_id, seq, compare_id, "
    "created_at, updated_at"
)
# The standing, then the inserts, which find no row in `admitted` unless the account is
# active, below its cap of streaming replies, and set up for the kind (admit()'s rule).
START = f"""
WITH person AS (
    {turn_sql.standing_select(live="%(live)s", kind="%(kind)s")} WHERE u.id = %(user)s
), admitted AS (
    SELECT COALESCE(%(model)s::text, NULLIF(p.model, ''), %(default_model)s) AS model
    FROM person p
    WHERE p.is_active AND (%(cap)s = 0 OR p.streaming < %(cap)s)
      AND (%(local)s OR (p.id IS NOT NULL AND p.enabled
           AND (NOT %(needs_key)s OR p.encrypted_key <> '')))
), conversation AS (
    INSERT INTO {_CONVERSATIONS} (user_id, title, external_key, created_at, updated_at)
    SELECT %(user)s, %(title)s, '', %(now)s, %(now)s FROM admitted RETURNING id
), exchange AS (
    INSERT INTO {_MESSAGES} ({_EXCHANGE_COLUMNS})
    SELECT c.id, 'user', %(text)s, 'complete', '', '', '', '', 0, 0, 0, 0, NULL::uuid, 0,
           %(compare)s::uuid, %(now)s, %(now)s FROM conversation c
    UNION ALL
    SELECT c.id, 'assistant', '', 'streaming', '', '', %(kind)s, a.model, 0, 0, 0, 0,
           NULL::uuid, 1, %(compare)s::uuid, %(now)s, %(now)s FROM conversation c, admitted a
    RETURNING id, role
)
SELECT p.*, (SELECT id FROM conversation), (SELECT id FROM exchange WHERE role = 'user'),
       (SELECT id FROM exchange WHERE role = 'assistant'), (SELECT model FROM admitted)
FROM person p
"""


def takes(ask: Ask) -> bool:
    """Whether `ask` is the common turn this module starts."""
    return (
        usable()
        and swept()
        and (ask.history is not None or (ask.conversation_id is None and not ask.conversation_key))
        and ask.client_message_id is None
        and not ask.attachments
        and not ask.images
        and not any(m.images for m in ask.history or ())
        and ask.user.budget() is None
    )


async def start(ask: Ask) -> Plan | None:
    """The start in one statement; None when the thread path must decide (it words the
    refusal, or takes what this module does not)."""
    if not ask.rate_counted:
        try:
            await limits.acheck_rate(ask.user.pk)
        except limits.LimitError as exc:
            raise refused(exc) from None
    now = timezone.now()
    spec = registry.spec(ask.kind)
    cap = settings.LLM_MAX_CONCURRENT_REPLIES
    params: dict[str, Any] = {
        "user": ask.user.pk,
        "kind": ask.kind,
        "live": live_since(now),
        "model": ask.model_name,
        "default_model": spec.default_model,
        "cap": cap,
        "local": ask.kind == registry.LOCAL,
        "needs_key": spec.needs_key,
        "title": conversation_title(ask),
        "text": ask.text,
        "compare": ask.compare_id,
        "now": now,
    }
    # The person's row lock only where a cap is counted: without one, starts need not
    # wait for each other (one service account on /v1 at c=50 would queue on it).
    row = await (_locked(ask.user.pk, START, params) if cap else fetchone(START, params))
    if row is None:  # no such account: admit() words it as for a deactivated one
        admit(ask, turn_sql.standing_from(None))
        return None
    conversation_id, asked, answer, model = row[-4:]
    standing = turn_sql.standing_from(row[:-4])
    if answer is None:
        admit(ask, standing)  # raises the refusal in words
        return None  # the SQL and admit() disagree: let the thread path decide
    first = first_request(ask, model, standing.config)
    if breakers.reads_database(first.config, first.server):
        first = await gate_trip(first)
    else:
        first = gate(first)
    return Plan(
        conversation_id=conversation_id,
        user_message_id=asked,
        message_id=answer,
        first=first,
        compare_id=ask.compare_id,
    )


# --- the finish ------------------------------------------------------------------------

_USAGE = turn_sql.table(DailyUsage)
# turn_sql.store_reply and limits.record_usage in one statement: a column they learn to
# write must be written here too (tests/engine/test_pg_trips.py compares the two paths).
FINISH = f"""
WITH reply AS (
    UPDATE {_MESSAGES} SET content = %(content)s, status = %(status)s,
        input_tokens = %(input)s, output_tokens = %(output)s, cost = %(cost)s,
        ttft_ms = %(ttft)s, latency_ms = %(latency)s, error_code = %(code)s,
        error_message = %(error)s, reply_to_id = %(asked)s, seq = %(seq)s, reserved_cost = 0,
        updated_at = %(now)s, provider = %(provider)s, model = %(model)s,
        thinking = %(thinking)s, thinking_ms = %(thinking_ms)s, attempts = %(attempts)s,
        cached = %(cached)s
    WHERE id = %(id)s
)
INSERT INTO {_USAGE} AS d (user_id, day, provider, model, requests, errors, input_tokens,
    output_tokens, cost)
VALUES (%(user)s, %(day)s, %(provider)s, %(model)s, 1, %(failed)s, %(input)s, %(output)s,
    %(cost)s)
ON CONFLICT (user_id, day, provider, model) DO UPDATE SET requests = d.requests + 1,
    errors = d.errors + excluded.errors, input_tokens = d.input_tokens + excluded.input_tokens,
    output_tokens = d.output_tokens + excluded.output_tokens, cost = d.cost + excluded.cost
"""


def finishes(outcome: Outcome) -> bool:
    """Whether the finish is this module's: not when a success must close a breaker."""
    answered = outcome.answered
    return usable() and not (
        not outcome.cached
        and outcome.status != ERROR
        and breakers.needs_reset(answered.config, answered.server)
    )


async def finish(ask: Ask, plan: Plan, outcome: Outcome) -> TurnFinished:
    """The finish in one statement: the reply's row and the DailyUsage row, atomically.
    A long reply's markdown renders on a thread meanwhile (RENDER_INLINE_CHARS)."""
    await pricing.fresh()
    long = ask.render_html and len(outcome.content) > RENDER_INLINE_CHARS
    finished, now = finished_event(ask, plan, outcome, render_html=not long)
    html = (
        asyncio.ensure_future(asyncio.to_thread(render.to_html, outcome.content)) if long else None
    )
    error = finished.error
    if observer is not None:
        observer(FINISH)
    async with _connection() as conn:
        await conn.execute(
            FINISH,
            {
                "content": finished.content,
                "status": finished.status,
                "input": finished.input_tokens,
                "output": finished.output_tokens,
                "cost": finished.cost,
                "ttft": finished.ttft_ms,
                "latency": finished.latency_ms,
                "code": error.code if error else "",
                "error": error.message if error else "",
                "asked": plan.user_message_id,
                "seq": outcome.seq,
                "now": now,
                "provider": finished.provider,
                "model": finished.model,
                "thinking": finished.thinking,
                "thinking_ms": finished.thinking_ms,
                "attempts": Jsonb([attempt.as_dict() for attempt in finished.attempts]),
                "cached": finished.cached,
                "id": finished.message_id,
                "user": ask.user.pk,
                "day": timezone.localdate(now),
                "failed": int(outcome.status == ERROR),
            },
        )
    return dataclasses.replace(finished, html=await html) if html is not None else finished
