"""Provider keys at rest: AES-256-GCM bound to their row, rotation, clean failures."""

from __future__ import annotations

import base64
import logging
import secrets
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from accounts.models import User
from llm import crypto
from llm.models import ProviderConfig

SECRET = "sk-test-0123456789abcdefWXYZ"


def new_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def ring_key(settings: Any) -> str:
    key = new_key()
    settings.LLM_ENCRYPTION_KEYS = [key]
    return key


def test_round_trip_and_hint(alice: User, ring_key: str) -> None:
    config = ProviderConfig(user=alice, kind="openai")
    config.set_api_key(SECRET)
    config.save()
    stored = ProviderConfig.objects.get(pk=config.pk)
    assert stored.api_key() == SECRET
    assert stored.key_hint == "WXYZ"
    assert stored.credentials().api_key == SECRET


def test_two_encryptions_of_one_key_differ(ring_key: str) -> None:
    ring = crypto.KeyRing.from_settings()
    aad = crypto.associated_data(1, "openai", "|")
    assert ring.encrypt(SECRET, aad).ciphertext != ring.encrypt(SECRET, aad).ciphertext


def test_no_plaintext_in_the_database(alice: User, ring_key: str) -> None:
    config = ProviderConfig(user=alice, kind="openai")
    config.set_api_key(SECRET)
    config.save()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM llm_providerconfig")
        rows = cursor.fetchall()
    assert rows and SECRET not in repr(rows)
    assert SECRET[:-4] not in repr(rows)


def test_tampered_ciphertext_fails_cleanly(alice: User, ring_key: str) -> None:
    config = ProviderConfig(user=alice, kind="openai")
    config.set_api_key(SECRET)
    blob = bytearray(base64.b64decode(config.encrypted_key))
    blob[-1] ^= 0x01
    config.encrypted_key = base64.b64encode(bytes(blob)).decode()
    with pytest.raises(crypto.DecryptError, match="altered"):
        config.api_key()


def test_ciphertext_moved_to_another_row_fails(alice: User, bob: User, ring_key: str) -> None:
    mine = ProviderConfig.objects.create(user=alice, kind="openai")
    mine.set_api_key(SECRET)
    mine.save()
    theirs = ProviderConfig.objects.create(user=bob, kind="openai")
    theirs.encrypted_key, theirs.key_id = mine.encrypted_key, mine.key_id
    theirs.save()
    with pytest.raises(crypto.DecryptError):
        ProviderConfig.objects.get(pk=theirs.pk).api_key()
    # Same owner, other provider: also refused.
    other_kind = ProviderConfig(user=alice, kind="anthropic")
    other_kind.encrypted_key, other_kind.key_id = mine.encrypted_key, mine.key_id
    with pytest.raises(crypto.DecryptError):
        other_kind.api_key()


def test_removed_key_says_enter_it_again(alice: User, settings: Any, ring_key: str) -> None:
    config = ProviderConfig(user=alice, kind="openai")
    config.set_api_key(SECRET)
    settings.LLM_ENCRYPTION_KEYS = [new_key()]
    with pytest.raises(crypto.DecryptError, match="no longer has"):
        config.api_key()


def test_rotation_keeps_rows_readable_then_old_key_can_go(
    alice: User, bob: User, settings: Any, ring_key: str
) -> None:
    configs = []
    for user, kind in [(alice, "openai"), (alice, "gemini"), (bob, "anthropic")]:
        config = ProviderConfig(user=user, kind=kind)
        config.set_api_key(f"{SECRET}-{user.pk}-{kind}")
        config.save()
        configs.append(config)
    old = ring_key
    new = new_key()
    settings.LLM_ENCRYPTION_KEYS = [new, old]
    # Before rotation, both keys decrypt: nothing breaks when a key is added.
    assert all(ProviderConfig.objects.get(pk=c.pk).api_key().startswith(SECRET) for c in configs)

    out = StringIO()
    call_command("rotate_llm_keys", stdout=out)
    assert "Re-encrypted 3 key(s)" in out.getvalue()

    settings.LLM_ENCRYPTION_KEYS = [new]
    for config in configs:
        stored = ProviderConfig.objects.get(pk=config.pk)
        assert stored.key_id == crypto.key_id_for(base64.urlsafe_b64decode(new))
        assert stored.api_key() == f"{SECRET}-{config.user_id}-{config.kind}"

    out = StringIO()
    call_command("rotate_llm_keys", stdout=out)
    assert "Re-encrypted 0 key(s)" in out.getvalue() and "3 already used it" in out.getvalue()


def test_bad_key_configuration_is_explained() -> None:
    with pytest.raises(crypto.BadKeyConfig, match="32"):
        crypto.KeyRing.from_strings([base64.urlsafe_b64encode(b"short").decode()])
    with pytest.raises(crypto.BadKeyConfig, match="not base64"):
        crypto.KeyRing.from_strings(["***"])


def test_key_never_reaches_repr_or_logs(
    alice: User, ring_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = ProviderConfig(user=alice, kind="openai")
    config.set_api_key(SECRET)
    config.save()
    with caplog.at_level(logging.DEBUG):
        creds = config.credentials()
        logging.getLogger("test").info("calling with %r", creds)
    assert SECRET not in repr(creds)
    assert SECRET not in caplog.text
