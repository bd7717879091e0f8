"""The engine's two database trips, and the events and refusals they produce.

`Turn` (llm/turns.py) runs the stream; what it reads and writes lives here:
  start   limits, the person's provider settings, the conversation (created, or locked
          and touched), the user's message and the assistant's row (`streaming`) in one
          INSERT, and the history the provider is sent (or a resend's stored reply);
  finish  the reply's text, status, tokens, cost and timings, and the DailyUsage row.
Each trip is one transaction in a worker thread, never on the event loop. The SQL of
the writes is in llm/replies.py.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, IntegrityError, close_old_connections, transaction
from django.utils import timezone

from accounts.models import User
from llm import limits, pricing, render, replies
from llm.models import Conversation, Message, ProviderConfig
from llm.providers import registry
from llm.providers.base import ChatMessage, ChatRequest, Usage

log = logging.getLogger(__name__)

# The most stored messages read for one turn's history; the token budget trims further.
HISTORY_ROWS = 100
TITLE_CHARS = 80
INTERRUPTED = replies.INTERRUPTED
SETTINGS_PAGE = "/settings/llm/"

STREAMING = Message.Status.STREAMING.value
COMPLETE = Message.Status.COMPLETE.value
STOPPED = Message.Status.STOPPED.value
ERROR = Message.Status.ERROR.value
USER = Message.Role.USER.value
ASSISTANT = Message.Role.ASSISTANT.value

T = TypeVar("T")


class TurnError(Exception):
    """A turn refused before any upstream call; nothing was streamed or stored."""

    def __init__(self, code: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.retry_after is not None:
            body["retry_after"] = round(self.retry_after)
        return body


@dataclass(frozen=True, slots=True)
class TurnStarted:
    conversation_id: int
    message_id: int
    user_message_id: int
    provider: str
    model: str


@dataclass(frozen=True, slots=True)
class TurnFinished:
    conversation_id: int
    message_id: int
    status: str  # complete | stopped | error
    content: str
    html: str  # sanitized markdown; "" when the transport asked for none
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost: Decimal
    ttft_ms: float | None
    latency_ms: float
    error: dict[str, Any] | None  # {"code", "message"} when status == "error"
    finish_reason: str = "stop"  # the provider's: "stop", "length", ...

    def as_dict(self) -> dict[str, Any]:
        """The chat response body of API.md (`error` only on a failed reply)."""
        body: dict[str, Any] = {
            "conversation_id": self.conversation_id,
            "message_id": self.message_id,
            "content": self.content,
            "provider": self.provider,
            "model": self.model,
            "status": self.status,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
            "cost": str(self.cost),
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 1),
            "latency_ms": round(self.latency_ms, 1),
        }
        if self.error is not None:
            body["error"] = self.error
        return body


@dataclass(slots=True)
class Plan:
    """What the start trip decided: where the reply goes and what the provider is sent."""

    conversation_id: int
    user_message_id: int
    message_id: int
    config: ProviderConfig | None
    request: ChatRequest


def estimate_tokens(text: str) -> int:
    # About four characters a token in English; only used when a provider reports none.
    return len(text) // 4 + 1


# --- the startup sweep -----------------------------------------------------------

_PROCESS_STARTED = timezone.now()
_swept = False
_sweep_lock = threading.Lock()


def sweep_interrupted(before: dt.datetime | None = None) -> int:
    """Mark replies left `streaming` by a process that died as failed. Returns how many.

    Only rows last written before `before` (default: when this process loaded the
    engine) are touched, so that a worker starting beside others does not end their
    live replies; a row a live worker finishes later is written over by its finish.
    """
    return replies.sweep_interrupted(before or _PROCESS_STARTED)


def _sweep_once() -> None:
    # Once per process, inside the first turn's start trip: it needs no lifespan event
    # (daphne sends none), costs nothing at import, and covers every process that runs
    # turns (ASGI workers, mqtt_bridge, the chat command).
    global _swept
    if _swept:
        return
    with _sweep_lock:
        if not _swept:
            count = sweep_interrupted()
            if count:
                log.warning("marked %d reply(s) left streaming as %r", count, INTERRUPTED)
            _swept = True


# --- database trips (each runs in a worker thread, never on the event loop) ------------


def db_trip(fn: Callable[..., T]) -> Callable[..., T]:
    """Run `fn` as one trip; drop this thread's connection if the database failed it."""

    def trip(*args: Any) -> T:
        try:
            return fn(*args)
        except DatabaseError:
            # Worker threads never see request_started/finished, so nothing else would
            # replace a connection the database dropped (restart, failover).
            close_old_connections()
            raise

    return trip


class TurnTrips:
    """The start and finish trips of a `Turn`: synchronous, run in worker threads."""

    user: User
    text: str
    kind: str
    model: str
    model_name: str | None
    conversation_id: int | None
    conversation_key: str
    client_message_id: uuid.UUID | None
    history: Sequence[ChatMessage] | None
    system: str | None
    temperature: float | None
    max_tokens: int | None
    render_html: bool
    user_message_id: int

    # --- the start trip -------------------------------------------------------------

    def _start(self) -> Plan | TurnFinished:
        """Limits, settings, conversation and both messages: one thread hop, one transaction."""
        _sweep_once()
        try:
            return self._start_once()
        except IntegrityError:
            # The same client_message_id arrived twice at once: the other one won.
            if self.client_message_id is None:
                raise
            sent = self._sent_before()
            if sent is None:
                raise
            return self._replay(*sent)

    def _sent_before(self) -> tuple[int, int] | None:
        """(conversation id, message id) of this person's message with this client id."""
        return (
            Message.objects.filter(
                conversation__user_id=self.user.pk,
                client_message_id=self.client_message_id,
                role=USER,
            )
            .values_list("conversation_id", "id")
            .first()
        )

    def _start_once(self) -> Plan | TurnFinished:
        try:
            limits.check_rate(self.user.pk)
        except limits.LimitError as exc:
            raise TurnError(exc.code, exc.message, retry_after=exc.retry_after) from None
        config = replies.provider_config(self.user.pk, self.kind)
        self._check_configured(config)
        spec = registry.spec(self.kind)
        self.model = self.model_name or (config.effective_model if config else spec.default_model)
        now = timezone.now()
        try:
            limits.check_budget(self.user, timezone.localdate(now))
        except limits.LimitError as exc:
            raise TurnError(exc.code, exc.message, retry_after=exc.retry_after) from None

        with transaction.atomic():
            rows: list[tuple[Any, ...]] = []
            if self.history is not None:
                conversation_id = self._create_conversation(now)
            elif self.conversation_id is not None:
                conversation_id = self.conversation_id
                rows = self._open(conversation_id, now)
            elif self.conversation_key:
                conversation_id = self._conversation_for_key()
                rows = self._open(conversation_id, now)
            else:
                if self.client_message_id is not None:
                    sent = self._sent_before()
                    if sent is not None:
                        return self._replay(*sent)
                conversation_id = self._create_conversation(now)

            for row_id, role, _content, status, client_id in rows:
                if role == USER and client_id is not None and client_id == self.client_message_id:
                    return self._replay(conversation_id, row_id)
                if status == STREAMING:
                    raise TurnError(
                        "busy",
                        "A reply is still being written in this conversation: wait for it "
                        "to finish, or press Stop.",
                    )

            asked, answer = replies.insert_exchange(
                conversation_id, self.text, self.client_message_id, self.kind, self.model, now
            )
        return Plan(
            conversation_id=conversation_id,
            user_message_id=asked,
            message_id=answer,
            config=config,
            request=self._request(config, rows),
        )

    def _check_configured(self, config: ProviderConfig | None) -> None:
        if self.kind == registry.LOCAL:
            return
        spec = registry.spec(self.kind)
        if config is None or (spec.needs_key and not config.has_key):
            raise TurnError(
                "not_configured",
                f"{spec.label} is not set up for your account yet: add your API key in "
                f"Settings ({SETTINGS_PAGE}), or choose another provider.",
            )
        if not config.enabled:
            raise TurnError(
                "not_configured",
                f"{spec.label} is turned off in your Settings ({SETTINGS_PAGE}): turn it "
                "on, or choose another provider.",
            )

    def _create_conversation(self, now: dt.datetime) -> int:
        title = self.text.strip().splitlines()[0][:TITLE_CHARS]
        return replies.insert_conversation(self.user.pk, title, self.conversation_key, now)

    def _conversation_for_key(self) -> int:
        conversation, _ = Conversation.objects.get_or_create(
            user_id=self.user.pk,
            external_key=self.conversation_key,
            defaults={"title": self.text.strip().splitlines()[0][:TITLE_CHARS]},
        )
        return conversation.pk

    def _open(self, conversation_id: int, now: Any) -> list[tuple[Any, ...]]:
        """Touch the person's conversation (which also locks its row until commit, so two
        sends cannot both pass the busy check) and read its newest messages."""
        touched = Conversation.objects.filter(pk=conversation_id, user_id=self.user.pk).update(
            updated_at=now
        )
        if not touched:
            raise TurnError("not_found", "That conversation does not exist, or it was deleted.")
        return list(
            Message.objects.filter(conversation_id=conversation_id)
            .order_by("-created_at", "-id")
            .values_list("id", "role", "content", "status", "client_message_id")[:HISTORY_ROWS]
        )

    def _replay(self, conversation_id: int, user_message_id: int) -> TurnFinished:
        """A resend of a message already stored: its reply, not a second one."""
        reply = (
            Message.objects.filter(
                conversation_id=conversation_id, role=ASSISTANT, id__gt=user_message_id
            )
            .order_by("id")
            .first()
        )
        if reply is None or reply.status == STREAMING:
            raise TurnError(
                "busy", "That message is still being answered: wait for the reply to finish."
            )
        self.kind, self.model = reply.provider, reply.model
        self.user_message_id = user_message_id
        error = (
            {"code": reply.error_code, "message": reply.error_message}
            if reply.status == ERROR
            else None
        )
        return TurnFinished(
            conversation_id=conversation_id,
            message_id=reply.pk,
            status=reply.status,
            content=reply.content,
            html=render.to_html(reply.content) if self.render_html else "",
            provider=reply.provider,
            model=reply.model,
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
            cost=reply.cost,
            ttft_ms=reply.ttft_ms,
            latency_ms=reply.latency_ms or 0.0,
            error=error,
        )

    def _request(self, config: ProviderConfig | None, rows: list[tuple[Any, ...]]) -> ChatRequest:
        """The system prompt always, then the newest messages that fit the token budget."""
        system = (
            self.system if self.system is not None else (config.system_prompt if config else "")
        )
        budget = settings.LLM_HISTORY_TOKENS - estimate_tokens(system) - estimate_tokens(self.text)
        earlier: list[ChatMessage] = []
        if self.history is not None:
            candidates = [(m.role, m.content) for m in reversed(self.history)]
        else:
            candidates = [
                (role, content)
                for _id, role, content, status, _cid in rows
                if role in (USER, ASSISTANT) and content and status != STREAMING
            ]
        for role, content in candidates:
            budget -= estimate_tokens(content)
            if budget < 0:
                break
            earlier.append(ChatMessage(role=role, content=content))
        earlier.reverse()
        earlier.append(ChatMessage(role="user", content=self.text))
        return ChatRequest(
            model=self.model,
            messages=tuple(earlier),
            system=system,
            temperature=self.temperature
            if self.temperature is not None
            else (config.temperature if config else None),
            max_tokens=self.max_tokens
            if self.max_tokens is not None
            else (config.max_tokens if config else None),
        )

    # --- the finish trip -----------------------------------------------------------------

    def _finish(
        self,
        plan: Plan,
        status: str,
        content: str,
        usage: Usage | None,
        error: dict[str, Any] | None,
        ttft_ms: float | None,
        latency_ms: float,
        finish_reason: str,
    ) -> TurnFinished:
        if usage is not None:
            input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
        else:
            request = plan.request
            input_tokens = estimate_tokens(request.system) + sum(
                estimate_tokens(m.content) for m in request.messages
            )
            output_tokens = estimate_tokens(content) if content else 0
        now = timezone.now()
        day = timezone.localdate(now)
        cost = pricing.cost(self.kind, self.model, day, input_tokens, output_tokens)
        html = render.to_html(content) if self.render_html else ""
        with transaction.atomic():
            replies.store_reply(
                plan.message_id,
                plan.user_message_id,
                content=content,
                status=status,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cost=cost,
                ttft_ms=ttft_ms,
                latency_ms=latency_ms,
                error_code=error["code"] if error else "",
                error_message=error["message"] if error else "",
                now=now,
            )
            limits.record_usage(
                user_id=self.user.pk,
                day=day,
                provider=self.kind,
                model=self.model,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cost=cost,
                failed=status == ERROR,
            )
        return TurnFinished(
            conversation_id=plan.conversation_id,
            message_id=plan.message_id,
            status=status,
            content=content,
            html=html,
            provider=self.kind,
            model=self.model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost=cost,
            ttft_ms=ttft_ms,
            latency_ms=latency_ms,
            error=error,
            finish_reason=finish_reason,
        )


# The trips mostly wait on the database, so they get more threads than the loop's default
# executor (cores + 4): 150 turns starting at once then queue for milliseconds, not for
# a hundred. Each thread keeps its own database connection.
DB_THREADS = 16
_executor = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="turn-db")
start_trip = sync_to_async(db_trip(TurnTrips._start), thread_sensitive=False, executor=_executor)
finish_trip = sync_to_async(db_trip(TurnTrips._finish), thread_sensitive=False, executor=_executor)
progress_trip = sync_to_async(
    db_trip(replies.write_progress), thread_sensitive=False, executor=_executor
)
