"""Consumer tests: every test starts with empty rate-limit windows.

The limit counts turns per user id in the cache, and ids repeat from test to test
(alice is often id 1), so without this the turns of earlier tests would count."""

from __future__ import annotations

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _fresh_limits() -> None:
    cache.clear()
