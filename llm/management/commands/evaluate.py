"""`manage.py evaluate`: every prompt of a JSONL file asked of each model, then a report.

Each answer is an ordinary reply (in its own conversation, counted in usage and budgets);
its numbers are stored as an EvaluationRun. Ctrl-C stops the replies in flight (kept as
`stopped`) and prints the command that asks the rest; running the same command again
resumes too. The progress bar goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from accounts.models import User
from llm import evaluations, prompt_sets
from llm.evaluations import EvaluationError, Report
from llm.models import Evaluation
from llm.prompt_sets import PromptsError

MAX_REPEAT = 100
MAX_CONCURRENCY = 64
BAR_WIDTH = 30

EPILOG = """\
Each line of the prompts file is one JSON object:
  {"prompt": "Name a primary colour.", "system": "Answer in one word.",
   "expect_contains": ["red", "blue"], "expect_regex": "^[A-Z]", "max_tokens": 16}
Only "prompt" is required. expect_contains: each must appear (any case);
expect_regex: each must match somewhere (Python re.search).

Example:
  manage.py evaluate --prompts prompts.jsonl \\
      --models openai/gpt-4o-mini,anthropic,local/SmolLM2-135M-Instruct --repeat 3
  manage.py evaluate --resume 7        ask what an interrupted evaluation did not

A bare provider (anthropic) is the model set in that person's Settings.
"""


class Command(BaseCommand):
    help = "Ask every prompt of a JSONL file of each model, then print the numbers per model."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.epilog = EPILOG
        parser.add_argument("--prompts", help="A JSONL file: one prompt (a JSON object) a line.")
        parser.add_argument(
            "--models", help="Comma-separated provider/model, e.g. openai/gpt-4o-mini,local."
        )
        parser.add_argument(
            "--user", help="Whose account asks (username); default: the only superuser."
        )
        parser.add_argument("--concurrency", type=int, help="Replies asked at once (default 4).")
        parser.add_argument(
            "--repeat", type=int, default=1, help="Ask each prompt of each model N times."
        )
        parser.add_argument("--name", default="", help="A name for the evaluation.")
        parser.add_argument(
            "--max-tokens", type=int, help="Longest answer, for prompts that set none."
        )
        parser.add_argument("--resume", type=int, metavar="ID", help="Ask the rest of this one.")
        parser.add_argument(
            "--new", action="store_true", help="Start afresh even if a stopped one matches."
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Resume one marked running whose process died.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        concurrency: int | None = options["concurrency"]
        if concurrency is not None and concurrency < 1:
            raise CommandError(
                f"--concurrency must be 1 or more (the replies asked at once), not {concurrency}."
            )
        if not 1 <= options["repeat"] <= MAX_REPEAT:
            raise CommandError(f"--repeat must be from 1 to {MAX_REPEAT}, not {options['repeat']}.")
        if concurrency is not None and concurrency > MAX_CONCURRENCY:
            raise CommandError(f"--concurrency must be at most {MAX_CONCURRENCY}.")
        if options["max_tokens"] is not None and options["max_tokens"] < 1:
            raise CommandError("--max-tokens must be 1 or more.")

        evaluation = self._resumed(options) if options["resume"] else self._new(options)
        self._run(evaluation, force=options["force"], concurrency=concurrency)

    # --- which evaluation ----------------------------------------------------------------

    def _user(self, username: str | None) -> User:
        if username:
            user = User.objects.filter(username=username, is_active=True).first()
            if user is None:
                raise CommandError(f"There is no active user called {username!r}.")
            return user
        supers = list(User.objects.filter(is_superuser=True, is_active=True)[:3])
        if len(supers) == 1:
            return supers[0]
        if not supers:
            raise CommandError("Say whose account asks with --user NAME (there is no superuser).")
        raise CommandError(
            "Say whose account asks with --user NAME: there is more than one superuser."
        )

    def _resumed(self, options: dict[str, Any]) -> Evaluation:
        pk = options["resume"]
        if options["prompts"] or options["models"]:
            raise CommandError(
                f"--resume asks the rest of evaluation {pk} with its own prompts and models: "
                "leave out --prompts and --models."
            )
        found = Evaluation.objects.select_related("user").filter(pk=pk)
        if options["user"]:
            found = found.filter(user=self._user(options["user"]))
        evaluation = found.first()
        if evaluation is None:
            whose = f" for {options['user']}" if options["user"] else ""
            raise CommandError(f"There is no evaluation {pk}{whose}.")
        return evaluation

    def _new(self, options: dict[str, Any]) -> Evaluation:
        if not options["prompts"]:
            raise CommandError(
                "Say which prompts to ask: --prompts prompts.jsonl (one JSON object a line)."
            )
        if not options["models"]:
            raise CommandError("Say which models answer: --models openai/gpt-4o-mini,local.")
        user = self._user(options["user"])
        path = Path(options["prompts"])
        try:
            text = prompt_sets.decode(path.read_bytes())
            prompts = prompt_sets.parse_prompts(text, source=str(path))
        except FileNotFoundError:
            raise CommandError(
                f"There is no file {path}: give the path of a JSONL file of prompts."
            ) from None
        except OSError as exc:
            raise CommandError(f"{path} cannot be read: {exc.strerror}.") from None
        except PromptsError as exc:
            raise CommandError(f"{path}: {exc.message}") from None
        try:
            targets = evaluations.resolve_targets(user, options["models"].split(","))
        except EvaluationError as exc:
            raise CommandError(exc.message) from None
        stored = evaluations.prepared(prompts, options["max_tokens"])
        if not options["new"]:
            same = evaluations.unfinished_like(user, stored, targets, options["repeat"])
            if same is not None:
                self.stderr.write(
                    f"Resuming evaluation {same.pk}, which has the same prompts and models "
                    "(pass --new to start afresh).",
                    style_func=str,
                )
                return same
        return evaluations.create(
            user,
            stored,
            targets,
            repeat=options["repeat"],
            concurrency=options["concurrency"] or 4,
            name=options["name"] or path.name,
        )

    # --- running ---------------------------------------------------------------------------

    def _run(self, evaluation: Evaluation, *, force: bool, concurrency: int | None) -> None:
        pk = evaluation.pk
        resume = f"manage.py evaluate --resume {pk}"
        if not evaluations.claim(pk, force=force):
            raise CommandError(
                f"Evaluation {pk} is already running (from its page or another command): "
                f"wait for it, or press Stop on its page. If the process running it died, "
                f"take it over with {resume} --force."
            )
        if concurrency is not None and concurrency != evaluation.concurrency:
            # How many at once is this run's choice; a later resume keeps it.
            evaluation.concurrency = concurrency
            evaluation.save(update_fields=["concurrency"])
        cap = settings.LLM_MAX_CONCURRENT_REPLIES
        at_once = evaluations.concurrency_for(evaluation)
        if at_once < evaluation.concurrency:
            self.stderr.write(
                f"Asking {at_once} at a time, not {evaluation.concurrency}: each person may "
                f"have {cap} replies being written at once (LLM_MAX_CONCURRENT_REPLIES).",
                style_func=str,
            )
        self.stderr.write(
            f"Evaluation {pk} “{evaluation}”: {len(evaluation.prompts)} prompts × "
            f"{len(evaluation.targets)} models × {evaluation.repeat} = "
            f"{len(evaluations.cells(evaluation))} replies, {at_once} at a time.",
            style_func=str,
        )
        bar = ProgressBar(self.stderr)
        interrupted = False
        with asyncio.Runner() as runner:
            try:
                runner.run(evaluations.run(pk, on_progress=bar))
            except KeyboardInterrupt:
                interrupted = True
        bar.close()
        evaluation.refresh_from_db()
        self.stdout.write(table(evaluations.report(evaluation)))
        if interrupted or evaluation.status != Evaluation.Status.DONE:
            why = evaluation.error or "Stopped."
            raise CommandError(f"{why} Resume with: {resume}")


class ProgressBar:
    """A bar redrawn in place on a terminal; a line every 10% anywhere else (a log)."""

    def __init__(self, out: OutputWrapper) -> None:
        self.out = out
        self.tty = out.isatty()
        self.drawn = False
        self.tenth = -1

    def __call__(self, done: int, total: int) -> None:
        share = done / total if total else 1.0
        percent = int(100 * share)
        if self.tty:
            filled = int(BAR_WIDTH * share)
            line = f"\r[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done}/{total} {percent:3d}%"
            self.out.write(line, ending="", style_func=str)
            self.out.flush()
            self.drawn = True
            return
        tenth = int(10 * share)
        if tenth > self.tenth:
            self.tenth = tenth
            self.out.write(f"{done}/{total} replies ({percent}%)", style_func=str)

    def close(self) -> None:
        if self.drawn:
            self.out.write("", style_func=str)


def _ms(p50: float | None, p95: float | None) -> str:
    if p50 is None or p95 is None:
        return "–"
    return f"{p50:.0f} / {p95:.0f} ms"


def _usd(cost: Decimal) -> str:
    return "$" + (f"{cost:.6f}".rstrip("0").rstrip(".") if cost else "0")


def table(report: Report) -> str:
    """The per-model numbers as a plain text table."""
    head = (
        "Model",
        "Runs",
        "Success",
        "Checks",
        "First token p50/p95",
        "Total p50/p95",
        "Tokens in/out",
        "Cost",
        "Avg chars",
    )
    rows = [head]
    for m in report.models:
        checks = (
            f"{m.checks_passed}/{m.checks_total} ({m.checks_percent:.0f}%)"
            if m.checks_percent is not None
            else "–"
        )
        rows.append(
            (
                m.target,
                str(m.runs),
                "–" if m.success_percent is None else f"{m.success_percent:.0f}%",
                checks,
                _ms(m.ttft_p50_ms, m.ttft_p95_ms),
                _ms(m.latency_p50_ms, m.latency_p95_ms),
                f"{m.input_tokens} / {m.output_tokens}",
                _usd(m.cost),
                "–" if m.avg_chars is None else f"{m.avg_chars:.0f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
