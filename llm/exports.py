"""Conversations people take with them: export as Markdown or JSON, import a JSON file.

One module for the conversations page (/conversations/<id>/export.md, .json, the import
form) and the API (GET /api/v1/conversations/{id}/export, POST .../import).

Import takes our own export, OpenAI's message list `{"messages": [{"role", "content"},
...]}`, or a bare list of those messages. It makes a new conversation of the person's
whose messages are all `complete`: no provider is asked, and imported replies carry no
tokens and no cost (so they count against no budget). What is wrong with a file is
refused in words that say which message and why (`ImportRefused`).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpResponse
from django.utils import dateformat, timezone
from django.utils.text import slugify

from accounts.models import User
from llm.conversations import MAX_MODEL_CHARS, MAX_TITLE_CHARS
from llm.events import TurnError
from llm.models import Conversation, Message
from llm.providers import registry

FORMAT = "coppertone.conversation"
VERSION = 1
MAX_IMPORT_BYTES = 2 * 1024 * 1024  # under Django's 2.5 MB request body limit
MAX_IMPORT_MESSAGES = 5000
ROLES = tuple(Message.Role.values)  # system, user, assistant
TITLE_FROM_TEXT_CHARS = 80  # as the engine titles a new conversation by its first message


class ImportRefused(TurnError):
    """A file that cannot be imported, and why, in words a person can act on."""

    def __init__(self, message: str, *, code: str = "bad_request") -> None:
        super().__init__(code, message)


# --- export -----------------------------------------------------------------------------------


def _messages(conversation: Conversation) -> list[Message]:
    return list(conversation.messages.order_by("created_at", "id"))


def message_json(message: Message) -> dict[str, Any]:
    body: dict[str, Any] = {
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "provider": message.provider,
        "model": message.model,
        "created_at": message.created_at.isoformat(),
        "usage": {"input_tokens": message.input_tokens, "output_tokens": message.output_tokens},
        "cost": str(message.cost),
    }
    if message.thinking:
        body["thinking"] = message.thinking
    if message.status == Message.Status.ERROR:
        body["error"] = TurnError(message.error_code, message.error_message).as_dict()
    return body


def as_json(conversation: Conversation) -> dict[str, Any]:
    """Our export: the conversation and its messages, oldest first."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": timezone.now().isoformat(),
        "id": conversation.pk,
        "title": conversation.title,
        "pinned": conversation.pinned,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
        "messages": [message_json(m) for m in _messages(conversation)],
    }


def _when(moment: dt.datetime) -> str:
    return dateformat.format(timezone.localtime(moment), "j M Y, H:i")


def _heading(message: Message) -> str:
    if message.role == Message.Role.USER:
        who = "You"
    elif message.role == Message.Role.SYSTEM:
        who = "System"
    else:
        answered = "/".join(p for p in (message.provider, message.model) if p)
        who = f"Assistant ({answered})" if answered else "Assistant"
    return f"## {who} · {_when(message.created_at)}"


def as_markdown(conversation: Conversation) -> str:
    """The conversation as a Markdown document: a heading per message, its text as written."""
    messages = _messages(conversation)
    count = len(messages)
    lines = [
        f"# {str(conversation).replace(chr(10), ' ')}",
        "",
        f"Started {_when(conversation.created_at)} · {count} message{'s' if count != 1 else ''}"
        f" · exported from Coppertone {_when(timezone.now())}",
    ]
    for message in messages:
        lines += ["", _heading(message), "", message.content.rstrip() or "*(no text)*"]
        if message.status == Message.Status.STOPPED:
            lines += ["", "*(stopped before the end)*"]
        elif message.status == Message.Status.ERROR:
            lines += ["", f"*(failed: {message.error_message or 'the reply failed'})*"]
    return "\n".join(lines) + "\n"


def filename(conversation: Conversation, extension: str) -> str:
    """An ASCII file name for Content-Disposition: the title's slug, else the id."""
    slug = slugify(conversation.title)[:60].strip("-")
    return f"{slug or f'conversation-{conversation.pk}'}.{extension}"


FORMATS = ("md", "json")


def response(conversation: Conversation, fmt: str) -> HttpResponse:
    """The export as a download, for the page and the API alike (`fmt` is md or json)."""
    if fmt == "md":
        reply = HttpResponse(as_markdown(conversation), content_type="text/markdown; charset=utf-8")
    else:
        body = json.dumps(as_json(conversation), ensure_ascii=False, indent=2) + "\n"
        reply = HttpResponse(body.encode(), content_type="application/json")
    reply["Content-Disposition"] = f'attachment; filename="{filename(conversation, fmt)}"'
    return reply


# --- import -----------------------------------------------------------------------------------


@dataclass
class Imported:
    """A file's conversation, checked and ready to store."""

    title: str
    messages: list[dict[str, Any]] = field(default_factory=list)


def check_size(size: int) -> None:
    """Refuse a file over the limit before reading it."""
    if size > MAX_IMPORT_BYTES:
        raise ImportRefused(
            f"The file is {size / 1024 / 1024:.1f} MB; an import takes at most "
            f"{MAX_IMPORT_BYTES // 1024 // 1024} MB. Split the conversation into smaller files.",
            code="too_large",
        )


def read(raw: bytes) -> Imported:
    """Check a file's bytes: size, JSON, shape, each message. Raises ImportRefused."""
    check_size(len(raw))
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ImportRefused("The file is not UTF-8 text: export it again as JSON.") from None
    except ValueError as exc:
        raise ImportRefused(f"The file is not valid JSON ({exc}).") from None
    return parse(data)


def parse(data: Any) -> Imported:
    """Our export, {"messages": [...]} (OpenAI's shape), or a bare list of messages."""
    title = ""
    if isinstance(data, dict):
        if "messages" not in data:
            raise ImportRefused(
                'The JSON has no "messages": import a Coppertone export, '
                '{"messages": [{"role": "user", "content": "..."}]}, or a list of such messages.'
            )
        if isinstance(data.get("title"), str):
            title = data["title"]
        data = data["messages"]
    if not isinstance(data, list):
        raise ImportRefused(
            '"messages" must be a list of {"role": "...", "content": "..."} objects.'
        )
    if not data:
        raise ImportRefused("The file holds no messages: there is nothing to import.")
    if len(data) > MAX_IMPORT_MESSAGES:
        raise ImportRefused(
            f"The file holds {len(data)} messages; an import takes at most "
            f"{MAX_IMPORT_MESSAGES}. Split it into smaller files.",
            code="too_large",
        )
    messages = [_message(n, item) for n, item in enumerate(data, start=1)]
    return Imported(title=_title(title, messages), messages=messages)


def _text(n: int, name: str, value: Any) -> str:
    """A message's text: a string, or OpenAI's content parts when all are text."""
    if isinstance(value, list):
        texts = []
        for part in value:
            if not (isinstance(part, dict) and part.get("type") == "text"):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ImportRefused(
                    f'Message {n} has a "{kind}" part in its {name}: only text can be imported.'
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise ImportRefused(
                    f'Message {n} has a text part without "text": give it a string.'
                )
            texts.append(_text(n, name, text))
        return _fits(n, name, "".join(texts))
    if not isinstance(value, str):
        shown = "null" if value is None else type(value).__name__
        raise ImportRefused(f"Message {n} has no text {name} ({shown}): give it a string.")
    if "\x00" in value:
        raise ImportRefused(
            f"Message {n} holds a NUL character (\\u0000) in its {name}, which cannot be "
            "stored: remove it."
        )
    return _fits(n, name, value)


def _fits(n: int, name: str, text: str) -> str:
    # One limit for every role and field: the longest reply a provider may give.
    if len(text) > settings.LLM_MAX_REPLY_CHARS:
        raise ImportRefused(
            f"Message {n} has {len(text)} characters in its {name}; a message may hold at "
            f"most {settings.LLM_MAX_REPLY_CHARS}.",
            code="too_large",
        )
    return text


def _message(n: int, item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ImportRefused(
            f'Message {n} is not an object: each message is {{"role": "...", "content": "..."}}.'
        )
    role = item.get("role")
    if role not in ROLES:
        raise ImportRefused(
            f"Message {n} has the role {json.dumps(role)}: only "
            f"{', '.join(ROLES[:-1])} and {ROLES[-1]} messages can be imported."
        )
    content = _text(n, "content", item.get("content"))
    thinking = item.get("thinking")
    provider = item.get("provider")
    model = item.get("model")
    return {
        "role": role,
        "content": content,
        # Kept where they name what we know, so the provider filter finds the conversation.
        "provider": provider if role == "assistant" and _known(provider) else "",
        "model": model[:MAX_MODEL_CHARS] if role == "assistant" and isinstance(model, str) else "",
        "thinking": _text(n, "thinking", thinking) if thinking is not None else "",
    }


def _known(provider: Any) -> bool:
    return isinstance(provider, str) and provider in registry.PROVIDERS


def _title(given: str, messages: list[dict[str, Any]]) -> str:
    title = " ".join(given.split())
    if not title:
        first = next((m["content"] for m in messages if m["role"] == "user"), "")
        lines = first.strip().splitlines()
        title = lines[0].strip()[:TITLE_FROM_TEXT_CHARS] if lines else ""
    return (title or "Imported conversation")[:MAX_TITLE_CHARS]


def store(user: User, imported: Imported) -> Conversation:
    """A new conversation of the person's with the messages, in order, all complete."""
    with transaction.atomic():
        conversation = Conversation.objects.create(user=user, title=imported.title)
        rows = [
            Message(conversation=conversation, status=Message.Status.COMPLETE, **fields)
            for fields in imported.messages
        ]
        # Inserted in order: one created_at, ascending ids, so the order is kept.
        stored = Message.objects.bulk_create(rows)
        question: Message | None = None
        answered = []
        for message in stored:
            if message.role == Message.Role.USER:
                question = message
            elif message.role == Message.Role.ASSISTANT and question is not None:
                message.reply_to = question  # as a turn links a reply to its question
                answered.append(message)
                question = None
        if answered:
            Message.objects.bulk_update(answered, ["reply_to"])
    return conversation
