"""The rate limit's counter on Redis: one atomic round trip, the cache's own key and value.

Runs where REDIS_URL is set (CI); elsewhere the cache is in-process and check_rate takes
Django's cache API, which tests/engine/test_turns.py covers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches

from llm import limits

REDIS_URL = os.environ.get("REDIS_URL", "")
# A prefix of this run's own, so the test reads and removes only its keys (no FLUSHDB).
PREFIX = f"coppertone-test-rate-{uuid.uuid4().hex[:12]}"
pytestmark = pytest.mark.skipif(not REDIS_URL, reason="needs REDIS_URL (a Redis server)")


@pytest.fixture
def redis_cache(settings: Any) -> Iterator[None]:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": PREFIX,
        }
    }
    settings.LLM_RATE_LIMIT = "3/h"
    yield
    cache = caches["default"]
    for key in _keys(cache):
        cache._cache.get_client(None, write=True).delete(key)  # type: ignore[attr-defined]


def test_counts_to_the_limit_then_refuses_with_the_wait(redis_cache: None) -> None:
    for _ in range(3):
        limits.check_rate(4242)
    with pytest.raises(limits.LimitError) as refused:
        limits.check_rate(4242)
    assert refused.value.code == "rate_limited"
    assert "3 messages in the last hour" in refused.value.message
    assert refused.value.retry_after is not None and 1 <= refused.value.retry_after <= 3600
    limits.check_rate(4243)  # another person has a window of their own


def test_counter_is_the_caches_own_key_with_the_window_as_lifetime(redis_cache: None) -> None:
    limits.check_rate(4242)
    limits.check_rate(4242)
    cache = caches["default"]
    keys = [key for key in _keys(cache) if ":llm:rate:4242:" in key]
    assert len(keys) == 1
    window_key = keys[0].split(":", 2)[2]  # drop the prefix and version the cache adds
    assert cache.get(window_key) == 2
    ttl = limits._redis_client(limits._shared_cache()).ttl(keys[0])
    assert 0 < ttl <= 3601


def _keys(cache: Any) -> list[str]:
    client = cache._cache.get_client(None, write=True)
    return [key.decode() for key in client.keys(f"{PREFIX}:*")]
