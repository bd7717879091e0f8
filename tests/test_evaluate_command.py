"""`manage.py evaluate` against the fake OpenAI and Anthropic servers and the embedded model."""

from __future__ import annotations

import _thread
import datetime as dt
import io
import json
import math
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection

from accounts.models import User
from llm import breakers, pricing
from llm.evaluations import report
from llm.management.commands.evaluate import Command
from llm.models import Evaluation, EvaluationRun, FallbackEntry, Message, ModelPrice
from llm.prompt_sets import parse_prompts
from tests.engine.conftest import configure
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.django_db(transaction=True)

FAKES = "openai/gpt-4o-mini,anthropic"
LOCAL = "local/SmolLM2-135M-Instruct"
# The fakes answer "Hello from the fake provider." to everything.
PROMPTS: list[dict[str, Any]] = [
    {"prompt": "Say hello.", "expect_contains": "hello"},
    {"prompt": "Say goodbye.", "expect_contains": ["goodbye"]},
    {"prompt": "Who are you?", "expect_regex": r"fake\s+provider\.$"},
    {
        "prompt": "Two of each.",
        "system": "Be brief.",
        "expect_contains": ["HELLO", "nowhere"],
        "expect_regex": ["^Hello", "^Bye"],
    },
    {"prompt": "No checks at all."},
]
# (passed, total) per prompt for a fake's answer.
FAKE_CHECKS = [(1, 1), (0, 1), (1, 1), (2, 4), (0, 0)]


@pytest.fixture(autouse=True)
def _alice_has_two_fakes(
    alice: User, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, settings: Any
) -> None:
    cache.clear()
    settings.LLM_MAX_RETRIES = 0
    breakers.servers.forget()  # a fake another test failed is not open for this one
    configure(alice, fake_openai, model="gpt-4o-mini")
    configure(alice, fake_anthropic, "anthropic", model="claude-3-5-haiku")
    today = dt.date(2024, 1, 1)
    for provider, model in (("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-haiku")):
        ModelPrice.objects.update_or_create(
            provider=provider,
            model=model,
            effective_from=today,
            defaults={"input_per_million": Decimal("0.15"), "output_per_million": Decimal("0.6")},
        )
    pricing.clear_cache()


@pytest.fixture
def prompts_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps(p) for p in PROMPTS) + "\n\n")
    return path


def evaluate(*args: str, stderr: io.StringIO | None = None) -> tuple[str, str]:
    if "--concurrency" not in args:
        # One at a time unless a test says otherwise: the test database is SQLite in
        # memory, whose table locks fail a second writer at once instead of waiting.
        args = (*args, "--concurrency", "1")
    out, err = io.StringIO(), stderr or io.StringIO()
    call_command("evaluate", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def interrupt_when_midway(timeout: float = 20.0) -> None:
    """Ctrl-C (SIGINT to the main thread) once two runs are stored and a reply streams."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            runs = EvaluationRun.objects.count()
            streaming = Message.objects.filter(role="assistant", status="streaming").exists()
        except OperationalError:  # a writer holds the table (SQLite in memory): look again
            continue
        if runs >= 2 and streaming:
            _thread.interrupt_main()
            break
    connection.close()  # this thread's own connection


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(q * len(ordered)) - 1]


@pytest.mark.local_model
def test_five_prompts_on_two_fakes_and_the_embedded_model(
    prompts_file: Path, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    out, err = evaluate(
        "--prompts", str(prompts_file), "--models", f"{FAKES},{LOCAL}", "--user", "alice",
        "--concurrency", "1", "--max-tokens", "8",
    )  # fmt: skip
    print("\n" + out)  # the table, for whoever runs this with -s

    evaluation = Evaluation.objects.get()
    assert evaluation.status == Evaluation.Status.DONE and evaluation.name == "prompts.jsonl"
    assert evaluation.targets == ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku", LOCAL]
    runs = list(evaluation.runs.all())
    assert len(runs) == 15 and {r.status for r in runs} == {"complete"}
    for run in runs:
        prompt = PROMPTS[run.prompt_index]
        if run.target == LOCAL:
            assert run.output_tokens <= 8 and run.content.strip()
            assert run.checks_total == FAKE_CHECKS[run.prompt_index][1]
        else:
            assert run.content == "Hello from the fake provider."
            assert (run.checks_passed, run.checks_total) == FAKE_CHECKS[run.prompt_index]
        assert run.message is not None and run.message.content == run.content
        assert run.message.conversation.messages.get(role="user").content == prompt["prompt"]
    # Each answer was an ordinary request: the system prompt and the token limit went along.
    sent = {r.json["messages"][-1]["content"]: r.json for r in fake_openai.chat_requests}
    assert sent["Two of each."]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert {body["max_tokens"] for body in sent.values()} == {8}
    assert len(fake_anthropic.chat_requests) == 5

    # The table: one row per model, the fakes' checks 4 of 7 (57%).
    lines = out.splitlines()
    assert lines[0].startswith("Model") and len(lines) == 5
    assert "openai/gpt-4o-mini" in lines[2] and "4/7 (57%)" in lines[2] and "100%" in lines[2]
    assert "anthropic/claude-3-5-haiku" in lines[3] and "4/7 (57%)" in lines[3]
    assert LOCAL in lines[4]
    assert "15/15 replies (100%)" in err


def test_report_numbers_are_the_stored_messages(prompts_file: Path) -> None:
    evaluate("--prompts", str(prompts_file), "--models", FAKES, "--user", "alice", "--repeat", "2")
    evaluation = Evaluation.objects.get()
    summary = {row.target: row for row in report(evaluation).models}
    assert list(summary) == ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku"]
    for target, row in summary.items():
        messages = list(
            Message.objects.filter(
                evaluationrun__evaluation=evaluation, evaluationrun__target=target
            )
        )
        assert row.runs == len(messages) == 10 and row.complete == 10
        assert row.success_percent == 100.0
        assert row.input_tokens == sum(m.input_tokens for m in messages) == 120
        assert row.output_tokens == sum(m.output_tokens for m in messages)
        assert row.cost == sum((m.cost for m in messages), Decimal(0)) > 0
        latencies = [m.latency_ms for m in messages if m.latency_ms is not None]
        ttfts = [m.ttft_ms for m in messages if m.ttft_ms is not None]
        assert row.latency_p50_ms == nearest_rank(latencies, 0.5)
        assert row.latency_p95_ms == nearest_rank(latencies, 0.95)
        assert row.ttft_p50_ms == nearest_rank(ttfts, 0.5)
        assert row.ttft_p95_ms == nearest_rank(ttfts, 0.95)
        assert row.avg_chars == len("Hello from the fake provider.")
        assert (row.checks_passed, row.checks_total) == (8, 14)
        assert row.checks_percent == 57.1
    for run in EvaluationRun.objects.select_related("message"):
        m = run.message
        assert m is not None
        assert (run.input_tokens, run.output_tokens, run.cost) == (
            m.input_tokens,
            m.output_tokens,
            m.cost,
        )
        assert (run.ttft_ms, run.latency_ms, run.status) == (m.ttft_ms, m.latency_ms, m.status)


def test_a_failing_model_counts_against_its_success_rate(
    prompts_file: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail(401)
    out, _ = evaluate("--prompts", str(prompts_file), "--models", FAKES, "--user", "alice")

    failed = EvaluationRun.objects.filter(target="openai/gpt-4o-mini")
    assert {r.status for r in failed} == {"error"} and failed.count() == 5
    assert all(r.error and r.checks_passed == 0 for r in failed)
    openai_row = next(line for line in out.splitlines() if line.startswith("openai/"))
    assert " 0% " in openai_row and "0/7 (0%)" in openai_row


def test_ctrl_c_stops_and_running_it_again_resumes(
    prompts_file: Path, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    for fake in (fake_openai, fake_anthropic):
        fake.reply(chunks=["Hello ", "from ", "the ", "fake ", "provider."], delay=0.1)
    args = ("--prompts", str(prompts_file), "--models", FAKES, "--user", "alice")
    # Ctrl-C once two replies are done and others are being written, as in a terminal.
    watcher = threading.Thread(target=interrupt_when_midway, daemon=True)
    watcher.start()
    with pytest.raises(CommandError) as stopped:
        evaluate(*args, "--concurrency", "2")
    watcher.join(timeout=5)
    evaluation = Evaluation.objects.get()
    assert f"Resume with: manage.py evaluate --resume {evaluation.pk}" in str(stopped.value)
    assert evaluation.status == Evaluation.Status.STOPPED
    done_before = evaluation.runs.count()
    assert 0 < done_before < 10
    # The replies in flight were stopped and kept, with no run: they are asked again.
    assert Message.objects.filter(role="assistant", status="stopped").exists()

    _, err = evaluate(*args)
    assert f"Resuming evaluation {evaluation.pk}" in err
    assert Evaluation.objects.count() == 1
    evaluation.refresh_from_db()
    assert evaluation.status == Evaluation.Status.DONE and evaluation.error == ""
    cells = list(evaluation.runs.values_list("prompt_index", "target", "repeat_index"))
    assert len(cells) == len(set(cells)) == 10
    assert {r.status for r in evaluation.runs.all()} == {"complete"}


def test_resume_by_id_asks_only_the_cells_without_a_run(
    prompts_file: Path, fake_openai: FakeOpenAI
) -> None:
    evaluate("--prompts", str(prompts_file), "--models", FAKES, "--user", "alice")
    evaluation = Evaluation.objects.get()
    asked = len(fake_openai.chat_requests)
    gone = evaluation.runs.filter(target="openai/gpt-4o-mini", prompt_index__in=[1, 3])
    assert gone.delete()[0] == 2

    evaluate("--resume", str(evaluation.pk))
    assert len(fake_openai.chat_requests) == asked + 2
    cells = list(evaluation.runs.values_list("prompt_index", "target", "repeat_index"))
    assert len(cells) == len(set(cells)) == 10
    # Done is done: another --resume asks nothing.
    evaluate("--resume", str(evaluation.pk), "--user", "alice")
    assert len(fake_openai.chat_requests) == asked + 2


def test_the_same_command_after_it_finished_starts_a_new_one(prompts_file: Path) -> None:
    args = ("--prompts", str(prompts_file), "--models", "anthropic", "--user", "alice")
    evaluate(*args)
    evaluate(*args)
    assert Evaluation.objects.count() == 2


def test_progress_is_a_line_per_tenth_off_a_terminal_and_a_bar_on_one(
    prompts_file: Path,
) -> None:
    _, err = evaluate("--prompts", str(prompts_file), "--models", FAKES, "--user", "alice")
    progress = [line for line in err.splitlines() if "replies (" in line]
    assert progress[0] == "0/10 replies (0%)" and progress[-1] == "10/10 replies (100%)"
    assert len(progress) == 11 and "\r" not in err

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    _, drawn = evaluate(
        "--prompts", str(prompts_file), "--models", FAKES, "--user", "alice", "--new",
        stderr=Terminal(),
    )  # fmt: skip
    assert "\r[" + "#" * 30 + "] 10/10 100%" in drawn and "\r[" + "-" * 30 + "] 0/10" in drawn


def test_bad_arguments_say_what_to_fix(tmp_path: Path, prompts_file: Path, bob: User) -> None:
    def refused(*args: str) -> str:
        with pytest.raises(CommandError) as error:
            evaluate(*args)
        return str(error.value)

    ok = ("--models", FAKES, "--user", "alice")
    missing = tmp_path / "nope.jsonl"
    assert "There is no file" in refused("--prompts", str(missing), *ok)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"prompt": "broken",}\n')
    assert "Line 2 is not valid JSON" in refused("--prompts", str(bad), *ok)
    bad.write_text('{"prompt": "fine", "expect_contain": "x"}\n')
    assert 'Line 1 has an unknown field "expect_contain"' in refused("--prompts", str(bad), *ok)
    bad.write_text('{"prompt": "fine", "expect_regex": "a("}\n')
    assert "is not a valid regular expression" in refused("--prompts", str(bad), *ok)
    bad.write_text('["a list"]\n')
    assert "Line 1 is a JSON list, not an object" in refused("--prompts", str(bad), *ok)
    bad.write_text('{"system": "no prompt"}\n')
    assert 'Line 1 has no "prompt"' in refused("--prompts", str(bad), *ok)
    bad.write_text("\n\n")
    assert "has no prompts" in refused("--prompts", str(bad), *ok)
    prompts = ("--prompts", str(prompts_file))
    assert "There is no provider called 'nope'" in refused(
        *prompts, "--models", "nope/x", "--user", "alice"
    )
    assert "Google Gemini is not set up for this account" in refused(
        *prompts, "--models", "gemini", "--user", "alice"
    )
    assert "Name at least one model" in refused(*prompts, "--models", " , ", "--user", "alice")
    assert "--concurrency must be 1 or more" in refused(*prompts, *ok, "--concurrency", "0")
    assert "Say which models" in refused(*prompts, "--user", "alice")
    assert "Say which prompts" in refused("--models", FAKES, "--user", "alice")
    assert "there is no superuser" in refused(*prompts, "--models", FAKES)
    assert "There is no evaluation 999" in refused("--resume", "999")
    assert "leave out --prompts" in refused("--resume", "1", *prompts)
    assert "no active user called 'nobody'" in refused(
        *prompts, "--models", FAKES, "--user", "nobody"
    )
    assert not Evaluation.objects.exists()


@pytest.mark.local_model
def test_default_user_is_the_only_superuser(prompts_file: Path) -> None:
    root = User.objects.create_user("root", password="x", role=User.Role.ADMIN)
    evaluate("--prompts", str(prompts_file), "--models", "local", "--max-tokens", "1")
    assert Evaluation.objects.get().user == root
    User.objects.create_user("root2", password="x", role=User.Role.ADMIN)
    with pytest.raises(CommandError, match="more than one superuser"):
        evaluate("--prompts", str(prompts_file), "--models", "local")


def test_a_running_evaluation_is_not_run_twice(prompts_file: Path, alice: User) -> None:
    prompts = parse_prompts(prompts_file.read_text())
    evaluation = Evaluation.objects.create(
        user=alice, targets=["anthropic/claude-3-5-haiku"], prompts=prompts, status="running"
    )
    with pytest.raises(CommandError, match="is already running.*--force"):
        evaluate("--resume", str(evaluation.pk))
    evaluate("--resume", str(evaluation.pk), "--force")
    evaluation.refresh_from_db()
    assert evaluation.status == "done" and evaluation.runs.count() == 5


def test_help_has_an_example() -> None:
    text = Command().create_parser("manage.py", "evaluate").format_help()
    assert "manage.py evaluate --prompts prompts.jsonl" in text
    assert '"expect_contains"' in text and "--resume 7" in text


def test_the_rate_limit_is_waited_out_not_failed(prompts_file: Path, settings: Any) -> None:
    settings.LLM_RATE_LIMIT = "3/s"
    evaluate("--prompts", str(prompts_file), "--models", FAKES, "--user", "alice")
    evaluation = Evaluation.objects.get()
    assert evaluation.status == "done"
    assert {r.status for r in evaluation.runs.all()} == {"complete"}
    assert evaluation.runs.count() == 10


def test_an_answer_from_the_fallback_chain_is_not_the_models(
    prompts_file: Path, alice: User, fake_openai: FakeOpenAI
) -> None:
    FallbackEntry.objects.create(user=alice, position=0, provider="anthropic")
    fake_openai.fail(401)
    evaluate("--prompts", str(prompts_file), "--models", "openai", "--user", "alice")

    runs = list(EvaluationRun.objects.all())
    assert len(runs) == 5 and {r.status for r in runs} == {"error"}
    assert "anthropic/claude-3-5-haiku answered instead, from your fallback chain" in runs[0].error
    assert all(r.checks_passed == 0 for r in runs)


def test_a_prompt_the_engine_refuses_is_that_cells_error(tmp_path: Path, settings: Any) -> None:
    settings.LLM_MAX_MESSAGE_CHARS = 10
    path = tmp_path / "long.jsonl"
    path.write_text(
        json.dumps({"prompt": "far too long a prompt"}) + "\n" + json.dumps({"prompt": "fine"})
    )
    evaluate("--prompts", str(path), "--models", "anthropic", "--user", "alice")

    refused, fine = EvaluationRun.objects.order_by("prompt_index")
    assert refused.status == "error" and "the limit is 10" in refused.error
    assert refused.message is None and fine.status == "complete"
    assert Evaluation.objects.get().status == "done"


def test_a_nul_in_a_prompt_is_refused_before_anything_is_saved(tmp_path: Path) -> None:
    path = tmp_path / "nul.jsonl"
    path.write_text(json.dumps({"prompt": "a\u0000b"}))
    with pytest.raises(CommandError, match="Line 1 contains a NUL character"):
        evaluate("--prompts", str(path), "--models", "anthropic", "--user", "alice")
    assert not Evaluation.objects.exists()
