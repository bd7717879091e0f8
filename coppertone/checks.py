"""System checks that turn bad configuration into a message that says how to fix it."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from llm import crypto, limits
from llm.providers.guard import PrivateHosts

_KEY_HOWTO = (
    'Generate one with: python -c "import base64,secrets;'
    'print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())"'
)


@register()
def production_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    problems: list[CheckMessage] = []
    if settings.SECRET_KEY_MISSING:
        problems.append(
            Error(
                "SECRET_KEY is not set.",
                hint="With DEBUG off, set SECRET_KEY in the environment to a long random "
                'string (python -c "import secrets;print(secrets.token_urlsafe(50))").',
                id="coppertone.E001",
            )
        )
    if not settings.LLM_ENCRYPTION_KEYS:
        problems.append(
            Error(
                "LLM_ENCRYPTION_KEYS is not set, so provider keys cannot be stored.",
                hint="Set LLM_ENCRYPTION_KEYS to one or more comma-separated base64 keys of "
                f"32 bytes; the first encrypts, all decrypt. {_KEY_HOWTO}",
                id="coppertone.E002",
            )
        )
    else:
        try:
            crypto.KeyRing.from_settings()
        except crypto.BadKeyConfig as exc:
            problems.append(
                Error(
                    f"LLM_ENCRYPTION_KEYS is not valid: {exc}",
                    hint=_KEY_HOWTO,
                    id="coppertone.E003",
                )
            )
    try:
        limits.parse_rate(settings.LLM_RATE_LIMIT)
    except ValueError as exc:
        problems.append(
            Error(str(exc), hint="For example LLM_RATE_LIMIT=30/m.", id="coppertone.E005")
        )
    try:
        PrivateHosts.parse(tuple(settings.LLM_PRIVATE_HOSTS))
    except ValueError as exc:
        problems.append(
            Error(
                f"LLM_PRIVATE_HOSTS: {exc}.",
                hint="For example LLM_PRIVATE_HOSTS=127.0.0.1:11434,10.1.0.0/16.",
                id="coppertone.E006",
            )
        )
    if settings.LLM_ALLOW_PRIVATE_HOSTS_LEFT:
        problems.append(
            Warning(
                "LLM_ALLOW_PRIVATE_HOSTS is no longer read: private addresses are now an "
                "allowlist.",
                hint="List the servers instead, e.g. LLM_PRIVATE_HOSTS=127.0.0.1:11434.",
                id="coppertone.W004",
            )
        )
    if not settings.DEBUG:
        if not settings.ALLOWED_HOSTS:
            problems.append(
                Error(
                    "ALLOWED_HOSTS is empty, so every request would be refused.",
                    hint="Set ALLOWED_HOSTS to the host names the site is served on, "
                    "comma-separated (ALLOWED_HOSTS=chat.example.com).",
                    id="coppertone.E004",
                )
            )
        if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
            problems.append(
                Warning(
                    "DEBUG is off but the database is SQLite.",
                    hint="Set DATABASE_URL=postgres://user:password@host:5432/name for "
                    "production; SQLite allows one writer at a time.",
                    id="coppertone.W001",
                )
            )
        if not settings.REDIS_URL:
            problems.append(
                Warning(
                    "DEBUG is off but REDIS_URL is not set.",
                    hint="Set REDIS_URL=redis://host:6379/0 so several workers share the "
                    "channel layer, the cache and the rate limits.",
                    id="coppertone.W002",
                )
            )
    return problems


@register()
def operations_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Metrics access and the log format (llm/api/metrics.py, llm/logs.py)."""
    from llm.api.metrics import parse_networks

    problems: list[CheckMessage] = []
    try:
        parse_networks(tuple(settings.METRICS_ALLOWED_NETWORKS))
    except ValueError as exc:
        problems.append(
            Error(
                f"METRICS_ALLOWED_NETWORKS: {exc}; until it is fixed, /metrics answers "
                "only requests with METRICS_TOKEN.",
                hint="For example METRICS_ALLOWED_NETWORKS=127.0.0.0/8,::1,10.1.0.0/16.",
                id="coppertone.E010",
            )
        )
    if settings.LOG_FORMAT not in ("plain", "json"):
        problems.append(
            Error(
                f"LOG_FORMAT={settings.LOG_FORMAT!r} is not a log format; plain lines are "
                "written instead.",
                hint="Set LOG_FORMAT=json for one JSON object a line, or leave it unset.",
                id="coppertone.E011",
            )
        )
    return problems


@register()
def local_model(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Say at startup, not at the first chat, that the embedded model cannot load."""
    from llm.models import provider_options
    from llm.providers.base import ProviderError
    from llm.providers.local import model_path

    try:
        model_path(provider_options())
    except ProviderError as exc:
        return [
            Warning(
                "The embedded local model is unavailable: people without a provider key "
                "cannot chat.",
                hint=exc.message,
                id="coppertone.W003",
            )
        ]
    return []
