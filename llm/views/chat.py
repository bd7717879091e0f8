"""Chat pages: the signed-in home, the conversations list, one conversation, delete.

The widget reuses these views for its panels: with htmx, each view answers with
one partial of its own template (STYLE.md 9), picked by the element it targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

from accounts.models import User
from llm import conversations as found_in
from llm import presets, usage
from llm import render as markdown
from llm.models import Conversation, Message, Preset, ProviderConfig
from llm.providers import registry

# The newest messages a conversation shows; older ones stay in the database and the API.
MESSAGE_LIMIT = 200
WIDGET_TARGETS = ("cw-history", "cw-log", "cw-picker")


class HtmxHttpRequest(HttpRequest):
    """A request that passed django-htmx's middleware (for the type checker)."""

    htmx: HtmxDetails


def _user(request: HttpRequest) -> User:
    return cast(User, request.user)  # every view here is behind login_required


def _conversations_of(request: HttpRequest) -> QuerySet[Conversation]:
    return Conversation.objects.filter(user=_user(request))


def _listing(request: HttpRequest) -> QuerySet[Conversation]:
    return found_in.search(_user(request))  # pinned first, as every list


def _conversation_for(request: HttpRequest, pk: int) -> Conversation:
    """The signed-in person's conversation, or 404 for anyone else's."""
    return get_object_or_404(_conversations_of(request), pk=pk)


def _for_widget(request: HtmxHttpRequest) -> bool:
    return bool(request.htmx) and request.htmx.target in WIDGET_TARGETS


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    recent = _listing(request)[:5]
    return render(request, "llm/home.html", {"recent": recent})


def cost_label(cost: Decimal) -> str:
    """$0.00021: every significant place of a small per-reply cost (the widget does the same)."""
    if not cost:
        return "$0"
    return "$" + f"{cost:.6f}".rstrip("0").rstrip(".")


def duration_label(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


@dataclass
class Shown:
    """A message as the page shows it."""

    message: Message
    html: str
    cost_label: str
    latency_label: str
    thinking_label: str = ""
    attempts_title: str = ""  # why the providers before the one that answered did not

    def __getattr__(self, name: str) -> Any:
        return getattr(self.message, name)


def _messages_of(conversation: Conversation) -> list[Shown]:
    newest = list(
        conversation.messages.order_by("-created_at", "-id").prefetch_related("attachments")[
            :MESSAGE_LIMIT
        ]
    )
    newest.reverse()
    return [
        Shown(
            message=m,
            # Model output is untrusted: only its sanitized render reaches a template as HTML.
            html=markdown.to_html(m.content) if m.role == Message.Role.ASSISTANT else "",
            cost_label=cost_label(m.cost),
            latency_label=duration_label(m.latency_ms) if m.latency_ms else "",
            thinking_label=duration_label(m.thinking_ms) if m.thinking_ms is not None else "",
            attempts_title=attempts_title(m.attempts),
        )
        for m in newest
    ]


def attempts_title(attempts: list[dict[str, Any]]) -> str:
    """One line per provider that did not answer, for the answered-by badge's hover."""
    lines = []
    for attempt in attempts or ():
        error = attempt.get("error") or {}
        name = "/".join(p for p in (attempt.get("provider"), attempt.get("model")) if p)
        lines.append(f"{name}: {error.get('message', 'failed')}")
    return "\n".join(lines)


@login_required
@require_GET
def conversation(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    convo = _conversation_for(request, pk)
    context = {"conversation": convo, "chat_messages": _messages_of(convo)}
    if _for_widget(request):
        context["in_widget"] = True
        return render(request, "llm/conversation.html#widget-messages", context)
    return render(request, "llm/conversation.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def conversation_delete(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """GET asks for confirmation (works without JavaScript); POST deletes."""
    convo = _conversation_for(request, pk)
    if request.method == "GET":
        return render(request, "llm/conversation_delete.html", {"conversation": convo})
    title = str(convo)
    convo.delete()
    if request.htmx and request.htmx.target and request.htmx.target.startswith("conversation-"):
        return HttpResponse("")  # the row that asked is swapped out
    flash.success(request, f"Deleted “{title}”.")
    if request.htmx:
        return HttpResponseClientRedirect("/conversations/")
    return redirect("conversations")


def picker_choices(user: User) -> list[dict[str, Any]]:
    """The providers a person can ask (configured and on, plus the local model), each
    with its model, a few model names, and whether its breaker is open."""
    configs = {c.kind: c for c in ProviderConfig.objects.filter(user=user, enabled=True)}
    choices = []
    for kind, entry in registry.PROVIDERS.items():
        config = configs.get(kind)
        if kind != registry.LOCAL and config is None:
            continue
        model = config.effective_model if config else entry.spec.default_model
        choices.append(
            {
                "kind": kind,
                "label": entry.spec.label,
                "model": model,
                "models": sorted({model, entry.spec.default_model}),
                "failing": config.failing_label() if config else "",
            }
        )
    return choices


@login_required
@require_GET
def widget_picker(request: HttpRequest) -> HttpResponse:
    """The widget's provider and model choices: the person's configured providers + local."""
    choices = picker_choices(_user(request))
    default = _user(request).default_provider
    if default not in {c["kind"] for c in choices}:
        default = registry.LOCAL
    context = {"choices": choices, "selected_kind": default, **_preset_choices(_user(request))}
    # The budget rides on the picker, which the widget loads anyway: no request per message.
    context["budget_warning"] = usage.warning_for(_user(request))
    return render(request, "llm/widget.html#picker", context)


def _preset_choices(user: User) -> dict[str, list[dict[str, Any]]]:
    """The picker's Preset menu: the person's own, then those staff published."""
    mine: list[dict[str, Any]] = []
    published: list[dict[str, Any]] = []
    for preset in presets.usable(Preset, user):
        spec = registry.PROVIDERS.get(preset.provider)
        label = spec.spec.label if spec else preset.provider
        entry = {
            "id": preset.pk,
            "name": preset.name,
            "summary": f"{label} · {preset.model}" if preset.model else label,
        }
        (mine if preset.user_id == user.pk else published).append(entry)
    return {"my_presets": mine, "published_presets": published}


@login_required
@require_GET
def compare(request: HttpRequest) -> HttpResponse:
    """One message to 2-4 models side by side (static/coppertone/compare.js runs it)."""
    choices = picker_choices(_user(request))
    rows = [choices[n % len(choices)]["kind"] if n < len(choices) else "" for n in range(4)]
    return render(request, "llm/compare.html", {"choices": choices, "rows": rows})
