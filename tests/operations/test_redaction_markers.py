"""The redaction's quick path (text with no marker is left alone) misses no key shape."""

from __future__ import annotations

import pytest

from llm.redaction import MASK, redact

SECRETS = [
    "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
    "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345",
    "sk-abcdefghijklmnop",
    "AIzaSyA1234567890abcdefghijklmnopqrstuv",
    "hf_abcdefghijklmnopqrstuvwxyz0123456789",
    "cpt_abcdefghijklmnopqrstuvwxyz0123456789ABCDEF",
    "Bearer eyJhbGciOiJIUzI1NiJ9.payload.signature",
    "BEARER eyJhbGciOiJIUzI1NiJ9.payload.signature",
    "Basic dXNlcjpwYXNzd29yZA==",
    "x-api-key: 0123456789abcdef0123456789abcdef",
    "X-Goog-Api-Key=0123456789abcdef0123456789abcdef",
    "api-key: '0123456789abcdef'",
    "redis://default:hunter2-very-secret@cache.internal:6379/0",
    "HTTPS://user:Pa55word!@example.com/",
]


@pytest.mark.parametrize("secret", SECRETS)
def test_every_key_shape_is_still_redacted(secret: str) -> None:
    line = redact(f"upstream said {secret} (retrying)")
    assert MASK in line and "retrying" in line
    assert secret not in line


def test_text_without_a_marker_comes_back_as_it_was() -> None:
    text = "reply 41 complete: openai/gpt-4o, 120+300 tokens, $0.0033, first token 230 ms"
    assert redact(text) is text
