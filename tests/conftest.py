"""Fixtures every test shares: alice (owner), bob (another user), charlie (staff)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import User

pytest_plugins = ["tests.fakes.fixtures"]

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice(db: None) -> User:
    return User.objects.create_user("alice", "alice@example.com", PASSWORD)


@pytest.fixture
def bob(db: None) -> User:
    return User.objects.create_user("bob", "bob@example.com", PASSWORD)


@pytest.fixture
def charlie(db: None) -> User:
    return User.objects.create_user(
        "charlie", "charlie@example.com", PASSWORD, role=User.Role.STAFF
    )


@pytest.fixture
def alice_client(alice: User) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def bob_client(bob: User) -> Client:
    client = Client()
    client.force_login(bob)
    return client


@pytest.fixture
def charlie_client(charlie: User) -> Client:
    client = Client()
    client.force_login(charlie)
    return client
