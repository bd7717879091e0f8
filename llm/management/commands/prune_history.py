"""`manage.py prune_history --older-than 90d`: delete conversations nobody has touched since.

What may go and how is decided in llm/pruning.py; this translates the arguments and
reports the counts.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from llm import pruning
from llm.management import arguments
from llm.pruning import Pruned

MAX_BATCH = 100_000

EPILOG = """\
Examples:
  manage.py prune_history --older-than 90d --dry-run      count what would go
  manage.py prune_history --older-than 6m --user alice    alice's, idle for 180 days
  manage.py prune_history --older-than 1y --batch 500

A conversation's age is the time since its last activity (its last message). Ages:
d (days), w (weeks), m (months of 30 days), y (years of 365 days).
Its messages and their attachments (the files too) go with it; the daily usage
roll-ups stay, so budgets and usage_report still count what it spent. A conversation
with a reply still streaming is never touched. Each batch is its own transaction.
"""


class Command(BaseCommand):
    help = (
        "Delete conversations (with their messages and attachments) whose last activity is "
        "older than --older-than, in batches; usage roll-ups are kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.epilog = EPILOG
        parser.add_argument(
            "--older-than",
            required=True,
            metavar="AGE",
            help="Last activity longer ago than this: 90d, 12w, 6m, 1y.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )
        parser.add_argument("--user", help="Only this person's conversations (username).")
        parser.add_argument(
            "--batch",
            type=int,
            default=1000,
            metavar="N",
            help="Conversations deleted per transaction (default 1000).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            age = pruning.parse_age(options["older_than"])
        except ValueError as error:
            raise CommandError(f"--older-than {error}") from None
        batch: int = options["batch"]
        if not 1 <= batch <= MAX_BATCH:
            raise CommandError(
                f"--batch must be from 1 to {MAX_BATCH:,} (conversations per transaction), "
                f"not {batch}."
            )
        user = arguments.user_named(options["user"]) if options["user"] else None
        user_id = user.pk if user is not None else None
        cutoff = timezone.now() - age
        whose = f" of {user.get_username()}" if user is not None else ""
        since = f"last active before {timezone.localtime(cutoff):%Y-%m-%d %H:%M}"

        if options["dry_run"]:
            would = pruning.count(cutoff, user_id)
            self.stdout.write(
                f"Would delete {_counts(would)}{whose}, {since}. Nothing was deleted (--dry-run)."
            )
            self._streaming(would)
            return

        def progress(one: Pruned) -> None:
            if options["verbosity"] >= 2:
                self.stdout.write(f"  batch: {_counts(one)}")

        done = pruning.prune(cutoff, user_id=user_id, batch=batch, on_batch=progress)
        self.stdout.write(
            self.style.SUCCESS(
                f"Deleted {_counts(done)}{whose}, {since}, in {done.batches} batch(es). "
                "Usage roll-ups are kept."
            )
        )
        self._streaming(done)

    def _streaming(self, pruned: Pruned) -> None:
        if pruned.streaming:
            self.stdout.write(
                f"Left {pruned.streaming} old conversation(s) alone: a reply in them is still "
                "streaming. Run this again once it has ended."
            )


def _counts(pruned: Pruned) -> str:
    return (
        f"{pruned.conversations} conversation(s), {pruned.messages} message(s) and "
        f"{pruned.attachments} attachment(s)"
    )
