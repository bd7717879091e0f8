"""Presets and prompt templates over HTTP (docs/api.md): /api/v1/presets and /api/v1/templates.

The caller lists and reads their own and the staff-published ones; they change only their
own (anyone else's is 404, published or not). What is valid is llm.presets' forms, the
same ones the settings pages post.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse

from accounts.models import User
from llm import presets
from llm.api.base import ApiError, FieldErrors, allow, api_view, read_json, user_of
from llm.models import Preset, PromptTemplate

Owned = Preset | PromptTemplate


def _common(item: Owned, user: User) -> dict[str, Any]:
    return {
        "id": item.pk,
        "name": item.name,
        "published": item.published,
        "mine": item.user_id == user.pk,
        "created_at": item.created_at.isoformat(),
        "updated_at": item.updated_at.isoformat(),
    }


def preset_json(preset: Owned, user: User) -> dict[str, Any]:
    assert isinstance(preset, Preset)
    return {
        **_common(preset, user),
        "provider": preset.provider,
        "model": preset.model,
        "system_prompt": preset.system_prompt,
        "temperature": preset.temperature,
        "max_tokens": preset.max_tokens,
    }


def part_json(part: presets.Part) -> dict[str, str]:
    return {"text": part} if isinstance(part, str) else {"placeholder": part.name}


def template_json(template: Owned, user: User) -> dict[str, Any]:
    assert isinstance(template, PromptTemplate)
    parts = presets.parts_of(template)
    return {
        **_common(template, user),
        "text": template.text,
        "placeholders": presets.placeholders(parts),
        # Filled in order, a client needs no parser of its own: the rule stays here.
        "parts": [part_json(p) for p in parts],
    }


@dataclass(frozen=True)
class _Kind:
    model: presets.Kind
    form: type[presets.PresetForm] | type[presets.PromptTemplateForm]
    fields: dict[str, str]
    as_json: Callable[[Owned, User], dict[str, Any]]
    plural: str


PRESETS = _Kind(Preset, presets.PresetForm, presets.PRESET_FIELDS, preset_json, "presets")
TEMPLATES = _Kind(
    PromptTemplate,
    presets.PromptTemplateForm,
    presets.TEMPLATE_FIELDS,
    template_json,
    "templates",
)


def _missing(kind: _Kind) -> ApiError:
    return ApiError.of(presets.not_found(kind.model))


def _usable(kind: _Kind, user: User, pk: int) -> Owned:
    found = presets.usable(kind.model, user).filter(pk=pk).first()
    if found is None:
        raise _missing(kind)
    return found


def _own(kind: _Kind, user: User, pk: int) -> Owned:
    found = presets.editable(kind.model, user).filter(pk=pk).first()
    if found is None:
        raise _missing(kind)  # someone else's is not theirs to change, even if published
    return found


def _list(kind: _Kind, user: User) -> dict[str, Any]:
    found = presets.usable(kind.model, user)
    return {kind.plural: [kind.as_json(item, user) for item in found]}


def _save(kind: _Kind, user: User, payload: dict[str, Any], pk: int | None) -> dict[str, Any]:
    stored = None if pk is None else _own(kind, user, pk)
    data, problems = presets.form_data(kind.fields, stored, payload)
    form = kind.form(data, instance=stored, user=user)
    errors = {} if form.is_valid() else form.errors.get_json_data()
    for name, messages in problems.items():
        errors.setdefault(name, []).extend({"message": m} for m in messages)
    if errors:
        raise FieldErrors(errors)
    saved = form.try_save()
    if saved is None:  # another save took the name meanwhile
        raise FieldErrors(form.errors.get_json_data())
    return kind.as_json(saved, user)


def _delete(kind: _Kind, user: User, pk: int) -> None:
    _own(kind, user, pk).delete()


async def _collection(request: HttpRequest, kind: _Kind) -> HttpResponse:
    allow(request, "GET", "POST")
    user = user_of(request)
    if request.method == "POST":
        payload = read_json(request)
        return JsonResponse(await sync_to_async(_save)(kind, user, payload, None), status=201)
    return JsonResponse(await sync_to_async(_list)(kind, user))


async def _item(request: HttpRequest, kind: _Kind, pk: int) -> HttpResponse:
    allow(request, "GET", "PUT", "DELETE")
    user = user_of(request)
    if request.method == "PUT":
        payload = read_json(request)
        return JsonResponse(await sync_to_async(_save)(kind, user, payload, pk))
    if request.method == "DELETE":
        await sync_to_async(_delete)(kind, user, pk)
        return HttpResponse(status=204)
    item = await sync_to_async(_usable)(kind, user, pk)
    return JsonResponse(kind.as_json(item, user))


@api_view
async def preset_list(request: HttpRequest) -> HttpResponse:
    return await _collection(request, PRESETS)


@api_view
async def preset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return await _item(request, PRESETS, pk)


@api_view
async def template_list(request: HttpRequest) -> HttpResponse:
    return await _collection(request, TEMPLATES)


@api_view
async def template_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return await _item(request, TEMPLATES, pk)
