"""Accounts: roles, sign-in/up, API tokens, the first admin."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from accounts.models import ApiToken, User
from tests.conftest import PASSWORD


@pytest.mark.parametrize(
    ("role", "staff", "superuser"),
    [
        (User.Role.CLIENT, False, False),
        (User.Role.STAFF, True, False),
        (User.Role.ADMIN, True, True),
    ],
)
def test_role_decides_staff_and_superuser(
    db: None, role: str, staff: bool, superuser: bool
) -> None:
    user = User.objects.create_user("dora", password=PASSWORD, role=role)
    user.refresh_from_db()
    assert (user.is_staff, user.is_superuser) == (staff, superuser)


def test_role_change_is_kept_consistent(alice: User) -> None:
    alice.role = User.Role.STAFF
    alice.save()
    assert alice.is_staff and not alice.is_superuser
    alice.role = User.Role.CLIENT
    alice.save()
    assert not alice.is_staff


def test_createsuperuser_gets_admin_role(db: None) -> None:
    user = User.objects.create_superuser("root", "root@example.com", PASSWORD)
    assert user.role == User.Role.ADMIN and user.is_superuser and user.is_staff


def test_sign_in_and_out(alice: User) -> None:
    client = Client()
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get(reverse("home")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("home")).status_code == 302


def test_wrong_password_is_explained_and_username_kept(alice: User) -> None:
    response = Client().post(reverse("login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b"correct username and password" in response.content
    assert b'value="alice"' in response.content


def test_signup_creates_a_client_and_signs_in(db: None) -> None:
    client = Client()
    response = client.post(
        reverse("signup"),
        {
            "username": "erin",
            "email": "erin@example.com",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert response.status_code == 302
    user = User.objects.get(username="erin")
    assert user.role == User.Role.CLIENT and not user.is_staff
    assert client.get(reverse("home")).status_code == 200


def test_signup_can_be_closed(db: None, settings: Any) -> None:
    settings.SIGNUP_OPEN = False
    assert Client().get(reverse("signup")).status_code == 404


def test_password_change(alice_client: Client, alice: User) -> None:
    response = alice_client.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "an0ther long phrase",
            "new_password2": "an0ther long phrase",
        },
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("an0ther long phrase")


def test_token_is_stored_hashed_and_authenticates(alice: User) -> None:
    token, raw = ApiToken.issue(alice, "laptop")
    assert raw.startswith("cpt_") and len(raw) > 40
    assert raw not in (token.digest, token.prefix) and raw.startswith(token.prefix)
    assert ApiToken.authenticate(raw) == alice
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_revoked_or_unknown_token_is_refused(alice: User) -> None:
    token, raw = ApiToken.issue(alice, "laptop")
    token.delete()
    assert ApiToken.authenticate(raw) is None
    assert ApiToken.authenticate("cpt_not-a-token") is None
    assert ApiToken.authenticate("") is None


def test_token_of_a_deactivated_user_is_refused(alice: User) -> None:
    _, raw = ApiToken.issue(alice, "laptop")
    alice.is_active = False
    alice.save()
    assert ApiToken.authenticate(raw) is None


def test_ensure_admin_creates_one_admin_and_says_how_to_sign_in(
    db: None, settings: Any, tmp_path: Path
) -> None:
    settings.DATA_DIR = tmp_path
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    password = (tmp_path / "admin_password").read_text().strip()
    assert f"password: {password}" in out.getvalue()
    assert (tmp_path / "admin_password").stat().st_mode & 0o777 == 0o600
    assert Client().login(username="admin", password=password)
    call_command("ensure_admin", stdout=StringIO())
    assert User.objects.filter(role=User.Role.ADMIN).count() == 1
