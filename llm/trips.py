"""Database trips: synchronous ORM or SQL work run off the event loop, one call a trip.

The hot path's database work (a token lookup, a turn's start and finish) runs on this
module's own thread pool rather than Django's one sync thread or the loop's default
executor (cores + 4 threads): the trips mostly wait on the database, so 150 turns that
start at once then queue for milliseconds, not for a hundred. Each thread keeps its
own database connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import DatabaseError, close_old_connections

P = ParamSpec("P")
T = TypeVar("T")

DB_THREADS = 16
_executor = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="db-trip")


def trip(fn: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """`fn` as an awaitable that runs on the trip pool.

    A trip that the database failed drops its thread's connection: worker threads
    never see request_started/finished, so nothing else would replace a connection
    the database dropped (a restart, a failover).
    """

    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except DatabaseError:
            close_old_connections()
            raise

    return sync_to_async(run, thread_sensitive=False, executor=_executor)
