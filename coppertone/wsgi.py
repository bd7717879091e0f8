"""WSGI entry point: pages and the JSON API only (WebSockets need coppertone.asgi)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coppertone.settings")

application = get_wsgi_application()
