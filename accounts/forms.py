from __future__ import annotations

from django import forms
from django.contrib.auth.forms import UserCreationForm

from accounts.models import User


class SignupForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")


class ApiTokenForm(forms.Form):
    """A new API token's name: what the tokens page and POST /api/v1/tokens accept."""

    name = forms.CharField(
        label="Name",
        max_length=100,
        error_messages={
            "required": "Give the token a name, like the device that will use it.",
            "max_length": "Keep the name under 100 characters.",
        },
        widget=forms.TextInput(attrs={"placeholder": "laptop, home-assistant, ci…"}),
        help_text="Where the token will be used, so you know which one to revoke later.",
    )
