"""Consumer tests: every test starts with empty rate-limit windows.

The limit counts turns per user id in the cache, and ids repeat from test to test
(alice is often id 1), so without this the turns of earlier tests would count."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.cache import cache
from django.test import Client

from accounts.models import User
from coppertone.asgi import application
from llm.models import ProviderConfig
from tests.fakes.openai_server import FakeOpenAI


@pytest.fixture(autouse=True)
def _fresh_limits() -> None:
    cache.clear()


@pytest.fixture(autouse=True)
def _replies_end(replies_end: None) -> None:
    pass


ORIGIN = (b"origin", b"http://127.0.0.1")
TIMEOUT = 5


def _session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


async def open_socket(user: User | None, origin: tuple[bytes, bytes] = ORIGIN) -> Any:
    headers = [origin, (b"host", b"127.0.0.1")]
    if user is not None:
        cookie = await sync_to_async(_session_cookie)(user)
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    return WebsocketCommunicator(application, "/ws/chat/", headers=headers)


Connect = Callable[[User], Coroutine[Any, Any, Any]]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Open a signed-in socket; every socket a test opens is closed after it."""
    opened: list[Any] = []

    async def _connect(user: User) -> Any:
        socket = await open_socket(user)
        connected, _ = await socket.connect(timeout=TIMEOUT)
        assert connected
        opened.append(socket)
        return socket

    yield _connect
    for socket in opened:
        await socket.disconnect(timeout=TIMEOUT)


@pytest.fixture
def openai_for_alice(alice: User, fake_openai: FakeOpenAI) -> FakeOpenAI:
    config = ProviderConfig(user=alice, kind="openai", base_url=fake_openai.base_url)
    config.set_api_key(fake_openai.api_key)
    config.save()
    return fake_openai
