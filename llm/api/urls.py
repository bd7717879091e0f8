"""Routes under /api/v1/ (API.md)."""

from __future__ import annotations

from django.urls import path

from accounts import api as tokens_api
from llm.api import providers

urlpatterns = [
    path("providers", providers.providers, name="api_providers"),
    path("providers/<str:kind>", providers.provider, name="api_provider"),
    path("providers/<str:kind>/test", providers.provider_test, name="api_provider_test"),
    path("providers/<str:kind>/models", providers.provider_models, name="api_provider_models"),
    path("tokens", tokens_api.tokens, name="api_tokens"),
    path("tokens/<int:pk>", tokens_api.token_detail, name="api_token"),
]
