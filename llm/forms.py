"""What is valid in a person's provider settings: the one place, used by the page and the API.

`ProviderConfigForm` is bound to one kind from the registry; the fields it shows
follow that kind's `ProviderSpec` (no key and no URL for the embedded model, an
`api_version` for Azure). The API key is write-only: the field never renders a
value, and leaving it empty keeps the stored key.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from accounts.models import User
from llm.models import ProviderConfig
from llm.providers import registry
from llm.providers.base import ProviderError, ProviderSpec

MAX_KEY_CHARS = 500
MAX_SYSTEM_PROMPT_CHARS = 20_000


def key_problem(key: str) -> str | None:
    """Why `key` cannot be an API key, in words a person can act on; None when it can."""
    if any(ch.isspace() for ch in key):
        return (
            "The key contains a space or a line break, which API keys never do: "
            "copy it again from your provider and paste only the key."
        )
    if not key.isascii() or not key.isprintable():
        return (
            "The key contains characters that API keys never contain (perhaps quotes or "
            "an ellipsis were copied along): copy it again from your provider."
        )
    if len(key) > MAX_KEY_CHARS:
        return f"That is longer than any API key ({len(key)} characters): check what was pasted."
    return None


def url_problem(url: str) -> str | None:
    """Why the outbound guard would refuse `url`, or None when it may be fetched."""
    from llm.providers import guard  # the adapters' guard: one rule for both

    try:
        guard.check_url(url, private=guard.PrivateHosts.parse(tuple(settings.LLM_PRIVATE_HOSTS)))
    except ProviderError as refused:
        return refused.message
    return None


class ProviderConfigForm(forms.ModelForm):
    api_key = forms.CharField(
        label="API key",
        required=False,
        strip=False,  # whitespace is an error to report, not to hide
        widget=forms.PasswordInput(
            render_value=False, attrs={"autocomplete": "off", "spellcheck": "false"}
        ),
    )
    base_url = forms.CharField(
        label="Base URL",
        required=False,
        max_length=500,
        widget=forms.URLInput(attrs={"spellcheck": "false", "autocomplete": "off"}),
    )
    api_version = forms.CharField(
        label="API version",
        required=False,
        max_length=32,
        help_text="Azure's api-version, for example 2024-10-21.",
    )
    model = forms.CharField(
        label="Model",
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    temperature = forms.FloatField(
        label="Temperature",
        min_value=0.0,
        max_value=2.0,
        error_messages={
            "required": "Enter a temperature between 0 and 2.",
            "invalid": "Enter a number between 0 and 2, like 0.7.",
            "min_value": "The temperature cannot be below 0.",
            "max_value": "The temperature cannot be above 2.",
        },
        widget=forms.NumberInput(attrs={"step": "0.1"}),
    )
    max_tokens = forms.IntegerField(
        label="Max tokens",
        min_value=1,
        max_value=32000,
        error_messages={
            "required": "Enter how many tokens a reply may have, from 1 to 32000.",
            "invalid": "Enter a whole number from 1 to 32000.",
            "min_value": "A reply needs at least 1 token.",
            "max_value": "At most 32000 tokens per reply.",
        },
    )
    system_prompt = forms.CharField(
        label="System prompt",
        required=False,
        max_length=MAX_SYSTEM_PROMPT_CHARS,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Instructions sent before every conversation with this provider.",
    )

    class Meta:
        model = ProviderConfig
        fields = ["base_url", "api_version", "model", "temperature", "max_tokens", "system_prompt"]

    def __init__(self, *args: Any, kind: str, user: User, **kwargs: Any) -> None:
        self.spec: ProviderSpec = registry.spec(kind)
        instance = kwargs.get("instance")
        if instance is None:
            instance = ProviderConfig(user=user, kind=kind)
            kwargs["instance"] = instance
        # Several cards can be open at once: their fields need distinct ids.
        kwargs.setdefault("auto_id", f"id_{kind}_%s")
        super().__init__(*args, **kwargs)
        spec = self.spec
        if not self.takes_key:
            del self.fields["api_key"]
        else:
            key = self.fields["api_key"]
            key.label = "API key" if spec.needs_key else "API key (optional)"
            if instance.has_key:
                key.help_text = (
                    f"Stored: ••••{instance.key_hint}. Leave empty to keep it, or paste a new key."
                )
            elif spec.needs_key:
                key.help_text = f"Your {spec.label} key. It is stored encrypted and never shown."
            else:
                key.help_text = "Only if your server asks for one."
        if not spec.has_base_url:
            del self.fields["base_url"]
        else:
            url = self.fields["base_url"]
            url.required = not spec.default_base_url
            url.error_messages["required"] = (
                f"{spec.label} has no standard address: enter your server's base URL."
            )
            url.widget.attrs["placeholder"] = spec.default_base_url or "https://…/v1"
            if not self.is_bound and not instance.base_url:
                self.initial["base_url"] = spec.default_base_url
        if "api_version" not in spec.extra_fields:
            del self.fields["api_version"]
        self.fields["model"].widget.attrs["placeholder"] = spec.default_model
        self.fields["model"].help_text = f"Empty means {spec.default_model}."

    @property
    def takes_key(self) -> bool:
        # The embedded model has no network and nothing to authenticate.
        return self.spec.needs_key or self.spec.has_base_url

    def clean_api_key(self) -> str:
        key: str = self.cleaned_data.get("api_key", "")
        if key:
            problem = key_problem(key)
            if problem:
                raise forms.ValidationError(problem)
        elif self.spec.needs_key and not self.instance.has_key:
            raise forms.ValidationError(f"Paste your {self.spec.label} API key.")
        return key

    def clean_base_url(self) -> str:
        url: str = self.cleaned_data.get("base_url", "").strip()
        if not url:
            return ""
        problem = url_problem(url)
        if problem:
            raise forms.ValidationError(problem)
        # The default is stored as empty, so that it follows the registry if it moves.
        return "" if url.rstrip("/") == self.spec.default_base_url.rstrip("/") else url

    def clean_model(self) -> str:
        return str(self.cleaned_data.get("model", "")).strip()

    def clean_api_version(self) -> str:
        return str(self.cleaned_data.get("api_version", "")).strip()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or self.cleaned_data
        if self.redirects_stored_key():
            self.add_error(
                "api_key",
                "You changed where this key is sent: paste the key again to send it to the "
                "new address (a stored key only ever goes where it was entered).",
            )
        return cleaned

    def redirects_stored_key(self) -> bool:
        """Whether this would send the stored key somewhere new without it being re-entered.

        The model refuses it too: a key is sealed with its destination (llm/crypto.py), so
        a change made past this form (the admin, SQL) leaves the key unreadable instead.
        """
        instance = self.instance
        if not instance.has_key or self.cleaned_data.get("api_key"):
            return False
        moved = [
            name
            for name in ("base_url", "api_version")
            if name in self.fields
            and name in self.cleaned_data
            and self.cleaned_data[name] != getattr(instance, name)
        ]
        return bool(moved)

    def connection_changed(self) -> bool:
        """Whether saving changes where or as whom Coppertone connects."""
        if self.cleaned_data.get("api_key"):
            return True
        return any(
            name in self.changed_data and name in self.fields
            for name in ("base_url", "api_version")
        )

    def save(self, commit: bool = True) -> ProviderConfig:
        config: ProviderConfig = super().save(commit=False)
        key = self.cleaned_data.get("api_key")
        if key:
            config.set_api_key(key)
        if commit:
            config.save()
        return config


PROVIDER_FIELDS = (
    "api_key",
    "base_url",
    "api_version",
    "model",
    "temperature",
    "max_tokens",
    "system_prompt",
)


def provider_form_data(
    config: ProviderConfig, payload: dict[str, Any]
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Form data for a JSON body, where what the body omits keeps its stored value (API PUT),
    and the fields whose JSON type no form could read."""
    data = {
        "base_url": config.base_url or registry.spec(config.kind).default_base_url,
        "api_version": config.api_version,
        "model": config.model,
        "temperature": str(config.temperature),
        "max_tokens": str(config.max_tokens),
        "system_prompt": config.system_prompt,
    }
    problems: dict[str, list[str]] = {}
    for name, value in payload.items():
        if name not in PROVIDER_FIELDS:
            problems[name] = [f"Unknown field; the fields are {', '.join(PROVIDER_FIELDS)}."]
        elif value is None:
            data[name] = ""
        elif isinstance(value, bool) or not isinstance(value, str | int | float):
            problems[name] = ["Send a string or a number here."]
        else:
            data[name] = str(value)
    return data, problems


class DefaultProviderForm(forms.Form):
    """Which provider the chat widget starts with."""

    default_provider = forms.ChoiceField(label="Default provider", required=False)

    def __init__(self, *args: Any, configured: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only kinds that can answer: configured ones, and the embedded model.
        kinds = [k for k in registry.PROVIDERS if k in configured or k == registry.LOCAL]
        field = self.fields["default_provider"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [("", "Pick for me")] + [(k, registry.spec(k).label) for k in kinds]
