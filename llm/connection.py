"""Test connection and fetch models: what the settings page and the providers API share.

Only these two calls reach a provider outside a chat turn (DESIGN.md: pages may call
`ping` and `list_models`). A check's outcome is stored on the configuration as
`last_verified_at` / `last_error`, so every page shows what last worked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core import signing
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from llm import crypto, limits, trips
from llm.events import TurnError
from llm.models import ProviderConfig
from llm.providers.base import Credentials, Provider, ProviderError

UNREADABLE_KEY = (
    "The stored key can no longer be read (the server's encryption keys changed, or its "
    "address was changed without the key being entered again): enter this key again."
)
# How long a successful test from the edit form vouches for the values it tested.
VERIFIED_TOKEN_MAX_AGE = 3600
_SALT = "coppertone.llm.connection"


class KeyUnreadable(Exception):
    """The stored key fails to decrypt: the person has to enter it again."""


@dataclass
class Check:
    """The outcome of Test connection, as a person sees it."""

    ok: bool
    latency_ms: float | None = None
    models: list[str] = field(default_factory=list)
    count: int = 0
    code: str = ""
    message: str = ""
    # Signed proof that these connection values worked, carried by the edit form to Save.
    token: str = ""

    def error(self) -> dict[str, Any]:
        return TurnError(self.code, self.message).as_dict()


def credentials(config: ProviderConfig) -> Credentials:
    """The credentials for one call; a key that no longer decrypts says what to do."""
    try:
        return config.credentials()
    except crypto.DecryptError:
        raise KeyUnreadable(UNREADABLE_KEY) from None


class Throttled(ProviderError):
    """Not sent: the person's rate limit, which connection tests count like turns."""

    code = "rate_limited"


_check_rate = trips.trip(limits.check_rate)


async def count_request(user_id: int) -> None:
    """Count one outbound request on the person's command in the turns' rate window:
    a test or a model list reaches the provider just as a message does."""
    try:
        await _check_rate(user_id)
    except limits.LimitError as exc:
        raise Throttled(exc.message, retry_after=exc.retry_after) from None


async def run_check(
    provider: Provider,
    creds: Credentials,
    *,
    user_id: int,
    names: bool = False,
    counted: bool = True,
) -> Check:
    """Ping (adapters ping by listing models, so the count comes with it); with `names`, also
    fetch the names, which fill the model picker on the settings page. Raises Throttled
    past the person's rate limit, before anything is sent. `counted=False` is for the
    operator's checks (`manage.py llm_check`): they are not the person's doing."""
    if counted:
        await count_request(user_id)
    try:
        ping = await provider.ping(creds)
    except ProviderError as error:
        return Check(ok=False, code=error.code, message=error.message)
    if not ping.ok:
        error_body = getattr(ping, "error", None) or {}
        return Check(
            ok=False,
            code=str(error_body.get("code", "provider_error")),
            message=str(
                error_body.get("message")
                or ping.detail
                or "The provider answered, but not as expected."
            ),
        )
    models: list[str] = []
    if names or ping.models is None:
        try:
            models = sorted(set(await provider.list_models(creds)))
        except ProviderError:
            # Some servers answer chats but not the model list; the connection still works.
            models = []
    count = len(models) if models or ping.models is None else ping.models
    return Check(ok=True, latency_ms=round(ping.latency_ms, 1), models=models, count=count)


async def check_stored(config: ProviderConfig, *, counted: bool = True) -> Check:
    """Test connection for a saved configuration as it is stored: a key that no longer
    decrypts is a failed check in words, not an exception. Raises Throttled when counted."""
    try:
        creds = credentials(config)
    except KeyUnreadable as unreadable:
        return Check(ok=False, code="provider_auth", message=str(unreadable))
    return await run_check(config.provider(), creds, user_id=config.user_id, counted=counted)


async def fetch_models(provider: Provider, creds: Credentials, *, user_id: int) -> list[str]:
    """The provider's model names, sorted. Raises ProviderError (Throttled past the limit)."""
    await count_request(user_id)
    return sorted(set(await provider.list_models(creds)))


def record(config: ProviderConfig, check: Check) -> None:
    """Store the outcome on a saved configuration (one UPDATE, no read-modify-write)."""
    if config.pk is None:
        return
    if check.ok:
        config.last_verified_at, config.last_error = timezone.now(), ""
    else:
        config.last_error = check.message
    ProviderConfig.objects.filter(pk=config.pk).update(
        last_verified_at=config.last_verified_at, last_error=config.last_error
    )


def fingerprint(config: ProviderConfig, creds: Credentials) -> str:
    """A keyed digest of where and as whom a configuration connects (never the key itself)."""
    value = "\n".join(
        [str(config.user_id), config.kind, creds.base_url, creds.api_version, creds.api_key]
    )
    return salted_hmac(_SALT, value, algorithm="sha256").hexdigest()


def vouch(config: ProviderConfig, creds: Credentials) -> str:
    """A token saying these exact connection values passed a test just now."""
    return signing.dumps(
        {"f": fingerprint(config, creds), "t": timezone.now().isoformat()}, salt=_SALT
    )


def vouched_at(token: str, config: ProviderConfig, creds: Credentials) -> datetime | None:
    """When `token` says these connection values passed a test, if it is genuine and recent."""
    if not token:
        return None
    try:
        data = signing.loads(token, salt=_SALT, max_age=VERIFIED_TOKEN_MAX_AGE)
        when = datetime.fromisoformat(data["t"])
        print_ = str(data["f"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return None
    return when if constant_time_compare(print_, fingerprint(config, creds)) else None
