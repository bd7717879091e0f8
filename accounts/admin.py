from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from accounts.models import ApiToken, User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "email", "role", "is_active", "date_joined", "last_login", "usage")
    list_filter = ("role", "is_active")
    # Role decides is_staff/is_superuser (User.save), so those are not edited by hand.
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        ("Access", {"fields": ("role", "is_active", "groups", "user_permissions")}),
        ("LLM", {"fields": ("default_provider", "monthly_budget")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username", "role", "password1", "password2")}),
    )

    @admin.display(description="Usage")
    def usage(self, user: User) -> str:
        """A link to the usage dashboard narrowed to this person."""
        url = reverse("usage_dashboard") + "?" + urlencode({"user": user.get_username()})
        return format_html('<a href="{}">Usage of {}</a>', url, user.get_username())


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "prefix", "created_at", "last_used_at")
    list_select_related = ("user",)
    search_fields = ("name", "user__username", "prefix")
    readonly_fields = ("user", "name", "prefix", "created_at", "last_used_at")
    exclude = ("digest",)

    def has_add_permission(self, request: object) -> bool:
        return False  # tokens are issued by their owner, who is the only one to see them
