"""ApiToken.authenticate's plain SELECT: the user it returns is the one the ORM would load."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.utils import timezone

from accounts.models import ApiToken, User


def test_token_user_has_every_field_as_the_orm_loads_it(alice: User) -> None:
    alice.role = User.Role.STAFF
    alice.monthly_budget = Decimal("12.50")
    alice.default_provider = "openai"
    alice.save()
    _, raw = ApiToken.issue(alice, "laptop")

    user = ApiToken.authenticate(raw)

    assert user is not None
    stored = User.objects.get(pk=alice.pk)
    for field in User._meta.concrete_fields:
        assert getattr(user, field.attname) == getattr(stored, field.attname), field.name
    assert user.is_staff is True and user.is_active is True
    assert user.budget() == Decimal("12.50")
    assert timezone.is_aware(user.date_joined)
    assert user._state.adding is False  # a saved row, as the ORM returns it


def test_last_used_is_touched_at_most_once_a_minute(alice: User) -> None:
    token, raw = ApiToken.issue(alice, "laptop")
    recent = timezone.now() - dt.timedelta(seconds=30)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=recent)
    assert ApiToken.authenticate(raw) == alice
    token.refresh_from_db()
    assert token.last_used_at == recent

    stale = timezone.now() - dt.timedelta(minutes=5)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=stale)
    assert ApiToken.authenticate(raw) == alice
    token.refresh_from_db()
    assert token.last_used_at is not None and token.last_used_at > stale


def test_a_token_of_another_person_returns_that_person(alice: User, bob: User) -> None:
    _, alice_raw = ApiToken.issue(alice, "a")
    bob_token, bob_raw = ApiToken.issue(bob, "b")
    assert ApiToken.authenticate(alice_raw) == alice
    assert ApiToken.authenticate(bob_raw) == bob
    bob_token.delete()  # revoked: refused at once, nothing cached
    assert ApiToken.authenticate(bob_raw) is None
    assert ApiToken.authenticate(alice_raw) == alice
