"""Seal every stored key again with its destination in the associated data (llm/crypto.py).

A key that cannot be read with the server's keys is left as it is: it asks for the key
to be entered again, as it already did.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


def seal_destinations(apps: Any, schema_editor: Any) -> None:
    from llm import crypto

    ProviderConfig = apps.get_model("llm", "ProviderConfig")
    rows = ProviderConfig.objects.exclude(encrypted_key="")
    if not rows.exists():
        return
    try:
        ring = crypto.KeyRing.from_settings()
    except crypto.BadKeyConfig:
        return
    for row in rows:
        sealed = crypto.Sealed(row.key_id, row.encrypted_key)
        try:
            plaintext = ring.decrypt(sealed, crypto.legacy_associated_data(row.user_id, row.kind))
        except crypto.DecryptError:
            continue
        destination = f"{row.base_url}|{row.api_version}"
        again = ring.encrypt(plaintext, crypto.associated_data(row.user_id, row.kind, destination))
        row.encrypted_key, row.key_id = again.ciphertext, again.key_id
        row.save(update_fields=["encrypted_key", "key_id"])


class Migration(migrations.Migration):
    dependencies = [("llm", "0003_message_seq")]
    operations = [migrations.RunPython(seal_destinations, migrations.RunPython.noop)]
