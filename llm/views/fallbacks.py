"""The "if it fails" card on /settings/llm/: a person's ordered fallback chain.

One form holds every step; each of its buttons (add, remove, move up or down, save)
posts the whole chain, so the card works without JavaScript (the page comes back with
the chain as edited) and with htmx (the card alone). Nothing is stored until Save;
what is valid is decided by llm.forms.FallbackChain, as for PUT /api/v1/fallbacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import zip_longest
from typing import TYPE_CHECKING

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from accounts.models import User
from llm.forms import MAX_FALLBACKS, FallbackChain, FallbackStep
from llm.models import ProviderConfig
from llm.providers import registry

if TYPE_CHECKING:
    from llm.views.settings import HtmxHttpRequest

PARTIAL = "llm/settings/page.html#fallbacks"
NOT_SET_UP = "not set up: will be skipped"
TURNED_OFF = "turned off: will be skipped"


def why_skipped(kind: str, config: ProviderConfig | None) -> str:
    """Why a step will be passed over, as the engine's configured check sees it; "" if not."""
    if kind not in registry.PROVIDERS:
        return ""
    spec = registry.spec(kind)
    if config is None:
        return "" if kind == registry.LOCAL else NOT_SET_UP
    if spec.needs_key and not config.has_key:
        return NOT_SET_UP
    return "" if config.enabled else TURNED_OFF


@dataclass
class ChainRow:
    provider: str
    model: str
    skip: str = ""
    card_model: str = ""  # what an empty model stands for
    errors: list[str] = field(default_factory=list)


def _row(step: FallbackStep, config: ProviderConfig | None) -> ChainRow:
    if config is not None:
        card_model = config.effective_model
    elif step.provider in registry.PROVIDERS:
        card_model = registry.spec(step.provider).default_model
    else:
        card_model = ""
    return ChainRow(step.provider, step.model, why_skipped(step.provider, config), card_model)


@dataclass
class ChainCard:
    rows: list[ChainRow]
    errors: list[str] = field(default_factory=list)
    notice: str = ""
    notice_bad: bool = False
    max_steps: int = MAX_FALLBACKS

    @property
    def full(self) -> bool:
        return len(self.rows) >= self.max_steps

    @property
    def kinds(self) -> list[tuple[str, str]]:
        return [(kind, entry.spec.label) for kind, entry in registry.PROVIDERS.items()]


def chain_card(
    user: User,
    configs: dict[str, ProviderConfig] | None = None,
    steps: list[FallbackStep] | None = None,
    chain: FallbackChain | None = None,
) -> ChainCard:
    """The card for `steps` (default: the stored chain), with `chain`'s errors on their rows."""
    if configs is None:
        configs = {c.kind: c for c in ProviderConfig.objects.filter(user=user)}
    if steps is None:
        steps = FallbackChain.stored(user)
    rows = [_row(s, configs.get(s.provider)) for s in steps]
    card = ChainCard(rows)
    for name, problems in (chain.errors if chain else {}).items():
        index = _index(name)
        if index is not None and index < len(rows):
            rows[index].errors.extend(problems)
        else:
            card.errors.extend(problems)
    return card


def _index(name: str) -> int | None:
    """chain[2].model -> 2; chain -> None."""
    if not name.startswith("chain["):
        return None
    number = name[len("chain[") :].split("]", 1)[0]
    return int(number) if number.isdigit() else None


def _posted(request: HtmxHttpRequest) -> list[FallbackStep]:
    pairs = zip_longest(
        request.POST.getlist("provider"), request.POST.getlist("model"), fillvalue=""
    )
    return [FallbackStep(provider, model) for provider, model in pairs]


def _next_step(user: User, steps: list[FallbackStep]) -> FallbackStep:
    """A new step: a provider the person set up that the chain lacks, else the local model."""
    configs = {c.kind: c for c in ProviderConfig.objects.filter(user=user)}
    used = {s.provider for s in steps}
    for kind in registry.PROVIDERS:
        ready = kind in configs and not why_skipped(kind, configs[kind])
        if ready and kind not in used and kind != registry.LOCAL:
            return FallbackStep(kind)
    return FallbackStep(registry.LOCAL)


def _edited(user: User, steps: list[FallbackStep], action: str) -> list[FallbackStep]:
    """The chain after one of the card's buttons: add, remove:i, up:i, down:i."""
    verb, _, number = action.partition(":")
    i = int(number) if number.isdigit() else -1
    steps = list(steps)
    if verb == "add" and len(steps) < MAX_FALLBACKS:
        steps.append(_next_step(user, steps))
    elif verb == "remove" and 0 <= i < len(steps):
        del steps[i]
    elif verb == "up" and 0 < i < len(steps):
        steps[i - 1], steps[i] = steps[i], steps[i - 1]
    elif verb == "down" and 0 <= i < len(steps) - 1:
        steps[i], steps[i + 1] = steps[i + 1], steps[i]
    return steps


def _respond(request: HtmxHttpRequest, card: ChainCard) -> HttpResponse:
    if request.htmx:
        return render(request, PARTIAL, {"chain": card})
    from llm.views import settings as page  # the page imports this module for its card

    return page.render_page(request, chain=card)


@login_required
@require_http_methods(["GET", "POST"])
def fallbacks(request: HtmxHttpRequest) -> HttpResponse:
    """GET: the card. POST: apply the pressed button (`action`), or save the chain."""
    user = request.user
    assert isinstance(user, User)  # login_required ran first
    page_url = f"{reverse('settings_llm')}#fallbacks"
    if request.method == "GET":
        return (
            render(request, PARTIAL, {"chain": chain_card(user)})
            if request.htmx
            else redirect(page_url)
        )
    steps = _posted(request)
    action = request.POST.get("action", "save")
    if action != "save":
        card = chain_card(user, steps=_edited(user, steps, action))
        card.notice = "Not saved yet: press Save to keep this chain."
        return _respond(request, card)
    chain = FallbackChain(user, [s.as_dict() for s in steps])
    if not chain.is_valid():
        card = chain_card(user, steps=steps, chain=chain)
        card.notice, card.notice_bad = "Not saved: fix what is marked below.", True
        return _respond(request, card)
    chain.save()
    notice = (
        "Saved. When a reply fails, Coppertone asks these in order."
        if chain.cleaned
        else "Saved: no fallbacks, so a failed reply shows its error."
    )
    if request.htmx:
        card = chain_card(user)
        card.notice = notice
        return render(request, PARTIAL, {"chain": card})
    messages.success(request, notice)
    return redirect(page_url)
