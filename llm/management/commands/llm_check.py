"""`manage.py llm_check`: the settings page's Test connection for every stored configuration.

The checks run several at once (bounded), each through `connection.check_stored`, and
their outcomes are stored on the cards (last verified / last error) as the page's are.
An operator's check does not count against the person's rate limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import QuerySet

from llm import connection
from llm.connection import Check
from llm.management import arguments
from llm.management.tables import aligned
from llm.models import ProviderConfig

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 64

EPILOG = """\
Examples:
  manage.py llm_check                                   every stored configuration
  manage.py llm_check --user alice --provider openai    only alice's OpenAI card
  manage.py llm_check --json --timeout 10               a JSON list, for a monitor

Each check is the settings page's "Test connection" (the provider lists its models);
its outcome is stored on the card, as the page stores it. A key that no longer
decrypts is a failed check ("enter this key again"), never a crash.

Exit status: 0 when every check passed, or when no configuration matched (nothing
failed; the message says so on stderr, and --json prints []); 1 when any check failed.
"""


class Command(BaseCommand):
    help = (
        "Test every stored provider configuration (or those of --user / --provider), several "
        "at once, as the settings page's Test connection does; exit 1 if any fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.epilog = EPILOG
        parser.add_argument("--user", help="Only this person's configurations (username).")
        parser.add_argument("--provider", help="Only this provider kind, e.g. openai, anthropic.")
        parser.add_argument(
            "--json", action="store_true", help="Print a JSON list instead of a table."
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=DEFAULT_TIMEOUT,
            metavar="S",
            help=f"Seconds each check may take (default {DEFAULT_TIMEOUT:g}).",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=DEFAULT_CONCURRENCY,
            metavar="N",
            help=f"Checks at once (default {DEFAULT_CONCURRENCY}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        timeout: float = options["timeout"]
        concurrency: int = options["concurrency"]
        if not timeout > 0:
            raise CommandError(f"--timeout must be more than 0 seconds, not {timeout:g}.")
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise CommandError(
                f"--concurrency must be from 1 to {MAX_CONCURRENCY} (checks at once), "
                f"not {concurrency}."
            )
        configs = list(
            _configs(options["user"], options["provider"]).order_by("user__username", "kind")
        )
        if not configs:
            self.stderr.write(
                "No stored provider configuration matches"
                + _filters(options["user"], options["provider"])
                + ": nothing to test."
            )
            if options["json"]:
                self.stdout.write("[]")
            return

        checks = asyncio.run(_check_all(configs, timeout=timeout, concurrency=concurrency))
        for config, check in zip(configs, checks, strict=True):
            if check.code != "internal":  # our own failure says nothing about the card
                connection.record(config, check)
        rows = [_row(config, check) for config, check in zip(configs, checks, strict=True)]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
        else:
            self.stdout.write(_table(rows))

        failed = sum(not check.ok for check in checks)
        if failed:
            raise CommandError(f"{failed} of {len(checks)} check(s) failed.", returncode=1)
        if not options["json"]:
            self.stdout.write(self.style.SUCCESS(f"All {len(checks)} check(s) passed."))


def _configs(username: str | None, kind: str | None) -> QuerySet[ProviderConfig]:
    configs = ProviderConfig.objects.select_related("user")
    if kind is not None:
        configs = configs.filter(kind=arguments.provider_kind(kind))
    if username is not None:
        configs = configs.filter(user=arguments.user_named(username))
    return configs


def _filters(username: str | None, kind: str | None) -> str:
    named = [f"user {username}" if username else "", f"provider {kind}" if kind else ""]
    named = [name for name in named if name]
    return f" ({', '.join(named)})" if named else ""


async def _check_all(
    configs: list[ProviderConfig], *, timeout: float, concurrency: int
) -> list[Check]:
    gate = asyncio.Semaphore(concurrency)

    async def one(config: ProviderConfig) -> Check:
        async with gate:
            try:
                async with asyncio.timeout(timeout):
                    return await connection.check_stored(config, counted=False)
            except TimeoutError:
                return Check(
                    ok=False,
                    code="provider_timeout",
                    message=(
                        f"The provider did not answer within {timeout:g} s: is it up and reachable?"
                    ),
                )
            except Exception as exc:
                # One broken check must not hide the others' outcomes.
                log.exception("llm_check: the check of %s failed", config)
                return Check(
                    ok=False,
                    code="internal",
                    message=f"The check itself failed ({type(exc).__name__}); see the log.",
                )

    return list(await asyncio.gather(*(one(config) for config in configs)))


def _row(config: ProviderConfig, check: Check) -> dict[str, Any]:
    """One check for people and machines alike: the table and --json share these fields."""
    return {
        "user": config.user.get_username(),
        "provider": config.kind,
        "model": config.effective_model,
        "ok": check.ok,
        "latency_ms": check.latency_ms if check.ok else None,
        "error": None if check.ok else check.error(),
    }


def _table(rows: list[dict[str, Any]]) -> str:
    head = ("user", "provider", "model", "ok", "latency ms", "error")
    cells = [
        (
            row["user"],
            row["provider"],
            row["model"] or "-",
            "yes" if row["ok"] else "NO",
            "-" if row["latency_ms"] is None else f"{row['latency_ms']:.0f}",
            row["error"]["message"] if row["error"] else "",
        )
        for row in rows
    ]
    return aligned(head, cells, right={4})
