"""Re-encrypt every stored provider key under the first LLM_ENCRYPTION_KEYS key."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from llm import crypto
from llm.models import ProviderConfig


class Command(BaseCommand):
    help = (
        "Re-encrypt stored provider keys under the first key in LLM_ENCRYPTION_KEYS. "
        "Afterwards the other keys can be removed from the setting."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        ring = crypto.KeyRing.from_settings()
        rotated = current = unreadable = 0
        with transaction.atomic():
            configs = ProviderConfig.objects.select_for_update().exclude(encrypted_key="")
            for config in configs.select_related("user"):
                try:
                    changed = config.reencrypt(ring)
                except crypto.DecryptError:
                    unreadable += 1
                    self.stderr.write(
                        f"Cannot read the {config.kind} key of {config.user}: "
                        "they have to enter it again."
                    )
                    continue
                if changed:
                    config.save(update_fields=["encrypted_key", "key_id", "updated_at"])
                    rotated += 1
                else:
                    current += 1
        self.stdout.write(
            f"Re-encrypted {rotated} key(s) under key {ring.primary_id}; "
            f"{current} already used it; {unreadable} could not be read."
        )
