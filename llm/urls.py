from __future__ import annotations

from django.urls import path

from llm.views import chat, fallbacks
from llm.views import conversations as conversations_views
from llm.views import evaluations as evaluation_views
from llm.views import presets as presets_views
from llm.views import settings as settings_views
from llm.views import usage as usage_views

urlpatterns = [
    path("", chat.home, name="home"),
    path("conversations/", conversations_views.conversations, name="conversations"),
    path(
        "conversations/import/",
        conversations_views.conversations_import,
        name="conversations_import",
    ),
    path(
        "conversations/delete/",
        conversations_views.conversations_delete,
        name="conversations_delete",
    ),
    path(
        "conversations/<int:pk>/rename/",
        conversations_views.conversation_rename,
        name="conversation_rename",
    ),
    path(
        "conversations/<int:pk>/pin/",
        conversations_views.conversation_pin,
        name="conversation_pin",
    ),
    path(
        "conversations/<int:pk>/export.md",
        conversations_views.conversation_export,
        {"fmt": "md"},
        name="conversation_export_md",
    ),
    path(
        "conversations/<int:pk>/export.json",
        conversations_views.conversation_export,
        {"fmt": "json"},
        name="conversation_export_json",
    ),
    path("conversations/<int:pk>/", chat.conversation, name="conversation"),
    path("conversations/<int:pk>/delete/", chat.conversation_delete, name="conversation_delete"),
    path("chat/picker/", chat.widget_picker, name="widget_picker"),
    path("compare/", chat.compare, name="compare"),
    path("evaluations/", evaluation_views.evaluations_page, name="evaluations"),
    path("evaluations/<int:pk>/", evaluation_views.evaluation_report, name="evaluation"),
    path("evaluations/<int:pk>/stop/", evaluation_views.evaluation_stop, name="evaluation_stop"),
    path(
        "evaluations/<int:pk>/resume/", evaluation_views.evaluation_resume, name="evaluation_resume"
    ),
    path("evaluations/<int:pk>/export.csv", evaluation_views.evaluation_csv, name="evaluation_csv"),
    path(
        "evaluations/<int:pk>/export.json", evaluation_views.evaluation_json, name="evaluation_json"
    ),
    path("settings/usage/", usage_views.usage_page, name="settings_usage"),
    path("settings/presets/", presets_views.presets_page, name="settings_presets"),
    path("settings/presets/<int:pk>/", presets_views.preset_item, name="settings_preset"),
    path(
        "settings/presets/<int:pk>/delete/",
        presets_views.preset_delete,
        name="settings_preset_delete",
    ),
    path("settings/templates/", presets_views.templates_page, name="settings_templates"),
    path("settings/templates/<int:pk>/", presets_views.template_item, name="settings_template"),
    path(
        "settings/templates/<int:pk>/delete/",
        presets_views.template_delete,
        name="settings_template_delete",
    ),
    path("settings/llm/", settings_views.settings_page, name="settings_llm"),
    path("settings/llm/default/", settings_views.default_provider, name="settings_default"),
    path("settings/llm/fallbacks/", fallbacks.fallbacks, name="settings_fallbacks"),
    path("settings/llm/<str:kind>/", settings_views.provider_card, name="settings_provider"),
    path(
        "settings/llm/<str:kind>/test/",
        settings_views.provider_test,
        name="settings_provider_test",
    ),
    path(
        "settings/llm/<str:kind>/models/",
        settings_views.provider_models,
        name="settings_provider_models",
    ),
    path(
        "settings/llm/<str:kind>/enabled/",
        settings_views.provider_enabled,
        name="settings_provider_enabled",
    ),
    path(
        "settings/llm/<str:kind>/delete/",
        settings_views.provider_delete,
        name="settings_provider_delete",
    ),
]
