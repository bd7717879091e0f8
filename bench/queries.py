"""Database queries per turn, counted on every connection of every thread.

`python -m bench.queries <user id> <API token>` (with the run's environment)
runs real turns through `llm.turns.run_turn` against the mock, for a 10-token and a
2,000-token reply, and, when the OpenAI-compatible view is routed, the same through
`/v1/chat/completions` in-process (authentication and middleware included). It prints
one JSON line.

Django's CaptureQueriesContext sees one thread's connection only, and the engine
runs its trips in worker threads, so this counts with an execute wrapper attached to
every connection as it is created, in whichever thread, and the statements of the
async pool on PostgreSQL (llm/pg_trips.py) through its observer.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import django

# Statements that only frame a transaction; reported apart from the queries proper.
FRAMING = ("BEGIN", "SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK", "COMMIT")


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statements: list[str] = []

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        with self.lock:
            self.statements.append(" ".join(str(sql).split())[:120])
        return execute(sql, params, many, context)

    def observe(self, sql: str) -> None:
        """A statement of the async hot path on PostgreSQL (llm/pg_trips.py)."""
        with self.lock:
            self.statements.append(" ".join(sql.split())[:120])

    def attach(self, sender: Any = None, connection: Any = None, **kwargs: Any) -> None:
        if connection is not None and self not in connection.execute_wrappers:
            connection.execute_wrappers.append(self)

    def since(self, mark: int) -> dict[str, Any]:
        with self.lock:
            taken = self.statements[mark:]
        framing = [s for s in taken if s.upper().startswith(FRAMING)]
        queries = [s for s in taken if not s.upper().startswith(FRAMING)]
        return {"queries": len(queries), "framing": len(framing), "statements": queries}


async def engine_turn(counter: Counter, user: Any, tokens: int) -> dict[str, Any]:
    from llm.turns import run_turn

    mark = len(counter.statements)
    turn = run_turn(
        user, "Count my queries, please.", provider="openai_compatible", model=f"mock-t{tokens}-d0"
    )
    received = 0
    async for event in turn:
        received += len(getattr(event, "text", "") or "")
    # Progress writes run in the background: let any that were started land.
    await asyncio.sleep(0.2)
    counted = counter.since(mark)
    counted["status"] = turn.result.status if turn.result else "none"
    counted["reply_chars"] = received
    return counted


async def v1_turn(counter: Counter, token: str, tokens: int) -> dict[str, Any] | None:
    from django.conf import settings
    from django.test import AsyncClient
    from django.urls import Resolver404, resolve

    # Django's test client always says Host: testserver.
    if "testserver" not in settings.ALLOWED_HOSTS:
        settings.ALLOWED_HOSTS.append("testserver")

    try:
        resolve("/v1/chat/completions")
    except Resolver404:
        return None
    client = AsyncClient()
    mark = len(counter.statements)
    response = await client.post(
        "/v1/chat/completions",
        {
            "model": f"openai_compatible/mock-t{tokens}-d0",
            "messages": [{"role": "user", "content": "Count my queries, please."}],
        },
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    await asyncio.sleep(0.2)
    counted = counter.since(mark)
    counted["http_status"] = response.status_code
    if response.status_code != 200:
        counted["body"] = response.content[:300].decode(errors="replace")
    return counted


async def measure(user_id: int, token: str) -> dict[str, Any]:
    from django.db import connections
    from django.db.backends.signals import connection_created

    from accounts.models import User
    from llm import pg_trips

    counter = Counter()
    pg_trips.observer = counter.observe
    connection_created.connect(counter.attach)
    for connection in connections.all():
        counter.attach(connection=connection)
    user = await User.objects.aget(pk=user_id)
    result: dict[str, Any] = {"database": connections["default"].vendor}
    # One turn first, so that first-use work (imports, prices, sessions) is not counted.
    await engine_turn(counter, user, 10)
    for tokens in (10, 2000):
        result[f"engine_{tokens}"] = await engine_turn(counter, user, tokens)
    if await v1_turn(counter, token, 10) is not None:  # warm the view's path too
        for tokens in (10, 2000):
            result[f"v1_{tokens}"] = await v1_turn(counter, token, tokens)
    return result


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coppertone.settings")
    django.setup()
    user_id, token = int(sys.argv[1]), sys.argv[2]
    print(json.dumps(asyncio.run(measure(user_id, token))))


if __name__ == "__main__":
    main()
