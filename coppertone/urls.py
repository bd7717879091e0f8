from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from accounts import views as accounts_views
from llm.api.metrics import metrics
from llm.api.urls import openai_urlpatterns
from llm.views.dashboard import usage_dashboard, usage_export

urlpatterns = [
    path("admin/usage/", usage_dashboard, name="usage_dashboard"),
    path("admin/usage/export.csv", usage_export, name="usage_export"),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("api/v1/", include("llm.api.urls")),
    path("v1/", include(openai_urlpatterns)),
    path("metrics", metrics, name="metrics"),
    path("settings/tokens/", accounts_views.tokens, name="tokens"),
    path("settings/tokens/<int:pk>/revoke/", accounts_views.token_revoke, name="token_revoke"),
    path("", include("llm.urls")),
]
