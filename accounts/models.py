from __future__ import annotations

import hashlib
import secrets
from decimal import Decimal

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "cpt_"


class User(AbstractUser):
    """A person who signs in. `role` decides `is_staff` and `is_superuser`."""

    class Role(models.TextChoices):
        CLIENT = "client", "Client"
        STAFF = "staff", "Staff"
        ADMIN = "admin", "Admin"

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.CLIENT)
    # Provider kind the widget starts with; empty means "pick for me".
    default_provider = models.CharField(max_length=32, blank=True)
    # Monthly spend cap in USD; empty falls back to LLM_DEFAULT_MONTHLY_BUDGET.
    monthly_budget = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, help_text="USD per month"
    )

    def save(self, *args: object, **kwargs: object) -> None:
        # Superusers created by createsuperuser arrive with is_superuser set: respect it.
        if self.is_superuser and self.role != self.Role.ADMIN:
            self.role = self.Role.ADMIN
        self.is_staff = self.role in (self.Role.STAFF, self.Role.ADMIN)
        self.is_superuser = self.role == self.Role.ADMIN
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def budget(self) -> Decimal | None:
        from django.conf import settings

        if self.monthly_budget is not None:
            return self.monthly_budget
        default = settings.LLM_DEFAULT_MONTHLY_BUDGET
        return Decimal(default) if default else None


def _digest(raw: str) -> str:
    # Tokens carry 256 bits of randomness, so a plain SHA-256 is enough (no need to stretch).
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A named bearer token. Only its hash is stored; the token is shown once."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, help_text="First characters, to tell tokens apart")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, user: User, name: str) -> tuple[ApiToken, str]:
        """Create a token; the plaintext is returned this once and never stored."""
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, prefix=raw[:12], digest=_digest(raw))
        return token, raw

    @classmethod
    def authenticate(cls, raw: str) -> User | None:
        """The active user a token belongs to, or None for an unknown or revoked token."""
        if not raw.startswith(TOKEN_PREFIX):
            return None
        token = cls.objects.select_related("user").filter(digest=_digest(raw)).first()
        if token is None or not token.user.is_active:
            return None
        now = timezone.now()
        # Touch last_used_at at most once a minute: no write on every request.
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            cls.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user
