"""Secrets out of text: every key shape the hub handles, replaced before a line is logged.

`RedactSecrets` is a logging filter on every handler (coppertone/settings.py LOGGING), so
a key that slips into a message, its arguments or a traceback (an upstream echoing it,
a URL with a password, an exception holding a header) never reaches the log. Imports
nothing from Django, so that providers may use `redact` too.
"""

from __future__ import annotations

import logging
import re

MASK = "[redacted]"

# Each shape keeps a short recognisable prefix so that a log still says what was there.
_SHAPES = [
    (re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{8,}"), "sk-ant-" + MASK),
    (re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_\-]{8,}"), "sk-" + MASK),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"), "AIza" + MASK),
    (re.compile(r"\bhf_[A-Za-z0-9]{8,}"), "hf_" + MASK),
    (re.compile(r"\bcpt_[A-Za-z0-9_\-]{8,}"), "cpt_" + MASK),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{6,}"), r"\1 " + MASK),
    (re.compile(r"(?i)\b(x-api-key|api-key|x-goog-api-key)(['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]{6,}"),
     r"\1\2" + MASK),
    # scheme://user:password@host
    (re.compile(r"([a-z][a-z0-9+.\-]*://[^/\s:@]*:)[^@\s/]+@", re.IGNORECASE), r"\1" + MASK + "@"),
]  # fmt: skip


# What every LogRecord has; anything else on one came as `extra` fields (JSON logs show them).
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


# Every shape above holds one of these, in any case: text with none of them (most log
# text) is returned as it is, without the eight scans. A new shape adds its marker here.
_MARKERS = ("sk-", "aiza", "hf_", "cpt_", "bearer", "basic", "api-key", "://")


def redact(text: str) -> str:
    lowered = text.lower()
    if not any(marker in lowered for marker in _MARKERS):
        return text
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """Redacts the finished message, its extra text fields, the traceback and the stack
    of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        fields = record.__dict__
        for name in fields.keys() - _STANDARD:
            value = fields[name]
            if isinstance(value, str):
                fields[name] = redact(value)
            elif not isinstance(value, int | float | None):
                # An object (django.request's `request`) is shown by its text: clean that.
                fields[name] = redact(str(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
