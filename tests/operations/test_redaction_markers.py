"""The redaction's quick path (text with no marker is left alone) misses no key shape."""

from __future__ import annotations

import pytest

from llm.redaction import MASK, redact
from tests.security.test_redaction import SECRETS as KEY_SHAPES

# The key shapes of the hardening tests (made-up, never real keys), and the spellings the
# quick path's markers must also catch.
SECRETS = [
    *KEY_SHAPES.values(),
    "sk-abcdefghijklmnop",
    "BEARER eyJhbGciOiJIUzI1NiJ9.payload.signature",
    "Basic dXNlcjpwYXNzd29yZA==",
    "X-Goog-Api-Key=0123456789abcdef0123456789abcdef",
    "api-key: '0123456789abcdef'",
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
