from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_http_methods
from django_htmx.middleware import HtmxDetails

from accounts.forms import ApiTokenForm, SignupForm
from accounts.models import ApiToken, User
from accounts.throttle import throttled


@throttled("signup", "accounts/signup.html")
def signup(request: HttpRequest) -> HttpResponse:
    if not settings.SIGNUP_OPEN:
        raise Http404("Sign-up is closed on this site; ask an administrator for an account.")
    if request.user.is_authenticated:
        return redirect("home")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("home")
    return render(request, "accounts/signup.html", {"form": form})


class HtmxHttpRequest(HttpRequest):
    """A request that passed django-htmx's middleware (for the type checker)."""

    htmx: HtmxDetails


def _tokens_context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    assert isinstance(request.user, User)  # login_required ran first
    return {"tokens": ApiToken.objects.filter(user=request.user), **extra}


@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: HtmxHttpRequest) -> HttpResponse:
    """List tokens; POST creates one and shows it this once (no redirect: it is not kept)."""
    form = ApiTokenForm(request.POST or None)
    context = _tokens_context(request, form=form)
    if request.method == "POST" and form.is_valid():
        assert isinstance(request.user, User)  # login_required ran first
        token, raw = ApiToken.issue(request.user, form.cleaned_data["name"])
        context.update(form=ApiTokenForm(), new_token=token, new_raw=raw)
    template = "accounts/tokens.html#token_panel" if request.htmx else "accounts/tokens.html"
    response = render(request, template, context)
    # The page may hold a token in the clear: keep it out of every cache.
    patch_cache_control(response, no_store=True)
    return response


@login_required
@require_http_methods(["GET", "POST"])
def token_revoke(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """GET: ask to confirm. POST: revoke; the token is refused everywhere from then on."""
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    if request.method == "POST":
        name = token.name
        token.delete()
        notice = f"Token “{name}” revoked: anything using it is refused from now on."
        if request.htmx:
            context = _tokens_context(request, form=ApiTokenForm(), notice=notice)
            return render(request, "accounts/tokens.html#token_panel", context)
        messages.success(request, notice)
        return redirect("tokens")
    context = _tokens_context(request, form=ApiTokenForm(), confirm=token)
    if request.htmx:
        return render(request, "accounts/tokens.html#token_panel", context)
    return render(request, "accounts/tokens.html", context)
