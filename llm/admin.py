from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from llm.models import (
    Conversation,
    DailyUsage,
    FallbackEntry,
    Message,
    ModelPrice,
    ProviderConfig,
    Upstream,
)


@admin.register(ProviderConfig)
class ProviderConfigAdmin(admin.ModelAdmin):
    list_display = ("user", "kind", "model", "key_hint", "enabled", "last_verified_at")
    list_filter = ("kind", "enabled")
    list_select_related = ("user",)
    search_fields = ("user__username", "model")
    # The key itself is never shown: only the last 4 characters, read-only.
    readonly_fields = (
        "key_hint",
        "last_verified_at",
        "last_error",
        "failures",
        "open_until",
        "failure",
        "keep_alive_at",
        "keep_alive_result",
        "created_at",
        "updated_at",
    )
    exclude = ("encrypted_key", "key_id")
    # Where a key is sent and whose it is belong to the key (llm/crypto.py): staff can
    # never redirect a person's key, only the person, by entering it again.
    owned_fields = ("user", "kind", "base_url", "api_version")

    def get_readonly_fields(self, request: HttpRequest, obj: ProviderConfig | None = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields + self.owned_fields if obj is not None else fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a person's settings are theirs to create, with their own key


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ("role", "status", "content", "provider", "model", "output_tokens", "cost")
    readonly_fields = fields
    can_delete = False
    show_change_link = True


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("__str__", "user", "created_at", "updated_at")
    list_select_related = ("user",)
    search_fields = ("title", "user__username")
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "role",
        "status",
        "provider",
        "model",
        "output_tokens",
        "cost",
        "created_at",
    )
    list_filter = ("role", "status", "provider")
    search_fields = ("content",)
    raw_id_fields = ("conversation", "reply_to")
    date_hierarchy = "created_at"


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = (
        "provider",
        "model",
        "input_per_million",
        "output_per_million",
        "effective_from",
    )
    list_filter = ("provider",)
    search_fields = ("model",)


@admin.register(DailyUsage)
class DailyUsageAdmin(admin.ModelAdmin):
    list_display = (
        "day",
        "user",
        "provider",
        "model",
        "requests",
        "errors",
        "input_tokens",
        "output_tokens",
        "cost",
    )
    list_filter = ("provider", "day")
    list_select_related = ("user",)
    search_fields = ("user__username", "model")
    date_hierarchy = "day"


@admin.register(FallbackEntry)
class FallbackEntryAdmin(admin.ModelAdmin):
    list_display = ("user", "position", "provider", "model")
    list_select_related = ("user",)
    search_fields = ("user__username",)


@admin.register(Upstream)
class UpstreamAdmin(admin.ModelAdmin):
    """The servers' circuit breakers (llm/breakers.py); clear `open until` to close one."""

    list_display = ("address", "failures", "open_until", "updated_at")
    readonly_fields = ("address", "failure", "updated_at")
