"""The whole ASGI app served on 127.0.0.1 in a thread of the test process, for tests that
need a real socket (an SDK, a fuzzer); the test database is shared in-process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


@contextmanager
def serving(**config: Any) -> Iterator[str]:
    """The base URL of `coppertone.asgi.application` under uvicorn, until the block ends."""
    from coppertone.asgi import application

    server = uvicorn.Server(
        uvicorn.Config(
            application,
            **{"host": "127.0.0.1", "port": 0, "lifespan": "off", "log_level": "error", **config},
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
