"""Attachments: the one module that decides what a file is, what a model is sent of it,
and how much is allowed (docs/api.md, Files).

The upload API (llm/api/files.py, which the widget calls), the engine's start trip
(llm/turn_trips.py) and /v1's content parts (llm/api/openai_compat.py) all use it:
- What a file is comes from its bytes (magic numbers), never from its name or the
  client's Content-Type: PNG, JPEG, WebP and GIF are images; a PDF is the text pypdf
  extracts from it; anything else must be UTF-8 text (plain text, Markdown, code, CSV),
  and binary bytes are refused in words. A "photo.png" that holds text is text.
- The operator's limits, LLM_MAX_FILE_BYTES, LLM_MAX_FILES_PER_MESSAGE and
  LLM_MAX_ATTACHMENT_CHARS (extracted characters per message), are checked at upload
  and again when a message is sent, before any upstream call.
- A model is sent an image as an `Image` (each adapter writes its own format) and a text
  file folded into the message under a header ("Attached file notes.md:" and a fence).
  A model that cannot read images is refused in words naming those that can
  (registry data, ProviderSpec.vision_models), never sent the text without them.
- Files are read and written through the storage API only (Attachment.file), so any
  Django storage backend works; a post_delete receiver (`forget_file`, connected in
  llm/apps.py) removes the stored file once its row is gone for good.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction

from accounts.models import User
from llm.events import TurnError
from llm.models import Attachment
from llm.providers import registry
from llm.providers.base import ChatMessage, Image, Role

log = logging.getLogger(__name__)

TEXT = Attachment.Kind.TEXT.value
IMAGE = Attachment.Kind.IMAGE.value
# What an image is counted as against the history's token budget: providers bill a
# small image at a few hundred tokens and a large one at more; this keeps room for it.
IMAGE_TOKENS = 800
IMAGE_NAMES = "a PNG, JPEG, WebP or GIF image"
PDF = "application/pdf"
# The bytes an image starts with, and its media type.
IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
# A text file's bytes cannot tell Markdown from CSV: the name picks among text types
# only (it never makes a file an image or a PDF).
TEXT_TYPES = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".json": "application/json",
}
MAX_NAME_CHARS = 255
# Characters other than these below U+0020 mean a binary file, not text.
TEXT_CONTROLS = {"\t", "\n", "\r", "\f", "\v", "\x1b"}
_FENCE = re.compile(r"`{3,}")


@dataclass(frozen=True, slots=True)
class Read:
    """What a file is, as sniffed and extracted."""

    kind: str
    content_type: str
    text: str = ""  # a text file's or a PDF's text; empty for an image


# --- words -----------------------------------------------------------------------------


def size_label(size: int) -> str:
    """12300000 -> "12.3 MB" (decimal units, as a file manager shows them)."""
    for unit, scale in (("MB", 1_000_000), ("kB", 1_000)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} byte" + ("" if size == 1 else "s")


def too_big(size: int) -> TurnError:
    limit = settings.LLM_MAX_FILE_BYTES
    return TurnError(
        "too_large",
        f"That file is {size_label(size)}; the limit is {size_label(limit)}. "
        "Attach a smaller one, or only the part that matters.",
    )


def not_found() -> TurnError:
    return TurnError("not_found", "That file does not exist, or it was deleted.")


# --- what a file is -------------------------------------------------------------------


def sniff(data: bytes) -> str:
    """The media type the bytes say (an image or a PDF), or "" for anything else."""
    for magic, media_type in IMAGE_MAGIC:
        if data.startswith(magic):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    # PDF readers accept the header anywhere in the first KiB.
    if b"%PDF-" in data[:1024]:
        return PDF
    return ""


def clean_name(name: str) -> str:
    """The name people see: no folders, no control characters, at most 255 characters."""
    base = re.split(r"[/\\]", name or "")[-1]
    shown = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip()
    if len(shown) > MAX_NAME_CHARS:
        stem, dot, ext = shown.rpartition(".")
        keep = ("." + ext) if dot and len(ext) <= 10 else ""
        shown = shown[: MAX_NAME_CHARS - len(keep)] + keep
    return shown or "file"


def read(name: str, data: bytes) -> Read:
    """What `data` is and what a model is sent of it; TurnError in words if it cannot go."""
    if len(data) > settings.LLM_MAX_FILE_BYTES:
        raise too_big(len(data))
    if not data:
        raise TurnError("bad_request", f"{name} is empty: there is nothing in it to send.")
    media_type = sniff(data)
    if media_type == PDF:
        return Read(TEXT, PDF, _checked_chars(name, _pdf_text(name, data)))
    if media_type:
        return Read(IMAGE, media_type)
    return Read(TEXT, _text_type(name), _checked_chars(name, _text(name, data)))


def _text_type(name: str) -> str:
    _, dot, ext = name.lower().rpartition(".")
    return TEXT_TYPES.get(f".{ext}", "text/plain") if dot else "text/plain"


def _unreadable(name: str) -> TurnError:
    return TurnError(
        "bad_request",
        f"{name} is not text, a PDF or {IMAGE_NAMES}, so a model cannot read it. "
        "Attach text saved as UTF-8 (plain text, Markdown, code, CSV), a PDF or an image.",
    )


def _text(name: str, data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _unreadable(name) from None
    # NUL and most other control characters are the mark of a binary file (and
    # PostgreSQL stores no NUL in text).
    if any(c < " " and c not in TEXT_CONTROLS for c in text):
        raise _unreadable(name)
    return text


def _pdf_text(name: str, data: bytes) -> str:
    from pypdf import PdfReader  # imported on the first PDF: it costs startup nothing
    from pypdf.errors import PyPdfError

    limit = settings.LLM_MAX_ATTACHMENT_CHARS
    pages: list[str] = []
    read_chars = 0
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise TurnError(
                "bad_request",
                f"{name} is protected by a password: save a copy without one and attach that.",
            )
        for page in reader.pages:
            text = page.extract_text() or ""
            pages.append(text)
            read_chars += len(text)
            if read_chars > limit:  # over the limit already: the rest cannot go anyway
                break
    except TurnError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, RecursionError):
        log.info("could not read the PDF %r", name, exc_info=True)
        raise TurnError(
            "bad_request",
            f"{name} could not be read as a PDF (it may be damaged): export it again, "
            "or attach its text.",
        ) from None
    text = "\n\n".join(p.strip() for p in pages if p.strip()).replace("\x00", "")
    if not text:
        raise TurnError(
            "bad_request",
            f"{name} has no text to read (a scan holds only pictures of pages): attach "
            "the pages as images for a vision model, or its text.",
        )
    return text


def _checked_chars(name: str, text: str) -> str:
    limit = settings.LLM_MAX_ATTACHMENT_CHARS
    if len(text) > limit:
        raise TurnError(
            "too_large",
            f"{name} reads as {len(text):,} characters; the limit is {limit:,} a message. "
            "Attach a shorter file, or only the part that matters.",
        )
    return text


# --- storing, describing, forgetting -------------------------------------------------


def store(user: User, name: str, data: bytes) -> Attachment:
    """Check `data` and keep it as the person's upload, not yet sent with a message."""
    shown = clean_name(name)
    found = read(shown, data)
    attachment = Attachment(
        user=user,
        name=shown,
        content_type=found.content_type,
        size=len(data),
        kind=found.kind,
        text=found.text,
    )
    attachment.file.save(shown, ContentFile(data), save=False)  # upload_to names it
    try:
        attachment.save()
    except BaseException:
        if attachment.file.name:  # the row was not written: neither is the file kept
            attachment.file.storage.delete(attachment.file.name)
        raise
    return attachment


def describe(attachment: Attachment) -> dict[str, Any]:
    """The API's view of a file: what it is, never where it is stored."""
    return {
        "id": attachment.pk,
        "name": attachment.name,
        "content_type": attachment.content_type,
        "size": attachment.size,
    }


def contents(attachment: Attachment) -> bytes:
    with attachment.file.open("rb") as stored:
        data: bytes = stored.read()
    return data


def forget_file(sender: type[Attachment], instance: Attachment, **kwargs: Any) -> None:
    """post_delete: remove the stored file once the deletion is committed (never for a
    transaction rolled back, which keeps the row)."""
    name = instance.file.name
    if not name:
        return
    storage = instance.file.storage

    def remove() -> None:
        try:
            storage.delete(name)
        except OSError as error:  # the row is gone either way; an orphan is the lesser harm
            log.warning("could not delete the attachment file %s: %s", name, error)

    transaction.on_commit(remove, using=kwargs.get("using"))


# --- sending ----------------------------------------------------------------------------


def ids(value: object) -> tuple[int, ...]:
    """A chat body's or send frame's `attachments`: a list of file ids, each once."""
    if value is None:
        return ()
    if not isinstance(value, list) or any(
        isinstance(v, bool) or not isinstance(v, int) or not 0 < v < 2**63 for v in value
    ):
        raise TurnError(
            "bad_request",
            "attachments must be a list of file ids from POST /api/v1/files, like [12, 13].",
        )
    unique = tuple(dict.fromkeys(value))
    check_count(len(unique))
    return unique


def check_count(count: int) -> None:
    limit = settings.LLM_MAX_FILES_PER_MESSAGE
    if count > limit:
        raise TurnError(
            "too_large",
            f"That message has {count} files; the limit is {limit} a message. "
            "Send some of them with a next message.",
        )


def unsent(user_id: int, wanted: Sequence[int]) -> list[Attachment]:
    """The person's files `wanted`, in that order, each not yet sent; refused in words."""
    if not wanted:
        return []
    found = {a.pk: a for a in Attachment.objects.filter(user_id=user_id, pk__in=wanted)}
    if len(found) != len(wanted):
        raise not_found()  # another person's file is no different from none
    files = [found[pk] for pk in wanted]
    for attachment in files:
        if attachment.message_id is not None:
            raise TurnError(
                "bad_request",
                f"{attachment.name} was already sent with a message: attach it again to "
                "send it again.",
            )
    total = sum(len(a.text) for a in files)
    limit = settings.LLM_MAX_ATTACHMENT_CHARS
    if total > limit:
        raise TurnError(
            "too_large",
            f"The attached files read as {total:,} characters together; the limit is "
            f"{limit:,} a message. Attach fewer or shorter files.",
        )
    return files


def link(files: Sequence[Attachment], message_id: int) -> None:
    """Give the files to the message just stored (in the start trip's transaction)."""
    if not files:
        return
    linked = Attachment.objects.filter(pk__in=[a.pk for a in files], message__isnull=True).update(
        message_id=message_id
    )
    if linked != len(files):  # sent with another message a moment ago
        raise TurnError(
            "bad_request", "One of those files was just sent with another message: attach it again."
        )


def check_vision(kind: str, model: str, has_images: bool) -> None:
    """Refuse images for a model that cannot read them, naming the models that can."""
    if has_images and not registry.sees_images(kind, model):
        label = registry.spec(kind).label
        raise TurnError(
            "bad_request",
            f"{model} ({label}) cannot read images. Choose a model that can: "
            f"{registry.vision_choices()}; or remove the image.",
        )


def history(message_ids: Iterable[int]) -> dict[int, list[Attachment]]:
    """The files of earlier messages, by message id: one query."""
    files: dict[int, list[Attachment]] = {}
    for attachment in Attachment.objects.filter(message_id__in=list(message_ids)):
        assert attachment.message_id is not None
        files.setdefault(attachment.message_id, []).append(attachment)
    return files


def images_in(files: Sequence[Attachment]) -> int:
    return sum(1 for a in files if a.kind == IMAGE)


def folded(text: str, files: Sequence[Attachment]) -> str:
    """`text` with each text file after it, under a header and in a fence of its own."""
    parts = [text]
    for attachment in files:
        if attachment.kind != TEXT:
            continue
        # A fence longer than any run of backticks inside, so the file cannot close it.
        longest = max((len(m) for m in _FENCE.findall(attachment.text)), default=2)
        fence = "`" * (longest + 1)
        what = " (its text)" if attachment.content_type == PDF else ""
        parts.append(f"Attached file {attachment.name}{what}:\n{fence}\n{attachment.text}\n{fence}")
    return "\n\n".join(parts)


def left_out(text: str, files: Sequence[Attachment], why: str) -> str:
    """`text` saying which files came with it, when they are not sent again."""
    names = ", ".join(a.name for a in files)
    return f"{text}\n\n[Attached: {names} (not sent again: {why})]"


def image_of(attachment: Attachment) -> Image:
    return Image(attachment.content_type, base64.b64encode(contents(attachment)).decode("ascii"))


def message(
    role: Role, text: str, files: Sequence[Attachment], *, images: Sequence[Image] = ()
) -> ChatMessage:
    """A message as the provider is sent it: text files folded in, images as parts."""
    shown = tuple(images) + tuple(image_of(a) for a in files if a.kind == IMAGE)
    return ChatMessage(role=role, content=folded(text, files), images=shown)


def for_request(text: str, files: Sequence[Attachment], images: Sequence[Image]) -> ChatMessage:
    """The message being sent now; a file whose bytes are gone from storage is refused."""
    try:
        return message("user", text, files, images=images)
    except OSError:
        log.warning("an attachment's file is missing from storage", exc_info=True)
        raise TurnError(
            "bad_request",
            "One of the attached files is no longer stored: remove it and attach it again.",
        ) from None


# --- /v1 content parts -------------------------------------------------------------------


def inline_body_limit() -> int:
    """The most a /v1 request may be: the form cap, plus a message's images as base64."""
    per_image = settings.LLM_MAX_FILE_BYTES * 4 // 3 + 1024
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE + settings.LLM_MAX_FILES_PER_MESSAGE * per_image


def inline_image(url: object, where: str) -> Image:
    """An OpenAI `image_url` part's URL as an Image: data URLs only, sniffed and limited."""
    if not isinstance(url, str) or not url:
        raise TurnError("bad_request", f'{where}: image_url needs a "url".')
    if not url.startswith("data:"):
        raise TurnError(
            "bad_request",
            f"{where}: the hub does not fetch image URLs. Send the image itself as a data "
            "URL (data:image/png;base64,...).",
        )
    header, comma, payload = url.partition(",")
    if not comma or not header.endswith(";base64"):
        raise TurnError(
            "bad_request", f"{where}: the data URL must be base64, like data:image/png;base64,..."
        )
    # Three bytes per four characters: judged before decoding a payload that is too big.
    size = len(payload) * 3 // 4
    if size > settings.LLM_MAX_FILE_BYTES + 2:
        raise too_big(size)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise TurnError("bad_request", f"{where}: the data URL is not valid base64.") from None
    if len(data) > settings.LLM_MAX_FILE_BYTES:
        raise too_big(len(data))
    media_type = sniff(data)  # what the bytes are, whatever the URL claims
    if not media_type.startswith("image/"):
        raise TurnError("bad_request", f"{where}: that data is not {IMAGE_NAMES}.")
    return Image(media_type, payload)
