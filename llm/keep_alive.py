"""Keep-alive: ping the local servers people asked for, so that their model stays loaded.

Every `TICK_SECONDS`, each worker claims the configurations that are due and pings them
(Provider.keep_alive: Ollama's load request, or one token). A claim is one UPDATE per
configuration that only matches while the configuration is still due, and it moves the
due time one interval on, so that several worker processes never ping the same
configuration twice in an interval, whichever of them runs first. The reply runner
starts `run_forever` (it is not wired into the ASGI app here).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from django.db.models import Q
from django.utils import timezone

from llm import crypto, trips
from llm.models import ProviderConfig
from llm.providers import registry
from llm.providers.base import Ping

TICK_SECONDS = 30.0
# A ping that neither answers nor fails in this long is given up on; the next round tries again.
PING_SECONDS = 120.0
MAX_PINGS_AT_ONCE = 8
MAX_RESULT_CHARS = 300  # ProviderConfig.keep_alive_result

log = logging.getLogger(__name__)


def _kinds() -> list[str]:
    return [kind for kind, entry in registry.PROVIDERS.items() if entry.spec.keep_alive]


def _due(now: dt.datetime) -> Q:
    return Q(enabled=True, keep_alive_minutes__gt=0, kind__in=_kinds()) & (
        Q(keep_alive_due__lte=now) | Q(keep_alive_due__isnull=True)
    )


def claim_due(now: dt.datetime) -> list[ProviderConfig]:
    """The configurations due for a ping at `now`, claimed for this caller alone."""
    claimed = []
    for config in ProviderConfig.objects.filter(_due(now)).order_by("pk"):
        following = now + dt.timedelta(minutes=config.keep_alive_minutes)
        # Matches only while still due: another worker that claimed it first moved it on.
        won = (
            ProviderConfig.objects.filter(_due(now), pk=config.pk)
            .filter(keep_alive_minutes=config.keep_alive_minutes)
            .update(keep_alive_due=following)
        )
        if won:
            config.keep_alive_due = following
            claimed.append(config)
    return claimed


def result_words(ping: Ping) -> str:
    """What the card shows: "ok, 41 ms", or what went wrong in words."""
    if ping.ok:
        return f"ok, {round(ping.latency_ms)} ms"
    return (ping.detail or "failed, with no reason given")[:MAX_RESULT_CHARS]


def _record(pk: int, at: dt.datetime, words: str) -> None:
    ProviderConfig.objects.filter(pk=pk).update(keep_alive_at=at, keep_alive_result=words)


_claim = trips.trip(claim_due)
_store = trips.trip(_record)


async def ping(config: ProviderConfig) -> str:
    """Ping one configuration and store how it went; returns the words stored."""
    try:
        creds = config.credentials()
    except crypto.DecryptError:
        words = "The stored key can no longer be read: enter it again in Settings."
    else:
        provider = config.provider()
        try:
            result = await asyncio.wait_for(
                provider.keep_alive(creds, config.effective_model, config.keep_alive_minutes),
                PING_SECONDS,
            )
        except TimeoutError:
            words = f"no answer within {PING_SECONDS:g} s"
        except Exception:
            # Adapters raise only ProviderError, which keep_alive turns into a Ping; this
            # is a bug, and one configuration's must not stop the others' pings.
            log.exception("keep-alive ping of configuration %s failed", config.pk)
            words = "Coppertone could not send the ping (the server log says why)."
        else:
            words = result_words(result)
    await _store(config.pk, timezone.now(), words)
    return words


async def run_once(now: dt.datetime | None = None) -> list[str]:
    """One round: claim what is due and ping it, a few at a time."""
    configs = await _claim(now or timezone.now())
    gate = asyncio.Semaphore(MAX_PINGS_AT_ONCE)

    async def one(config: ProviderConfig) -> str:
        async with gate:
            return await ping(config)

    return list(await asyncio.gather(*(one(c) for c in configs)))


async def run_forever() -> None:
    """Every TICK_SECONDS until cancelled; a round that fails is logged and the next runs."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            await run_once()
        except Exception:
            # A database that is away for a moment must not end keep-alive for good.
            log.exception("keep-alive round failed")
        await asyncio.sleep(max(0.0, TICK_SECONDS - (loop.time() - started)))
