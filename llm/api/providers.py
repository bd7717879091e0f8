"""Provider settings over HTTP (API.md): list, save, forget, test, list models.

Validation is `llm.forms.ProviderConfigForm`, the same form the settings page uses.
The key is write-only: a response carries at most its last four characters.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from accounts.models import User
from llm import connection
from llm.api.base import ApiError, FieldErrors, api_view, read_json
from llm.connection import KeyUnreadable
from llm.events import TurnError
from llm.forms import NOTHING, PROVIDER_FIELDS, ProviderConfigForm, provider_form_data
from llm.models import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, ProviderConfig, Thinking
from llm.providers import registry
from llm.providers.base import ProviderError


def _user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)  # api_view authenticated the caller
    return user


def _kind_or_404(kind: str) -> str:
    if kind not in registry.PROVIDERS:
        known = ", ".join(registry.PROVIDERS)
        raise ApiError("not_found", f"There is no provider '{kind}'. The kinds are: {known}.")
    return kind


def _iso(when: dt.datetime | None) -> str | None:
    return when.isoformat() if when else None


def breaker_json(config: ProviderConfig | None, now: dt.datetime) -> dict[str, Any]:
    """Open while its retry time is ahead: turns skip this configuration until then."""
    if config is not None and config.open_until is not None and config.open_until > now:
        return {"state": "open", "retry_at": _iso(config.open_until), "failure": config.failure}
    return {"state": "closed", "retry_at": None, "failure": ""}


def provider_json(
    kind: str, config: ProviderConfig | None, now: dt.datetime | None = None
) -> dict[str, Any]:
    spec = registry.spec(kind)
    body: dict[str, Any] = {
        "kind": kind,
        "label": spec.label,
        "configured": config is not None,
        "model": config.effective_model if config else spec.default_model,
        "temperature": config.temperature if config else DEFAULT_TEMPERATURE,
        "max_tokens": config.max_tokens if config else DEFAULT_MAX_TOKENS,
        "base_url": config.effective_base_url if config else spec.default_base_url,
        "key_hint": config.key_hint if config else "",
        "system_prompt": config.system_prompt if config else "",
        "needs_key": spec.needs_key,
        "last_verified_at": (
            config.last_verified_at.isoformat() if config and config.last_verified_at else None
        ),
        "last_error": config.last_error if config else "",
        "enabled": config.enabled if config else True,
        "top_p": config.top_p if config else None,
        "stop": list(config.stop or []) if config else [],
        "thinking": config.thinking if config else Thinking.AUTO.value,
        "connect_timeout": config.connect_timeout if config else None,
        "first_byte_timeout": config.first_byte_timeout if config else None,
        "idle_timeout": config.idle_timeout if config else None,
        "max_concurrent": config.max_concurrent if config else None,
        "cache_replies": config.cache_replies if config else False,
        "breaker": breaker_json(config, now or timezone.now()),
    }
    if "api_version" in spec.extra_fields:
        body["api_version"] = config.api_version if config else ""
    if spec.keep_alive:
        body["keep_alive_minutes"] = config.keep_alive_minutes if config else 0
        body["keep_alive_at"] = _iso(config.keep_alive_at) if config else None
        body["keep_alive_result"] = config.keep_alive_result if config else ""
    return body


@api_view
async def providers(request: HttpRequest) -> HttpResponse:
    if request.method != "GET":
        raise ApiError("bad_request", "Use GET to list providers.", status=405, allowed=("GET",))
    configs = {
        c.kind: c
        async for c in ProviderConfig.objects.filter(user=_user(request))  # only the caller's
    }
    now = timezone.now()
    return JsonResponse(
        {"providers": [provider_json(k, configs.get(k), now) for k in registry.PROVIDERS]}
    )


@api_view
async def provider(request: HttpRequest, kind: str) -> HttpResponse:
    kind = _kind_or_404(kind)
    user = _user(request)
    if request.method == "GET":
        config = await ProviderConfig.objects.filter(user=user, kind=kind).afirst()
        return JsonResponse(provider_json(kind, config))
    if request.method == "PUT":
        payload = read_json(request)
        saved = await sync_to_async(_save)(user, kind, payload)
        return JsonResponse(provider_json(kind, saved))
    if request.method == "DELETE":
        deleted, _ = await ProviderConfig.objects.filter(user=user, kind=kind).adelete()
        if not deleted:
            raise ApiError("not_found", f"You have no {registry.spec(kind).label} settings.")
        if user.default_provider == kind:
            user.default_provider = ""
            await user.asave(update_fields=["default_provider"])
        return HttpResponse(status=204)
    raise ApiError(
        "bad_request",
        "Use GET, PUT or DELETE on a provider.",
        status=405,
        allowed=("GET", "PUT", "DELETE"),
    )


def _save(user: User, kind: str, payload: dict[str, Any]) -> ProviderConfig:
    config = ProviderConfig.objects.filter(user=user, kind=kind).first()
    current = config or ProviderConfig(user=user, kind=kind)
    data, problems = provider_form_data(current, payload)
    form = ProviderConfigForm(data, instance=config, kind=kind, user=user)
    errors = {} if form.is_valid() else form.errors.get_json_data()
    for name, messages in problems.items():
        errors.setdefault(name, []).extend({"message": m} for m in messages)
    for name, value in payload.items():
        # A value for a field this kind does not have would be dropped without a word.
        if name in PROVIDER_FIELDS and name not in form.fields and value not in NOTHING:
            label = registry.spec(kind).label
            errors.setdefault(name, []).append({"message": f"{label} has no {name}."})
    if errors:
        raise FieldErrors(errors)
    is_new, changed = config is None, form.connection_changed()
    saved = form.save(commit=False)
    if is_new or changed:
        # What was verified before is not what is stored now.
        saved.last_verified_at, saved.last_error = None, ""
    saved.save()
    return saved


def _target(user: User, kind: str) -> ProviderConfig:
    """The stored configuration, or the defaults for a kind that needs no key."""
    config = ProviderConfig.objects.filter(user=user, kind=kind).first()
    if config is not None:
        return config
    spec = registry.spec(kind)
    if spec.needs_key or (spec.has_base_url and not spec.default_base_url):
        raise ApiError(
            "not_configured",
            f"{spec.label} is not set up yet: PUT /api/v1/providers/{kind} with its api_key first.",
        )
    return ProviderConfig(user=user, kind=kind)


@api_view
async def provider_test(request: HttpRequest, kind: str) -> HttpResponse:
    if request.method != "POST":
        raise ApiError("bad_request", "Use POST to test a provider.", status=405, allowed=("POST",))
    kind = _kind_or_404(kind)
    config = await sync_to_async(_target)(_user(request), kind)
    try:
        creds = await sync_to_async(connection.credentials)(config)
    except KeyUnreadable as unreadable:
        check = connection.Check(ok=False, code="provider_auth", message=str(unreadable))
    else:
        try:
            check = await connection.run_check(config.provider(), creds, user_id=config.user_id)
        except connection.Throttled as throttled:
            raise ApiError.of(TurnError.from_provider(throttled)) from None
    await sync_to_async(connection.record)(config, check)
    if check.ok:
        return JsonResponse({"ok": True, "latency_ms": check.latency_ms, "models": check.count})
    return JsonResponse({"ok": False, "error": check.error()})


@api_view
async def provider_models(request: HttpRequest, kind: str) -> HttpResponse:
    if request.method != "GET":
        raise ApiError(
            "bad_request", "Use GET to list a provider's models.", status=405, allowed=("GET",)
        )
    kind = _kind_or_404(kind)
    config = await sync_to_async(_target)(_user(request), kind)
    try:
        creds = await sync_to_async(connection.credentials)(config)
        models = await connection.fetch_models(config.provider(), creds, user_id=config.user_id)
    except KeyUnreadable as unreadable:
        raise ApiError("provider_auth", str(unreadable)) from None
    except ProviderError as error:
        raise ApiError.of(TurnError.from_provider(error)) from None
    return JsonResponse({"models": models})
