"""Two uvicorn worker processes on PostgreSQL + Redis: a reply started through one is
followed and stopped through the other, and the other learns when the first dies.

Skipped on the embedded defaults (SQLite, no Redis): there the hub is one process.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from accounts.models import ApiToken, User
from llm.models import Message
from tests.engine.conftest import configure
from tests.fakes.openai_server import FakeOpenAI

ROOT = Path(__file__).resolve().parents[1]
SHARED = bool(settings.REDIS_URL) and "postgresql" in settings.DATABASES["default"]["ENGINE"]

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not SHARED, reason="needs DATABASE_URL=postgres://... and REDIS_URL"),
]

Event = tuple[int, str, dict[str, Any]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Worker:
    """`uvicorn coppertone.asgi:application` in a process of its own, on the test database."""

    def __init__(self, name: str, log_dir: Path) -> None:
        db = connection.settings_dict
        self.port = _free_port()
        env = {
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "REDIS_URL": settings.REDIS_URL,
            "SECRET_KEY": settings.SECRET_KEY,
            "LLM_ENCRYPTION_KEYS": ",".join(settings.LLM_ENCRYPTION_KEYS),
            "LLM_PRIVATE_HOSTS": "127.0.0.0/8",
            "LLM_MAX_RETRIES": "0",
            "LLM_SHUTDOWN_GRACE_SECONDS": "1",
        }
        self.log = log_dir / f"{name}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "coppertone.asgi:application", "--host",
             "127.0.0.1", "--port", str(self.port), "--lifespan", "on", "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _ = self.request("GET", "/api/v1/health")
                if status == 200:
                    return
            except OSError:
                pass
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.1)

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        conn = self.connect()
        payload = json.dumps(body) if body is not None else None
        conn.request(method, path, body=payload, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response.status, json.loads(data) if data else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def read_events(response: http.client.HTTPResponse, deltas: int = 0) -> Iterator[Event]:
    """A reply's SSE events as (seq, name, data), to its end or until `deltas` deltas."""
    seen = 0
    block: dict[str, str] = {}
    for raw in response:
        line = raw.decode().rstrip("\n")
        if line:
            key, _, value = line.partition(": ")
            block[key] = value
            continue
        event = (int(block["id"]), block["event"], json.loads(block["data"]))
        block = {}
        yield event
        seen += event[1] == "delta"
        if event[1] in ("done", "error") or (deltas and seen >= deltas):
            return


def text(events: list[Event]) -> str:
    return "".join(data["text"] for _s, name, data in events if name == "delta")


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[Worker, Worker]]:
    cache.clear()
    started: list[Worker] = []
    try:
        started = [Worker("a", tmp_path), Worker("b", tmp_path)]
        yield started[0], started[1]
    finally:
        for worker in started:
            worker.stop()


@pytest.fixture
def token(alice: User, fake_openai: FakeOpenAI) -> dict[str, str]:
    configure(alice, fake_openai)
    _, raw = ApiToken.issue(alice, "workers")
    return {"Authorization": f"Bearer {raw}", "Content-Type": "application/json"}


def start_on(worker: Worker, auth: dict[str, str], deltas: int = 2) -> tuple[int, list[Event]]:
    """Ask `worker` for a streamed reply, read a few deltas (0: only its start), then
    leave (it runs on)."""
    conn = worker.connect()
    body = json.dumps({"message": "Count", "provider": "openai", "stream": True})
    conn.request("POST", "/api/v1/chat", body=body, headers=auth)
    response = conn.getresponse()
    assert response.status == 200
    seen = list(read_events(response, deltas)) if deltas else [next(read_events(response))]
    conn.close()
    return seen[0][2]["message_id"], seen


def follow_on(worker: Worker, auth: dict[str, str], message_id: int, after: int) -> Any:
    conn = worker.connect()
    conn.request(
        "GET", f"/api/v1/replies/{message_id}/events",
        headers={**auth, "Last-Event-ID": str(after)},
    )  # fmt: skip
    response = conn.getresponse()
    assert response.status == 200
    return response


def test_a_reply_started_on_one_worker_is_followed_and_stopped_on_another(
    workers: tuple[Worker, Worker], token: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    a, b = workers
    fake_openai.reply("word " * 400, chunks=["word "] * 400, delay=0.03)
    message_id, seen = start_on(a, token)

    following = follow_on(b, token, message_id, seen[-1][0])
    events = list(read_events(following, deltas=3))
    status, body = b.request("POST", f"/api/v1/replies/{message_id}/stop", headers=token)
    events += list(read_events(following))

    assert status == 200 and body["status"] == "stopped"
    assert events[-1][1] == "done" and events[-1][2]["status"] == "stopped"
    assert events[0][0] > seen[-1][0]
    row = Message.objects.get(pk=message_id)
    assert row.status == "stopped"
    assert text(seen) + text(events) == row.content == body["content"]


def test_a_young_reply_with_a_slow_first_token_is_followed_not_taken_for_dead(
    workers: tuple[Worker, Worker], token: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    a, b = workers
    fake_openai.reply("Worth the wait.", first_byte_delay=2.0)
    message_id, (start,) = start_on(a, token, deltas=0)

    events = list(read_events(follow_on(b, token, message_id, start[0])))
    assert events[-1][1] == "done" and events[-1][2]["status"] == "complete"
    assert text(events) == "Worth the wait."


def test_a_follower_learns_within_seconds_that_the_reply_s_worker_died(
    workers: tuple[Worker, Worker], token: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    a, b = workers
    fake_openai.reply("word " * 400, chunks=["word "] * 400, delay=0.03)
    message_id, seen = start_on(a, token)
    following = follow_on(b, token, message_id, seen[-1][0])
    list(read_events(following, deltas=2))  # it is live on b

    ended: list[Event] = []
    reader = threading.Thread(target=lambda: ended.extend(read_events(following)))
    reader.start()
    a.process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    reader.join(15)

    assert ended and ended[-1][1] == "error", ended[-1:]
    assert time.monotonic() - killed < 5.0
    assert ended[-1][2]["error"]["message"] == "interrupted by a server restart"
    row = Message.objects.get(pk=message_id)
    assert (row.status, row.error_message) == ("error", "interrupted by a server restart")


def test_sigterm_stops_a_worker_s_replies_cleanly_within_the_grace_period(
    workers: tuple[Worker, Worker], token: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    a, b = workers
    fake_openai.reply("word " * 400, chunks=["word "] * 400, delay=0.03)
    message_id, seen = start_on(a, token)
    following = follow_on(b, token, message_id, seen[-1][0])
    # A follower on the stopping worker itself holds a connection open there: uvicorn
    # waits for it, so the replies must end at the signal, not after the connections.
    local: list[Event] = []
    on_a = follow_on(a, token, message_id, seen[-1][0])
    reader = threading.Thread(target=lambda: local.extend(read_events(on_a)))
    reader.start()

    a.process.send_signal(signal.SIGTERM)
    events = list(read_events(following))
    reader.join(10)
    assert local and local[-1][1] == "done" and local[-1][2]["status"] == "stopped"
    # uvicorn re-raises the signal it caught once it has shut down cleanly.
    assert a.process.wait(10) in (0, -signal.SIGTERM)

    assert events[-1][1] == "done" and events[-1][2]["status"] == "stopped"
    row = Message.objects.get(pk=message_id)
    assert row.status == "stopped"
    assert text(seen) + text(events) == row.content
    assert not Message.objects.filter(status="streaming").exists()
