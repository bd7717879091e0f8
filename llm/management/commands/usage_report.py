"""`manage.py usage_report`: tokens, cost, requests and errors over a span of days.

Read from the DailyUsage roll-ups (llm/usage_report.py), so deleted and pruned
conversations still count.
"""

from __future__ import annotations

import argparse
import csv
import io
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from llm import usage_report
from llm.management import arguments
from llm.management.tables import aligned
from llm.usage_report import Line

EPILOG = """\
Examples:
  manage.py usage_report                                 this month so far
  manage.py usage_report --since 2026-11-01 --until 2026-11-30 --user alice
  manage.py usage_report --provider openai --by day      OpenAI's spend per day
  manage.py usage_report --by user --csv > usage.csv     a spreadsheet, one row a person

Dates are days (YYYY-MM-DD), both included. --until defaults to today, --since to the
1st of --until's month. --by is a comma-separated list of user, provider, model and day
(default user,provider,model). The table ends with a total row; --csv prints a header
row and one row per group, with plain numbers (no separators, cost in USD with 6
decimals) and no total row.
"""


class Command(BaseCommand):
    help = (
        "Tokens in/out, cost, requests and errors per user, provider and model (or per day) "
        "over a span of days, from the daily usage roll-ups."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.epilog = EPILOG
        parser.add_argument("--since", metavar="YYYY-MM-DD", help="First day (default: the 1st).")
        parser.add_argument("--until", metavar="YYYY-MM-DD", help="Last day (default: today).")
        parser.add_argument("--user", help="Only this person (username).")
        parser.add_argument("--provider", help="Only this provider kind, e.g. openai.")
        parser.add_argument(
            "--by",
            default=",".join(usage_report.DEFAULT_GROUPS),
            metavar="GROUPS",
            help="Group by these, comma-separated: user, provider, model, day "
            "(default user,provider,model).",
        )
        parser.add_argument(
            "--csv", action="store_true", help="Print CSV (a header row) instead of a table."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        until = (
            arguments.day(options["until"], "--until") if options["until"] else timezone.localdate()
        )
        since = (
            arguments.day(options["since"], "--since") if options["since"] else until.replace(day=1)
        )
        if since > until:
            raise CommandError(
                f"--since {since} is after --until {until}: the first day comes first."
            )
        try:
            groups = usage_report.parse_groups(options["by"])
        except ValueError as error:
            raise CommandError(str(error)) from None
        user = arguments.user_named(options["user"]) if options["user"] else None
        provider = arguments.provider_kind(options["provider"]) if options["provider"] else None

        report = usage_report.lines(
            since,
            until,
            groups=groups,
            user_id=user.pk if user is not None else None,
            provider=provider,
        )
        if options["csv"]:
            self._csv(groups, report)
            return
        scope = ", ".join(
            [
                f"user {user.get_username()}" if user is not None else "all users",
                f"provider {provider}" if provider else "all providers",
            ]
        )
        if not report:
            self.stdout.write(f"No usage from {since} to {until} ({scope}).")
            return
        self.stdout.write(f"Usage from {since} to {until} ({scope}):")
        self.stdout.write("")
        head = (*groups, "requests", "errors", "tokens in", "tokens out", "cost USD")
        numbers = set(range(len(groups), len(head)))
        totals = usage_report.total(report)
        total_row = ("total", *[""] * (len(groups) - 1), *_figures(totals))
        rows = [(*line.keys, *_figures(line)) for line in report]
        self.stdout.write(aligned(head, rows, right=numbers, total=total_row))

    def _csv(self, groups: tuple[str, ...], report: list[Line]) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([*groups, *usage_report.FIGURES])
        for line in report:
            writer.writerow(
                [
                    *line.keys,
                    line.requests,
                    line.errors,
                    line.input_tokens,
                    line.output_tokens,
                    f"{line.cost:.6f}",
                ]
            )
        self.stdout.write(buffer.getvalue(), ending="")


def _figures(line: Line) -> tuple[str, ...]:
    return (
        f"{line.requests:,}",
        f"{line.errors:,}",
        f"{line.input_tokens:,}",
        f"{line.output_tokens:,}",
        f"{line.cost:,.6f}",
    )
