from __future__ import annotations

from django.urls import path

from llm.views import chat

urlpatterns = [
    path("", chat.home, name="home"),
]
