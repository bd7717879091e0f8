"""Compare: one message to 2-4 provider/model targets at once, each an ordinary reply.

Every column is its own reply in its own new conversation (so "continue with this one"
is simply opening that conversation), and the columns share a `compare_id` on their
messages and start events. The rate limit counts all the columns before any starts
(either every column starts or none does); each column's start trip then checks the
budget and the concurrent-reply cap as any turn does, so a column can fail on its own
(not set up, a provider down) while the others stream. Transports (the WebSocket's
`compare` frame, POST /api/v1/compare) call `start` and follow the replies it returns.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from accounts.models import User
from llm import limits, metrics, replies, trips
from llm.events import TurnError
from llm.providers import registry
from llm.turns import check_message, run_turn

MIN_TARGETS, MAX_TARGETS = 2, 4

check_rate_trip = trips.trip(limits.check_rate)


@dataclass(frozen=True, slots=True)
class Target:
    provider: str | None
    model: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "model": self.model}


@dataclass(frozen=True, slots=True)
class Column:
    """One target's reply, or why it could not start."""

    target: Target
    reply: replies.Reply | None
    error: TurnError | None


def targets(raw: object) -> list[Target]:
    """The request's `targets`, validated; raises TurnError (bad_request) with words."""
    if not isinstance(raw, list) or not MIN_TARGETS <= len(raw) <= MAX_TARGETS:
        raise TurnError(
            "bad_request",
            f"Compare {MIN_TARGETS} to {MAX_TARGETS} models: send `targets` as a list of "
            '{"provider": "...", "model": "..."}.',
        )
    found: list[Target] = []
    for n, item in enumerate(raw, 1):
        if not isinstance(item, dict):
            raise TurnError("bad_request", f"Target {n} must be an object with a provider.")
        provider, model = item.get("provider"), item.get("model")
        if provider is not None and (
            not isinstance(provider, str) or provider not in registry.PROVIDERS
        ):
            raise TurnError(
                "bad_request",
                f"Target {n}: there is no provider called {provider!r}. Choose one of: "
                f"{', '.join(registry.PROVIDERS)}.",
            )
        if model is not None and (
            not isinstance(model, str) or len(model) > 200 or "\x00" in model
        ):
            raise TurnError(
                "bad_request",
                f"Target {n}: the model must be a name of at most 200 characters, "
                "without NUL characters.",
            )
        if not provider and not model:
            raise TurnError("bad_request", f"Target {n} names neither a provider nor a model.")
        # The same model twice is allowed: it shows how much its answers vary.
        found.append(Target(provider or None, model or None))
    return found


async def start(
    user: User, text: str, wanted: list[Target], client_message_id: uuid.UUID | None = None
) -> tuple[uuid.UUID, list[Column]]:
    """Count the columns against the rate limit, then start every one of them at once.

    Raises TurnError when none may start (the rate limit, a cap too small for them).
    A resend with the same client_message_id gets the same columns back.
    """
    check_message(text)  # once, before any column is counted or started
    cap = settings.LLM_MAX_CONCURRENT_REPLIES
    if cap and len(wanted) > cap:
        raise TurnError(
            "busy",
            f"A compare of {len(wanted)} needs {len(wanted)} replies at once, and the most "
            f"anyone may have is {cap}: compare fewer models.",
        )
    try:
        await check_rate_trip(user.pk, len(wanted))
    except limits.LimitError as exc:
        metrics.refused(exc.code)
        raise TurnError(exc.code, exc.message, retry_after=exc.retry_after) from None
    compare_id = (
        uuid.uuid5(client_message_id, "compare") if client_message_id is not None else uuid.uuid4()
    )

    async def column(n: int, target: Target) -> Column:
        turn = run_turn(
            user,
            text,
            provider=target.provider,
            model=target.model,
            client_message_id=uuid.uuid5(compare_id, str(n)),
            compare_id=compare_id,
            rate_counted=True,
        )
        try:
            return Column(target, await replies.start(turn), None)
        except TurnError as refused:
            return Column(target, None, refused)

    # One after another: a start is one short trip (then the replies stream side by
    # side), and SQLite takes one writer at a time.
    columns = [await column(n, target) for n, target in enumerate(wanted)]
    return compare_id, columns
