"""Create the first admin account on a fresh install and say how to sign in."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.models import User


class Command(BaseCommand):
    help = "Create a first admin (username 'admin') when there is none, and print how to sign in."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--url", default="http://127.0.0.1:8000/accounts/login/")

    def handle(self, *args: Any, username: str, url: str, **options: Any) -> None:
        password_file = settings.DATA_DIR / "admin_password"
        if User.objects.filter(role=User.Role.ADMIN).exists():
            if password_file.exists():
                self.stdout.write(
                    f"Sign in at {url} as the admin whose password is in {password_file}."
                )
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_user(username=username, password=password, role=User.Role.ADMIN)
        settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
        password_file.touch(mode=0o600)
        password_file.write_text(password + "\n")
        self.stdout.write(
            self.style.SUCCESS(
                f"Created the first admin.\n  Sign in at {url}\n  username: {username}\n"
                f"  password: {password}\n(also saved in {password_file}; change it after "
                "signing in)"
            )
        )
