from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable
from decimal import Decimal
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractUser
from django.contrib.auth.models import UserManager as DjangoUserManager
from django.db import connection, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from llm import trips

TOKEN_PREFIX = "cpt_"


class UserManager(DjangoUserManager["User"]):
    def create_superuser(
        self, username: str, email: str | None = None, password: str | None = None, **extra: Any
    ) -> User:
        extra.setdefault("role", User.Role.ADMIN)
        return super().create_superuser(username, email, password, **extra)


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

    objects: ClassVar[UserManager] = UserManager()

    def save(self, *args: object, **kwargs: object) -> None:
        # The role alone decides (createsuperuser sets it: UserManager below), so that
        # an admin can be demoted.
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
    async def aauthenticate(cls, raw: str) -> User | None:
        """`authenticate` from the event loop: on PostgreSQL one statement on the loop's
        pool (llm/pg_trips.py), else one database trip off the loop (llm/trips.py)."""
        from llm import pg_trips  # the engine's module; it imports this one

        if not pg_trips.usable():
            return await _authenticate_trip(raw)
        if not raw.startswith(TOKEN_PREFIX):
            return None
        lookup = _token_lookup(connection)
        now = timezone.now()
        # The touch sees the row as the SELECT does (one snapshot): at most once a minute.
        row = await pg_trips.fetchone(
            f"WITH touched AS (UPDATE {lookup.table} SET last_used_at = %s WHERE digest = %s "
            "AND (last_used_at IS NULL OR last_used_at < %s)) " + lookup.sql,
            [now, _digest(raw), now - dt.timedelta(seconds=60), _digest(raw)],
        )
        return lookup.user(lookup.convert(row, connection) if row else None, connection)

    @classmethod
    def authenticate(cls, raw: str) -> User | None:
        """The active user a token belongs to, or None for an unknown or revoked token.

        One plain SELECT of the token and its user: on /v1 this runs for every request,
        and building the same query through the ORM cost more CPU than the database.
        Nothing is cached, so a revoked token is refused on the very next request.
        """
        if not raw.startswith(TOKEN_PREFIX):
            return None
        lookup = _token_lookup(connection)
        with connection.cursor() as cursor:
            cursor.execute(lookup.sql, [_digest(raw)])
            row = cursor.fetchone()
        if row is None:
            return None
        values = lookup.convert(row, connection)
        token_id, last_used_at = values[:2]
        user = lookup.user(values, connection)
        if user is None:
            return None
        now = timezone.now()
        # Touch last_used_at at most once a minute: no write on every request.
        if last_used_at is None or (now - last_used_at).total_seconds() > 60:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {lookup.table} SET last_used_at = %s WHERE id = %s",
                    [connection.ops.adapt_datetimefield_value(now), token_id],
                )
        return user


_authenticate_trip = trips.trip(ApiToken.authenticate)

Converter = Callable[[Any, Any, Any], Any]


class _TokenLookup:
    """The token lookup's SQL and the converters the ORM would apply to its columns."""

    def __init__(self, db: BaseDatabaseWrapper) -> None:
        quote = db.ops.quote_name
        self.table = quote(ApiToken._meta.db_table)
        user_table = quote(User._meta.db_table)
        token_fields = [ApiToken._meta.get_field("id"), ApiToken._meta.get_field("last_used_at")]
        user_fields = list(User._meta.concrete_fields)
        self.user_fields = [f.attname for f in user_fields]
        # Concrete fields always have a column; the stubs type it as optional.
        columns = [f"t.{quote(str(f.column))}" for f in token_fields]
        columns += [f"u.{quote(str(f.column))}" for f in user_fields]
        self.sql = (
            f"SELECT {', '.join(columns)} FROM {self.table} t "
            f"JOIN {user_table} u ON u.id = t.user_id WHERE t.digest = %s"
        )
        # As SQLCompiler.get_converters: the backend's (SQLite's datetimes, booleans and
        # decimals arrive raw) then the field's own, per column; most are empty.
        self.converters: list[tuple[int, list[Converter], Any]] = []
        for index, field in enumerate(token_fields + user_fields):
            column = field.get_col(field.model._meta.db_table)
            found = db.ops.get_db_converters(column) + column.get_db_converters(db)
            if found:
                self.converters.append((index, found, column))

    def user(self, values: list[Any] | None, db: BaseDatabaseWrapper) -> User | None:
        """The user of a converted row if it is active, else None."""
        if values is None:
            return None
        user = User.from_db(db.alias, self.user_fields, values[2:])
        return user if user.is_active else None

    def convert(self, row: tuple[Any, ...], db: BaseDatabaseWrapper) -> list[Any]:
        values = list(row)
        for index, converters, column in self.converters:
            value = values[index]
            for converter in converters:
                value = converter(value, column, db)
            values[index] = value
        return values


_lookups: dict[tuple[str, str], _TokenLookup] = {}


def _token_lookup(db: BaseDatabaseWrapper) -> _TokenLookup:
    key = (db.alias, db.vendor)
    lookup = _lookups.get(key)
    if lookup is None:
        lookup = _lookups[key] = _TokenLookup(db)
    return lookup
