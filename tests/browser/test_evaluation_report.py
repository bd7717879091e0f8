"""An evaluation started from its page in Chromium: upload a prompt set, pick two fakes and
the embedded model, follow the report live until it ends, and keep a screenshot of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from accounts.models import User
from llm.models import Evaluation
from tests.browser.conftest import sign_in
from tests.engine.conftest import configure
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI

PROMPTS = [
    {"prompt": "Name the three primary colours.", "expect_contains": ["red", "blue", "yellow"]},
    {"prompt": "What is 2 + 2? Answer with a number.", "expect_regex": r"\b4\b"},
    {"prompt": "Say hello in French.", "expect_contains": "bonjour"},
    {"prompt": "Write one short sentence about the sea.", "system": "Be brief."},
]


@pytest.mark.local_model
def test_an_evaluation_followed_live_to_its_report(
    page: Any,
    live_url: str,
    alice: User,
    fake_openai: FakeOpenAI,
    fake_anthropic: FakeAnthropic,
    artifacts: Path,
    settings: Any,
) -> None:
    settings.LLM_MAX_RETRIES = 0
    configure(alice, fake_openai, model="gpt-4o-mini")
    configure(alice, fake_anthropic, "anthropic", model="claude-3-5-haiku")
    fake_openai.reply(
        "Red, yellow and blue. 2 + 2 = 4. Bonjour!",
        chunks=["Red, ", "yellow ", "and blue. ", "2 + 2 = 4. ", "Bonjour!"],
        delay=0.04,
        usage=(24, 14),
    )
    fake_anthropic.reply(
        "The primary colours are red, yellow and blue; the answer is 4.",
        chunks=["The primary ", "colours are ", "red, yellow ", "and blue; ", "the answer is 4."],
        delay=0.08,
        usage=(31, 17),
    )
    refused: list[str] = []  # the Content-Security-Policy allows no inline script or style
    page.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else None)
    sign_in(page, live_url, "alice")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Evaluations").click()
    expect(page.get_by_role("heading", name="Evaluations", exact=True)).to_be_visible()

    lines = "\n".join(json.dumps(p) for p in PROMPTS).encode()
    page.get_by_label("Prompts (JSONL file)").set_input_files(
        files=[{"name": "colours.jsonl", "mimeType": "application/jsonl", "buffer": lines}]
    )
    for target in ("local/SmolLM2-135M-Instruct", "openai/gpt-4o-mini"):
        page.get_by_label(target, exact=True).check()
    page.get_by_label("Other models").fill("anthropic")
    page.get_by_label("At once").fill("1")
    page.get_by_label("Longest answer (tokens)").fill("24")
    page.get_by_label("Name").fill("Primary colours")
    page.get_by_role("button", name="Start").click()

    expect(page.get_by_role("heading", name="Primary colours")).to_be_visible()
    # Followed live: the page reloads itself once the last reply is in.
    expect(page.locator(".eval-progress .badge")).to_have_text("done", timeout=90_000)
    expect(page.get_by_text("12 of 12 replies")).to_be_visible()
    expect(page.locator("svg.chart")).to_have_count(3)
    expect(page.locator("svg.chart title").first).to_have_text("Total time per model, p50 and p95")
    summary = page.locator("table.eval-summary")
    for target in (
        "local/SmolLM2-135M-Instruct",
        "openai/gpt-4o-mini",
        "anthropic/claude-3-5-haiku",
    ):
        expect(summary.get_by_role("rowheader", name=target)).to_be_visible()
    expect(page.locator(".eval-answer")).to_have_count(12)
    page.screenshot(path=artifacts / "evaluation-report.png", full_page=True)

    assert refused == []
    evaluation = Evaluation.objects.get()
    assert evaluation.status == "done" and evaluation.runs.count() == 12
