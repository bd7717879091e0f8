"""The cap per upstream: at most `limit` at once, served in arrival order, Stop leaves.

Every behaviour runs on both backends: in-process, and shared on Redis (where REDIS_URL
is set, as in CI). The Redis-only tests run the other side in processes of their own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from llm import capacity

REDIS_URL = os.environ.get("REDIS_URL", "")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="needs REDIS_URL (a Redis server)")
ROOT = Path(__file__).resolve().parents[2]
# Safety nets only: nothing here asserts how fast anything is.
PATIENCE = 20.0


@pytest.fixture(autouse=True)
def _fresh_limits() -> None:
    """Replaces tests/engine/conftest.py's: its cache.clear() is a FLUSHDB on the Redis
    cache, which would wipe the queues of any other run sharing this Redis meanwhile."""


@pytest.fixture
def key() -> Iterator[str]:
    """A key of this test's own, so tests never share a queue (and its Redis keys go)."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    if REDIS_URL:
        client = redis.Redis.from_url(REDIS_URL)
        client.delete(
            *(f"{capacity.PREFIX}{name}:{part}" for part in ("queue", "waiting", "holders"))
        )
        client.close()


@pytest.fixture(
    params=[pytest.param("local", id="in-process"), pytest.param("redis", marks=needs_redis)]
)
async def backend(request: pytest.FixtureRequest, settings: Any) -> AsyncIterator[str]:
    settings.REDIS_URL = REDIS_URL if request.param == "redis" else ""
    yield request.param
    await capacity.close()


@pytest.fixture
async def shared(settings: Any) -> AsyncIterator[None]:
    if not REDIS_URL:
        pytest.skip("needs REDIS_URL (a Redis server)")
    settings.REDIS_URL = REDIS_URL
    yield
    await capacity.close()


async def until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(PATIENCE):
        while not predicate():
            await asyncio.sleep(0.005)


class User:
    """One request through the cap: it enters, stays until told to leave, records all."""

    def __init__(
        self, key: str, limit: int, name: int, log: list[int], *, shared: bool = True
    ) -> None:
        self.name = name
        self.aheads: list[int] = []
        self.inside = False
        self.leave = asyncio.Event()
        self.task = asyncio.create_task(self._run(key, limit, log, shared))

    async def _run(self, key: str, limit: int, log: list[int], shared: bool) -> None:
        async with capacity.slot(key, limit, waiting=self.aheads.append, shared=shared):
            self.inside = True
            log.append(self.name)
            try:
                await self.leave.wait()
            finally:
                self.inside = False

    @property
    def placed(self) -> bool:
        """Holding a slot, or queued (and told so)."""
        return self.inside or bool(self.aheads)


async def arrive(
    key: str, limit: int, count: int, log: list[int], *, shared: bool = True
) -> list[User]:
    """`count` users, each arriving once the one before holds or is queued."""
    users: list[User] = []
    for name in range(count):
        user = User(key, limit, name, log, shared=shared)
        await until(lambda u=user: u.placed)  # type: ignore[misc]
        users.append(user)
    return users


async def finish(user: User) -> None:
    user.leave.set()
    async with asyncio.timeout(PATIENCE):
        await user.task


async def test_a_cap_of_two_serves_five_in_arrival_order(backend: str, key: str) -> None:
    served: list[int] = []
    users = await arrive(key, 2, 5, served)
    assert served == [0, 1]
    assert await capacity.depth(key) == (2, 3)
    assert [u.aheads for u in users] == [[], [], [0], [1], [2]]

    for leaving, next_in in [(0, 2), (1, 3), (2, 4)]:
        await finish(users[leaving])
        await until(lambda n=next_in: users[n].inside)  # type: ignore[misc]
        assert sum(u.inside for u in users) == 2
    assert served == [0, 1, 2, 3, 4]
    # Each waiter was told its place once queued, then every time it moved up.
    assert [u.aheads for u in users] == [[], [], [0], [1, 0], [2, 1, 0]]

    for user in users[3:]:
        await finish(user)
    assert await capacity.depth(key) == (0, 0)


async def test_stop_while_queued_leaves_the_queue_and_the_rest_move_up(
    backend: str, key: str
) -> None:
    served: list[int] = []
    holder, first, stopped, last = await arrive(key, 1, 4, served)
    assert last.aheads == [2]

    stopped.task.cancel()
    async with asyncio.timeout(PATIENCE):
        with pytest.raises(asyncio.CancelledError):
            await stopped.task
    await until(lambda: last.aheads == [2, 1])
    assert await capacity.depth(key) == (1, 2)

    await finish(holder)
    await until(lambda: first.inside)
    assert last.aheads == [2, 1, 0]
    await finish(first)
    await until(lambda: last.inside)
    await finish(last)
    assert served == [0, 1, 3]
    assert stopped.aheads == [1]  # never told anything after it left
    assert await capacity.depth(key) == (0, 0)


async def test_stop_while_holding_releases_the_slot(backend: str, key: str) -> None:
    served: list[int] = []
    holder, waiter = await arrive(key, 1, 2, served)
    holder.task.cancel()
    await until(lambda: waiter.inside)
    await finish(waiter)
    assert served == [0, 1]
    assert await capacity.depth(key) == (0, 0)


async def test_an_error_inside_the_block_releases_the_slot(backend: str, key: str) -> None:
    async def fail() -> None:
        async with capacity.slot(key, 1):
            raise ValueError("the upstream broke")

    for _ in range(3):  # it would stay taken after the first with a leak
        with pytest.raises(ValueError, match="the upstream broke"):
            await asyncio.wait_for(fail(), PATIENCE)
    served: list[int] = []
    (user,) = await arrive(key, 1, 1, served)
    assert user.inside
    await finish(user)
    assert await capacity.depth(key) == (0, 0)


async def test_a_stop_during_the_first_look_leaves_nothing_behind(backend: str, key: str) -> None:
    served: list[int] = []
    (holder,) = await arrive(key, 1, 1, served)
    for _ in range(5):
        comer = User(key, 1, 9, served)
        await asyncio.sleep(0)  # cancelled at its first await, whatever that is
        comer.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(comer.task, PATIENCE)
    await finish(holder)

    async def queue_drained() -> bool:
        return await capacity.depth(key) == (0, 0)

    async with asyncio.timeout(PATIENCE):
        while not await queue_drained():
            await asyncio.sleep(0.01)
    assert served == [0]


async def test_limit_zero_is_no_cap_and_no_io(settings: Any, key: str) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # nothing listens there: any I/O would fail
    told: list[int] = []
    inside = 0
    most = 0

    async def user() -> None:
        nonlocal inside, most
        async with capacity.slot(key, 0, waiting=told.append):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.wait_for(asyncio.gather(*(user() for _ in range(20))), PATIENCE)
    assert most == 20
    assert told == []


async def test_shared_false_stays_in_process_even_with_redis(settings: Any, key: str) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # would fail if it were used
    served: list[int] = []
    users = await arrive(key, 1, 3, served, shared=False)
    assert await capacity.depth(key, shared=False) == (1, 2)
    for user in users:
        await finish(user)
    assert served == [0, 1, 2]
    assert [u.aheads for u in users] == [[], [0], [1, 0]]


def test_each_event_loop_keeps_its_own_queues(settings: Any, key: str) -> None:
    settings.REDIS_URL = ""

    async def one_loop() -> list[int]:
        served: list[int] = []
        users = await arrive(key, 1, 2, served)
        for user in users:
            await finish(user)
        return served

    # Fresh loops one after another: nothing is bound to the loop that came first.
    assert asyncio.run(one_loop()) == [0, 1]
    assert asyncio.run(one_loop()) == [0, 1]


# --- across processes (Redis) ---------------------------------------------------------

CHILD = """
import asyncio, json, sys, time
from django.conf import settings
url, key, limit, times, hold = sys.argv[1:]
limit, times, hold = int(limit), int(times), float(hold)
settings.configure(REDIS_URL=url)
from llm import capacity

def say(*what):
    print(json.dumps([*what, time.monotonic()]), flush=True)

async def main():
    say("ready")
    for i in range(times):
        async with capacity.slot(key, limit, waiting=lambda ahead: say("waiting", ahead)):
            say("enter", i)
            await asyncio.sleep(hold)
            say("exit", i)
    await capacity.close()
    say("done")

asyncio.run(main())
"""


class Child:
    """A process of its own taking the cap `times` times, saying what happens as it does.

    Times are time.monotonic(), one clock for every process on the machine.
    """

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.said: list[list[Any]] = []

    async def until(self, *what: Any) -> list[Any]:
        """Read what the child says up to the first line that starts with `what`."""
        assert self.process.stdout is not None
        async with asyncio.timeout(PATIENCE):
            while True:
                line = await self.process.stdout.readline()
                assert line, f"the child ended early, after {self.said}"
                said = json.loads(line)
                self.said.append(said)
                if said[: len(what)] == list(what):
                    return said

    def times(self, what: str) -> list[float]:
        return [said[-1] for said in self.said if said[0] == what]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)

    async def wait(self) -> int:
        async with asyncio.timeout(PATIENCE):
            await self.process.communicate()  # to the end of its output: the pipe closes
        assert self.process.returncode is not None
        return self.process.returncode


Spawn = Callable[..., Awaitable[Child]]


@pytest.fixture
async def spawn(shared: None, key: str) -> AsyncIterator[Spawn]:
    """Start a Child on the test's key; whatever still runs at the end is killed."""
    started: list[Child] = []

    async def start(*, limit: int = 1, times: int = 1, hold: float = 0) -> Child:
        args = [REDIS_URL, key, str(limit), str(times), str(hold)]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE
        )
        child = Child(process)
        started.append(child)
        await child.until("ready")
        return child

    yield start
    for child in started:
        if child.process.returncode is None:
            child.kill()
        await child.wait()


async def test_two_processes_share_one_slot_and_never_overlap(spawn: Spawn) -> None:
    children = [await spawn(times=15, hold=0.005) for _ in range(2)]
    for child in children:
        await child.until("done")
        assert await child.wait() == 0
    spans = sorted(
        span
        for child in children
        for span in zip(child.times("enter"), child.times("exit"), strict=True)
    )
    assert len(spans) == 30
    for (_, exited), (entered, _) in zip(spans, spans[1:], strict=False):
        assert entered >= exited  # the next one in only after the last one out


async def test_processes_are_served_in_arrival_order(spawn: Spawn, key: str) -> None:
    served: list[int] = []
    (holder,) = await arrive(key, 1, 1, served)
    first = await spawn(hold=0.05)
    await first.until("waiting", 0)
    second = await spawn(hold=0.05)
    await second.until("waiting", 1)
    here = User(key, 1, 3, served)
    await until(lambda: here.placed)
    assert here.aheads == [2]

    await finish(holder)
    await until(lambda: here.inside)
    here_entered = time.monotonic()
    await finish(here)
    for child in (first, second):
        await child.until("done")
    (first_in,), (first_out,) = first.times("enter"), first.times("exit")
    (second_in,), (second_out,) = second.times("enter"), second.times("exit")
    assert first_in < first_out <= second_in < second_out <= here_entered
    assert here.aheads == [2, 1, 0]
    assert [s[1] for s in second.said if s[0] == "waiting"] == [1, 0]


async def test_a_killed_holder_frees_its_slot_after_its_lease(spawn: Spawn, key: str) -> None:
    child = await spawn(hold=3600)
    await child.until("enter")
    served: list[int] = []
    (waiter,) = await arrive(key, 1, 1, served)
    assert waiter.aheads == [0] and not waiter.inside

    child.kill()
    killed = time.monotonic()
    await child.wait()
    await until(lambda: waiter.inside)
    # Nobody released it: the lease ran out (plus a poll's worth of slack).
    assert time.monotonic() - killed <= capacity.LEASE_SECONDS + 2 * capacity.POLL_SECONDS + 1
    await finish(waiter)


async def test_a_killed_waiter_does_not_block_the_queue(spawn: Spawn, key: str) -> None:
    served: list[int] = []
    (holder,) = await arrive(key, 1, 1, served)
    child = await spawn()
    await child.until("waiting", 0)
    child.kill()
    await child.wait()
    behind = User(key, 1, 1, served)
    await until(lambda: behind.placed)
    assert behind.aheads == [1]

    await finish(holder)
    await until(lambda: behind.inside)  # once the dead ticket's lease ran out
    # The dead one stayed "ahead" until then, and its lease ended in the look that let
    # this one in.
    assert behind.aheads == [1]
    await finish(behind)
    assert served == [0, 1]
