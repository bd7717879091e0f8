"""Schemathesis against a live server: no input it generates from /api/v1/openapi.json may
get a 5xx, or a response the document does not describe (status, content type, headers,
body, each server-sent event), or an answer to a wrong method without 405 and Allow.
The one 5xx allowed is the documented 502/504 of listing a provider's models, which
here can never reach its provider.

The server is the whole ASGI app under uvicorn in a thread of this process (so it sees
the test database); schemathesis's CLI runs in a subprocess against it, bounded:
deterministic generation, 25 examples an operation, one worker, every phase (schema
examples, coverage, fuzzing, stateful) once, under a minute here.

Nothing may leave this machine. Fuzzed PUTs configure providers with arbitrary base
URLs, and several kinds need no configuration at all, so outbound calls are refused
twice over: the outbound guard refuses loopback and private addresses
(LLM_PRIVATE_HOSTS empty), and `loopback_only` makes every name lookup and
connection to anything but loopback fail in this process before a packet is sent. The
server runs on asyncio's own loop (uvloop resolves and connects in C, past the
latter). Chat never reaches a model: alice's monthly budget is 0, so every turn is
refused (402) after validation and before any call; the embedded model points at a
missing file, so a connection test of it fails at once instead of loading it.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from django.utils.crypto import get_random_string

from accounts.models import ApiToken, User
from llm.models import (
    Conversation,
    DailyUsage,
    Message,
    Preset,
    PromptTemplate,
    ProviderConfig,
)
from tests.live import serving

RUN_SECONDS = 180  # the whole CLI run, a hard stop; it takes under a minute

pytestmark = pytest.mark.timeout(RUN_SECONDS + 60)


def _is_loopback(host: object) -> bool:
    text = host.decode() if isinstance(host, bytes) else str(host)
    if text == "localhost":
        return True
    try:
        return ipaddress.ip_address(text.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every lookup of a name, and every connection, to anything but loopback fails here."""
    refused: list[str] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_loopback(host):
            refused.append(f"lookup {host!r}")
            raise socket.gaierror(socket.EAI_NONAME, "only loopback in this test")
        return real_getaddrinfo(host, *args, **kwargs)

    def outside(sock: socket.socket, address: Any) -> bool:
        inet = sock.family in (socket.AF_INET, socket.AF_INET6)
        if inet and not _is_loopback(address[0]):
            refused.append(f"connect {address!r}")
            return True
        return False

    def connect(sock: socket.socket, address: Any) -> None:
        if outside(sock, address):
            raise ConnectionRefusedError("only loopback in this test")
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        if outside(sock, address):
            return errno.ECONNREFUSED
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield refused


@pytest.fixture
def live_api(
    transactional_db: None, settings: Any, tmp_path: Path, loopback_only: list[str]
) -> Iterator[str]:
    """The whole ASGI app on 127.0.0.1, set so that nothing it does leaves the machine."""
    cache.clear()
    settings.LLM_PRIVATE_HOSTS = []
    settings.LLM_MAX_RETRIES = 0
    settings.LLM_CONNECT_TIMEOUT = 2.0
    settings.LOCAL_MODEL_PATH = str(tmp_path / "no-such-model.gguf")
    # Limits would turn most of the run into 429s; they have tests of their own.
    settings.LLM_RATE_LIMIT = "100000/m"
    # asyncio's own loop: uvloop would bypass the loopback-only guard of `loopback_only`.
    with serving(log_level="warning", loop="asyncio") as url:
        yield url


def _seed(alice: User) -> None:
    """Something of each kind to list, so that the bodies checked are not all empty."""
    alice.monthly_budget = Decimal(0)  # every turn is refused before it starts
    alice.save()
    config = ProviderConfig(user=alice, kind="openai", model="gpt-4o")
    config.set_api_key("sk-fuzz-0000000000000000")
    config.save()
    conversation = Conversation.objects.create(user=alice, title="Seeded")
    asked = Message.objects.create(conversation=conversation, role="user", content="Hi")
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="Hello.",
        provider="openai",
        model="gpt-4o",
        input_tokens=3,
        output_tokens=2,
        cost=Decimal("0.000021"),
        ttft_ms=120.5,
        latency_ms=300.0,
        seq=3,
        reply_to=asked,
    )
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="Hel",
        status="error",
        error_code="provider_timeout",
        error_message="OpenAI did not answer in time.",
        provider="openai",
        model="gpt-4o",
    )
    Preset.objects.create(user=alice, name="Seeded", provider="openai", temperature=0.2)
    PromptTemplate.objects.create(user=alice, name="Seeded", text="Translate {text} {{as is}}")
    DailyUsage.objects.create(
        user=alice,
        day=timezone.localdate(),
        provider="openai",
        model="gpt-4o",
        requests=2,
        errors=1,
        input_tokens=3,
        output_tokens=2,
        cost=Decimal("0.000021"),
    )


# The fuzz user's budget is 0, so a valid chat body is refused with 402 (after every
# validation): an answer that accepts the data, for these checks' purposes.
CONFIG = """
headers = {{ Authorization = "Bearer {alice}" }}
request-timeout = 20
max-redirects = 0
workers = 1
seed = 1  # deterministic generation needs none; this pins whatever else draws

[generation]
deterministic = true
database = "none"
max-examples = 25

[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx"]

# A name is unique to its owner, only staff may publish, and a template's braces must
# balance: more than a schema says, so a 400 may answer them. First, and by operation id
# alone: an entry's include filters match when any one does, and the first entry wins.
[[operations]]
include-operation-id = ["createPreset", "updatePreset", "createTemplate", "updateTemplate"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404"]

# What a file is comes from its bytes (binary bytes that are not a PDF or an image are
# refused in words, and text has a length limit): more than a schema says. By operation
# id, and before the entries below, whose path and method each match on their own.
[[operations]]
include-operation-id = "uploadFile"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "413"]

[[operations]]
include-path = "/chat"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "401", "402", "403", "404", "409", "429",
]
checks.negative_data_rejection.expected-statuses = [
    "400", "401", "402", "403", "404", "409", "413", "429",
]

# Validity depends on what is stored (a first save needs the key) and on what the
# outbound guard allows in a base URL: more than a schema says, so a 400 may answer it.
[[operations]]
include-path = "/providers/{{kind}}"
include-method = "PUT"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404"]

# A provider and model may appear once in a chain, and a missing, null or empty model
# is the same step: more than a schema says, so a 400 may answer it.
[[operations]]
include-path = "/fallbacks"
include-method = "PUT"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403"]

# since must not come after until: more than a schema says, so a 400 may answer it.
# (One filter: schemathesis ORs the filters of one entry, so path + method is any GET.)
[[operations]]
include-operation-id = "listConversations"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401"]

# Only a browser session may create tokens: alice's session and its CSRF token.
[[operations]]
include-path = "/tokens"
include-method = "POST"
headers = {{ Authorization = "", Cookie = "{session}", X-CSRFToken = "{csrf}" }}
generation.with-security-parameters = false

# A provider that cannot be reached is a documented 502/504 with a provider_* code (the
# schema check holds it to that): in this test no provider can be.
[[operations]]
include-path = "/providers/{{kind}}/models"
include-method = "GET"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "502", "504"]

# Revoking tokens as bob: whatever id comes, alice's token (every other operation's)
# survives, and alice's ids answer 404.
[[operations]]
include-path = "/tokens/{{id}}"
include-method = "DELETE"
headers = {{ Authorization = "Bearer {bob}" }}
"""


def test_schemathesis_finds_no_server_error_and_no_schema_break(
    live_api: str, alice: User, bob: User, tmp_path: Path, loopback_only: list[str]
) -> None:
    _seed(alice)
    _, alice_token = ApiToken.issue(alice, "fuzz")
    _, bob_token = ApiToken.issue(bob, "fuzz")
    config = tmp_path / "schemathesis.toml"
    browser = Client()
    browser.force_login(alice)
    csrf = get_random_string(32)
    session = browser.cookies[settings.SESSION_COOKIE_NAME].value
    cookie = f"{settings.SESSION_COOKIE_NAME}={session}; {settings.CSRF_COOKIE_NAME}={csrf}"
    config.write_text(CONFIG.format(alice=alice_token, bob=bob_token, session=cookie, csrf=csrf))
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = "*"  # requests must not send 127.0.0.1 through a proxy
    started = time.monotonic()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config),
            "--no-color",
            "run",
            f"{live_api}/api/v1/openapi.json",
            "--checks",
            "all",
        ],
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
        env=env,
        cwd=tmp_path,
    )
    took = time.monotonic() - started
    report = run.stdout[-20000:] + run.stderr[-5000:]
    print(f"schemathesis took {took:.0f} s\n{report}")
    assert run.returncode == 0, report
    # No connection test reached a provider (each attempt was refused here, unsent).
    assert not ProviderConfig.objects.filter(last_verified_at__isnull=False).exists()
    print(f"outbound attempts refused: {len(loopback_only)}")
