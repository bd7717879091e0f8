"""Routes under /api/v1/ (API.md)."""

from __future__ import annotations

from django.urls import path, re_path

from accounts import api as tokens_api
from llm.api import (
    base,
    chat,
    compare,
    fallbacks,
    health,
    openai_compat,
    openapi,
    providers,
    replies,
)
from llm.api import conversations as conversations_api
from llm.api import files as files_api
from llm.api import presets as presets_api

urlpatterns = [
    path("chat", chat.chat, name="api_chat"),
    path("compare", compare.compare_view, name="api_compare"),
    path("files", files_api.files, name="api_files"),
    path("files/<int:pk>", files_api.file_detail, name="api_file"),
    path("replies/<int:message_id>/events", replies.reply_events, name="api_reply_events"),
    path("replies/<int:message_id>/stop", replies.reply_stop, name="api_reply_stop"),
    path("conversations", conversations_api.conversation_list, name="api_conversations"),
    path(
        "conversations/import",
        conversations_api.conversation_import,
        name="api_conversations_import",
    ),
    path(
        "conversations/delete",
        conversations_api.conversations_delete,
        name="api_conversations_delete",
    ),
    path("conversations/<int:pk>", chat.conversation, name="api_conversation"),
    path(
        "conversations/<int:pk>/export",
        conversations_api.conversation_export,
        name="api_conversation_export",
    ),
    path("usage", chat.usage, name="api_usage"),
    path("health", chat.health, name="api_health"),
    path("health/providers", health.providers_health, name="api_health_providers"),
    path("openapi.json", openapi.openapi_json, name="api_openapi"),
    path("providers", providers.providers, name="api_providers"),
    path("providers/<str:kind>", providers.provider, name="api_provider"),
    path("providers/<str:kind>/test", providers.provider_test, name="api_provider_test"),
    path("providers/<str:kind>/models", providers.provider_models, name="api_provider_models"),
    path("fallbacks", fallbacks.fallbacks, name="api_fallbacks"),
    path("presets", presets_api.preset_list, name="api_presets"),
    path("presets/<int:pk>", presets_api.preset_detail, name="api_preset"),
    path("templates", presets_api.template_list, name="api_templates"),
    path("templates/<int:pk>", presets_api.template_detail, name="api_template"),
    path("tokens", tokens_api.tokens, name="api_tokens"),
    path("tokens/<int:pk>", tokens_api.token_detail, name="api_token"),
    re_path(r"^.*$", base.not_found, name="api_not_found"),  # JSON, not Django's HTML 404
]

# Mounted at /v1/ (coppertone/urls.py): the OpenAI-compatible endpoint.
openai_urlpatterns = [
    path("chat/completions", openai_compat.chat_completions, name="openai_chat_completions"),
    path("models", openai_compat.models, name="openai_models"),
]
