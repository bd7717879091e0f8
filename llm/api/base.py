"""What every API view shares: authentication, the error body, JSON in and out.

Every error on every transport has one body:
`{"error": {"code": "...", "message": "...", "retry_after": 12?}}` (docs/api.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from contextlib import suppress
from functools import wraps
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from accounts.models import ApiToken, User
from llm.events import TurnError

# Coroutine, not Awaitable: django-stubs' path() accepts async views typed this way.
AsyncView = Callable[..., Coroutine[Any, Any, HttpResponse]]

STATUS_FOR_CODE = {
    "bad_request": 400,
    "unauthenticated": 401,
    "not_found": 404,
    "too_large": 413,
    "rate_limited": 429,
    "budget_exceeded": 402,
    "busy": 409,
    "not_configured": 409,
    "provider_auth": 502,
    "provider_rate_limited": 502,
    "provider_timeout": 504,
    "provider_unavailable": 502,
    "provider_error": 502,
    "internal": 500,
}


class ApiError(TurnError):
    """Raised anywhere inside an API view; becomes the error body with its status."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        allowed: tuple[str, ...] = (),
    ) -> None:
        super().__init__(code, message, retry_after=retry_after)
        self.status = status or STATUS_FOR_CODE.get(code, 400)
        self.allowed = allowed  # a 405 names the methods that work (RFC 9110 wants Allow)

    def body(self) -> dict[str, Any]:
        return {"error": self.as_dict()}

    def response(self) -> JsonResponse:
        response = JsonResponse(self.body(), status=self.status)
        if self.retry_after is not None:
            response["Retry-After"] = str(round(self.retry_after))
        if self.allowed:
            response["Allow"] = ", ".join(self.allowed)
        return response


class FieldErrors(ApiError):
    """400 bad_request with a message per field, as a form shows them next to each field:
    `{"error": {"code": "bad_request", "message": "...", "fields": {"name": ["..."]}}}`."""

    def __init__(self, errors: dict[str, list[dict[str, Any]]]) -> None:
        # `errors` is Form.errors.get_json_data(); the first message becomes the summary.
        self.fields = {name: [e["message"] for e in items] for name, items in errors.items()}
        name, messages = next(iter(self.fields.items()))
        summary = messages[0] if name == "__all__" else f"{name}: {messages[0]}"
        super().__init__("bad_request", summary)

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "fields": self.fields}


def bearer_token(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def authenticate(request: HttpRequest) -> tuple[User | None, bool]:
    """The caller and whether they came by bearer token (else by browser session)."""
    raw = bearer_token(request)
    if raw is not None:
        return await sync_to_async(ApiToken.authenticate)(raw), True
    user = await request.auser()
    return (user if user.is_authenticated else None), False


def _csrf_failure(request: HttpRequest) -> HttpResponse | None:
    # Session-authenticated writes need the CSRF token; bearer requests cannot be forged
    # by a browser, so they skip this.
    check = CsrfViewMiddleware(lambda r: HttpResponse())
    check.process_request(request)
    # The check looks for a form token in a POST body. Read the body first, so that the
    # view can still read it as JSON afterwards; a body that claims to be a form and is
    # not (a multipart type without its boundary) holds no form token, and Django then
    # marks it empty, so the second try checks the header alone.
    # A file upload past the in-memory cap is not read here: the form parser streams it.
    with suppress(RequestDataTooBig):
        _ = request.body
    try:
        return check.process_view(request, lambda r: HttpResponse(), (), {})
    except MultiPartParserError:
        return check.process_view(request, lambda r: HttpResponse(), (), {})


def api_view(view: AsyncView) -> AsyncView:
    """Authenticate by bearer token or session (+CSRF) and turn ApiError into its body."""

    @wraps(view)
    async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user, by_token = await authenticate(request)
        if user is None:
            message = (
                "That token is not valid or was revoked: create a new one in your settings."
                if by_token
                else "Sign in, or send 'Authorization: Bearer <token>' with a token from "
                "your settings."
            )
            return ApiError("unauthenticated", message).response()
        unsafe = request.method not in ("GET", "HEAD", "OPTIONS")
        if not by_token and unsafe and _csrf_failure(request) is not None:
            return ApiError(
                "unauthenticated",
                "The CSRF token is missing or wrong: reload the page and try again.",
                status=403,
            ).response()
        request.user = user
        try:
            return await view(request, *args, **kwargs)
        except TurnError as error:
            return ApiError.of(error).response()

    return csrf_exempt(wrapper)


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not a number JSON allows", name, 0)


def strict_json(raw: bytes | str) -> Any:
    """JSON as the standard has it: Python's NaN, Infinity and -Infinity are refused."""
    return json.loads(raw, parse_constant=_no_constant)


def read_json(request: HttpRequest) -> dict[str, Any]:
    """The request body as a JSON object, or an ApiError that says what is wrong with it."""
    try:
        data = strict_json(request.body or b"{}")
    except UnicodeDecodeError:
        raise ApiError("bad_request", "The body is not UTF-8 text.") from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            "bad_request",
            f"The body is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}).",
        ) from None
    if not isinstance(data, dict):
        raise ApiError("bad_request", 'The body must be a JSON object, like {"message": "hi"}.')
    return data


def user_of(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)  # api_view authenticated the caller
    return user


def allow(request: HttpRequest, *methods: str) -> None:
    if request.method not in methods:
        raise ApiError(
            "bad_request", f"Use {' or '.join(methods)} here.", status=405, allowed=methods
        )


async def not_found(request: HttpRequest) -> HttpResponse:
    """Any other path under /api/v1/: the error body, not Django's HTML page."""
    return ApiError(
        "not_found", "There is no such endpoint: /api/v1/openapi.json lists those there are."
    ).response()


def int_param(request: HttpRequest, name: str, default: int, lowest: int, highest: int) -> int:
    raw = request.GET.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError("bad_request", f"{name} must be a whole number, like {default}.") from None
    if not lowest <= value <= highest:
        raise ApiError("bad_request", f"{name} must be between {lowest} and {highest}.")
    return value
