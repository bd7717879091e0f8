"""`manage.py llm_check` against the fake servers: one that answers, one 401, one closed port."""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command

from accounts.models import User
from llm import limits
from llm.connection import UNREADABLE_KEY
from llm.models import ProviderConfig
from tests.engine.conftest import configure
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.django_db


def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield int(server.getsockname()[1])


def point_at(user: User, port: int, kind: str = "openai") -> ProviderConfig:
    config = ProviderConfig(user=user, kind=kind, base_url=f"http://127.0.0.1:{port}/v1")
    config.set_api_key("sk-anything")
    config.save()
    return config


@pytest.fixture(autouse=True)
def _three_cards(
    alice: User,
    bob: User,
    charlie: User,
    fake_openai: FakeOpenAI,
    fake_anthropic: FakeAnthropic,
    settings: Any,
) -> None:
    cache.clear()
    settings.LLM_MAX_RETRIES = 0
    configure(alice, fake_openai)  # answers
    wrong = configure(bob, fake_anthropic, "anthropic", model="claude-3-5-haiku")
    wrong.set_api_key("sk-ant-not-the-right-one")  # 401 in Anthropic's shape
    wrong.save()
    point_at(charlie, closed_port())  # connection refused


def check(*args: str) -> tuple[str, str, int]:
    """stdout, stderr and the exit status of one run."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("llm_check", *args, stdout=out, stderr=err)
    except CommandError as error:
        err.write(f"CommandError: {error}\n")
        return out.getvalue(), err.getvalue(), error.returncode
    return out.getvalue(), err.getvalue(), 0


def test_table_shows_each_configuration_and_exits_1_when_any_fails() -> None:
    out, err, status = check()

    assert status == 1
    assert "2 of 3 check(s) failed." in err
    head, rule, *rows = out.splitlines()
    assert head.split() == ["user", "provider", "model", "ok", "latency", "ms", "error"]
    assert set(rule) <= {"-", " "}
    alice, bob, charlie = rows
    assert alice.split()[:4] == ["alice", "openai", "gpt-4o", "yes"]
    assert alice.split()[4].isdigit()
    assert bob.split()[:5] == ["bob", "anthropic", "claude-3-5-haiku", "NO", "-"]
    assert "rejected the API key" in bob
    assert charlie.split()[:5] == ["charlie", "openai", "gpt-4o", "NO", "-"]
    assert "Could not connect to OpenAI at 127.0.0.1" in charlie
    # The columns line up: every row's "ok" cell starts where the header's does.
    column = head.index(" ok ") + 1
    assert {row[column : column + 3].strip() for row in rows} == {"yes", "NO"}


def test_json_lists_the_same_fields_with_the_one_error_body(fake_openai: FakeOpenAI) -> None:
    out, _err, status = check("--json")

    assert status == 1
    alice, bob, charlie = json.loads(out)
    assert set(alice) == {"user", "provider", "model", "ok", "latency_ms", "error"}
    assert (alice["user"], alice["provider"], alice["ok"], alice["error"]) == (
        "alice",
        "openai",
        True,
        None,
    )
    assert alice["latency_ms"] >= 0
    assert (bob["ok"], bob["latency_ms"], bob["error"]["code"]) == (False, None, "provider_auth")
    assert charlie["error"]["code"] == "provider_unavailable"
    assert "is the base URL right" in charlie["error"]["message"]
    # The check is the settings page's: the provider's model list, with alice's key.
    listed = [r for r in fake_openai.requests if r.path == "/v1/models"]
    assert listed[-1].headers["authorization"] == f"Bearer {fake_openai.api_key}"


def test_outcomes_are_stored_on_the_cards_as_the_page_stores_them(alice: User, bob: User) -> None:
    check()

    alices = ProviderConfig.objects.get(user=alice)
    bobs = ProviderConfig.objects.get(user=bob)
    assert alices.last_verified_at is not None and alices.last_error == ""
    assert bobs.last_verified_at is None and "rejected the API key" in bobs.last_error


def test_filters_by_user_and_provider_and_passes_with_status_0() -> None:
    out, err, status = check("--user", "alice", "--provider", "openai")

    assert status == 0 and err == ""
    rows = out.splitlines()[2:]
    assert rows[0].startswith("alice") and rows[-1] == "All 1 check(s) passed."
    assert len(rows) == 2

    out, _err, status = check("--provider", "openai", "--json")
    assert status == 1
    assert [(r["user"], r["ok"]) for r in json.loads(out)] == [
        ("alice", True),
        ("charlie", False),
    ]


def test_nothing_matched_says_so_and_exits_0() -> None:
    out, err, status = check("--user", "alice", "--provider", "gemini")
    assert (out, status) == ("", 0)
    assert "No stored provider configuration matches (user alice, provider gemini)" in err

    out, _err, status = check("--user", "alice", "--provider", "gemini", "--json")
    assert (json.loads(out), status) == ([], 0)


def test_a_key_that_no_longer_decrypts_is_a_failure_in_words(alice: User) -> None:
    # The address changed without the key being entered again: the sealed key is refused.
    ProviderConfig.objects.filter(user=alice).update(base_url="http://127.0.0.1:9/v1")

    out, _err, status = check("--user", "alice", "--json")

    assert status == 1
    (row,) = json.loads(out)
    assert row["error"] == {"code": "provider_auth", "message": UNREADABLE_KEY}
    assert ProviderConfig.objects.get(user=alice).last_error == UNREADABLE_KEY


def test_timeout_bounds_each_check_and_checks_run_at_once(
    alice: User, bob: User, silent_port: int
) -> None:
    ProviderConfig.objects.all().delete()
    point_at(alice, silent_port)
    point_at(bob, silent_port)

    started = time.monotonic()
    out, _err, status = check("--json", "--timeout", "1", "--concurrency", "2")
    took = time.monotonic() - started

    assert status == 1
    assert [r["error"] for r in json.loads(out)] == [
        {
            "code": "provider_timeout",
            "message": "The provider did not answer within 1 s: is it up and reachable?",
        }
    ] * 2
    assert took < 1.9  # both waited their second side by side, not one after the other


def test_an_operators_check_is_not_counted_against_the_persons_rate(
    alice: User, settings: Any
) -> None:
    settings.LLM_RATE_LIMIT = "1/m"
    check("--user", "alice")
    check("--user", "alice")

    limits.check_rate(alice.pk)  # alice's one message this minute is still hers


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--provider", "nope"], "There is no provider called 'nope': --provider takes one of"),
        (["--user", "nobody"], "There is no user called 'nobody'"),
        (["--timeout", "0"], "--timeout must be more than 0 seconds, not 0."),
        (["--concurrency", "0"], "--concurrency must be from 1 to 64"),
    ],
)
def test_bad_arguments_are_refused_in_words(args: list[str], words: str) -> None:
    with pytest.raises(CommandError, match="^" + words.replace("(", r"\(").replace(")", r"\)")):
        call_command("llm_check", *args, stdout=io.StringIO(), stderr=io.StringIO())


def test_help_shows_a_readable_example() -> None:
    from llm.management.commands.llm_check import Command

    text = Command().create_parser("manage.py", "llm_check").format_help()
    assert "\n  manage.py llm_check --user alice --provider openai" in text
    assert "Exit status: 0 when every check passed" in text
