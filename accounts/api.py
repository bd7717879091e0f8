"""API tokens over HTTP: `POST/GET /api/v1/tokens`, `DELETE /api/v1/tokens/{id}` (API.md).

Creating a token needs the browser session: a token cannot mint more tokens, so a
leaked one cannot be used to keep access after it is revoked.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse

from accounts.forms import ApiTokenForm
from accounts.models import ApiToken, User
from llm.api.base import ApiError, FieldErrors, api_view, bearer_token, read_json


def token_json(token: ApiToken) -> dict[str, Any]:
    """What may be said about a token: never the token itself, nor its hash."""
    return {
        "id": token.pk,
        "name": token.name,
        "prefix": token.prefix,
        "created_at": token.created_at.isoformat(),
        "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
    }


def _user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)  # api_view authenticated the caller
    return user


@api_view
async def tokens(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        rows = [t async for t in ApiToken.objects.filter(user=_user(request))]
        return JsonResponse({"tokens": [token_json(t) for t in rows]})
    if request.method != "POST":
        raise ApiError(
            "bad_request",
            "Use GET to list tokens or POST to create one.",
            status=405,
            allowed=("GET", "POST"),
        )
    if bearer_token(request) is not None:
        raise ApiError(
            "unauthenticated",
            "Tokens can only be created while signed in to the site (Settings → API tokens), "
            "not with another token.",
            status=403,
        )
    form = ApiTokenForm(_form_data(read_json(request)))
    if not form.is_valid():
        raise FieldErrors(form.errors.get_json_data())
    token, raw = await sync_to_async(ApiToken.issue)(_user(request), form.cleaned_data["name"])
    return JsonResponse({**token_json(token), "token": raw}, status=201)


@api_view
async def token_detail(request: HttpRequest, pk: int) -> HttpResponse:
    if request.method != "DELETE":
        raise ApiError(
            "bad_request", "Use DELETE to revoke a token.", status=405, allowed=("DELETE",)
        )
    deleted, _ = await ApiToken.objects.filter(user=_user(request), pk=pk).adelete()
    if not deleted:
        raise ApiError("not_found", "You have no token with that id.")
    return HttpResponse(status=204)


def _form_data(payload: dict[str, Any]) -> dict[str, str]:
    name = payload.get("name")
    if name is not None and not isinstance(name, str):
        raise FieldErrors({"name": [{"message": "Send the name as a string."}]})
    return {"name": name or ""}
