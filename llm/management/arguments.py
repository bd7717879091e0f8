"""The operator commands' shared arguments, each refused in the same words everywhere."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import CommandError

from accounts.models import User
from llm.providers import registry


def user_named(username: str) -> User:
    """Any account, active or not: reports and clean-ups cover people who have left too."""
    user = User.objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"There is no user called {username!r} (--user takes a username).")
    return user


def provider_kind(kind: str) -> str:
    if kind not in registry.PROVIDERS:
        raise CommandError(
            f"There is no provider called {kind!r}: --provider takes one of "
            + ", ".join(registry.PROVIDERS)
            + "."
        )
    return kind


def day(text: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise CommandError(
            f"{option} {text!r} is not a date: write it as YYYY-MM-DD, e.g. 2026-11-01."
        ) from None
