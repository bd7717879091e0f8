from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_delete


class LlmConfig(AppConfig):
    name = "llm"
    verbose_name = "LLM hub"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from llm import attachments
        from llm.models import Attachment

        # A file goes with its row, however the row goes (its conversation, its owner).
        post_delete.connect(
            attachments.forget_file, sender=Attachment, dispatch_uid="llm.attachment.file"
        )
