"""The conversations page and what it does to conversations: search and filters, rename,
pin, export, import, deleting several at once.

The widget's conversation list is a partial of the same page (STYLE.md 9), picked by
the element htmx targets. What is found, valid and deleted is llm/conversations.py's
and llm/exports.py's: the API uses the same.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import trigger_client_event
from django_htmx.middleware import HtmxDetails

from accounts.models import User
from llm import conversations as found_in
from llm import exports
from llm.models import Conversation
from llm.providers import registry

PAGE_SIZE = 50
WIDGET_LIST_SIZE = 30
DELETE_PREVIEW = 20  # titles the bulk delete confirmation names
# The elements htmx swaps: the widget's panel, its results under the search box, one of
# its rows, and the title on a conversation's page.
WIDGET_LIST = "cw-history"
WIDGET_RESULTS = "cw-conv-results"
WIDGET_ROW = "cw-conv-"
PAGE_TITLE = "conversation-title"


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _user(request: HttpRequest) -> User:
    return cast(User, request.user)  # every view here is behind login_required


def _target(request: HtmxHttpRequest) -> str:
    return (request.htmx.target or "") if request.htmx else ""


def _conversation_for(request: HttpRequest, pk: int) -> Conversation:
    """The signed-in person's conversation, or 404 for anyone else's."""
    return get_object_or_404(Conversation, user=_user(request), pk=pk)


def _row(request: HttpRequest, pk: int) -> found_in.Found:
    return found_in.Found(get_object_or_404(found_in.search(_user(request)), pk=pk))


def _widget_list(request: HtmxHttpRequest, data: QueryDict, target: str) -> HttpResponse:
    form = found_in.FilterForm({"q": data.get("q", "")})
    context: dict[str, Any] = {"conversations": [], "q": "", "form_error": ""}
    if form.is_valid():
        query = form.criteria()["query"]
        rows = found_in.search(_user(request), query)[:WIDGET_LIST_SIZE]
        context.update(conversations=found_in.found(rows, query), q=query)
    else:
        context["form_error"] = form.errors["q"][0]
    partial = "widget-list" if target == WIDGET_LIST else "widget-results"
    return render(request, f"llm/conversations.html#{partial}", context)


def _query_without_page(request: HttpRequest) -> str:
    kept = request.GET.copy()
    kept.pop("page", None)
    return kept.urlencode()


@login_required
@require_GET
def conversations(request: HtmxHttpRequest) -> HttpResponse:
    """The list, searched and filtered by GET parameters (FilterForm), 50 a page."""
    target = _target(request)
    if target in (WIDGET_LIST, WIDGET_RESULTS):
        return _widget_list(request, request.GET, target)
    user = _user(request)
    form = found_in.FilterForm(request.GET)
    context: dict[str, Any] = {
        "form": form,
        "page": None,
        "conversations": [],
        "filtered": any(request.GET.get(name) for name in form.fields),
        "query_string": _query_without_page(request),
        "providers_used": found_in.providers_used(user),
        "import_form": ImportForm(),
        "here": request.get_full_path(),
    }
    if form.is_valid():
        criteria = form.criteria()
        page = Paginator(found_in.search(user, **criteria), PAGE_SIZE).get_page(
            request.GET.get("page")
        )
        context.update(page=page, conversations=found_in.found(page, criteria["query"]))
    template = "llm/conversations.html#list" if request.htmx else "llm/conversations.html"
    return render(request, template, context, status=200 if form.is_valid() else 400)


@login_required
@require_http_methods(["GET", "POST"])
def conversation_rename(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """GET: the title form (a page of its own without JavaScript, in place with htmx);
    POST: rename. Renaming is no activity: the list's order stays."""
    conversation = _conversation_for(request, pk)
    target = _target(request)
    posted = request.method == "POST"
    form = found_in.EditForm(
        request.POST if posted else None, fields=["title"], initial={"title": conversation.title}
    )
    if posted and form.is_valid():
        found_in.edit(conversation, form.cleaned_data)
        if target.startswith(WIDGET_ROW) or target == PAGE_TITLE:
            partial = (
                "llm/conversations.html#widget-row"
                if target.startswith(WIDGET_ROW)
                else "llm/conversation.html#title"
            )
            context = {"c": _row(request, pk), "conversation": conversation}
            response = render(request, partial, context)
            # The widget's header shows the open conversation's title: it listens for this.
            return trigger_client_event(
                response, "cw-renamed", {"id": conversation.pk, "title": str(conversation)}
            )
        flash.success(request, f"Renamed to “{conversation}”.")
        return redirect("conversation", pk=pk)
    context = {"conversation": conversation, "c": conversation, "form": form}
    if target.startswith(WIDGET_ROW):
        return render(request, "llm/conversations.html#widget-rename", context)
    if target == PAGE_TITLE:
        return render(request, "llm/conversation_rename.html#form", context)
    return render(request, "llm/conversation_rename.html", context, status=400 if posted else 200)


def _back(request: HttpRequest, default: str) -> str:
    wanted = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return wanted if wanted and safe else default


@login_required
@require_POST
def conversation_pin(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Pin (pinned=true) or unpin (pinned=false): pinned ones come first in every list."""
    conversation = _conversation_for(request, pk)
    form = found_in.EditForm(request.POST, fields=["pinned"])
    if form.is_valid():  # a checkbox's value is always valid: anything else is false
        found_in.edit(conversation, form.cleaned_data)
    target = _target(request)
    if target == WIDGET_RESULTS:
        return _widget_list(request, request.POST, target)
    if not request.htmx:
        done = "Pinned" if conversation.pinned else "Unpinned"
        flash.success(request, f"{done} “{conversation}”.")
    return redirect(_back(request, reverse("conversation", args=[conversation.pk])))


@login_required
@require_GET
def conversation_export(request: HttpRequest, pk: int, fmt: str) -> HttpResponse:
    """/conversations/<id>/export.md and export.json: a file to keep."""
    return exports.response(_conversation_for(request, pk), fmt)


class ImportForm(forms.Form):
    file = forms.FileField(
        label="A JSON file",
        help_text='A Coppertone JSON export, an OpenAI-style {"messages": [...]} body, or a '
        f"list of messages; at most {exports.MAX_IMPORT_BYTES // 1024 // 1024} MB.",
        widget=forms.ClearableFileInput(attrs={"accept": "application/json,.json"}),
        error_messages={"required": "Choose the JSON file to import."},
    )


@login_required
@require_http_methods(["GET", "POST"])
def conversations_import(request: HttpRequest) -> HttpResponse:
    """Upload a JSON file: a new conversation with its messages, no provider asked."""
    posted = request.method == "POST"
    form = ImportForm(request.POST if posted else None, request.FILES if posted else None)
    if posted and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            exports.check_size(upload.size or 0)
            imported = exports.read(upload.read())
        except exports.ImportRefused as refusal:
            form.add_error("file", refusal.message)
        else:
            conversation = exports.store(_user(request), imported)
            count = len(imported.messages)
            flash.success(
                request, f"Imported “{conversation}”: {count} message{'s' if count != 1 else ''}."
            )
            return redirect("conversation", pk=conversation.pk)
    status = 400 if form.errors else 200
    return render(request, "llm/conversation_import.html", {"form": form}, status=status)


def _ids(values: list[str]) -> list[int]:
    ids = []
    for value in values[: found_in.MAX_BULK]:
        try:
            ids.append(int(value))
        except ValueError:
            continue  # not an id of anything: nothing to delete
    return ids


@login_required
@require_http_methods(["GET", "POST"])
def conversations_delete(request: HttpRequest) -> HttpResponse:
    """Delete several conversations: those ticked on the list (`ids`), or every one with
    a reply from a provider (`provider`). The first step (a POST from the list, or a GET)
    shows how many and which, and asks; the confirming POST (confirm=yes) deletes.
    Another person's ids are ignored."""
    data = request.POST if request.method == "POST" else request.GET
    user = _user(request)
    provider = data.get("provider", "")
    ids = _ids(data.getlist("ids"))
    if provider and provider not in registry.PROVIDERS:
        flash.error(request, "Choose a provider from the list to clear its conversations.")
        return redirect("conversations")
    if not provider and not ids:
        flash.error(request, "Tick the conversations to delete first, then press Delete.")
        return redirect("conversations")
    doomed = (
        found_in.search(user, provider=provider)
        if provider
        else found_in.search(user).filter(pk__in=ids)
    )
    if request.method == "POST" and data.get("confirm") == "yes":
        gone = (
            found_in.clear_provider(user, provider)
            if provider
            else found_in.delete_owned(user, ids)
        )
        flash.success(request, f"Deleted {len(gone)} conversation{'s' if len(gone) != 1 else ''}.")
        return redirect("conversations")
    count = doomed.count()
    context = {
        "provider": provider,
        "provider_label": found_in.provider_label(provider) if provider else "",
        "ids": [c.pk for c in doomed] if not provider else [],
        "count": count,
        "preview": list(doomed[:DELETE_PREVIEW]),
        "more": max(0, count - DELETE_PREVIEW),
    }
    return render(request, "llm/conversations_delete.html", context)
