"""llm/attachments.py on its own: names, sizes in words, any storage backend, and the
stored file going with its row however the row goes."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.storage import InMemoryStorage, default_storage

from accounts.models import User
from llm import attachments
from llm.models import Attachment
from tests.attachment_bytes import png


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("notes.md", "notes.md"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        ("bad\x00na\nme.txt", "badname.txt"),
        ("", "file"),
        ("a" * 300 + ".txt", "a" * 251 + ".txt"),
    ],
)
def test_names_keep_no_folders_and_no_control_characters(given: str, shown: str) -> None:
    assert attachments.clean_name(given) == shown


@pytest.mark.parametrize(
    ("size", "words"),
    [(1, "1 byte"), (999, "999 bytes"), (1500, "1.5 kB"), (10_000_000, "10 MB")],
)
def test_sizes_are_worded_in_decimal_units(size: int, words: str) -> None:
    assert attachments.size_label(size) == words


def test_any_storage_backend_works_through_the_storage_api(
    alice: User, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    stored = attachments.store(alice, "shot.png", png())
    name = str(stored.file.name)
    assert isinstance(stored.file.storage, InMemoryStorage)
    assert attachments.contents(stored) == png()

    with django_capture_on_commit_callbacks(execute=True):
        stored.delete()
    assert not stored.file.storage.exists(name)


def test_a_file_goes_with_its_owner(alice: User, django_capture_on_commit_callbacks: Any) -> None:
    stored = attachments.store(alice, "notes.txt", b"mine")
    name = str(stored.file.name)
    assert default_storage.exists(name)

    with django_capture_on_commit_callbacks(execute=True):
        alice.delete()

    assert not Attachment.objects.exists()
    assert not default_storage.exists(name)
