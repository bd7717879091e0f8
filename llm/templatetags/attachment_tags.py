"""`{{ size|file_size }}`: a file's size as llm/attachments.py words it ("12.3 MB")."""

from __future__ import annotations

from django import template

from llm.attachments import size_label

register = template.Library()


@register.filter
def file_size(size: int) -> str:
    return size_label(int(size or 0))
