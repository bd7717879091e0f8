"""Circuit breakers: stop asking a provider that keeps failing, for a while.

Two breakers stand in front of every upstream call:
  the person's configuration   ProviderConfig.failures / open_until / failure: a bad
                               key or an exhausted quota is theirs alone;
  the upstream server          Upstream (scheme://host:port), shared by everyone who
                               points at it: a server that is down is down for all.
After LLM_BREAKER_FAILURES consecutive failures a breaker opens for
LLM_BREAKER_COOLDOWN_SECONDS (longer when the provider sent a longer Retry-After);
then one turn is let through as a probe (claimed with a conditional UPDATE, so one
across every worker), and its result closes the breaker or opens it again.

The check on the hot path is a dictionary lookup and a comparison: the configuration
comes with the start trip's one query, and the open servers are kept in memory,
refreshed from the database at most once a second per process (bench/breakers.py).
Everything here runs inside the engine's database trips (worker threads).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from llm import metrics
from llm.events import TurnError
from llm.models import ProviderConfig, Upstream

# What says something about the person's configuration (their key, their quota)...
CONFIG_CODES = frozenset(
    {"provider_auth", "provider_rate_limited", "provider_timeout", "provider_unavailable"}
)
# ...and what says something about the server, for everyone.
SERVER_CODES = frozenset({"provider_timeout", "provider_unavailable"})
REFRESH_SECONDS = 1.0


def address(base_url: str) -> str:
    """The server a base URL points at, as scheme://host:port ("" for none)."""
    if not base_url:
        return ""
    parts = urlsplit(base_url.strip())
    if not parts.hostname:
        return ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname.lower()}:{port}"


@dataclass(frozen=True, slots=True)
class Open:
    """A breaker that is open: the turn must not call upstream until `until`."""

    until: dt.datetime
    failure: str
    server: str  # "" when it is the person's own configuration that keeps failing

    def error(self, label: str) -> TurnError:
        at = timezone.localtime(self.until).strftime("%H:%M")
        wait = max(1.0, (self.until - timezone.now()).total_seconds())
        whose = f"The server at {self.server}" if self.server else label
        why = f" Last error: {self.failure.rstrip('.')}." if self.failure else ""
        return TurnError(
            "provider_unavailable",
            f"{whose} keeps failing, so it is not asked again until {at}.{why} Choose "
            "another provider, or add one under “If it fails” in Settings.",
            retry_after=wait,
        )


@dataclass(frozen=True, slots=True)
class _Server:
    failures: int
    open_until: dt.datetime | None
    failure: str


class _Servers:
    """The servers with failures on record, as this process last read them."""

    def __init__(self) -> None:
        self.known: dict[str, _Server] = {}
        self.read_at = -REFRESH_SECONDS
        self.lock = threading.Lock()

    def stale(self) -> bool:
        return time.monotonic() - self.read_at >= REFRESH_SECONDS

    def refresh(self) -> None:
        if not self.stale():
            return
        with self.lock:
            if time.monotonic() - self.read_at < REFRESH_SECONDS:
                return
            rows = Upstream.objects.filter(failures__gt=0).values_list(
                "address", "failures", "open_until", "failure"
            )
            self.known = {a: _Server(n, until, why) for a, n, until, why in rows}
            self.read_at = time.monotonic()

    def forget(self) -> None:
        """Read afresh on the next check (tests, and after this process changed a row)."""
        self.read_at = -REFRESH_SECONDS


servers = _Servers()


def _threshold() -> int:
    return max(1, settings.LLM_BREAKER_FAILURES)


def _cooldown(retry_after: float | None) -> dt.timedelta:
    return dt.timedelta(seconds=max(settings.LLM_BREAKER_COOLDOWN_SECONDS, retry_after or 0.0))


def gate(config: ProviderConfig | None, server: str, now: dt.datetime) -> Open | None:
    """None when the call may go ahead (perhaps as the probe), else why not and until when."""
    if config is not None and config.open_until is not None:
        if config.open_until > now:
            return Open(config.open_until, config.failure, "")
        if not _claim_config_probe(config, now):
            return Open(now + _cooldown(None), config.failure, "")
    if not server:
        return None
    servers.refresh()
    known = servers.known.get(server)
    if known is None or known.open_until is None:
        return None
    if known.open_until > now:
        return Open(known.open_until, known.failure, server)
    if not _claim_server_probe(server, known.open_until, now):
        return Open(now + _cooldown(None), known.failure, server)
    return None


def _claim_config_probe(config: ProviderConfig, now: dt.datetime) -> bool:
    """The one turn, across every worker, that tries a half-open configuration."""
    again = now + _cooldown(None)
    claimed = ProviderConfig.objects.filter(pk=config.pk, open_until=config.open_until).update(
        open_until=again
    )
    return bool(claimed)


def _claim_server_probe(server: str, was: dt.datetime, now: dt.datetime) -> bool:
    claimed = Upstream.objects.filter(address=server, open_until=was).update(
        open_until=now + _cooldown(None)
    )
    servers.forget()
    return bool(claimed)


def failed(config: ProviderConfig | None, server: str, error: TurnError, now: dt.datetime) -> None:
    """Count a failed call against the breakers it says something about."""
    opens_at = _threshold()
    until = now + _cooldown(error.retry_after)
    if config is not None and config.pk is not None and error.code in CONFIG_CODES:
        ProviderConfig.objects.filter(pk=config.pk).update(
            failures=F("failures") + 1, failure=error.message
        )
        opened = ProviderConfig.objects.filter(pk=config.pk, failures__gte=opens_at).update(
            open_until=until
        )
        metrics.breaker_opened("configuration", opened)
    if server and error.code in SERVER_CODES:
        row, created = Upstream.objects.get_or_create(
            address=server, defaults={"failures": 1, "failure": error.message}
        )
        if not created:
            Upstream.objects.filter(pk=row.pk).update(
                failures=F("failures") + 1, failure=error.message
            )
        opened = Upstream.objects.filter(pk=row.pk, failures__gte=opens_at).update(open_until=until)
        metrics.breaker_opened("server", opened)
        servers.forget()


def reads_database(config: ProviderConfig | None, server: str) -> bool:
    """Whether gate() may touch the database now: a probe to claim, or the servers with
    failures to read again (once a second); else it decides from memory."""
    if config is not None and config.open_until is not None:
        return True
    if not server:
        return False
    known = servers.known.get(server)
    return servers.stale() or (known is not None and known.open_until is not None)


def needs_reset(config: ProviderConfig | None, server: str) -> bool:
    """Whether a success must close a breaker (a write only then, not on every turn)."""
    if config is not None and (config.failures or config.open_until is not None):
        return True
    return bool(server) and server in servers.known


def succeeded(config: ProviderConfig | None, server: str) -> None:
    """A call went through: both breakers close and forget their failures."""
    if config is not None and config.pk is not None:
        ProviderConfig.objects.filter(pk=config.pk).update(failures=0, open_until=None, failure="")
    if server:
        Upstream.objects.filter(address=server).update(failures=0, open_until=None, failure="")
        servers.forget()
