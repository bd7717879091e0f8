"""/settings/presets/ in a real browser: create, edit in place and delete after a
confirmation, all through htmx, with no CSP violation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from accounts.models import User
from llm.models import Preset
from tests.browser.conftest import sign_in


def test_create_edit_and_delete_a_preset_in_place(
    page: Any, live_url: str, alice: User, artifacts: Path
) -> None:
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(f"{page.url} {m.location} {m.text}") if m.type == "error" else None
        ),
    )
    sign_in(page, live_url, "alice")
    page.goto(f"{live_url}/settings/llm/")
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Presets").click()
    expect(page.get_by_role("heading", name="Presets", level=1)).to_be_visible()

    new = page.get_by_role("region", name="New preset")
    new.get_by_label("Name").fill("Reviewer")
    new.get_by_label("Provider").select_option("openai")
    new.get_by_label("Temperature").fill("9")
    new.get_by_role("button", name="Create preset").click()
    expect(page.get_by_text("The temperature cannot be above 2.")).to_be_visible()
    page.get_by_role("region", name="New preset").get_by_label("Temperature").fill("0.3")
    page.get_by_role("region", name="New preset").get_by_role(
        "button", name="Create preset"
    ).click()
    card = page.get_by_role("article", name="Reviewer")
    expect(card).to_contain_text("0.3")
    # caret="initial": hiding the caret leaves style="" on inputs, which htmx then settles.
    page.screenshot(path=str(artifacts / "presets-page.png"), full_page=True, caret="initial")

    card.get_by_role("link", name="Edit Reviewer").click()
    card.get_by_label("Model").fill("gpt-4o-mini")
    card.get_by_role("button", name="Save").click()
    expect(card).to_contain_text("“Reviewer” saved.")
    expect(card).to_contain_text("gpt-4o-mini")

    card.get_by_role("link", name="Delete Reviewer").click()
    expect(card.get_by_role("alert")).to_contain_text("Delete the preset “Reviewer”?")
    assert Preset.objects.filter(name="Reviewer").exists()
    card.get_by_role("button", name="Yes, delete").click()
    expect(page.get_by_text("“Reviewer” deleted.")).to_be_visible()
    assert not Preset.objects.exists()
    assert not [p for p in problems if "Content Security Policy" in p], problems
