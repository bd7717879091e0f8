"""Presets and prompt templates: the one place that decides what is valid (for the settings
pages and /api/v1/presets, /api/v1/templates), who may see and change which, and what a
preset makes of a turn.

A person sees their own and the ones staff published; they change only their own. Only
staff may publish, and a published one stays visible only while its owner is staff.
A template's text holds `{placeholders}` (letters, digits and underscores); `{{` and
`}}` are literal braces, as in Python's str.format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.db import IntegrityError, models, transaction

from accounts.models import User
from llm import trips
from llm.events import TurnError
from llm.forms import MAX_MODEL_CHARS, MAX_SYSTEM_PROMPT_CHARS
from llm.models import Preset, PromptTemplate
from llm.providers import registry

MAX_NAME_CHARS = 80
MAX_PLACEHOLDERS = 20
MAX_PROBLEMS = 5  # a text full of braces gets the first few, not a wall of them

Kind = type[Preset] | type[PromptTemplate]


# --- who sees and changes what ----------------------------------------------------------------


def usable(model: Kind, user: User) -> models.QuerySet[Any]:
    """`user`'s own, then those staff published, each by name."""
    shared = models.Q(published=True, user__is_staff=True)
    return (
        model.objects.filter(models.Q(user=user) | shared)
        .annotate(mine=models.Case(models.When(user=user, then=0), default=1))
        .order_by("mine", "name", "pk")
    )


def editable(model: Kind, user: User) -> models.QuerySet[Any]:
    """Only `user`'s own: someone else's, published or not, is not theirs to change."""
    return model.objects.filter(user=user)


def not_found(model: Kind) -> TurnError:
    what = "preset" if model is Preset else "template"
    return TurnError(
        "not_found", f"There is no such {what} of yours (or published by staff): it may be deleted."
    )


# --- a template's text -------------------------------------------------------------------------

OPEN, CLOSE = "{", "}"
NAME = re.compile(r"\w+")  # letters (any script), digits, underscore
BRACES = re.compile(r"[{}]")


@dataclass(frozen=True, slots=True)
class Placeholder:
    name: str


Part = str | Placeholder


class TemplateTextError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems[0])
        self.problems = problems


def _where(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"line {line}, column {column}"


def _shown(text: str, longest: int = 30) -> str:
    return text if len(text) <= longest else f"{text[:longest]}…"


def parse(text: str) -> list[Part]:
    """The text as literal strings and placeholders, in order; TemplateTextError says
    where each problem is, in words a person can act on."""
    parts: list[Part] = []
    literal: list[str] = []
    problems: list[str] = []
    i = 0
    while (found := BRACES.search(text, i)) is not None:
        at = found.start()
        literal.append(text[i:at])
        brace = text[at]
        if text.startswith(brace * 2, at):  # {{ or }}: one literal brace
            literal.append(brace)
            i = at + 2
            continue
        if brace == CLOSE:
            problems.append(
                f"The {CLOSE} at {_where(text, at)} closes nothing: write {CLOSE * 2} for a "
                f"literal brace, or open the placeholder with {OPEN}."
            )
            i = at + 1
            continue
        end = text.find(CLOSE, at + 1)
        inner = text[at + 1 : end]
        if end == -1 or OPEN in inner or "\n" in inner:
            problems.append(
                f"The {OPEN} at {_where(text, at)} is never closed: end the placeholder with "
                f"{CLOSE} on the same line, or write {OPEN * 2} for a literal brace."
            )
            i = at + 1
            continue
        if not inner:
            problems.append(
                f"{OPEN}{CLOSE} at {_where(text, at)} has no name: put one between the braces, "
                f"like {OPEN}topic{CLOSE}, or write {OPEN * 2}{CLOSE * 2} for literal braces."
            )
        elif not NAME.fullmatch(inner):
            better = re.sub(r"\W+", "_", inner).strip("_") or "topic"
            problems.append(
                f"{OPEN}{_shown(inner)}{CLOSE} at {_where(text, at)} is not a placeholder name: "
                f"use only letters, digits and underscores, like {OPEN}{_shown(better)}{CLOSE}, "
                f"or write {OPEN * 2} and {CLOSE * 2} for literal braces."
            )
        else:
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(Placeholder(inner))
        i = end + 1
    literal.append(text[i:])
    if problems:
        more = len(problems) - MAX_PROBLEMS
        shown = problems[:MAX_PROBLEMS]
        if more > 0:
            shown.append(f"…and {more} more like these.")
        raise TemplateTextError(shown)
    if "".join(literal):
        parts.append("".join(literal))
    return parts


def placeholders(parts: list[Part]) -> list[str]:
    """Each placeholder's name once, in the order they first appear."""
    return list(dict.fromkeys(p.name for p in parts if isinstance(p, Placeholder)))


def parts_of(template: PromptTemplate) -> list[Part]:
    """A stored template's parts (its text was checked when it was saved)."""
    try:
        return parse(template.text)
    except TemplateTextError:
        return [template.text]  # saved past the form (the admin): offered as plain text


# --- the forms: the page posts them, the API fills them from JSON ------------------------------


def _name_field(what: str, example: str) -> forms.CharField:
    return forms.CharField(
        label="Name",
        max_length=MAX_NAME_CHARS,
        strip=False,  # the length is checked as sent; clean_name strips
        error_messages={
            "required": f"Give the {what} a name, like “{example}”.",
            "max_length": f"A name is at most {MAX_NAME_CHARS} characters.",
        },
    )


class _Owned(forms.ModelForm):
    """What presets and templates share: a name unique to its owner, and publishing."""

    what = "preset"
    published = forms.BooleanField(
        label="Publish to everyone",
        required=False,
        help_text="Staff only: everyone can use it, and only you can change it.",
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        self.user = user
        # The page shows the new form and an edit form at once: their ids must differ.
        instance = kwargs.get("instance")
        kwargs.setdefault("auto_id", f"id_{self.what}_{getattr(instance, 'pk', None) or 'new'}_%s")
        super().__init__(*args, **kwargs)
        self.instance.user = user

    @property
    def can_publish(self) -> bool:
        return bool(self.user.is_staff)

    def clean_name(self) -> str:
        name = str(self.cleaned_data.get("name", "")).strip()
        if not name:
            raise forms.ValidationError(self.fields["name"].error_messages["required"])
        mine = type(self.instance).objects.filter(user=self.user, name=name)
        if mine.exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(self._taken(name))
        return name

    def _taken(self, name: str) -> str:
        return f"You already have a {self.what} named “{name}”: choose another name."

    def clean_published(self) -> bool:
        wanted = bool(self.cleaned_data.get("published"))
        # Asking to publish is refused; one published while its owner was staff may stay
        # marked (it is shown to others only while the owner is staff).
        if wanted and not self.can_publish and not self.instance.published:
            raise forms.ValidationError(
                f"Only staff may publish a {self.what}; yours stays private to you. "
                "Leave “published” out, or false."
            )
        return wanted

    def try_save(self) -> Preset | PromptTemplate | None:
        """Save, or None with the name's error added when another save took the name first."""
        try:
            with transaction.atomic():
                saved = self.save()
        except IntegrityError:
            self.add_error("name", self._taken(self.cleaned_data["name"]))
            return None
        assert isinstance(saved, Preset | PromptTemplate)
        return saved


class PresetForm(_Owned):
    name = _name_field("preset", "Terse reviewer")
    provider = forms.ChoiceField(
        label="Provider",
        choices=registry.choices,
        error_messages={
            "required": f"Choose a provider, one of: {', '.join(registry.PROVIDERS)}.",
            "invalid_choice": "There is no provider “%(value)s”; the kinds are "
            + ", ".join(registry.PROVIDERS)
            + ".",
        },
    )
    model = forms.CharField(
        label="Model",
        required=False,
        max_length=MAX_MODEL_CHARS,
        strip=False,
        help_text="Empty: the model on that provider's card.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    system_prompt = forms.CharField(
        label="System prompt",
        required=False,
        max_length=MAX_SYSTEM_PROMPT_CHARS,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Empty: the provider card's system prompt.",
    )
    temperature = forms.FloatField(
        label="Temperature",
        required=False,
        min_value=0.0,
        max_value=2.0,
        error_messages={
            "invalid": "Enter a number between 0 and 2, like 0.7, or leave it empty.",
            "min_value": "The temperature cannot be below 0.",
            "max_value": "The temperature cannot be above 2.",
        },
        widget=forms.NumberInput(attrs={"step": "0.1", "inputmode": "decimal"}),
        help_text="Empty: the card's. 0 is focused, 2 is loose.",
    )
    max_tokens = forms.IntegerField(
        label="Max tokens",
        required=False,
        min_value=1,
        max_value=32000,
        error_messages={
            "invalid": "Enter a whole number from 1 to 32000, or leave it empty.",
            "min_value": "A reply needs at least 1 token.",
            "max_value": "At most 32000 tokens per reply.",
        },
        help_text="Empty: the card's. The longest reply, 1 to 32000.",
    )

    class Meta:
        model = Preset
        fields = [
            "name",
            "provider",
            "model",
            "system_prompt",
            "temperature",
            "max_tokens",
            "published",
        ]

    def clean_model(self) -> str:
        return str(self.cleaned_data.get("model", "")).strip()


class PromptTemplateForm(_Owned):
    what = "template"
    name = _name_field("template", "Translate")
    text = forms.CharField(
        label="Text",
        max_length=settings.LLM_MAX_MESSAGE_CHARS,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "true"}),
        error_messages={
            "required": "Write the template's text, like “Translate {text} into {language}.”",
            "max_length": "A template is at most %(limit_value)s characters (the longest "
            "message); this one has %(show_value)s.",
        },
        help_text="Put a {name} where the message needs a value each time; write {{ and }} "
        "for literal braces.",
    )

    class Meta:
        model = PromptTemplate
        fields = ["name", "text", "published"]

    def clean_text(self) -> str:
        text = str(self.cleaned_data.get("text", ""))
        if not text.strip():
            raise forms.ValidationError(self.fields["text"].error_messages["required"])
        try:
            names = placeholders(parse(text))
        except TemplateTextError as error:
            raise forms.ValidationError(error.problems) from None
        if len(names) > MAX_PLACEHOLDERS:
            raise forms.ValidationError(
                f"At most {MAX_PLACEHOLDERS} different placeholders (each is a box to fill "
                f"in); this text has {len(names)}."
            )
        return text


# What a JSON body may hold, and the JSON type each takes (null: empty).
TEXT, NUMBER, WHOLE, FLAG = "text", "a number", "a whole number", "true or false"
PRESET_FIELDS = {
    "name": TEXT,
    "provider": TEXT,
    "model": TEXT,
    "system_prompt": TEXT,
    "temperature": NUMBER,
    "max_tokens": WHOLE,
    "published": FLAG,
}
TEMPLATE_FIELDS = {"name": TEXT, "text": TEXT, "published": FLAG}


def _as_data(value: Any, kind: str) -> str | None:
    """A JSON value as the form's text, or None when its type is wrong."""
    if value is None and kind != FLAG:
        return ""
    if kind == FLAG:
        return ("true" if value else "false") if isinstance(value, bool) else None
    if kind == TEXT:
        return value if isinstance(value, str) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if kind == WHOLE and isinstance(value, float) and not value.is_integer():
        return None  # the form would say "a whole number" too; this keeps the wording one
    return str(int(value)) if kind == WHOLE else repr(float(value))


def form_data(
    fields: dict[str, str], stored: Preset | PromptTemplate | None, payload: dict[str, Any]
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Form data for a JSON body (what a PUT omits keeps its stored value), and the fields
    the body got wrong before any form could read them."""
    data: dict[str, str] = {}
    if stored is not None:
        for name in fields:
            value = getattr(stored, name)
            data[name] = _as_data(value, fields[name]) or ""
    problems: dict[str, list[str]] = {}
    for name, value in payload.items():
        kind = fields.get(name)
        if kind is None:
            problems[name] = [f"Unknown field; the fields are {', '.join(fields)}."]
            continue
        text = _as_data(value, kind)
        if text is None:
            problems[name] = [f"Send {kind} here{'' if kind == FLAG else ', or null'}."]
        else:
            data[name] = text
    return data, problems


# --- using a preset in a turn ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TurnChoice:
    """What run_turn is given: the request's own provider and model win over the preset's."""

    provider: str | None
    model: str | None
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None

    def turn_kwargs(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "system": self.system,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }


def _usable_preset(user: User, preset_id: int) -> Preset | None:
    found: Preset | None = usable(Preset, user).filter(pk=preset_id).first()
    return found


_usable_preset_trip = trips.trip(_usable_preset)


async def for_turn(
    user: User, preset_id: int | None, *, provider: str | None, model: str | None
) -> TurnChoice:
    """The settings a turn runs with when a chat body or `send` frame names `preset`.

    No preset: the request's own choice, with no database trip. A preset the person may
    not use is TurnError not_found. The preset's model belongs to its provider, so a
    request that names another provider does not get it.
    """
    if preset_id is None:
        return TurnChoice(provider, model)
    preset = await _usable_preset_trip(user, preset_id)
    if preset is None:
        raise not_found(Preset)
    kind = provider or preset.provider
    return TurnChoice(
        provider=kind,
        model=model or (preset.model if kind == preset.provider else None) or None,
        system=preset.system_prompt or None,  # empty: the card's system prompt
        temperature=preset.temperature,
        max_tokens=preset.max_tokens,
    )
