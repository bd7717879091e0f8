"""The rate-limit setting is read in words a person can fix."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks

from llm.limits import parse_rate


def test_rates_are_count_per_period() -> None:
    assert parse_rate("30/m") == (30, 60)
    assert parse_rate("5/s") == (5, 1)
    assert parse_rate("1000/hour") == (1000, 3600)
    assert parse_rate("") == (0, 60)  # no limit


def test_a_bad_rate_is_a_system_check_error(settings: Any) -> None:
    settings.LLM_RATE_LIMIT = "often"
    with pytest.raises(ValueError, match="write it like 30/m"):
        parse_rate(settings.LLM_RATE_LIMIT)
    errors = [m for m in run_checks() if m.id == "coppertone.E005"]
    assert errors and "LLM_RATE_LIMIT='often'" in errors[0].msg
