"""Make the benchmark's person, through the ORM, in the database the server will use.

`python -m bench.seed <mock base URL>` (with the run's environment) creates a user,
an API token (ApiToken.issue), an openai_compatible ProviderConfig pointing at the
mock, and a signed-in session for the WebSocket; it prints them as one JSON line.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from importlib import import_module

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coppertone.settings")
    django.setup()
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    from accounts.models import ApiToken, User
    from llm.models import ProviderConfig

    base_url = sys.argv[1]
    # A fresh name each run, so a shared PostgreSQL database never collides.
    user = User.objects.create_user(
        f"bench-{secrets.token_hex(4)}",
        password=secrets.token_urlsafe(16),
        default_provider="openai_compatible",
    )
    _, token = ApiToken.issue(user, "benchmark")
    ProviderConfig.objects.create(
        user=user,
        kind="openai_compatible",
        base_url=base_url,
        model="mock-t10-d0",
        max_tokens=4096,
        # No concurrency cap (an OpenAI-compatible server's default is 8): the mock is
        # not a GPU server, and the benchmark measures the hub, not a queue in front of it.
        max_concurrent=0,
    )
    # What django.contrib.auth.login stores, without a request.
    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    print(
        json.dumps(
            {
                "user_id": user.pk,
                "username": user.get_username(),
                "token": token,
                "cookie": f"{settings.SESSION_COOKIE_NAME}={session.session_key}",
            }
        )
    )


if __name__ == "__main__":
    main()
