"""ASGI entry point: HTTP through Django, WebSockets through Channels.

Around all of it, every HTTP request and WebSocket connection gets a request id for its
log lines and the X-Request-ID response header (llm/logs.py).
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coppertone.settings")

# Build Django first: it configures settings and apps before the consumers import models.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from llm.api.asgi import with_lean_openai  # noqa: E402
from llm.logs import with_request_id  # noqa: E402
from llm.replies import lifespan  # noqa: E402
from llm.routing import websocket_urlpatterns  # noqa: E402

application = with_request_id(
    ProtocolTypeRouter(
        {
            # /v1/ (the OpenAI-compatible hot path) skips the middleware stack: llm/api/asgi.py.
            "http": with_lean_openai(django_asgi_app),
            "websocket": AllowedHostsOriginValidator(
                AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
            ),
            # Shutdown (uvicorn's SIGTERM) ends this worker's replies cleanly: llm/replies.py.
            "lifespan": lifespan,
        }
    )
)
