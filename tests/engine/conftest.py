"""Engine test helpers: a person's provider settings pointed at a fake server."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache

from accounts.models import User
from llm import pricing
from llm.models import ProviderConfig
from tests.fakes.server import FakeServer


def configure(user: User, fake: FakeServer, kind: str = "openai", **fields: Any) -> ProviderConfig:
    """Store `user`'s settings for `kind` with the fake's base URL and key."""
    config = ProviderConfig(
        user=user, kind=kind, base_url=fake.base_url, model=fields.pop("model", "gpt-4o")
    )
    for name, value in fields.items():
        setattr(config, name, value)
    config.set_api_key(fake.api_key)
    config.save()
    return config


@pytest.fixture(autouse=True)
def _fresh_limits(settings: Any) -> None:
    # Each test starts with empty rate-limit windows and reads prices afresh.
    cache.clear()
    pricing.clear_cache()
    settings.LLM_MAX_RETRIES = 0


@pytest.fixture(autouse=True)
def _replies_end(replies_end: None) -> None:
    pass
