"""/evaluations/: the list and its form, starting one in the background, the report followed
live, Stop and Resume, the CSV and JSON exports, and bob's 404 on every path."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from typing import Any

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import OperationalError
from django.test import AsyncClient, Client

from accounts.models import User
from llm import breakers
from llm.models import Evaluation, EvaluationRun
from tests.engine.conftest import configure
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.django_db(transaction=True)

LIVE = "evaluation-live"
WATCH_GRACE = 1.5  # a runner looks for a Stop every second
TARGETS = ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku"]
LINES = [
    {"prompt": "Say hello.", "expect_contains": "hello"},
    {"prompt": "Say goodbye.", "expect_contains": "goodbye"},
    {"prompt": "=cmd|' /C calc'!A0", "expect_regex": "provider"},
]


def jsonl(lines: list[dict[str, Any]] = LINES) -> bytes:
    return "\n".join(json.dumps(line) for line in lines).encode()


def upload(data: bytes | None = None, name: str = "set.jsonl") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, jsonl() if data is None else data, "application/jsonl")


@pytest.fixture(autouse=True)
def _alice_has_two_fakes(
    alice: User, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, settings: Any
) -> None:
    cache.clear()
    settings.LLM_MAX_RETRIES = 0
    breakers.servers.forget()  # a fake another test failed is not open for this one
    configure(alice, fake_openai, model="gpt-4o-mini")
    configure(alice, fake_anthropic, "anthropic", model="claude-3-5-haiku")


@pytest.fixture
def finished(alice: User, tmp_path: Any) -> Evaluation:
    """An evaluation of alice's run to its end by the command (one prompt at a time)."""
    path = tmp_path / "set.jsonl"
    path.write_bytes(jsonl())
    call_command(
        "evaluate", "--prompts", str(path), "--models", ",".join(TARGETS), "--user", "alice",
        "--concurrency", "1", stdout=io.StringIO(), stderr=io.StringIO(),
    )  # fmt: skip
    return Evaluation.objects.get()


@pytest.fixture
def async_alice(alice: User) -> AsyncClient:
    client = AsyncClient()
    client.force_login(alice)
    return client


async def until_status(pk: int, *statuses: str, timeout: float = 15.0) -> Evaluation:
    deadline = time.monotonic() + timeout
    while True:
        await asyncio.sleep(0.2)  # seldom: SQLite in memory fails a writer while we read
        try:
            evaluation = await Evaluation.objects.aget(pk=pk)
        except OperationalError:
            continue
        if evaluation.status in statuses:
            return evaluation
        assert time.monotonic() < deadline, f"still {evaluation.status}"


# --- the list and the form ---------------------------------------------------------------


def test_the_list_shows_only_mine_newest_first_and_the_form(
    alice_client: Client, alice: User, bob: User
) -> None:
    Evaluation.objects.create(user=alice, name="older", targets=TARGETS, prompts=LINES)
    Evaluation.objects.create(user=alice, name="newer", targets=TARGETS, prompts=LINES)
    Evaluation.objects.create(user=bob, name="bobs", targets=TARGETS, prompts=LINES)

    page = alice_client.get("/evaluations/").content.decode()
    assert page.index("newer") < page.index("older") and "bobs" not in page
    assert "0 / 6" in page  # replies done of 3 prompts × 2 models
    # The models to pick: the local one and each provider alice set up.
    for target in ["local/SmolLM2-135M-Instruct", *TARGETS]:
        assert f'value="{target}"' in page
    assert 'enctype="multipart/form-data"' in page and 'href="/evaluations/"' in page


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"prompts": b'{"prompt": "ok"}\n{"prompt": }\n'}, "Line 2 is not valid JSON"),
        ({"prompts": b"\n"}, "The file has no prompts"),
        ({"prompts": b"\xff\xfe"}, "is not UTF-8 text"),
        ({"models": []}, "Pick at least one model"),
        ({"other_models": "nope/x"}, "There is no provider called &#x27;nope&#x27;"),
        ({"other_models": "gemini"}, "Google Gemini is not set up for this account"),
        ({"concurrency": "9"}, "At most 3 at once"),
        ({"concurrency": "0"}, "greater than or equal to 1"),
        ({"repeat": "11"}, "less than or equal to 10"),
    ],
)
def test_the_form_says_what_to_fix(
    alice_client: Client, fields: dict[str, Any], words: str
) -> None:
    data: dict[str, Any] = {"models": TARGETS, "repeat": "1", "concurrency": "2"}
    prompts = fields.pop("prompts", None)
    data.update(fields)
    data["prompts"] = upload(prompts)
    response = alice_client.post("/evaluations/", data)

    assert response.status_code == 200
    assert words in response.content.decode()
    assert not Evaluation.objects.exists()


def test_too_many_replies_are_refused_in_numbers(alice_client: Client, settings: Any) -> None:
    many = jsonl([{"prompt": f"p{i}"} for i in range(101)])
    data = {"prompts": upload(many), "models": TARGETS, "repeat": "5", "concurrency": "2"}
    page = alice_client.post("/evaluations/", data).content.decode()
    assert "That is 1,010 replies (101 prompts × 2 models × 5)" in page


async def test_starting_from_the_page_runs_it_in_the_background(
    async_alice: AsyncClient, fake_openai: FakeOpenAI, replies_end: None
) -> None:
    response = await async_alice.post(
        "/evaluations/",
        {
            "prompts": upload(),
            "models": TARGETS[:1],
            "other_models": "anthropic",
            "repeat": "2",
            "concurrency": "1",
            "max_tokens": "64",
        },
    )
    evaluation = await Evaluation.objects.aget()
    assert response.status_code == 302 and response["Location"] == f"/evaluations/{evaluation.pk}/"
    assert (evaluation.name, evaluation.targets, evaluation.repeat) == ("set.jsonl", TARGETS, 2)

    done = await until_status(evaluation.pk, Evaluation.Status.DONE)
    assert done.error == "" and done.finished_at is not None
    runs = [r async for r in EvaluationRun.objects.filter(evaluation=done)]
    assert len(runs) == 3 * 2 * 2
    assert {r.status for r in runs} == {"complete"}, [r.error for r in runs]
    assert {r.json["max_tokens"] for r in fake_openai.chat_requests} == {64}
    assert (
        sorted((r.checks_passed, r.checks_total) for r in runs if r.prompt_index == 1)
        == [(0, 1)] * 4
    )


async def test_stop_on_the_page_stops_it_and_resume_asks_the_rest(
    async_alice: AsyncClient, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic,
    replies_end: None,
) -> None:  # fmt: skip
    for fake in (fake_openai, fake_anthropic):
        fake.reply(chunks=["Hello ", "from ", "the ", "fake ", "provider."], delay=0.1)
    await async_alice.post(
        "/evaluations/", {"prompts": upload(), "models": TARGETS, "repeat": "1", "concurrency": "1"}
    )
    evaluation = await Evaluation.objects.aget()
    while not await EvaluationRun.objects.filter(evaluation=evaluation).aexists():
        await asyncio.sleep(0.2)

    response = await async_alice.post(f"/evaluations/{evaluation.pk}/stop/")
    assert response.status_code == 302
    await until_status(evaluation.pk, Evaluation.Status.STOPPED)
    await asyncio.sleep(WATCH_GRACE)  # the runner sees the Stop and ends its replies
    stopped = await Evaluation.objects.aget(pk=evaluation.pk)
    assert stopped.status == "stopped" and "still to ask: resume" in stopped.error
    left = 6 - await EvaluationRun.objects.filter(evaluation=evaluation).acount()
    assert left > 0

    page = (await async_alice.get(f"/evaluations/{evaluation.pk}/")).content.decode()
    assert f'action="/evaluations/{evaluation.pk}/resume/"' in page
    await async_alice.post(f"/evaluations/{evaluation.pk}/resume/")
    await until_status(evaluation.pk, Evaluation.Status.DONE)
    cells = [
        c
        async for c in EvaluationRun.objects.filter(evaluation=evaluation).values_list(
            "prompt_index", "target", "repeat_index"
        )
    ]
    assert len(cells) == len(set(cells)) == 6


# --- the report --------------------------------------------------------------------------


def test_the_report_has_the_table_the_charts_and_the_answers(
    alice_client: Client, finished: Evaluation
) -> None:
    page = alice_client.get(f"/evaluations/{finished.pk}/").content.decode()

    assert "6 of 6 replies" in page and 'value="6"' in page
    assert page.count('<svg class="chart" role="img"') == 3
    assert '<title id="chart-time-title">Total time per model, p50 and p95</title>' in page
    assert '<desc id="chart-success-desc">openai/gpt-4o-mini: 100%; ' in page
    # The table: both models, checks 2 of 3 (67%), and each answer side by side.
    for target in TARGETS:
        assert f'<th scope="row" class="mono">{target}</th>' in page
    assert page.count("2 / 3 (67%)") == 2
    assert page.count("Hello from the fake provider.") == 6
    assert "hx-trigger" not in page  # finished: nothing to follow
    assert "=cmd|&#x27; /C calc&#x27;!A0" in page  # the prompt, as text


def test_a_running_report_is_followed_every_second_until_it_ends(
    alice_client: Client, finished: Evaluation
) -> None:
    Evaluation.objects.filter(pk=finished.pk).update(status="running")
    page = alice_client.get(f"/evaluations/{finished.pk}/").content.decode()
    assert 'hx-trigger="every 1s"' in page and f'id="{LIVE}"' in page

    poll = {"HX-Request": "true", "HX-Target": LIVE}
    partial = alice_client.get(f"/evaluations/{finished.pk}/", headers=poll)
    body = partial.content.decode()
    assert body.lstrip().startswith('<section id="evaluation-live"') and "<html" not in body
    assert "6 of 6 replies" in body and 'hx-trigger="every 1s"' in body

    Evaluation.objects.filter(pk=finished.pk).update(status="done")
    ended = alice_client.get(f"/evaluations/{finished.pk}/", headers=poll)
    assert ended.headers["HX-Refresh"] == "true"


def test_csv_export_has_a_header_and_a_row_per_run(
    alice_client: Client, finished: Evaluation
) -> None:
    response = alice_client.get(f"/evaluations/{finished.pk}/export.csv")
    assert response["Content-Type"].startswith("text/csv")
    assert f"evaluation-{finished.pk}.csv" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 6
    first = rows[0]
    assert list(first)[:4] == ["prompt", "prompt_index", "target", "repeat_index"]
    run = EvaluationRun.objects.get(
        evaluation=finished, prompt_index=0, target=first["target"], repeat_index=0
    )
    assert (first["status"], first["input_tokens"], first["cost"]) == (
        "complete",
        str(run.input_tokens),
        str(run.cost),
    )
    assert first["content"] == "Hello from the fake provider."
    # A prompt that a spreadsheet would run as a formula is written as text.
    assert rows[-1]["prompt"] == "'=cmd|' /C calc'!A0"


def test_json_export_has_the_summary_and_the_runs(
    alice_client: Client, finished: Evaluation
) -> None:
    body = alice_client.get(f"/evaluations/{finished.pk}/export.json").json()
    assert body["evaluation"]["id"] == finished.pk and body["evaluation"]["done"] == 6
    assert [row["target"] for row in body["summary"]] == TARGETS
    openai = body["summary"][0]
    assert (openai["runs"], openai["success_percent"], openai["checks_passed"]) == (3, 100.0, 2)
    assert len(body["runs"]) == 6 and body["runs"][0]["content"].startswith("Hello")


# --- another person's ----------------------------------------------------------------------


def test_bob_gets_404_on_every_path_of_alices_evaluation(
    bob_client: Client, finished: Evaluation
) -> None:
    base = f"/evaluations/{finished.pk}/"
    for path in (base, f"{base}export.csv", f"{base}export.json"):
        assert bob_client.get(path).status_code == 404, path
    assert (
        bob_client.get(base, headers={"HX-Request": "true", "HX-Target": LIVE}).status_code == 404
    )
    for path in (f"{base}stop/", f"{base}resume/"):
        assert bob_client.post(path).status_code == 404, path
    assert Evaluation.objects.get(pk=finished.pk).status == "done"
    assert "set.jsonl" not in bob_client.get("/evaluations/").content.decode()


def test_signed_out_people_are_sent_to_sign_in(client: Client, finished: Evaluation) -> None:
    base = f"/evaluations/{finished.pk}/"
    for path in ("/evaluations/", base, f"{base}export.csv", f"{base}export.json"):
        response = client.get(path)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
