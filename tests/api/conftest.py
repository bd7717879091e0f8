"""API test fixtures: alice's and bob's bearer tokens, fresh limits for every test."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache

from accounts.models import ApiToken, User
from tests.engine.conftest import configure
from tests.fakes.openai_server import FakeOpenAI


@pytest.fixture(autouse=True)
def _fresh(settings: Any) -> None:
    cache.clear()
    settings.LLM_MAX_RETRIES = 0


@pytest.fixture
def alice_auth(alice: User, fake_openai: FakeOpenAI) -> dict[str, str]:
    configure(alice, fake_openai)
    alice.default_provider = "openai"  # so that no test reaches the local model
    alice.save()
    _, raw = ApiToken.issue(alice, "tests")
    return {"Authorization": f"Bearer {raw}"}


@pytest.fixture
def bob_auth(bob: User) -> dict[str, str]:
    _, raw = ApiToken.issue(bob, "tests")
    return {"Authorization": f"Bearer {raw}"}
