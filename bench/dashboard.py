"""The staff usage dashboard and a person's usage page at a million messages.

    .venv/bin/python -m bench.dashboard
        SQLite in a fresh temporary directory (removed afterwards)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/coppertone_bench \\
        .venv/bin/python -m bench.dashboard
        that PostgreSQL database (create it first: createdb -h 127.0.0.1 -U postgres
        coppertone_bench); migrated, then seeded once: a later run that finds the same
        seed reuses it (--reseed starts afresh)

Options: --messages 1000000 (half of them replies) --users 200 --days 90 --repeat 7
--without-index (also time the pages with the reply_created index dropped, and put
back after), --data-dir DIR (SQLite kept there and reused, for repeated runs).

Seeding is bulk inserts: users, conversations of 20 turns, every user message and its
reply (provider, model, tokens, cost, time to first token, latency, 3% failed, 1%
stopped, spread over the last `--days` days with ids in time order), and the DailyUsage
rows those replies' finish trips would have written. Then it renders, through Django's
test client with the whole middleware stack, /admin/usage/ as staff (the default 30 days,
90 days, one provider, one person), its CSV, and /settings/usage/ of the busiest person,
and prints each page's median and best render time over `--repeat` renders (after one
warm-up), plus what the dashboard's parts cost. The target: under 500 ms each.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import django

MODELS = [  # provider, model, share of replies, $ per million in / out
    ("openai", "gpt-4o-mini", 0.40, Decimal("0.15"), Decimal("0.60")),
    ("anthropic", "claude-sonnet-4-5", 0.25, Decimal("3"), Decimal("15")),
    ("gemini", "gemini-2.5-flash", 0.15, Decimal("0.30"), Decimal("2.50")),
    ("local", "SmolLM2-135M-Instruct", 0.15, Decimal(0), Decimal(0)),
    ("ollama", "qwen3:8b", 0.05, Decimal(0), Decimal(0)),
]
TURNS_PER_CONVERSATION = 20
BATCH = 5_000
SEED_PREFIX = "bench-usage-"
TARGET_MS = 500
# llm/models.py's index of replies by time (migration 0009), which the 15-minute health
# window and the latency sample read along; --without-index times the pages without it.
INDEX_SQL = (
    "CREATE INDEX {name} ON llm_message (created_at) WHERE role = 'assistant'",
    "DROP INDEX {name}",
)
INDEX_NAME = "reply_created"


def _setup(temp: str | None) -> None:
    if temp is not None:
        os.environ["DATA_DIR"] = temp  # settings put SQLite (and dev secrets) there
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coppertone.settings")
    django.setup()
    from django.conf import settings

    settings.DEBUG = False  # no query log: time what production would spend
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]


def _migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


@contextmanager
def _stored_times() -> Iterator[None]:
    """Let bulk inserts keep the seed's created_at/updated_at instead of 'now'."""
    from llm.models import Conversation, Message

    fields = [
        model._meta.get_field(name)
        for model in (Message, Conversation)
        for name in ("created_at", "updated_at")
    ]
    saved = [(f, f.auto_now, f.auto_now_add) for f in fields]  # type: ignore[union-attr]
    for f in fields:
        f.auto_now = f.auto_now_add = False  # type: ignore[union-attr]
    try:
        yield
    finally:
        for f, auto_now, auto_now_add in saved:
            f.auto_now, f.auto_now_add = auto_now, auto_now_add  # type: ignore[union-attr]


def _seeded(messages: int, users: int) -> bool:
    from accounts.models import User
    from llm.models import Message

    return (
        User.objects.filter(username__startswith=SEED_PREFIX, role=User.Role.CLIENT).count()
        == users
        and Message.objects.count() == messages
    )


def _wipe() -> None:
    from django.db import connection

    from accounts.models import User
    from llm.models import Conversation, DailyUsage, Message

    tables = [m._meta.db_table for m in (Message, Conversation, DailyUsage)]
    with connection.cursor() as cursor:
        for table in tables:  # faster than a cascade through the ORM
            cursor.execute(f"DELETE FROM {connection.ops.quote_name(table)}")
    User.objects.filter(username__startswith=SEED_PREFIX).delete()


def seed(messages: int, users: int, days: int) -> float:
    """Insert the seed; seconds it took."""
    from django.db import transaction
    from django.utils import timezone

    from accounts.models import User
    from llm.models import Conversation, DailyUsage, Message

    started = time.perf_counter()
    rng = random.Random(7)
    people = User.objects.bulk_create(
        User(username=f"{SEED_PREFIX}{n:04d}", password="!", role=User.Role.CLIENT)
        for n in range(users)
    )
    User.objects.create_user(f"{SEED_PREFIX}staff", password="!", role=User.Role.STAFF)
    # Some people use the hub far more than others (a long tail).
    weights = [1 / (n + 1) ** 0.8 for n in range(users)]
    turns = messages // 2
    now = timezone.now()
    first = now - dt.timedelta(days=days)
    step = (now - first) / max(turns, 1)
    rollup: dict[tuple[int, dt.date, str, str], list[Any]] = {}
    owners = rng.choices(people, weights, k=-(-turns // TURNS_PER_CONVERSATION))
    with _stored_times(), transaction.atomic():
        made = Conversation.objects.bulk_create(
            (
                Conversation(user=owner, title="Bench", created_at=first, updated_at=now)
                for owner in owners
            ),
            batch_size=BATCH,
        )
        conversations: list[tuple[int, int]] = [(c.pk, c.user_id) for c in made]
        batch: list[Message] = []
        for turn in range(turns):
            conversation_id, user_id = conversations[turn // TURNS_PER_CONVERSATION]
            at = first + step * turn
            provider, model, _share, price_in, price_out = rng.choices(
                MODELS, [m[2] for m in MODELS]
            )[0]
            roll = rng.random()
            status = "error" if roll < 0.03 else "stopped" if roll < 0.04 else "complete"
            tokens_in = rng.randint(20, 4000)
            tokens_out = 0 if status == "error" else rng.randint(5, 1200)
            cost = (tokens_in * price_in + tokens_out * price_out) / 1_000_000
            ttft = rng.lognormvariate(5.5, 0.5)
            latency = ttft + tokens_out * rng.uniform(8, 25)
            batch.append(
                Message(
                    conversation_id=conversation_id,
                    role="user",
                    content="A question.",
                    created_at=at,
                    updated_at=at,
                )  # fmt: skip
            )
            batch.append(
                Message(
                    conversation_id=conversation_id,
                    role="assistant",
                    content="An answer.",
                    status=status,
                    provider=provider,
                    model=model,
                    input_tokens=tokens_in,
                    output_tokens=tokens_out,
                    cost=cost.quantize(Decimal("0.000001")),
                    ttft_ms=None if status == "error" else round(ttft, 1),
                    latency_ms=round(latency, 1),
                    created_at=at,
                    updated_at=at,
                    error_code="provider_unavailable" if status == "error" else "",
                )  # fmt: skip
            )
            row = rollup.setdefault(
                (user_id, timezone.localdate(at), provider, model), [0, 0, 0, 0, Decimal(0)]
            )
            row[0] += 1
            row[1] += status == "error"
            row[2] += tokens_in
            row[3] += tokens_out
            row[4] += cost.quantize(Decimal("0.000001"))
            if len(batch) >= BATCH:
                Message.objects.bulk_create(batch)
                batch = []
        if batch:
            Message.objects.bulk_create(batch)
        DailyUsage.objects.bulk_create(
            (
                DailyUsage(
                    user_id=key[0],
                    day=key[1],
                    provider=key[2],
                    model=key[3],
                    requests=r[0],
                    errors=r[1],
                    input_tokens=r[2],
                    output_tokens=r[3],
                    cost=r[4],
                )  # fmt: skip
                for key, r in rollup.items()
            ),
            batch_size=BATCH,
        )
    _analyze()
    return time.perf_counter() - started


def _analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def _timed(render: Callable[[], Any], repeat: int) -> tuple[float, float]:
    render()  # warm-up: templates compiled, connections open
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        render()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), min(times)


def _pages(repeat: int) -> list[tuple[str, float, float]]:
    from django.db.models import Sum
    from django.test import Client

    from accounts.models import User
    from llm.models import DailyUsage

    staff = User.objects.get(username=f"{SEED_PREFIX}staff")
    busiest_id = (
        DailyUsage.objects.values("user_id")
        .annotate(n=Sum("requests"))
        .order_by("-n")
        .values_list("user_id", flat=True)[0]
    )
    busiest = User.objects.get(pk=busiest_id)
    quiet = User.objects.filter(username__startswith=SEED_PREFIX, role="client").last()
    assert quiet is not None
    as_staff, as_person = Client(), Client()
    as_staff.force_login(staff)
    as_person.force_login(busiest)

    def get(client: Client, path: str, **params: str) -> Callable[[], None]:
        def render() -> None:
            response = client.get(path, params)
            assert response.status_code == 200, (path, response.status_code)
            response.content  # noqa: B018  the whole body is rendered

        return render

    cases = [
        ("/admin/usage/ (30 days)", get(as_staff, "/admin/usage/")),
        ("/admin/usage/?days=90", get(as_staff, "/admin/usage/", days="90")),
        ("/admin/usage/?provider=ollama (5%)", get(as_staff, "/admin/usage/", provider="ollama")),
        (
            "/admin/usage/?user=<the quietest>",
            get(as_staff, "/admin/usage/", user=quiet.get_username()),
        ),
        ("/admin/usage/export.csv?days=90", get(as_staff, "/admin/usage/export.csv", days="90")),
        ("/settings/usage/ (the busiest)", get(as_person, "/settings/usage/")),
    ]
    return [(name, *_timed(render, repeat)) for name, render in cases]


def _parts(repeat: int) -> list[tuple[str, float, float]]:
    """What the default dashboard's pieces cost, without the template."""
    from django.utils import timezone

    from llm import staff_usage
    from llm.health import provider_health

    today = timezone.localdate()
    filters = staff_usage.UsageFilter(None, today=today).filters()
    usage = filters.usage()
    rows = staff_usage.table(filters)
    parts: list[tuple[str, Callable[[], Any]]] = [
        ("per day (DailyUsage)", lambda: staff_usage.per_day(usage, filters.since, filters.until)),
        ("per person/provider/model (DailyUsage)", lambda: staff_usage.table(filters)),
        ("latency sample (Message)", lambda: staff_usage.speed(filters, rows)),
        ("provider health, 15 minutes (Message)", lambda: provider_health(timezone.now())),
        ("the whole report", lambda: staff_usage.report(filters)),
    ]
    return [(name, *_timed(run, repeat)) for name, run in parts]


def _print(title: str, rows: list[tuple[str, float, float]]) -> None:
    print(f"\n{title}")
    print(f"  {'':44} {'median':>9} {'best':>9}")
    for name, median, best in rows:
        flag = "" if median < TARGET_MS else f"  over {TARGET_MS} ms"
        print(f"  {name:44} {median:7.1f}ms {best:7.1f}ms{flag}")


def _index(create: bool) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(INDEX_SQL[0 if create else 1].format(name=INDEX_NAME))
    if create:
        _analyze()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--reseed", action="store_true", help="PostgreSQL: seed again")
    parser.add_argument(
        "--without-index", action="store_true", help="also time without reply_created"
    )
    parser.add_argument(
        "--data-dir", help="SQLite: keep the database in this directory (seeded once) instead"
    )
    args = parser.parse_args(argv)
    temp = None
    if not os.environ.get("DATABASE_URL"):
        temp = args.data_dir or tempfile.mkdtemp(prefix="bench-usage-")
    try:
        _setup(temp)
        from django.db import connection

        name = str(connection.settings_dict["NAME"])
        if temp is None and "bench" not in name:
            # The seed replaces every message: never on a database that holds real ones.
            print(f"{name} is not a bench database: name one with 'bench' in it.")
            return 2
        _migrate()
        print(f"database: {connection.vendor} {name}")
        if args.reseed or not _seeded(args.messages, args.users):
            _wipe()
            took = seed(args.messages, args.users, args.days)
            print(f"seeded {args.messages:,} messages for {args.users} people in {took:.0f} s")
        else:
            print(f"reusing the seed of {args.messages:,} messages")
        from llm.models import DailyUsage

        print(f"DailyUsage rows: {DailyUsage.objects.count():,}")
        _print("pages (the test client, every middleware):", _pages(args.repeat))
        _print("the default dashboard's parts:", _parts(args.repeat))
        if args.without_index:
            _index(create=False)
            try:
                _print(f"pages without the {INDEX_NAME} index:", _pages(args.repeat))
                _print("parts without it:", _parts(args.repeat))
            finally:
                _index(create=True)
    finally:
        if temp is not None and not args.data_dir:
            shutil.rmtree(temp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
