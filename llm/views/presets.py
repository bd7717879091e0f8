"""The presets and prompt templates pages: /settings/presets/ and /settings/templates/.

Each page lists the person's own (edited in place with htmx, deleted after a confirmation)
and, read-only, the ones staff published; a form at the top creates one. Every action is
a plain form post that works without JavaScript (the page comes back, or a redirect);
with htmx the same view answers with the partial that changed. What is valid is
llm.presets' forms, the same ones /api/v1/presets and /api/v1/templates fill.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from accounts.models import User
from llm import presets
from llm.models import Preset, PromptTemplate
from llm.providers import registry

if TYPE_CHECKING:
    from llm.views.settings import HtmxHttpRequest

Owned = Preset | PromptTemplate
OwnedForm = presets.PresetForm | presets.PromptTemplateForm


@dataclass(frozen=True)
class Shelf:
    """What differs between the two pages."""

    model: presets.Kind
    form: type[presets.PresetForm] | type[presets.PromptTemplateForm]
    one: str  # "preset"
    plural: str  # "presets"
    template: str

    @property
    def page_url(self) -> str:
        return reverse(f"settings_{self.plural}")

    def item_url(self, pk: int) -> str:
        return reverse(f"settings_{self.one}", args=[pk])

    def delete_url(self, pk: int) -> str:
        return reverse(f"settings_{self.one}_delete", args=[pk])


PRESETS = Shelf(Preset, presets.PresetForm, "preset", "presets", "llm/settings/presets.html")
TEMPLATES = Shelf(
    PromptTemplate,
    presets.PromptTemplateForm,
    "template",
    "templates",
    "llm/settings/templates.html",
)


@dataclass
class Item:
    """One preset or template as its card shows it."""

    shelf: Shelf
    obj: Owned
    mode: str = "view"  # view | edit | delete
    form: OwnedForm | None = None
    notice: str = ""

    @property
    def pk(self) -> int:
        return int(self.obj.pk)

    @property
    def dom_id(self) -> str:
        return f"{self.shelf.one}-{self.obj.pk}"

    @property
    def url(self) -> str:
        return self.shelf.item_url(self.pk)

    @property
    def delete_url(self) -> str:
        return self.shelf.delete_url(self.pk)

    @property
    def provider_label(self) -> str:
        kind = getattr(self.obj, "provider", "")
        return registry.spec(kind).label if kind in registry.PROVIDERS else kind

    @property
    def placeholders(self) -> list[str]:
        if not isinstance(self.obj, PromptTemplate):
            return []
        return presets.placeholders(presets.parts_of(self.obj))


@dataclass
class Panel:
    """Everything below the page's heading: the new form, one's own, the published ones."""

    shelf: Shelf
    form: OwnedForm
    mine: list[Item] = field(default_factory=list)
    shared: list[Item] = field(default_factory=list)
    notice: str = ""
    notice_bad: bool = False


def _user(request: HtmxHttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)  # login_required ran first
    return user


def _own_or_404(request: HtmxHttpRequest, shelf: Shelf, pk: int) -> Owned:
    """The person's own; anyone else's (published or not) is not theirs to change: 404."""
    found: Owned | None = presets.editable(shelf.model, _user(request)).filter(pk=pk).first()
    if found is None:
        raise Http404(f"There is no such {shelf.one} of yours.")
    return found


def _panel(
    request: HtmxHttpRequest,
    shelf: Shelf,
    focus: Item | None = None,
    form: OwnedForm | None = None,
    **extra: Any,
) -> Panel:
    user = _user(request)
    panel = Panel(shelf, form or shelf.form(user=user), **extra)
    for obj in presets.usable(shelf.model, user):
        if obj.user_id != user.pk:
            panel.shared.append(Item(shelf, obj))
        elif focus is not None and focus.pk == obj.pk:
            panel.mine.append(focus)
        else:
            panel.mine.append(Item(shelf, obj))
    return panel


def _render_panel(request: HtmxHttpRequest, panel: Panel) -> HttpResponse:
    shelf = panel.shelf
    template = f"{shelf.template}#panel" if request.htmx else shelf.template
    return render(request, template, {"panel": panel, "shelf": shelf})


def _render_item(request: HtmxHttpRequest, item: Item) -> HttpResponse:
    """The card alone for htmx, else the whole page with this card as it is now."""
    if request.htmx:
        return render(request, f"{item.shelf.template}#item", {"item": item, "shelf": item.shelf})
    return _render_panel(request, _panel(request, item.shelf, focus=item))


def _page(request: HtmxHttpRequest, shelf: Shelf) -> HttpResponse:
    """GET: the page (`?edit=<id>` opens one of one's own, the no-JavaScript path).
    POST: create one."""
    user = _user(request)
    if request.method == "GET":
        focus = None
        wanted = request.GET.get("edit", "")
        if wanted.isdigit():
            obj = presets.editable(shelf.model, user).filter(pk=int(wanted)).first()
            if obj is not None:
                focus = Item(shelf, obj, mode="edit", form=shelf.form(instance=obj, user=user))
        return _render_panel(request, _panel(request, shelf, focus=focus))
    form = shelf.form(request.POST, user=user)
    saved = form.try_save() if form.is_valid() else None
    if saved is None:
        panel = _panel(request, shelf, form=form)
        panel.notice, panel.notice_bad = "Not saved: fix what is marked below.", True
        return _render_panel(request, panel)
    notice = f"“{saved.name}” saved."
    if request.htmx:
        return _render_panel(request, _panel(request, shelf, notice=notice))
    messages.success(request, notice)
    return redirect(f"{shelf.page_url}#{shelf.one}-{saved.pk}")


def _item(request: HtmxHttpRequest, shelf: Shelf, pk: int) -> HttpResponse:
    """GET: the card (`?mode=edit` for its form). POST: save the form."""
    obj = _own_or_404(request, shelf, pk)
    user = _user(request)
    if request.method == "GET":
        editing = request.GET.get("mode") == "edit"
        if not request.htmx:
            target = f"{shelf.page_url}?edit={pk}" if editing else shelf.page_url
            return redirect(f"{target}#{shelf.one}-{pk}")
        form = shelf.form(instance=obj, user=user) if editing else None
        return _render_item(
            request, Item(shelf, obj, mode="edit" if editing else "view", form=form)
        )
    # A ModelForm writes into its instance while validating: the card keeps what is stored.
    form = shelf.form(request.POST, instance=shelf.model.objects.get(pk=obj.pk), user=user)
    saved = form.try_save() if form.is_valid() else None
    if saved is None:
        return _render_item(request, Item(shelf, obj, mode="edit", form=form))
    notice = f"“{saved.name}” saved."
    if request.htmx:
        return _render_item(request, Item(shelf, saved, notice=notice))
    messages.success(request, notice)
    return redirect(f"{shelf.page_url}#{shelf.one}-{pk}")


def _delete(request: HtmxHttpRequest, shelf: Shelf, pk: int) -> HttpResponse:
    """GET: ask to confirm. POST: delete."""
    obj = _own_or_404(request, shelf, pk)
    if request.method == "GET":
        return _render_item(request, Item(shelf, obj, mode="delete"))
    name = obj.name
    obj.delete()
    notice = f"“{name}” deleted."
    if request.htmx:
        return _render_panel(request, _panel(request, shelf, notice=notice))
    messages.success(request, notice)
    return redirect(shelf.page_url)


# --- the routes: one set per page ---------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def presets_page(request: HtmxHttpRequest) -> HttpResponse:
    return _page(request, PRESETS)


@login_required
@require_http_methods(["GET", "POST"])
def preset_item(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    return _item(request, PRESETS, pk)


@login_required
@require_http_methods(["GET", "POST"])
def preset_delete(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    return _delete(request, PRESETS, pk)


@login_required
@require_http_methods(["GET", "POST"])
def templates_page(request: HtmxHttpRequest) -> HttpResponse:
    return _page(request, TEMPLATES)


@login_required
@require_http_methods(["GET", "POST"])
def template_item(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    return _item(request, TEMPLATES, pk)


@login_required
@require_http_methods(["GET", "POST"])
def template_delete(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    return _delete(request, TEMPLATES, pk)
