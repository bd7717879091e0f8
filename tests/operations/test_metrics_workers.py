"""Two uvicorn worker processes sharing one PROMETHEUS_MULTIPROC_DIR: /metrics on either
adds up both; a killed worker's live gauge goes, its counts stay; a fresh run starts
from nothing.

The workers share a SQLite file of their own (DATA_DIR in a temporary directory), set
up by `manage.py migrate` and bench.seed, and talk to the test's fake OpenAI server.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from bench.procs import free_port
from tests.fakes.openai_server import FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]
MODEL = "mock-t10-d0"  # bench.seed's openai_compatible model
TURNS = ("coppertone_turns_total", (MODEL, "openai_compatible", "complete"))  # by label name

pytestmark = pytest.mark.timeout(180)


def _environment(tmp: Path) -> dict[str, str]:
    skip = ("DJANGO_", "PYTEST_", "DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env.update(
        DATA_DIR=str(tmp / "data"),
        PROMETHEUS_MULTIPROC_DIR=str(tmp / "prometheus"),
        SECRET_KEY=settings.SECRET_KEY,
        LLM_ENCRYPTION_KEYS=",".join(settings.LLM_ENCRYPTION_KEYS),
        LLM_PRIVATE_HOSTS="127.0.0.0/8",
        LLM_MAX_RETRIES="0",
        LLM_SHUTDOWN_GRACE_SECONDS="1",
    )
    return env


class Worker:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "coppertone.asgi:application", "--host",
             "127.0.0.1", "--port", str(self.port), "--lifespan", "on", "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.log = log
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.request("GET", "/api/v1/health")[0] == 200:
                    return
            except OSError:
                pass
            assert self.process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.1)

    def request(
        self, method: str, path: str, body: Any = None, token: str = ""
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response.status, data

    def chat(self, token: str) -> None:
        body = {
            "model": f"openai_compatible/{MODEL}",
            "messages": [{"role": "user", "content": "Hi"}],
        }
        status, data = self.request("POST", "/v1/chat/completions", body, token)
        assert status == 200, data

    def metrics(self) -> dict[tuple[str, tuple[str, ...]], float]:
        status, data = self.request("GET", "/metrics")
        assert status == 200, data
        return {
            (s.name, tuple(v for _k, v in sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(data.decode())
            for s in family.samples
        }

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)  # reaped: its pid is gone for the liveness check


@pytest.fixture
def environment(tmp_path: Path, fake_openai: FakeOpenAI) -> Iterator[tuple[dict[str, str], str]]:
    fake_openai.require_key = False
    env = _environment(tmp_path)
    (tmp_path / "data").mkdir()
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT, env=env, check=True, timeout=120,
    )  # fmt: skip
    seeded = subprocess.run(
        [sys.executable, "-m", "bench.seed", fake_openai.base_url],
        cwd=ROOT, env=env, check=True, timeout=60, capture_output=True, text=True,
    )  # fmt: skip
    yield env, json.loads(seeded.stdout.strip().splitlines()[-1])["token"]


def test_two_workers_add_up_and_a_dead_one_keeps_its_counts(
    environment: tuple[dict[str, str], str], fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    env, token = environment
    workers: list[Worker] = []
    try:
        a = Worker(env, tmp_path / "a.log")
        workers.append(a)
        b = Worker(env, tmp_path / "b.log")
        workers.append(b)
        a.chat(token)
        b.chat(token)
        b.chat(token)

        # Either worker answers for both.
        assert a.metrics()[TURNS] == 3
        assert b.metrics()[TURNS] == 3
        files = {p.name for p in (tmp_path / "prometheus").glob("counter_*.db")}
        assert {f"counter_{a.process.pid}.db", f"counter_{b.process.pid}.db"} <= files

        # A reply live on b shows on a; once b is killed, its live gauge goes.
        fake_openai.reply("slow " * 20, chunks=["slow "] * 20, delay=0.5)
        conn = http.client.HTTPConnection("127.0.0.1", b.port, timeout=20)
        body = {"model": f"openai_compatible/{MODEL}", "stream": True,
                "messages": [{"role": "user", "content": "Slowly"}]}  # fmt: skip
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn.request("POST", "/v1/chat/completions", json.dumps(body), headers)
        response = conn.getresponse()
        assert response.status == 200
        response.readline()
        assert a.metrics()[("coppertone_live_replies", ())] == 1
        b.kill()
        conn.close()
        after = a.metrics()
        assert after[("coppertone_live_replies", ())] == 0
        assert after[TURNS] == 3  # b's two turns are still counted
        a.kill()

        # A fresh run (nobody holds the directory any more) starts from nothing.
        c = Worker(env, tmp_path / "c.log")
        workers.append(c)
        fresh = c.metrics()
        assert TURNS not in fresh
        assert fresh[("coppertone_live_replies", ())] == 0
    finally:
        for worker in workers:
            worker.kill()
