"""A prompt set: one JSON object a line, checked field by field, and its checks scored.

    {"prompt": "Name a primary colour.", "system": "Answer in one word.",
     "expect_contains": ["red"], "expect_regex": "^[A-Z]", "max_tokens": 16}

Only "prompt" is required. expect_contains: each must appear (any case); expect_regex:
each must match somewhere (re.search). A reply that did not complete passes no check.
"""

from __future__ import annotations

import json
import re
from typing import Any

from llm.turns import MAX_TOKENS

__all__ = ["PromptsError", "decode", "listed", "parse_prompts", "score"]

FIELDS = ("prompt", "system", "expect_contains", "expect_regex", "max_tokens")
MAX_PATTERN_CHARS = 500
EXAMPLE = '{"prompt": "Name a primary colour.", "expect_contains": ["red"]}'


class PromptsError(Exception):
    """What is wrong with the file, naming the line to fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _strings(value: Any, name: str, line: int) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        raise PromptsError(
            f'Line {line}: "{name}" must be a string or a list of non-empty strings.'
        )
    return list(items)


def _prompt(body: Any, line: int) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise PromptsError(
            f"Line {line} is a JSON {type(body).__name__}, not an object: write it as {EXAMPLE}."
        )
    unknown = [key for key in body if key not in FIELDS]
    if unknown:
        raise PromptsError(
            f'Line {line} has an unknown field "{unknown[0]}": the fields are {", ".join(FIELDS)}.'
        )
    text = body.get("prompt")
    if not isinstance(text, str) or not text.strip():
        raise PromptsError(f'Line {line} has no "prompt" (a non-empty string): {EXAMPLE}.')
    prompt: dict[str, Any] = {"prompt": text}
    system = body.get("system")
    if system is not None:
        if not isinstance(system, str):
            raise PromptsError(f'Line {line}: "system" must be a string.')
        prompt["system"] = system
    if "expect_contains" in body:
        prompt["expect_contains"] = _strings(body["expect_contains"], "expect_contains", line)
    if "expect_regex" in body:
        patterns = _strings(body["expect_regex"], "expect_regex", line)
        for pattern in patterns:
            if len(pattern) > MAX_PATTERN_CHARS:
                raise PromptsError(
                    f"Line {line}: an expect_regex is {len(pattern)} characters; the limit "
                    f"is {MAX_PATTERN_CHARS}."
                )
            try:
                re.compile(pattern)
            except re.error as exc:
                raise PromptsError(
                    f"Line {line}: expect_regex {pattern!r} is not a valid regular "
                    f"expression ({exc})."
                ) from None
        prompt["expect_regex"] = patterns
    if "max_tokens" in body:
        limit = body["max_tokens"]
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_TOKENS:
            raise PromptsError(
                f'Line {line}: "max_tokens" must be a whole number from 1 to {MAX_TOKENS}.'
            )
        prompt["max_tokens"] = limit
    return prompt


def parse_prompts(text: str, *, source: str = "The prompt set") -> list[dict[str, Any]]:
    """One JSON object a line (blank lines skipped), checked field by field."""
    prompts: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            body = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptsError(
                f"Line {number} is not valid JSON ({exc.msg} at column {exc.colno}): each "
                f"line must be one JSON object, such as {EXAMPLE}."
            ) from None
        if "\\u0000" in line or "\x00" in line:
            # PostgreSQL cannot store a NUL in text, so the set could not even be saved.
            raise PromptsError(f"Line {number} contains a NUL character (\\u0000): remove it.")
        prompts.append(_prompt(body, number))
    if not prompts:
        raise PromptsError(
            f"{source} has no prompts: write one JSON object a line, such as {EXAMPLE}."
        )
    return prompts


def decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PromptsError("The prompt file is not UTF-8 text: save it as UTF-8 JSONL.") from None


def listed(prompt: dict[str, Any], name: str) -> list[str]:
    """A check's strings, also from a prompt stored by hand (a string for a one-item list)."""
    value = prompt.get(name) or []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def score(prompt: dict[str, Any], content: str, complete: bool) -> tuple[int, int]:
    """(checks passed, checks in all). A reply that did not complete passes none."""
    contains, patterns = listed(prompt, "expect_contains"), listed(prompt, "expect_regex")
    total = len(contains) + len(patterns)
    if not complete:
        return 0, total
    folded = content.casefold()
    passed = sum(needle.casefold() in folded for needle in contains)
    passed += sum(re.search(pattern, content) is not None for pattern in patterns)
    return passed, total
