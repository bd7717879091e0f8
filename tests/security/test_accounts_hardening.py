"""Hole 4: accounts. An admin can be demoted; sign-up is closed unless chosen; sign-in
and sign-up are throttled per address and per account."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from accounts.models import User
from tests.conftest import PASSWORD

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_windows() -> None:
    cache.clear()


def test_an_admin_can_be_demoted_in_the_admin(alice: User, admin_client: Client) -> None:
    other = User.objects.create_user("other", password="x", role=User.Role.ADMIN)
    admin = admin_client
    url = reverse("admin:accounts_user_change", args=[other.pk])
    response = admin.post(
        url,
        {
            "username": "other",
            "role": "client",
            "is_active": "on",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        },
    )
    assert response.status_code == 302, response.content.decode()[:1500]
    other.refresh_from_db()
    assert (other.role, other.is_staff, other.is_superuser) == ("client", False, False)


def test_createsuperuser_makes_an_admin(monkeypatch: Any) -> None:
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)
    call_command("createsuperuser", "--noinput", "--username", "boss", "--email", "b@x.org")
    boss = User.objects.get(username="boss")
    assert (boss.role, boss.is_superuser) == ("admin", True)


def _setting(name: str, **env: str) -> str:
    code = f"from django.conf import settings; print(settings.{name})"
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "coppertone.settings", **env}
    out = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT, env=environment, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def test_signup_is_closed_by_default_in_production() -> None:
    production = {"DEBUG": "off", "SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "example.com"}
    assert _setting("SIGNUP_OPEN", **production) == "False"
    assert _setting("SIGNUP_OPEN", DEBUG="on") == "True"


def test_sign_in_is_throttled_per_account_even_with_the_right_password(
    alice: User, settings: Any
) -> None:
    settings.AUTH_RATE_LIMIT_PER_ACCOUNT = "3/h"
    client = Client()
    for _ in range(3):
        wrong = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
        assert wrong.status_code == 200
    refused = client.post("/accounts/login/", {"username": "Alice", "password": PASSWORD})

    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert "Too many attempts" in refused.content.decode()
    assert "_auth_user_id" not in client.session
    # Another account from the same address is not locked by alice's window.
    User.objects.create_user("bob", password=PASSWORD)
    assert (
        client.post("/accounts/login/", {"username": "bob", "password": PASSWORD}).status_code
        == 302
    )


def test_sign_in_is_throttled_per_address(settings: Any) -> None:
    settings.AUTH_RATE_LIMIT_PER_IP = "4/m"
    client = Client()
    codes = [
        client.post("/accounts/login/", {"username": f"user{i}", "password": "x"}).status_code
        for i in range(5)
    ]
    assert codes == [200, 200, 200, 200, 429]


def test_sign_up_is_throttled(settings: Any) -> None:
    settings.SIGNUP_OPEN = True
    settings.AUTH_RATE_LIMIT_PER_IP = "2/m"
    client = Client()
    body = {"username": "", "password1": "a", "password2": "b"}
    codes = [client.post("/accounts/signup/", body).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
