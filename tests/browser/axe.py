"""axe-core in the browser tests: the serious and critical findings on a page, in words.

axe.min.js comes from the PyPI package axe-playwright-python (requirements-dev.txt), so
nothing is fetched at test time. It is evaluated through Playwright, which the page's
Content-Security-Policy does not govern: the page itself still has no inline script.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import axe_playwright_python  # type: ignore[import-untyped]

SERIOUS = ("serious", "critical")
# WCAG 2.1 A and AA, plus axe's best practices (landmarks, headings, regions).
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


@cache
def _script() -> str:
    return (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text()


def findings(page: Any, context: str | None = None) -> list[dict[str, Any]]:
    """axe's serious and critical violations on the page as it is now (or inside
    `context`, a CSS selector)."""
    page.evaluate(_script())
    results = page.evaluate(
        "([context, tags]) => axe.run(context || document,"
        " {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        [context, TAGS],
    )
    return [v for v in results["violations"] if v.get("impact") in SERIOUS]


def describe(violations: list[dict[str, Any]]) -> str:
    """Each finding as a person would read it: the rule, why, and where."""
    lines = []
    for violation in violations:
        lines.append(f"{violation['impact']}: {violation['id']}: {violation['help']}")
        for node in violation["nodes"][:5]:
            target = " ".join(str(t) for t in node.get("target", []))
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            lines.append(f"    at {target}: {summary}")
        if len(violation["nodes"]) > 5:
            lines.append(f"    ... and {len(violation['nodes']) - 5} more")
    return "\n".join(lines)


def assert_accessible(page: Any, where: str, context: str | None = None) -> None:
    found = findings(page, context)
    assert not found, f"axe-core on {where}: {len(found)} serious or critical\n" + describe(found)
