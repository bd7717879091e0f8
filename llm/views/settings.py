"""The LLM settings page: one card per provider kind, edited in place with htmx.

One template (llm/settings/page.html) with partials: `card`, `test_result`,
`model_field`, `default_form`, `fallbacks` (llm/views/fallbacks.py). Every action is
a plain form post that works without JavaScript (the view answers with the whole page
or a redirect); with htmx the same view answers with just the partial that changed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.middleware import HtmxDetails

from accounts.models import User
from llm import connection
from llm.connection import Check, KeyUnreadable
from llm.forms import DefaultProviderForm, ProviderConfigForm, provider_form_data
from llm.models import ProviderConfig
from llm.providers import registry
from llm.providers.base import Credentials, Provider, ProviderError, ProviderSpec
from llm.views.fallbacks import ChainCard, chain_card

TEMPLATE = "llm/settings/page.html"


class HtmxHttpRequest(HttpRequest):
    """A request that passed django-htmx's middleware (for the type checker)."""

    htmx: HtmxDetails


# A short mark drawn in each card's badge; a kind without one shows its first letter.
MARKS = {
    "local": "⌂",
    "openai": "AI",
    "anthropic": "A\\",
    "gemini": "✦",
    "qwen": "Q",
    "huggingface": "HF",
    "azure_openai": "Az",
    "ollama": "Ol",
    "lmstudio": "LM",
    "llamacpp": "ll",
    "vllm": "vL",
    "openai_compatible": "{}",
}


@dataclass
class Card:
    spec: ProviderSpec
    config: ProviderConfig | None
    mode: str = "view"  # view | edit | delete
    form: ProviderConfigForm | None = None
    check: Check | None = None
    models: list[str] | None = None
    models_error: str = ""
    notice: str = ""
    is_default: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def mark(self) -> str:
        return MARKS.get(self.kind, self.spec.label[:1])

    @property
    def verified_ago(self) -> str:
        when = self.config.last_verified_at if self.config else None
        if when is None:
            return ""
        if timezone.now() - when < timedelta(minutes=1):
            return "just now"
        return f"{timesince(when)} ago"

    @property
    def testable(self) -> bool:
        """Whether Test connection can run from the card as it is stored."""
        if self.config is not None:
            return True
        spec = self.spec
        return not spec.needs_key and (bool(spec.default_base_url) or not spec.has_base_url)

    @property
    def enabled(self) -> bool:
        return self.config.enabled if self.config is not None else True

    @property
    def switchable(self) -> bool:
        """Whether the card offers its on/off switch: there is something to turn off."""
        return self.config is not None or self.status == "configured"

    @property
    def breaker_open(self) -> bool:
        """Recent failures: turns skip this configuration until `open_until`."""
        until = self.config.open_until if self.config else None
        return until is not None and until > timezone.now()

    @property
    def keep_alive_on(self) -> bool:
        config = self.config
        return bool(self.spec.keep_alive) and config is not None and config.keep_alive_minutes > 0

    @property
    def advanced_open(self) -> bool:
        """The Advanced section starts open when something in it needs fixing."""
        form = self.form
        return form is not None and any(f.errors for f in form.advanced_fields())

    @property
    def status(self) -> str:
        """not_configured | configured | verified | failing"""
        if self.config is None:
            # The embedded model needs nothing to be set up.
            return "configured" if not self.spec.has_base_url else "not_configured"
        if self.config.last_error:
            return "failing"
        return "verified" if self.config.last_verified_at else "configured"


# --- helpers ---------------------------------------------------------------------------------


def _spec_or_404(kind: str) -> ProviderSpec:
    if kind not in registry.PROVIDERS:
        raise Http404("There is no such provider.")
    return registry.spec(kind)


def _config_for(user: User, kind: str) -> ProviderConfig | None:
    """This person's configuration for `kind`; never anyone else's."""
    return ProviderConfig.objects.filter(user=user, kind=kind).first()


def _user(request: HtmxHttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)  # login_required ran first
    return user


def _form(request: HtmxHttpRequest, kind: str, config: ProviderConfig | None) -> ProviderConfigForm:
    data = request.POST if request.method == "POST" else None
    # A ModelForm writes into its instance while validating: give it a copy, so the card
    # keeps showing what is stored until Save succeeds.
    instance = copy.copy(config) if config is not None else None
    return ProviderConfigForm(data, instance=instance, kind=kind, user=_user(request))


def _page_url(kind: str | None = None) -> str:
    url = reverse("settings_llm")
    return f"{url}#provider-{kind}" if kind else url


def render_page(
    request: HtmxHttpRequest, focus: Card | None = None, chain: ChainCard | None = None
) -> HttpResponse:
    """The whole page; `focus` and `chain` replace their cards as they are being edited."""
    user = _user(request)
    configs = {c.kind: c for c in ProviderConfig.objects.filter(user=user)}
    cards = []
    for kind, entry in registry.PROVIDERS.items():
        if focus is not None and focus.kind == kind:
            card = focus
        else:
            card = Card(entry.spec, configs.get(kind))
        card.is_default = user.default_provider == kind
        cards.append(card)
    context = {
        "cards": cards,
        "default_form": _default_form(user, list(configs)),
        "default_label": _default_label(user),
        "chain": chain or chain_card(user, configs),
    }
    return render(request, TEMPLATE, context)


def _render_card(request: HtmxHttpRequest, card: Card) -> HttpResponse:
    """The card alone for htmx, else the whole page with this card as it is now."""
    if request.htmx:
        card.is_default = _user(request).default_provider == card.kind
        return render(request, f"{TEMPLATE}#card", {"card": card})
    return render_page(request, card)


def _card_and_default(request: HtmxHttpRequest, card: Card) -> HttpResponse:
    """After a save or a delete: the card, and the default-provider choices out of band
    (the kinds that can be picked have just changed)."""
    response = _render_card(request, card)
    user = _user(request)
    configured = list(ProviderConfig.objects.filter(user=user).values_list("kind", flat=True))
    context = {
        "default_form": _default_form(user, configured),
        "default_label": _default_label(user),
        "oob": True,
    }
    response.content += render_to_string(f"{TEMPLATE}#default_form", context, request).encode()
    return response


def _default_form(user: User, configured: list[str]) -> DefaultProviderForm:
    return DefaultProviderForm(
        initial={"default_provider": user.default_provider}, configured=configured
    )


def _default_label(user: User) -> str:
    kind = user.default_provider
    return registry.spec(kind).label if kind in registry.PROVIDERS else ""


# --- pages -----------------------------------------------------------------------------------


@login_required
def settings_page(request: HtmxHttpRequest) -> HttpResponse:
    """Every provider's card; `?edit=<kind>` opens one for editing (the no-JavaScript path)."""
    kind = request.GET.get("edit", "")
    focus = None
    if kind in registry.PROVIDERS:
        config = _config_for(_user(request), kind)
        focus = Card(registry.spec(kind), config, mode="edit", form=_form(request, kind, config))
    return render_page(request, focus)


@login_required
@require_http_methods(["GET", "POST"])
def provider_card(request: HtmxHttpRequest, kind: str) -> HttpResponse:
    """GET: the card (`?mode=edit` for its form). POST: save the form."""
    spec = _spec_or_404(kind)
    config = _config_for(_user(request), kind)
    if request.method == "GET":
        mode = request.GET.get("mode", "view")
        if mode not in ("view", "edit"):
            mode = "view"
        if not request.htmx:
            return redirect(
                f"{reverse('settings_llm')}?edit={kind}#provider-{kind}"
                if mode == "edit"
                else _page_url(kind)
            )
        form = _form(request, kind, config) if mode == "edit" else None
        return _render_card(request, Card(spec, config, mode=mode, form=form))

    form = _form(request, kind, config)
    if not form.is_valid():
        return _render_card(request, Card(spec, config, mode="edit", form=form))
    is_new = form.instance.pk is None
    changed = form.connection_changed()
    saved = form.save(commit=False)
    token = request.POST.get("verified", "")
    try:
        vouched = connection.vouched_at(token, saved, connection.credentials(saved))
    except KeyUnreadable:
        vouched = None
    if vouched is not None:
        saved.last_verified_at, saved.last_error = vouched, ""
    elif is_new or changed:
        # What was verified before is not what is stored now.
        saved.last_verified_at, saved.last_error = None, ""
    saved.save()
    notice = f"{spec.label} saved."
    if request.htmx:
        return _card_and_default(request, Card(spec, saved, notice=notice))
    messages.success(request, notice)
    return redirect(_page_url(kind))


@login_required
@require_http_methods(["GET", "POST"])
def provider_delete(request: HtmxHttpRequest, kind: str) -> HttpResponse:
    """GET: ask to confirm. POST: forget the configuration and its key."""
    spec = _spec_or_404(kind)
    user = _user(request)
    config = _config_for(user, kind)
    if request.method == "GET":
        if config is None:
            return redirect(_page_url(kind))
        return _render_card(request, Card(spec, config, mode="delete"))
    if config is not None:
        config.delete()
        if user.default_provider == kind:
            user.default_provider = ""
            user.save(update_fields=["default_provider"])
    notice = f"{spec.label} removed, with its key."
    if request.htmx:
        return _card_and_default(request, Card(spec, None, notice=notice))
    messages.success(request, notice)
    return redirect(_page_url(kind))


@login_required
@require_POST
def provider_enabled(request: HtmxHttpRequest, kind: str) -> HttpResponse:
    """The card's switch: `enabled=true|false`, validated by the same form as Save."""
    spec = _spec_or_404(kind)
    user = _user(request)
    config = _config_for(user, kind)
    data, _ = provider_form_data(config or ProviderConfig(user=user, kind=kind), {})
    data["enabled"] = request.POST.get("enabled", "")
    instance = copy.copy(config) if config is not None else None
    form = ProviderConfigForm(data, instance=instance, kind=kind, user=user)
    if form.is_valid():
        saved = form.save()
        notice = (
            f"{spec.label} is on: the chat offers it."
            if saved.enabled
            else f"{spec.label} is off: the chat does not offer it, and fallbacks skip it."
        )
        card = Card(spec, saved, notice=notice)
    else:
        problem = next(iter(form.errors.values()))[0]
        card = Card(spec, config, notice=f"Not changed: {problem} Edit the card to fix this.")
        card.extra["notice_bad"] = True
    if request.htmx:
        return _render_card(request, card)
    if form.is_valid():
        messages.success(request, card.notice)
    else:
        messages.error(request, card.notice)
    return redirect(_page_url(kind))


@login_required
@require_POST
def default_provider(request: HtmxHttpRequest) -> HttpResponse:
    user = _user(request)
    configured = list(ProviderConfig.objects.filter(user=user).values_list("kind", flat=True))
    form = DefaultProviderForm(request.POST, configured=configured)
    if form.is_valid():
        user.default_provider = form.cleaned_data["default_provider"]
        user.save(update_fields=["default_provider"])
        label = _default_label(user)
        notice = (
            f"The chat starts with {label}."
            if label
            else "The chat picks a provider from the model name, else the local model."
        )
    else:
        notice = "Choose a provider you have configured."
    if request.htmx:
        context = {
            "default_form": _default_form(user, configured),
            "default_label": _default_label(user),
            "default_notice": notice,
            "default_ok": form.is_valid(),
        }
        return render(request, f"{TEMPLATE}#default_form", context)
    if form.is_valid():
        messages.success(request, notice)
    else:
        messages.error(request, notice)
    return redirect(_page_url())


# --- test connection and fetch models (async: no thread waits on the network) ----------------


@dataclass
class _Plan:
    """What a check will call, or the card to show instead when it cannot run."""

    card: Card
    from_form: bool
    provider: Provider | None = None
    creds: Credentials | None = None


def _plan(request: HtmxHttpRequest, kind: str) -> _Plan:
    """Check the edit form's values when they were posted, else the stored configuration."""
    spec = _spec_or_404(kind)
    user = _user(request)
    config = _config_for(user, kind)
    from_form = "temperature" in request.POST
    if from_form:
        form = _form(request, kind, config)
        card = Card(spec, config, mode="edit", form=form)
        if not form.is_valid():
            return _Plan(card, from_form)
        # Unsaved: the person has not pressed Save yet.
        target = form.save(commit=False)
    else:
        card = Card(spec, config)
        if not card.testable:
            card.check = Check(
                ok=False,
                code="not_configured",
                message=f"Set up {spec.label} first (its key or address), then test it.",
            )
            return _Plan(card, from_form)
        target = config or ProviderConfig(user=user, kind=kind)
    try:
        creds = connection.credentials(target)
    except KeyUnreadable as unreadable:
        card.check = Check(ok=False, code="provider_auth", message=str(unreadable))
        return _Plan(card, from_form)
    card.extra["target"] = target
    return _Plan(card, from_form, target.provider(), creds)


def _finish_check(request: HtmxHttpRequest, plan: _Plan, check: Check) -> HttpResponse:
    card = plan.card
    card.check = check
    card.models = check.models or None
    target: ProviderConfig = card.extra["target"]
    config = card.config
    assert plan.creds is not None
    if plan.from_form:
        if check.ok:
            check.token = connection.vouch(target, plan.creds)
        # The stored row is recorded only when the form tests exactly what it holds.
        if config is not None and _same_connection(config, plan.creds):
            connection.record(config, check)
        if request.htmx:
            return render(request, f"{TEMPLATE}#check_results", {"card": card})
        return render_page(request, card)
    if config is not None:
        connection.record(config, check)
    return _render_card(request, card)


def _same_connection(config: ProviderConfig, creds: Credentials) -> bool:
    try:
        stored = connection.credentials(config)
    except KeyUnreadable:
        return False
    return connection.fingerprint(config, stored) == connection.fingerprint(config, creds)


@login_required
@require_POST
async def provider_test(request: HtmxHttpRequest, kind: str) -> HttpResponse:
    """Test connection: ping and list models, show latency and count, record the outcome."""
    plan = await sync_to_async(_plan)(request, kind)
    if plan.provider is None or plan.creds is None:
        return await sync_to_async(_render_plan_failure)(request, plan)
    try:
        check = await connection.run_check(
            plan.provider, plan.creds, user_id=_user(request).pk, names=plan.from_form
        )
    except connection.Throttled as throttled:
        check = Check(ok=False, code=throttled.code, message=throttled.message)
    return await sync_to_async(_finish_check)(request, plan, check)


def _render_plan_failure(request: HtmxHttpRequest, plan: _Plan) -> HttpResponse:
    if plan.from_form and request.htmx and plan.card.form is not None:
        if plan.card.form.is_valid():
            return render(request, f"{TEMPLATE}#check_results", {"card": plan.card})
        # Field errors belong next to the fields: swap the whole card.
        return retarget_card(render(request, f"{TEMPLATE}#card", {"card": plan.card}), plan)
    return _render_card(request, plan.card)


def retarget_card(response: HttpResponse, plan: _Plan) -> HttpResponse:
    from django_htmx.http import reswap, retarget

    return reswap(retarget(response, f"#provider-{plan.card.kind}"), "outerHTML")


@login_required
@require_POST
async def provider_models(request: HtmxHttpRequest, kind: str) -> HttpResponse:
    """Fetch models: fill the model picker (free text stays allowed)."""
    plan = await sync_to_async(_plan)(request, kind)
    card = plan.card
    if plan.provider is None or plan.creds is None:
        if card.check is None or card.mode != "edit":
            return await sync_to_async(_render_plan_failure)(request, plan)
        # The form is fine but the stored key cannot be read: say so under the model.
        card.models, card.models_error, card.check = [], card.check.message, None
        return await sync_to_async(_render_models)(request, card, plan.from_form)
    try:
        card.models = await connection.fetch_models(
            plan.provider, plan.creds, user_id=_user(request).pk
        )
        if not card.models:
            card.models_error = "The provider lists no models: type the model's name."
    except ProviderError as error:
        card.models, card.models_error = [], error.message
    if card.mode != "edit":
        # Fetched from the card's summary: open the form so the list can be used.
        card.mode = "edit"
        card.form = await sync_to_async(_form_unbound)(request, kind, card.config)
    return await sync_to_async(_render_models)(request, card, plan.from_form)


def _form_unbound(
    request: HtmxHttpRequest, kind: str, config: ProviderConfig | None
) -> ProviderConfigForm:
    return ProviderConfigForm(instance=config, kind=kind, user=_user(request))


def _render_models(request: HtmxHttpRequest, card: Card, from_form: bool) -> HttpResponse:
    if request.htmx and from_form:
        return render(request, f"{TEMPLATE}#model_field", {"card": card})
    return _render_card(request, card)
