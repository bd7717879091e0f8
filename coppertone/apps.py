from __future__ import annotations

from django.apps import AppConfig


class CoppertoneConfig(AppConfig):
    name = "coppertone"

    def ready(self) -> None:
        from coppertone import checks  # noqa: F401  (registers the system checks)
