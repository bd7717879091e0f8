"""Deleting conversations nobody has touched for a while (`manage.py prune_history`).

A conversation goes with its messages and their attachments (files too). The DailyUsage
roll-ups stay, so budgets and reports keep what pruned conversations spent. Each batch
is one short transaction: a prune of millions of rows never holds a long lock.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.db.models import QuerySet

from llm.models import Attachment, Conversation, Message

# Days per unit. A month is 30 days and a year 365: a cut-off needs no calendar.
UNITS = {"d": 1, "w": 7, "m": 30, "y": 365}
_AGE = re.compile(r"\s*(\d+)\s*([a-z])\s*", re.IGNORECASE)


def parse_age(text: str) -> dt.timedelta:
    """'90d' -> 90 days; 12w, 6m (30 days each), 1y (365 days). Raises ValueError in words."""
    match = _AGE.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in UNITS:
        raise ValueError(
            f"{text!r} is not an age: write a number and a unit, d (days), w (weeks), "
            "m (months of 30 days) or y (years of 365 days), e.g. 90d, 12w, 6m, 1y."
        )
    days = int(match.group(1)) * UNITS[unit]
    if days < 1:
        raise ValueError(f"{text!r} would prune every conversation: give an age of 1d or more.")
    if days > 100 * 365:
        raise ValueError(f"{text!r} is longer than anything stored: give at most 100y.")
    return dt.timedelta(days=days)


@dataclass
class Pruned:
    """What a prune deleted (or, in a dry run, would delete)."""

    conversations: int = 0
    messages: int = 0
    attachments: int = 0
    batches: int = 0
    # Old conversations left alone because a reply in them is still being written.
    streaming: int = 0


def _old(cutoff: dt.datetime, user_id: int | None) -> QuerySet[Conversation]:
    old = Conversation.objects.filter(updated_at__lt=cutoff)
    return old.filter(user_id=user_id) if user_id is not None else old


def prunable(cutoff: dt.datetime, user_id: int | None = None) -> QuerySet[Conversation]:
    """Conversations last active before `cutoff` with no reply still streaming: the one
    rule for what a prune may delete."""
    return _old(cutoff, user_id).exclude(messages__status=Message.Status.STREAMING)


def _streaming(cutoff: dt.datetime, user_id: int | None) -> int:
    return (
        _old(cutoff, user_id).filter(messages__status=Message.Status.STREAMING).distinct().count()
    )


def count(cutoff: dt.datetime, user_id: int | None = None) -> Pruned:
    """What `prune` would delete now; deletes nothing."""
    doomed = prunable(cutoff, user_id)
    return Pruned(
        conversations=doomed.count(),
        messages=Message.objects.filter(conversation__in=doomed).count(),
        attachments=Attachment.objects.filter(message__conversation__in=doomed).count(),
        streaming=_streaming(cutoff, user_id),
    )


def prune(
    cutoff: dt.datetime,
    *,
    user_id: int | None = None,
    batch: int = 1000,
    on_batch: Callable[[Pruned], None] | None = None,
) -> Pruned:
    """Delete what `prunable` matches, `batch` conversations per transaction; `on_batch`
    hears each batch's counts. Returns the totals."""
    done = Pruned(streaming=_streaming(cutoff, user_id))
    while True:
        one = _prune_batch(cutoff, user_id, batch)
        if one is None:
            return done
        done.conversations += one.conversations
        done.messages += one.messages
        done.attachments += one.attachments
        done.batches += 1
        if on_batch is not None:
            on_batch(one)


def _prune_batch(cutoff: dt.datetime, user_id: int | None, batch: int) -> Pruned | None:
    with transaction.atomic():
        # Locked and judged in one statement: a turn that reopens one of these
        # conversations (its start trip touches updated_at under the same row lock)
        # either waits for this batch or makes it too recent to pick.
        ids = list(
            prunable(cutoff, user_id)
            .select_for_update()
            .order_by("pk")
            .values_list("pk", flat=True)[:batch]
        )
        if not ids:
            return None
        # Attachment files go with their rows: llm/attachments.py's post_delete
        # receiver removes each once this batch commits.
        _, deleted = Conversation.objects.filter(pk__in=ids).delete()
    return Pruned(
        conversations=deleted.get(Conversation._meta.label, 0),
        messages=deleted.get(Message._meta.label, 0),
        attachments=deleted.get(Attachment._meta.label, 0),
    )
