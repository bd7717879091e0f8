"""Browser tests: the real ASGI app served live, driven by Debian's Chromium through Playwright.

Fixtures (any test under tests/browser/ may use them; every test here is marked `browser`):

    live_url        function scope, needs a transactional database (it requests
                    `transactional_db`, so data a test creates is visible to the server).
                    The base URL, e.g. "http://127.0.0.1:43117", of uvicorn serving
                    `coppertone.asgi.application` (HTTP, WebSockets, and static files from
                    the finders) in a thread of the test process, for the whole session.
    browser         module scope: headless /usr/bin/chromium. Tests are skipped (not
                    failed) when it is not installed (`make browser` installs it).
    page            function scope (uses live_url): a fresh context (1280x800, its own
                    cookies) and page; closed after the test, which then waits until the
                    server has handled every request and socket of it. Playwright's
                    default timeout is 10 s, and `expect` waits 10 s too.
    phone_page      the same at 375x740 (an iPhone-sized viewport).
    artifacts       Path of test-artifacts/ (gitignored) for screenshots.
    asgi_server     the LiveServer behind live_url: `.drop_sockets()` cuts every open
                    WebSocket (to test reconnecting), `.wait_idle()`.
    sign_in(page, live_url, username)   helper: signs in through the real login form
                    with tests.conftest.PASSWORD and waits for the home page.

Playwright's sync API leaves its event loop marked as running in the test's thread for
as long as Playwright is started. Two consequences shape these fixtures: Django's ORM
refuses to run in that thread ("cannot call this from an async context"), so `browser`
sets DJANGO_ALLOW_ASYNC_UNSAFE while it lives (the test's own ORM calls and the
database fixtures then work; the server's ORM calls run in the server's threads as
usual); and no other event loop may start in that thread meanwhile, so `browser` is
module-scoped, stopped before any async test of another module runs. Browser tests
are therefore sync tests.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from tests.conftest import PASSWORD

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
HERE = Path(__file__).resolve().parent
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.browser)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn in a daemon thread with its own event loop."""

    def __init__(self) -> None:
        import uvicorn
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        from coppertone.asgi import application

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.active = 0  # requests and sockets the app is still handling
        self.server_loop: asyncio.AbstractEventLoop | None = None  # known from the first call
        # The request-id wrapper (coppertone/asgi.py) is a plain ASGI callable, which
        # Django's stubs do not take for an ASGIHandler: it is one at run time.
        app = ASGIStaticFilesHandler(cast(Any, application))

        async def counted(scope: Any, receive: Any, send: Any) -> None:
            self.server_loop = asyncio.get_running_loop()
            self.active += 1
            try:
                await app(scope, receive, send)
            finally:
                self.active -= 1

        config = uvicorn.Config(
            counted,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            ws="websockets-sansio",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="live-asgi", daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the live ASGI server did not start")
            time.sleep(0.02)
        return self

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until every request and socket is handled (e.g. a closed page's socket
        has stored its stopped reply), so none touches the database after the test."""
        deadline = time.monotonic() + timeout
        while self.active and time.monotonic() < deadline:
            time.sleep(0.02)

    def end_replies(self) -> None:
        """Stop the replies a test left running (they outlive its pages), stored as
        stopped, so that none writes to the database after the test."""
        loop = self.server_loop
        if loop is None or loop.is_closed():
            return
        from llm import replies

        async def end() -> None:
            await replies.runner().shutdown(grace=0)

        asyncio.run_coroutine_threadsafe(end(), loop).result(15)

    def drop_sockets(self) -> int:
        """Cut every open WebSocket's TCP connection, as a network drop or a restart would."""
        loop = self.server_loop
        assert loop is not None, "nothing has connected yet"
        dropped = [
            c for c in list(self.server.server_state.connections) if "WebSocket" in type(c).__name__
        ]
        for connection in dropped:
            loop.call_soon_threadsafe(connection.transport.abort)
        return len(dropped)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)


@pytest.fixture(scope="session")
def _live_server() -> Iterator[LiveServer]:
    server = LiveServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_limits() -> None:
    # Rate-limit windows are per user id, and ids repeat from test to test.
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def asgi_server(_live_server: LiveServer, live_url: str) -> LiveServer:
    return _live_server


@pytest.fixture
def live_url(_live_server: LiveServer, transactional_db: None) -> Iterator[str]:
    yield _live_server.url
    _live_server.wait_idle()
    _live_server.end_replies()


@pytest.fixture(scope="module")
def browser(django_db_setup: None) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (make browser installs it)")
    from playwright.sync_api import expect, sync_playwright

    # The machine may be busy (CI, parallel runs): waiting is cheap, flaking is not.
    expect.set_options(timeout=10_000)

    before = os.environ.get(ASYNC_UNSAFE)
    os.environ[ASYNC_UNSAFE] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            yield chromium
            chromium.close()
    finally:
        if before is None:
            os.environ.pop(ASYNC_UNSAFE, None)
        else:
            os.environ[ASYNC_UNSAFE] = before


def _page(browser: Any, server: LiveServer, **context: Any) -> Iterator[Any]:
    ctx = browser.new_context(**context)
    ctx.set_default_timeout(10_000)
    page = ctx.new_page()
    yield page
    ctx.close()
    server.wait_idle()


@pytest.fixture
def page(browser: Any, _live_server: LiveServer, live_url: str) -> Iterator[Any]:
    yield from _page(browser, _live_server, viewport={"width": 1280, "height": 800})


@pytest.fixture
def phone_page(browser: Any, _live_server: LiveServer, live_url: str) -> Iterator[Any]:
    yield from _page(
        browser,
        _live_server,
        viewport={"width": 375, "height": 740},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def sign_in(page: Any, live_url: str, username: str, password: str = PASSWORD) -> None:
    """Sign in through the real form, as a person would."""
    page.goto(f"{live_url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_url}/")
