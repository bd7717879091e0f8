"""Fixtures every test shares: alice (owner), bob (another user), charlie (staff)."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client, override_settings

from accounts.models import User
from llm import replies

pytest_plugins = ["tests.fakes.fixtures"]

PASSWORD = "correct horse battery staple"


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C as a terminal has it. A suite started in the background (`make test &`,
    nohup) inherits SIGINT ignored, and so would the commands it starts: the Ctrl-C tests
    would then press a key that nobody hears (three failed so on a fresh machine)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def _close_stray_connections(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Live servers and worker threads keep PostgreSQL connections open; without closing
    them the test database cannot be dropped at the end of the run."""
    yield
    if connection.vendor == "postgresql":
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


@pytest.fixture(scope="session", autouse=True)
def _media_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Uploaded attachments land in a temporary folder, never in DATA_DIR."""
    with override_settings(MEDIA_ROOT=str(tmp_path_factory.mktemp("media"))):
        yield


@pytest.fixture
async def replies_end() -> AsyncIterator[None]:
    """Replies outlive the sockets and requests of a test: stop what still runs (stored
    as stopped) before the test's database goes away."""
    yield
    await replies.runner().shutdown(grace=5.0)


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
def admin_client(db: None) -> Client:
    """Signed in as an admin (role admin: is_staff and is_superuser)."""
    root = User.objects.create_user("root", password="x", role=User.Role.ADMIN)
    client = Client()
    client.force_login(root)
    return client


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
