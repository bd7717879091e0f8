"""Hole 8: no key shape reaches a log line, whichever way it travels into the record."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from llm.models import provider_options
from llm.providers.base import Credentials
from llm.providers.http import Target

SECRETS = {
    "openai": "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
    "anthropic": "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345",
    "gemini": "AIzaSyA1234567890abcdefghijklmnopqrstuv",
    "huggingface": "hf_abcdefghijklmnopqrstuvwxyz0123456789",
    "coppertone": "cpt_abcdefghijklmnopqrstuvwxyz0123456789ABCDEF",
    "bearer": "Bearer eyJhbGciOiJIUzI1NiJ9.payload.signature",
    "header": "x-api-key: 0123456789abcdef0123456789abcdef",
    "url": "redis://default:hunter2-very-secret@cache.internal:6379/0",
}
LEAKS = [
    "abcdefghijklmnop",
    "1234567890abcdefghij",
    "payload.signature",
    "hunter2",
    "0123456789abcdef0123",
]


@pytest.fixture
def console() -> Iterator[io.StringIO]:
    """What the configured console handler writes (settings.LOGGING), captured."""
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    assert isinstance(handler, logging.StreamHandler)
    captured = io.StringIO()
    previous = handler.setStream(captured)
    yield captured
    handler.setStream(previous)


@pytest.mark.parametrize("shape", SECRETS)
def test_every_key_shape_is_redacted_on_every_log_path(console: io.StringIO, shape: str) -> None:
    secret = SECRETS[shape]
    log = logging.getLogger("llm.tests.redaction")
    log.warning("in the message: " + secret)
    log.warning("in the arguments: %s %r", secret, {"auth": secret})
    try:
        raise RuntimeError(f"upstream said {secret}")
    except RuntimeError:
        log.exception("in a traceback")
    log.warning("in the stack: %s", secret, stack_info=True)

    written = console.getvalue()
    assert "in a traceback" in written and "RuntimeError" in written
    for leak in LEAKS:
        assert leak not in written, (shape, written)
    assert "[redacted]" in written


def test_reprs_of_what_holds_a_key_never_show_it() -> None:
    key = SECRETS["openai"]
    credentials = Credentials(api_key=key, base_url="https://api.openai.com/v1")
    target = Target(label="OpenAI", options=provider_options(), secret=key)
    for shown in (repr(credentials), repr(target), str(credentials)):
        assert key not in shown and key[:-4] not in shown


@pytest.mark.parametrize("shape", SECRETS)
def test_an_upstream_error_that_echoes_a_key_is_stored_without_it(shape: str) -> None:
    from llm.providers.http import summarize

    stored = summarize(f"invalid credentials: {SECRETS[shape]} (see docs)")
    for leak in LEAKS:
        assert leak not in stored, stored
