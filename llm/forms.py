"""What is valid in a person's provider settings: the one place, used by the page and the API.

`ProviderConfigForm` is bound to one kind from the registry; the fields it shows
follow that kind's `ProviderSpec` (no key and no URL for the embedded model, an
`api_version` for Azure, keep-alive only for local servers). The API key is
write-only: the field never renders a value, and leaving it empty keeps the stored key.
`FallbackChain` is the "if it fails" chain, for the settings card and /api/v1/fallbacks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.conf import settings
from django.db import transaction

from accounts.models import User
from llm.models import FallbackEntry, ProviderConfig, Thinking
from llm.providers import registry
from llm.providers.base import ProviderError, ProviderSpec

MAX_KEY_CHARS = 500
MAX_SYSTEM_PROMPT_CHARS = 20_000
MAX_MODEL_CHARS = 200
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 100
MIN_TIMEOUT_SECONDS = 1
MAX_TIMEOUT_SECONDS = 600
MAX_CONCURRENT = 256
MAX_KEEP_ALIVE_MINUTES = 1440
MAX_FALLBACKS = 5


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


# On the page a stop sequence is one line of text, so a line break inside one is written
# \n (a backslash \\, a tab \t): "\n\n" stops at a blank line. The API takes a JSON list.
_ESCAPES = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


def stop_line(sequence: str) -> str:
    """One stop sequence as the page's one line of text."""
    return sequence.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def stop_from_line(line: str) -> str:
    return re.sub(r"\\([\\nrt])", lambda m: _ESCAPES[m[1]], line)


class StopTextarea(forms.Textarea):
    def format_value(self, value: Any) -> str | None:
        if isinstance(value, list | tuple):
            return "\n".join(stop_line(str(s)) for s in value)
        return super().format_value(value)


class StopField(forms.Field):
    """Up to 4 stop sequences: a list from the API, one a line from the page."""

    widget = StopTextarea

    def to_python(self, value: Any) -> list[str]:
        if value in (None, ""):
            return []
        if isinstance(value, str):
            # Blank lines are spacing, not sequences (a blank line is written \n\n).
            return [stop_from_line(line) for line in value.splitlines() if line.strip()]
        if isinstance(value, list | tuple):
            if not all(isinstance(item, str) for item in value):
                raise forms.ValidationError('Each stop sequence is text, like "###".')
            return list(value)
        raise forms.ValidationError('Send the stop sequences as a list of strings, like ["###"].')

    def validate(self, value: Any) -> None:
        if len(value) > MAX_STOP_SEQUENCES:
            raise forms.ValidationError(
                f"At most {MAX_STOP_SEQUENCES} stop sequences (providers refuse more); "
                f"there are {len(value)}."
            )
        for sequence in value:
            if not sequence:
                raise forms.ValidationError("A stop sequence cannot be empty: remove it.")
            if len(sequence) > MAX_STOP_CHARS:
                raise forms.ValidationError(
                    f"A stop sequence is at most {MAX_STOP_CHARS} characters; "
                    f"“{sequence[:20]}…” has {len(sequence)}."
                )
            if "\x00" in sequence:
                raise forms.ValidationError("A stop sequence cannot contain a NUL character.")


def _seconds(label: str) -> forms.FloatField:
    return forms.FloatField(
        label=label,
        required=False,
        min_value=MIN_TIMEOUT_SECONDS,
        max_value=MAX_TIMEOUT_SECONDS,
        error_messages={
            "invalid": "Enter a number of seconds, like 30, or leave it empty for the "
            "server's default.",
            "min_value": f"At least {MIN_TIMEOUT_SECONDS} second.",
            "max_value": f"At most {MAX_TIMEOUT_SECONDS} seconds (10 minutes).",
        },
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
    )


# A provider card's stored settings (the key aside), and those its "Advanced" part holds.
ADVANCED_FIELDS = (
    "top_p",
    "stop",
    "thinking",
    "connect_timeout",
    "first_byte_timeout",
    "idle_timeout",
    "max_concurrent",
    "keep_alive_minutes",
    "cache_replies",
)
CONFIG_FIELDS = (
    "base_url",
    "api_version",
    "model",
    "temperature",
    "max_tokens",
    "system_prompt",
    "enabled",
    *ADVANCED_FIELDS,
)


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
    # Absent keeps what is stored: the card's switch sends it, the edit form does not.
    enabled = forms.NullBooleanField(label="Use in the chat", required=False)
    top_p = forms.FloatField(
        label="Top p",
        required=False,
        min_value=0.0,
        max_value=1.0,
        error_messages={
            "invalid": "Enter a number between 0 and 1, like 0.9, or leave it empty.",
            "min_value": "Top p cannot be below 0.",
            "max_value": "Top p cannot be above 1.",
        },
        widget=forms.NumberInput(attrs={"step": "0.05", "inputmode": "decimal"}),
        help_text="Empty: not sent, the provider's own default.",
    )
    stop = StopField(
        label="Stop sequences",
        required=False,
        widget=StopTextarea(attrs={"rows": 2, "spellcheck": "false"}),
        help_text=f"The reply ends where one appears. One a line, up to {MAX_STOP_SEQUENCES}, "
        f"each at most {MAX_STOP_CHARS} characters; write a line break as \\n.",
    )
    thinking = forms.ChoiceField(
        label="Thinking",
        required=False,  # absent keeps what is stored
        choices=Thinking.choices,
        error_messages={
            "invalid_choice": "Choose one of: "
            + ", ".join(f"{value} ({label})" for value, label in Thinking.choices)
            + "."
        },
        help_text="For models that reason before they answer.",
    )
    connect_timeout = _seconds("Connect timeout")
    first_byte_timeout = _seconds("First token timeout")
    idle_timeout = _seconds("Idle timeout")
    max_concurrent = forms.IntegerField(
        label="Replies at once",
        required=False,
        min_value=0,
        max_value=MAX_CONCURRENT,
        error_messages={
            "invalid": "Enter a whole number, like 4, or leave it empty.",
            "min_value": "Enter 0 for no cap, or a number of replies.",
            "max_value": f"At most {MAX_CONCURRENT} replies at once.",
        },
    )
    keep_alive_minutes = forms.IntegerField(
        label="Keep the model loaded (minutes)",
        required=False,
        min_value=0,
        max_value=MAX_KEEP_ALIVE_MINUTES,
        error_messages={
            "invalid": "Enter a whole number of minutes, like 5, or 0 for off.",
            "min_value": "Enter 0 for off, or a number of minutes.",
            "max_value": f"At most {MAX_KEEP_ALIVE_MINUTES} minutes (a day).",
        },
        help_text="0 is off. Coppertone pings the server this often so that the model "
        "stays in memory and the first reply does not wait for it to load.",
    )
    cache_replies = forms.BooleanField(
        label="Answer a repeated question from my own earlier replies",
        required=False,
        help_text="The same question with the same settings gets the stored reply at once, "
        "at no cost. Only your own replies are used.",
    )

    # What the card folds under "Advanced", in this order.
    ADVANCED = ADVANCED_FIELDS

    class Meta:
        model = ProviderConfig
        fields = list(CONFIG_FIELDS)

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
        if not spec.keep_alive:
            del self.fields["keep_alive_minutes"]
        for name, operator in (
            ("connect_timeout", settings.LLM_CONNECT_TIMEOUT),
            ("first_byte_timeout", settings.LLM_FIRST_BYTE_TIMEOUT),
            ("idle_timeout", settings.LLM_IDLE_TIMEOUT),
        ):
            self.fields[name].widget.attrs["placeholder"] = f"{operator:g}"
        self.fields[
            "connect_timeout"
        ].help_text = "Seconds to reach the server. Empty: the server's default."
        self.fields[
            "first_byte_timeout"
        ].help_text = (
            "Seconds to wait for the reply to start (a local model may need long to load)."
        )
        self.fields["idle_timeout"].help_text = "Seconds of silence in the middle of a reply."
        cap = spec.default_max_concurrent
        self.fields["max_concurrent"].widget.attrs["placeholder"] = f"{cap}" if cap else "no cap"
        default = (
            f"Empty: {cap} (the default for {spec.label}); 0: no cap."
            if cap
            else ("Empty or 0: no cap.")
        )
        self.fields["max_concurrent"].help_text = (
            "How many replies this server works on at once, for everyone who uses it; the "
            f"rest wait their turn. {default}"
        )

    def advanced_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.ADVANCED if name in self.fields]

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

    def clean_enabled(self) -> bool:
        value = self.cleaned_data.get("enabled")
        return self.instance.enabled if value is None else bool(value)

    def clean_thinking(self) -> str:
        return self.cleaned_data.get("thinking") or self.instance.thinking

    def clean_keep_alive_minutes(self) -> int:
        return self.cleaned_data.get("keep_alive_minutes") or 0

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
        if "keep_alive_minutes" in self.changed_data:
            config.keep_alive_due = None  # the next round pings it, at the new interval
        if commit:
            config.save()
        return config


PROVIDER_FIELDS = ("api_key", *CONFIG_FIELDS)
BOOLEAN_FIELDS = ("enabled", "cache_replies")
# A field the kind has not may still be sent as "nothing" (a JSON body copied from
# another kind): null, empty, 0 or false.
NOTHING: tuple[object, ...] = (None, "", 0)


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def provider_form_data(
    config: ProviderConfig, payload: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Form data for a JSON body, where what the body omits keeps its stored value (API PUT),
    and the fields whose JSON type no form could read."""
    data: dict[str, Any] = {
        "base_url": config.base_url or registry.spec(config.kind).default_base_url,
        "api_version": config.api_version,
        "model": config.model,
        "temperature": str(config.temperature),
        "max_tokens": str(config.max_tokens),
        "system_prompt": config.system_prompt,
        "enabled": _flag(config.enabled),
        "top_p": _text(config.top_p),
        "stop": list(config.stop or []),
        "thinking": config.thinking,
        "connect_timeout": _text(config.connect_timeout),
        "first_byte_timeout": _text(config.first_byte_timeout),
        "idle_timeout": _text(config.idle_timeout),
        "max_concurrent": _text(config.max_concurrent),
        "keep_alive_minutes": str(config.keep_alive_minutes),
        "cache_replies": _flag(config.cache_replies),
    }
    problems: dict[str, list[str]] = {}
    for name, value in payload.items():
        if name not in PROVIDER_FIELDS:
            problems[name] = [f"Unknown field; the fields are {', '.join(PROVIDER_FIELDS)}."]
        elif name in BOOLEAN_FIELDS:
            if isinstance(value, bool):
                data[name] = _flag(value)
            else:
                problems[name] = ["Send true or false here."]
        elif name == "stop":
            # A lone string is one sequence, as OpenAI's API takes it; the list is checked
            # item by item by StopField.
            data[name] = [value] if isinstance(value, str) and value else value
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


# --- the "if it fails" chain ------------------------------------------------------------------


@dataclass(frozen=True)
class FallbackStep:
    provider: str
    model: str = ""  # empty: the model on that provider's card

    def as_dict(self) -> dict[str, str]:
        return {"provider": self.provider, "model": self.model}


def _shown(value: object, longest: int = 40) -> str:
    text = str(value)
    return text if len(text) <= longest else f"{text[:longest]}…"


@dataclass
class FallbackChain:
    """A person's "if it fails" chain, checked as a whole, for the settings card and
    PUT /api/v1/fallbacks. `steps` is what the API or the page sent: a list of
    `{"provider", "model"?}`. `errors` names the list ("chain") or one step, counted
    from 0 ("chain[1]", "chain[1].provider", "chain[1].model")."""

    user: User
    steps: Any
    cleaned: list[FallbackStep] = field(default_factory=list)
    errors: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._clean()

    @staticmethod
    def stored(user: User) -> list[FallbackStep]:
        rows = FallbackEntry.objects.filter(user=user).order_by("position")
        return [FallbackStep(row.provider, row.model) for row in rows]

    def is_valid(self) -> bool:
        return not self.errors

    def save(self) -> None:
        """Replace the stored chain with this one, all at once."""
        if not self.is_valid():
            raise ValueError("save() of a chain with errors")
        with transaction.atomic():
            # Two saves at once take turns on the person's row instead of mixing steps.
            list(User.objects.select_for_update().filter(pk=self.user.pk).values_list("pk"))
            FallbackEntry.objects.filter(user=self.user).delete()
            FallbackEntry.objects.bulk_create(
                FallbackEntry(user=self.user, position=n, provider=s.provider, model=s.model)
                for n, s in enumerate(self.cleaned, start=1)
            )

    def _error(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def _clean(self) -> None:
        if not isinstance(self.steps, list):
            self._error("chain", 'Send the chain as a list of steps, like [{"provider": "local"}].')
            return
        if len(self.steps) > MAX_FALLBACKS:
            self._error(
                "chain",
                f"At most {MAX_FALLBACKS} steps (a reply may wait for each of them); "
                f"there are {len(self.steps)}: remove some.",
            )
        first_at: dict[FallbackStep, int] = {}
        for i, item in enumerate(self.steps):
            step = self._step(i, item)
            if step is None:
                continue
            if step in first_at:
                label = registry.spec(step.provider).label
                self._error(
                    f"chain[{i}]",
                    f"Step {i + 1} repeats step {first_at[step] + 1} ({label}"
                    f"{', ' + step.model if step.model else ''}): what just failed would fail "
                    "again, remove one of them.",
                )
                continue
            first_at[step] = i
            self.cleaned.append(step)

    def _step(self, i: int, item: object) -> FallbackStep | None:
        at = f"chain[{i}]"
        if not isinstance(item, dict):
            self._error(at, 'Each step is an object, like {"provider": "local"}.')
            return None
        unknown = sorted(_shown(name) for name in item if name not in ("provider", "model"))
        if unknown:
            self._error(at, f"Unknown field {', '.join(unknown)}: a step has provider and model.")
        provider = item.get("provider")
        known = ", ".join(registry.PROVIDERS)
        if not isinstance(provider, str) or not provider:
            self._error(f"{at}.provider", f"Choose a provider, one of: {known}.")
        elif provider not in registry.PROVIDERS:
            self._error(
                f"{at}.provider",
                f"There is no provider “{_shown(provider)}”; the kinds are {known}.",
            )
        model = item.get("model")
        if model is None:
            model = ""
        if not isinstance(model, str):
            self._error(f"{at}.model", "The model is a name, or empty for the card's model.")
            return None
        if len(model) > MAX_MODEL_CHARS:
            self._error(
                f"{at}.model",
                f"A model name is at most {MAX_MODEL_CHARS} characters; this one has {len(model)}.",
            )
        elif "\x00" in model:
            self._error(f"{at}.model", "A model name cannot contain a NUL character.")
        model = model.strip()
        if any(name == at or name.startswith(f"{at}.") for name in self.errors):
            return None
        assert isinstance(provider, str)
        return FallbackStep(provider, model)
