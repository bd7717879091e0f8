"""Request ids and JSON logs: the id in X-Request-ID is the one on the request's line
and on its turn's line, over /api/v1, /v1 and a WebSocket; no key reaches a line."""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.cache import cache
from django.test import Client

from accounts.models import ApiToken, User
from coppertone.asgi import application
from llm.logs import JsonFormatter, RequestIdFilter
from llm.redaction import RedactSecrets
from tests.engine.conftest import configure
from tests.fakes.openai_server import FakeOpenAI
from tests.live import serving

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("replies_end")]

ROOT = Path(__file__).resolve().parents[2]
GENERATED = re.compile(r"[0-9a-f]{32}")
KEY = "sk-proj-abcdefghijklmnopqrstuvwx"


class Lines:
    """Every log line written while the test runs, through the JSON formatter."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def all(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def of(self, logger: str, **fields: Any) -> list[dict[str, Any]]:
        """The lines of `logger` with these fields, waiting a little for the first: a
        request's line is written just after its response has gone."""
        deadline = time.monotonic() + 2
        while True:
            found = [
                line
                for line in self.all()
                if line["logger"] == logger and all(line.get(k) == v for k, v in fields.items())
            ]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.01)


@pytest.fixture
def lines() -> Iterator[Lines]:
    captured = Lines()
    handler = logging.StreamHandler(captured.stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactSecrets())
    root, access = logging.getLogger(), logging.getLogger("coppertone.access")
    level = access.level
    access.setLevel(logging.INFO)  # plain mode leaves the request lines to the server
    root.addHandler(handler)
    yield captured
    root.removeHandler(handler)
    access.setLevel(level)


@pytest.fixture
def live(transactional_db: None, settings: Any) -> Iterator[tuple[str, int]]:
    cache.clear()
    settings.LLM_MAX_RETRIES = 0
    with serving() as url:
        parts = urlsplit(url)
        yield str(parts.hostname), int(parts.port or 80)


@pytest.fixture
def token(alice: User, fake_openai: FakeOpenAI) -> str:
    configure(alice, fake_openai)
    _, raw = ApiToken.issue(alice, "logs")
    return raw


def call(
    live: tuple[str, int], method: str, path: str, body: Any = None, **headers: str
) -> tuple[http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPConnection(*live, timeout=20)
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response, data


def test_a_turn_over_the_api_logs_its_line_with_the_id_its_response_carries(
    live: tuple[str, int], token: str, alice: User, lines: Lines
) -> None:
    response, data = call(
        live,
        "POST",
        "/api/v1/chat",
        {"message": "Hello", "provider": "openai"},
        Authorization=f"Bearer {token}",
        **{"Content-Type": "application/json"},
    )
    assert response.status == 200, data
    request_id = response.headers["X-Request-ID"]
    assert GENERATED.fullmatch(request_id)
    body = json.loads(data)

    (turn,) = lines.of("coppertone.turns", message_id=body["message_id"])
    assert turn["request_id"] == request_id
    assert turn["level"] == "INFO" and turn["time"]
    assert (turn["provider"], turn["model"], turn["status"]) == ("openai", "gpt-4o", "complete")
    assert turn["input_tokens"] == body["usage"]["input_tokens"]
    assert turn["output_tokens"] == body["usage"]["output_tokens"]
    assert turn["user_id"] == alice.pk and turn["error_code"] is None
    assert turn["ttft_ms"] >= 0 and turn["latency_ms"] >= turn["ttft_ms"]
    assert isinstance(turn["cost"], float)

    (line,) = lines.of("coppertone.access", request_id=request_id)
    assert (line["method"], line["path"], line["status"]) == ("POST", "/api/v1/chat", 200)
    assert line["user_id"] == alice.pk and line["duration_ms"] > 0


def test_a_sane_incoming_id_is_kept_on_v1_and_follows_its_turn(
    live: tuple[str, int], token: str, alice: User, lines: Lines
) -> None:
    body = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}
    response, data = call(
        live,
        "POST",
        "/v1/chat/completions",
        body,
        Authorization=f"Bearer {token}",
        **{"Content-Type": "application/json", "X-Request-ID": "client-42.a:b_c"},
    )
    assert response.status == 200, data
    assert response.headers["X-Request-ID"] == "client-42.a:b_c"
    (turn,) = lines.of("coppertone.turns", request_id="client-42.a:b_c")
    assert turn["status"] == "complete" and turn["user_id"] == alice.pk
    (line,) = lines.of("coppertone.access", request_id="client-42.a:b_c")
    assert (line["path"], line["status"], line["user_id"]) == (
        "/v1/chat/completions",
        200,
        alice.pk,
    )


@pytest.mark.parametrize(
    "sent",
    ["has space", "x" * 129, "semi;colon", "caf\u00e9", KEY, "Bearer abcdefghijkl", ""],
)
def test_an_incoming_id_that_is_not_a_plain_token_is_replaced(
    live: tuple[str, int], sent: str
) -> None:
    conn = http.client.HTTPConnection(*live, timeout=20)
    conn.putrequest("GET", "/api/v1/health")
    conn.putheader("X-Request-ID", sent.encode())
    conn.endheaders()
    response = conn.getresponse()
    response.read()
    conn.close()
    assert GENERATED.fullmatch(response.headers["X-Request-ID"])


@pytest.mark.parametrize(
    "path", ["/api/v1/health", "/v1/models", "/accounts/login/", "/no-such-page", "/metrics"]
)
def test_every_http_response_carries_a_request_id(live: tuple[str, int], path: str) -> None:
    response, _ = call(live, "GET", path)
    assert len(response.headers.get_all("X-Request-ID") or []) == 1
    assert GENERATED.fullmatch(response.headers["X-Request-ID"])


def test_a_page_logs_its_signed_in_user_and_the_path_without_the_query(
    live: tuple[str, int], alice: User, lines: Lines
) -> None:
    client = Client()
    client.force_login(alice)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    response, _ = call(live, "GET", f"/conversations/?token={KEY}&q=1", Cookie=cookie)
    assert response.status == 200
    (line,) = lines.of("coppertone.access", request_id=response.headers["X-Request-ID"])
    assert line["path"] == "/conversations/" and line["user_id"] == alice.pk
    assert KEY not in json.dumps(lines.all())


def test_an_anonymous_request_logs_no_user(live: tuple[str, int], lines: Lines) -> None:
    response, _ = call(live, "GET", "/api/v1/health")
    (line,) = lines.of("coppertone.access", request_id=response.headers["X-Request-ID"])
    assert line["user_id"] is None and line["status"] == 200


async def test_a_websocket_turn_logs_the_id_of_its_connection(
    alice: User, fake_openai: FakeOpenAI, lines: Lines
) -> None:
    cache.clear()
    await sync_to_async(configure)(alice, fake_openai)
    client = Client()
    await sync_to_async(client.force_login)(alice)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    headers = [
        (b"origin", b"http://127.0.0.1"),
        (b"host", b"127.0.0.1"),
        (b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()),
        (b"x-request-id", b"socket-7"),
    ]
    socket = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await socket.connect(timeout=5)
    assert connected
    await socket.send_json_to({"type": "send", "text": "Hi", "provider": "openai"})
    while (frame := await socket.receive_json_from(timeout=5))["type"] != "done":
        assert frame["type"] != "error", frame
    await socket.disconnect()
    (turn,) = lines.of("coppertone.turns", message_id=frame["message_id"])
    assert turn["request_id"] == "socket-7"


def test_json_lines_never_hold_a_key(lines: Lines, live: tuple[str, int]) -> None:
    log = logging.getLogger("coppertone.test")
    log.warning("upstream said: bad key %s", KEY, extra={"header": f"Authorization: Bearer {KEY}"})
    try:
        raise ValueError(f"refused {KEY}")
    except ValueError:
        log.exception("call failed")
    response, _ = call(live, "GET", f"/api/v1/{KEY}")  # a key in a path
    assert response.status == 404

    text = lines.stream.getvalue()
    assert KEY not in text and "abcdefghijklmnop" not in text
    warning, failure = lines.of("coppertone.test")
    assert warning["message"] == "upstream said: bad key sk-[redacted]"
    assert warning["header"] == "Authorization: Bearer sk-[redacted]"
    assert "ValueError: refused sk-[redacted]" in failure["exc_info"]
    (line,) = lines.of("coppertone.access", request_id=response.headers["X-Request-ID"])
    assert line["path"] == "/api/v1/sk-[redacted]"


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LOG_"))}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "coppertone.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


LOG_A_LINE = (
    "import django, logging; django.setup(); "
    f"logging.getLogger('coppertone.x').warning('key %s', {KEY!r})"
)


def test_log_format_json_switches_the_console_to_json_lines() -> None:
    (line,) = _python(LOG_A_LINE, LOG_FORMAT="json").stderr.splitlines()
    record = json.loads(line)
    assert record["message"] == "key sk-[redacted]"
    assert (record["level"], record["logger"], record["request_id"]) == (
        "WARNING",
        "coppertone.x",
        None,
    )


def test_the_plain_format_stays_the_default() -> None:
    (line,) = _python(LOG_A_LINE).stderr.splitlines()
    assert line.endswith("WARNING coppertone.x: key sk-[redacted]")


def test_an_unknown_log_format_is_a_system_check() -> None:
    done = _python(
        "import django; django.setup(); from django.core.checks import run_checks; "
        "print([m.id for m in run_checks()])",
        LOG_FORMAT="xml",
    )
    assert "coppertone.E011" in done.stdout
