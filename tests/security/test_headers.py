"""Security headers: a Content-Security-Policy without 'unsafe-inline' on every page and
API answer, nosniff, Referrer-Policy and no framing; /v1 (served without the middleware)
gets the same headers and HSTS like the pages; production cookies are HttpOnly, Secure
and SameSite. The browser side (no violation reported) is tests/browser/test_csp.py."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from datetime import date
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from django.contrib import admin
from django.test import Client, override_settings
from django.urls import reverse

from accounts.models import ApiToken, User
from llm.api.asgi import LeanASGIHandler
from llm.models import Conversation, DailyUsage, Message

ROOT = Path(__file__).resolve().parents[2]

# A reply whose markdown has a table with aligned columns: markdown-it writes the
# alignment as a style attribute, which the policy would block.
TABLE_REPLY = (
    "| left | right | centre |\n|:--|--:|:-:|\n| a | 1 | x |\n\n```python\nprint('hi')\n```"
)


def assert_secure_headers(headers: Any, where: str) -> None:
    """`headers`: anything with a case-insensitive .get (a response's headers, an Answer)."""
    csp = headers.get("Content-Security-Policy", "")
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert "default-src" in directives, f"{where}: no CSP default-src ({csp!r})"
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, f"{where}: {csp}"
    assert not {"*", "data:", "http:", "https:"} & set(directives["default-src"]), where
    assert directives.get("frame-ancestors") == ["'none'"], f"{where}: {csp}"
    assert headers.get("X-Frame-Options") == "DENY", where
    assert headers.get("X-Content-Type-Options") == "nosniff", where
    assert headers.get("Referrer-Policy") == "same-origin", where


class InlineCode(HTMLParser):
    """Collects what a policy without 'unsafe-inline' would block in a page's markup."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "style":
            self.found.append("<style>")
        if tag == "script":
            if "src" not in names:
                self.found.append("<script> without src")
            self._in_script = True
        for name, value in attrs:
            if name == "style" or name.startswith("on"):
                self.found.append(f"<{tag} {name}={value!r}>")
            if name in ("href", "src", "action") and (value or "").lower().startswith(
                "javascript:"
            ):
                self.found.append(f"<{tag} {name}={value!r}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.found.append(f"<script> with inline code {data.strip()[:40]!r}")


def inline_code(html: str) -> list[str]:
    parser = InlineCode()
    parser.feed(html)
    return parser.found


def check_page(client: Client, url: str, **extra: Any) -> None:
    response = client.get(url, **extra)
    assert response.status_code == 200, f"{url}: {response.status_code}"
    assert_secure_headers(response.headers, url)
    if response["Content-Type"].startswith("text/html"):
        assert inline_code(response.content.decode()) == [], url


@pytest.fixture
def conversation(alice: User) -> Conversation:
    convo = Conversation.objects.create(user=alice, title="Tables")
    Message.objects.create(conversation=convo, role="user", content="A table, please")
    Message.objects.create(
        conversation=convo, role="assistant", content=TABLE_REPLY, provider="openai"
    )
    return convo


def test_every_page_has_the_headers_and_no_inline_code(
    alice_client: Client, conversation: Conversation
) -> None:
    pk = conversation.pk
    for url in (
        "/",
        "/conversations/",
        f"/conversations/{pk}/",
        f"/conversations/{pk}/delete/",
        "/settings/llm/",
        "/settings/llm/?edit=openai",
        "/settings/tokens/",
        "/accounts/password_change/",
        "/chat/picker/",
    ):
        check_page(alice_client, url)
    # The widget's htmx partials, as the widget asks for them.
    htmx = {"HTTP_HX_REQUEST": "true"}
    check_page(alice_client, "/conversations/", **htmx)
    check_page(alice_client, f"/conversations/{pk}/", **htmx)


def test_pages_for_strangers_have_the_headers(db: None) -> None:
    for url in ("/accounts/login/", "/accounts/signup/"):
        check_page(Client(), url)
    response = Client().get("/")  # the redirect to sign in
    assert response.status_code == 302
    assert_secure_headers(response.headers, "/ (redirect)")


def test_a_new_token_is_shown_without_an_inline_handler(alice_client: Client) -> None:
    response = alice_client.post("/settings/tokens/", {"name": "laptop"})
    body = response.content.decode()
    assert "data-select-on-focus" in body and "onfocus" not in body
    assert inline_code(body) == []


def test_aligned_table_columns_are_classes_not_styles(
    alice_client: Client, conversation: Conversation
) -> None:
    body = alice_client.get(f"/conversations/{conversation.pk}/").content.decode()
    assert '<th class="align-left">left</th>' in body
    assert '<td class="align-right">1</td>' in body
    assert '<td class="align-center">x</td>' in body
    assert "style=" not in body


def test_admin_pages_have_the_headers_and_no_inline_code(
    admin_client: Client, alice: User, conversation: Conversation
) -> None:
    DailyUsage.objects.create(
        user=alice,
        day=date.today(),
        provider="openai",
        model="gpt-4o",
        requests=3,
        input_tokens=30,
        output_tokens=90,
        cost=Decimal("0.01"),
    )
    ApiToken.issue(alice, "laptop")
    check_page(admin_client, "/admin/")
    check_page(admin_client, "/admin/usage/")
    for model in admin.site._registry:
        meta = model._meta
        check_page(admin_client, reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        first = model._default_manager.first()
        if first is not None:
            url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[first.pk])
            check_page(admin_client, url)
    check_page(admin_client, reverse("admin:accounts_user_add"))
    check_page(admin_client, reverse("admin:password_change"))


@pytest.mark.django_db
def test_the_json_api_has_the_headers(alice: User) -> None:
    _, raw = ApiToken.issue(alice, "script")
    client = Client(headers={"Authorization": f"Bearer {raw}"})
    for url in ("/api/v1/health", "/api/v1/conversations", "/api/v1/providers", "/api/v1/usage"):
        check_page(client, url)
    refused = Client().get("/api/v1/conversations")
    assert refused.status_code == 401
    assert_secure_headers(refused.headers, "/api/v1 without a token")


# --- /v1: the lean handler, without the middleware stack -------------------------------


class Answer:
    """An ASGI response start: its status and headers."""

    def __init__(self, message: dict[str, Any]) -> None:
        self.status: int = message["status"]
        self.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}

    def get(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


async def call(
    app: Any, path: str, headers: dict[str, str] | None = None, scheme: str = "http"
) -> Answer:
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (k.lower().encode(), v.encode())
            for k, v in {"Host": "localhost", **(headers or {})}.items()
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    communicator = ApplicationCommunicator(app, scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(10)
    assert start["type"] == "http.response.start"
    while (await communicator.receive_output(10)).get("more_body"):
        pass
    await communicator.wait(10)
    return Answer(start)


@pytest.mark.django_db(transaction=True)
async def test_v1_answers_carry_the_security_headers(alice: User) -> None:
    from coppertone.asgi import application

    token = await _issue(alice)
    served = await call(application, "/v1/models", {"Authorization": f"Bearer {token}"})
    assert served.status == 200
    refused = await call(application, "/v1/models")
    assert refused.status == 401
    missing = await call(application, "/v1/nothing-here", {"Authorization": f"Bearer {token}"})
    assert missing.status == 404
    for answer, where in ((served, "200"), (refused, "401"), (missing, "404")):
        assert_secure_headers(answer, f"/v1 {where}")
        assert answer.get("Content-Security-Policy") == "default-src 'none'; frame-ancestors 'none'"
        # Off in development, as on the pages.
        assert answer.get("Strict-Transport-Security") == ""


async def _issue(user: User) -> str:
    from asgiref.sync import sync_to_async

    _, raw = await sync_to_async(ApiToken.issue)(user, "sdk")
    return raw


HSTS = {
    "SECURE_HSTS_SECONDS": 31536000,
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
    "SECURE_HSTS_PRELOAD": True,
    "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
}


@pytest.mark.django_db
async def test_v1_sends_hsts_over_https_exactly_as_the_pages_do() -> None:
    with override_settings(**HSTS):
        lean = LeanASGIHandler()  # reads the settings once, when built
        page = await _page_hsts()
        over_proxy = await call(lean, "/v1/models", {"X-Forwarded-Proto": "https"})
        direct_tls = await call(lean, "/v1/models", scheme="https")
        plain = await call(lean, "/v1/models")
    assert page == "max-age=31536000; includeSubDomains; preload"
    assert over_proxy.get("Strict-Transport-Security") == page
    assert direct_tls.get("Strict-Transport-Security") == page
    assert plain.get("Strict-Transport-Security") == ""  # never over plain HTTP

    with override_settings(**{**HSTS, "SECURE_HSTS_SECONDS": 0}):
        off = await call(LeanASGIHandler(), "/v1/models", {"X-Forwarded-Proto": "https"})
    assert off.get("Strict-Transport-Security") == ""


async def _page_hsts() -> str:
    from asgiref.sync import sync_to_async

    response = await sync_to_async(Client().get)("/accounts/login/", secure=True)
    return str(response.headers.get("Strict-Transport-Security", ""))


# --- production settings, in a subprocess as the server would start ------------------

PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.test import Client, override_settings
# Production's static storage needs collectstatic's manifest; nothing else is changed.
plain = {**settings.STORAGES, "staticfiles": {
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
with override_settings(STORAGES=plain):
    response = Client().get("/accounts/login/", secure=True, HTTP_HOST="chat.example.com")
csrf = response.cookies["csrftoken"]
print(json.dumps({
    "status": response.status_code,
    "csrf_cookie": {"secure": bool(csrf["secure"]), "httponly": bool(csrf["httponly"]),
                    "samesite": csrf["samesite"]},
    "session": [settings.SESSION_COOKIE_SECURE, settings.SESSION_COOKIE_HTTPONLY,
                settings.SESSION_COOKIE_SAMESITE],
    "hsts": response.headers.get("Strict-Transport-Security"),
    "csp": response.headers.get("Content-Security-Policy"),
}))
"""


def test_production_cookies_are_httponly_secure_and_samesite(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL"))}
    env = {
        **clean,
        "DJANGO_SETTINGS_MODULE": "coppertone.settings",
        "DEBUG": "off",
        "DATA_DIR": str(tmp_path),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "LLM_ENCRYPTION_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "ALLOWED_HOSTS": "chat.example.com",
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["status"] == 200
    assert seen["csrf_cookie"] == {"secure": True, "httponly": True, "samesite": "Lax"}
    assert seen["session"] == [True, True, "Lax"]
    assert seen["hsts"].startswith("max-age=31536000")
    assert "'unsafe-inline'" not in seen["csp"] and "frame-ancestors 'none'" in seen["csp"]
