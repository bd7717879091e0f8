"""Sign-in and sign-up throttling: per client address and per account (django-ratelimit).

Both limits count POSTs only, in the shared cache (Redis in production), so a guesser
is slowed whichever worker answers. A refused attempt is the page again with the
reason and `Retry-After`, status 429; the form never reaches the password check.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from django_ratelimit.core import get_usage

View = Callable[..., HttpResponseBase]


def _account(group: str, request: HttpRequest) -> str:
    return str(request.POST.get("username", "")).strip().lower()


def _wait(usages: list[dict[str, Any]]) -> int | None:
    """Seconds until every exceeded window has passed, or None when none is exceeded."""
    exceeded = [u["time_left"] for u in usages if u and u["should_limit"]]
    return max(exceeded) if exceeded else None


def throttled(group: str, template: str) -> Callable[[View], View]:
    """Limit POSTs to the view by `settings.AUTH_RATE_LIMIT_PER_IP` and `_PER_ACCOUNT`."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method == "POST":
                usages = [
                    get_usage(
                        request,
                        group=group,
                        key="ip",
                        rate=settings.AUTH_RATE_LIMIT_PER_IP,
                        method="POST",
                        increment=True,
                    )
                ]
                if _account(group, request):
                    usages.append(
                        get_usage(
                            request,
                            group=f"{group}.account",
                            key=_account,
                            rate=settings.AUTH_RATE_LIMIT_PER_ACCOUNT,
                            method="POST",
                            increment=True,
                        )
                    )
                wait = _wait([u for u in usages if u is not None])
                if wait is not None:
                    return _refused(request, template, wait)
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def _refused(request: HttpRequest, template: str, wait: int) -> HttpResponse:
    minutes = f"{wait} seconds" if wait < 120 else f"{round(wait / 60)} minutes"
    message = f"Too many attempts. For your account's safety, wait {minutes} before trying again."
    response = render(request, template, {"throttled": message}, status=429)
    response["Retry-After"] = str(wait)
    return response
