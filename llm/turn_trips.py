"""The engine's two database trips: what a turn reads and writes, and nothing else.

`Turn` (llm/turns.py) runs the stream; these functions take what it asked (`Ask`) and
what came of it (`Outcome`) and return plain values, so no thread ever changes the
turn itself:
  start   limits, the person's provider settings, the conversation (created, or locked
          and touched), the user's message and the assistant's row (`streaming`) in one
          INSERT, and the history the provider is sent (or a resend's stored reply);
  finish  the reply's text, status, tokens, cost and timings, and the DailyUsage row.
Each trip is one transaction on the trip pool (llm/trips.py), never on the event loop.
The SQL of the writes is in llm/turn_sql.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from accounts.models import User
from llm import attachments, breakers, limits, metrics, pricing, render, trips, turn_sql
from llm.events import Attempt, TurnError, TurnFinished, TurnStarted
from llm.models import (
    DEFAULT_MAX_TOKENS,
    Attachment,
    Conversation,
    FallbackEntry,
    Message,
    ProviderConfig,
)
from llm.providers import registry
from llm.providers.base import ChatMessage, ChatRequest, Image, Role, Usage

log = logging.getLogger(__name__)

# The most stored messages read for one turn's history; the token budget trims further.
HISTORY_ROWS = 100
TITLE_CHARS = 80
INTERRUPTED = turn_sql.INTERRUPTED
SETTINGS_PAGE = "/settings/llm/"

STREAMING = Message.Status.STREAMING.value
COMPLETE = Message.Status.COMPLETE.value
STOPPED = Message.Status.STOPPED.value
ERROR = Message.Status.ERROR.value
USER = Message.Role.USER.value
ASSISTANT = Message.Role.ASSISTANT.value


@dataclass(frozen=True, slots=True)
class Ask:
    """What a turn was asked, once validated: the start trip's input."""

    user: User
    text: str
    kind: str
    model_name: str | None
    conversation_id: int | None
    conversation_key: str
    client_message_id: uuid.UUID | None
    history: Sequence[ChatMessage] | None
    system: str | None
    temperature: float | None
    max_tokens: int | None
    render_html: bool
    compare_id: uuid.UUID | None = None  # one column of a compare (llm/compare.py)
    rate_counted: bool = False  # a compare counted all its columns against the rate at once
    attachments: tuple[int, ...] = ()  # the person's uploaded files, sent with the text
    images: tuple[Image, ...] = ()  # images that came inline with the text (/v1)


@dataclass(frozen=True, slots=True)
class Target:
    """One provider a turn may ask: its first choice, or a step of the fallback chain."""

    kind: str
    model: str
    config: ProviderConfig | None
    request: ChatRequest
    server: str  # scheme://host:port, for the server's breaker ("" for the embedded model)
    blocked: breakers.Open | None = None  # a breaker is open: do not call, say until when

    @property
    def label(self) -> str:
        return registry.spec(self.kind).label

    @property
    def shared(self) -> bool:
        """Whether the server is one for every worker (the embedded model is per process)."""
        return registry.spec(self.kind).has_base_url

    @property
    def slot_key(self) -> str:
        """What the concurrency cap counts: the base URL (the embedded model: this process)."""
        if self.config is None or not self.shared:
            return self.kind
        return self.config.effective_base_url.strip().rstrip("/") or self.kind

    @property
    def concurrency(self) -> int:
        if self.config is None:
            return registry.spec(self.kind).default_max_concurrent
        return self.config.concurrency


@dataclass(frozen=True, slots=True)
class Plan:
    """What the start trip decided: where the reply goes and whom it asks first."""

    conversation_id: int
    user_message_id: int
    message_id: int
    first: Target

    compare_id: uuid.UUID | None = None

    def started(self) -> TurnStarted:
        return TurnStarted(
            self.conversation_id,
            self.message_id,
            self.user_message_id,
            self.first.kind,
            self.first.model,
            str(self.compare_id) if self.compare_id else "",
        )


@dataclass(frozen=True, slots=True)
class Replay:
    """A resend of a message already stored: its reply is played back, not asked again."""

    started: TurnStarted
    finished: TurnFinished


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the stream ended: the finish trip's input."""

    status: str
    content: str
    usage: Usage | None
    error: TurnError | None
    ttft_ms: float | None
    latency_ms: float
    finish_reason: str
    seq: int  # the reply's last event, the one this finish produces
    answered: Target  # who answered (or failed last)
    thinking: str = ""
    thinking_ms: float | None = None
    attempts: tuple[Attempt, ...] = ()
    cached: bool = False


def estimate_tokens(text: str) -> int:
    # About four characters a token in English; only used when a provider reports none.
    return len(text) // 4 + 1


def message_tokens(message: ChatMessage) -> int:
    return estimate_tokens(message.content) + attachments.IMAGE_TOKENS * len(message.images)


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
    return turn_sql.sweep_interrupted(before or _PROCESS_STARTED)


def swept() -> bool:
    """Whether this process has swept (the first start trip does it, on the thread path)."""
    return _swept


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


# --- the start trip -------------------------------------------------------------


def start(ask: Ask) -> Plan | Replay:
    """Limits, settings, conversation and both messages: one thread hop, one transaction."""
    _sweep_once()
    try:
        return _start_once(ask)
    except IntegrityError:
        # The same client_message_id arrived twice at once: the other one won.
        sent = _sent_before(ask) if ask.client_message_id is not None else None
        if sent is None:
            raise
        return _replay(ask, *sent)


def _sent_before(ask: Ask) -> tuple[int, int] | None:
    """(conversation id, message id) of this person's message with this client id."""
    return (
        Message.objects.filter(
            conversation__user_id=ask.user.pk,
            client_message_id=ask.client_message_id,
            role=USER,
        )
        .values_list("conversation_id", "id")
        .first()
    )


def live_since(now: dt.datetime) -> dt.datetime:
    """The oldest write of a streaming row that still holds a reply slot."""
    return now - _live_window()


def _live_window() -> dt.timedelta:
    """How recently a streaming row must have been written to hold a reply slot: a live
    reply writes at least every idle timeout once its first byte came, so an older row
    was left by a process that died, and frees its slot without waiting for a sweep."""
    quiet = settings.LLM_FIRST_BYTE_TIMEOUT + settings.LLM_IDLE_TIMEOUT
    return dt.timedelta(seconds=quiet + 5)


def refused(exc: limits.LimitError) -> TurnError:
    metrics.refused(exc.code)
    return TurnError(exc.code, exc.message, retry_after=exc.retry_after)


def _start_once(ask: Ask) -> Plan | Replay:
    try:
        if not ask.rate_counted:
            limits.check_rate(ask.user.pk)
    except limits.LimitError as exc:
        raise refused(exc) from None
    now = timezone.now()
    with transaction.atomic():
        if settings.LLM_MAX_CONCURRENT_REPLIES:
            # One start of a person's at a time from here to commit, so that two cannot
            # both take the last of their replies at once (the budget locks on its own).
            turn_sql.lock_person(ask.user.pk)
        standing = turn_sql.standing(ask.user.pk, ask.kind, live_since(now))
        config, model = admit(ask, standing)
        rows: list[tuple[Any, ...]] = []
        if ask.history is not None:
            conversation_id = _create_conversation(ask, now)
        elif ask.conversation_id is not None:
            conversation_id = ask.conversation_id
            rows = _open(ask, conversation_id, now)
        elif ask.conversation_key:
            conversation_id = _conversation_for_key(ask)
            rows = _open(ask, conversation_id, now)
        else:
            if ask.client_message_id is not None:
                sent = _sent_before(ask)
                if sent is not None:
                    return _replay(ask, *sent)
            conversation_id = _create_conversation(ask, now)

        for row_id, role, _content, status, client_id, _files in rows:
            if role == USER and client_id is not None and client_id == ask.client_message_id:
                return _replay(ask, conversation_id, row_id)
            if status == STREAMING:
                raise TurnError(
                    "busy",
                    "A reply is still being written in this conversation: wait for it "
                    "to finish, or press Stop.",
                )

        files = attachments.unsent(ask.user.pk, ask.attachments)
        attachments.check_vision(
            ask.kind,
            model,
            bool(ask.images or attachments.images_in(files))
            or any(m.images for m in ask.history or ()),
        )
        request = _request(ask, model, config, rows, files)
        reserve = _most_cost(ask, request, now)
        try:
            limits.check_budget(
                ask.user, timezone.localdate(now), reserve=reserve, live_since=live_since(now)
            )
        except limits.LimitError as exc:
            raise refused(exc) from None
        asked, answer = turn_sql.insert_exchange(
            conversation_id,
            ask.text,
            ask.client_message_id,
            ask.kind,
            model,
            now,
            reserve,
            compare_id=ask.compare_id,
        )
        attachments.link(files, asked)
    first = _target(ask.kind, model, config, request)
    return Plan(
        conversation_id=conversation_id,
        user_message_id=asked,
        message_id=answer,
        first=dataclasses.replace(first, blocked=breakers.gate(config, first.server, now)),
        compare_id=ask.compare_id,
    )


def admit(ask: Ask, standing: turn_sql.Standing) -> tuple[ProviderConfig | None, str]:
    """The person's settings for the kind and the model asked, if their standing admits
    the turn; else the refusal in words. (llm/pg_trips.py asks the same in SQL.)"""
    if not standing.active:
        raise TurnError(
            "unauthenticated", "This account has been deactivated: ask an administrator."
        )
    cap = settings.LLM_MAX_CONCURRENT_REPLIES
    if cap and standing.streaming >= cap:
        raise TurnError(
            "busy",
            f"You already have {standing.streaming} replies being written, the most at once: "
            "wait for one to finish, or stop one.",
        )
    config = standing.config
    _check_configured(ask.kind, config)
    spec = registry.spec(ask.kind)
    return config, ask.model_name or (config.effective_model if config else spec.default_model)


def first_request(ask: Ask, model: str, config: ProviderConfig | None) -> Target:
    """The first choice for a new conversation with nothing attached (breakers not yet
    checked): what llm/pg_trips.py plans after its one statement."""
    return _target(ask.kind, model, config, _request(ask, model, config, []))


def _target(kind: str, model: str, config: ProviderConfig | None, request: ChatRequest) -> Target:
    server = breakers.address(config.effective_base_url) if config is not None else ""
    return Target(kind, model, config, request, server)


def _most_cost(ask: Ask, request: ChatRequest, now: dt.datetime) -> Decimal:
    """What the reply may cost at most, held against a budget while it streams."""
    if ask.user.budget() is None:
        return Decimal(0)
    # Twice the four-characters-a-token estimate and a little per message: tokenizers
    # and chat templates count more than the estimate, and a reservation must not be low.
    estimate = estimate_tokens(request.system) + sum(message_tokens(m) for m in request.messages)
    prompt = 2 * estimate + 16 * (len(request.messages) + 1)
    longest = request.max_tokens or DEFAULT_MAX_TOKENS
    return pricing.most(ask.kind, request.model, timezone.localdate(now), prompt, longest)


# --- the fallback chain ----------------------------------------------------------------


def fallbacks(ask: Ask, plan: Plan) -> list[Target | Attempt]:
    """The person's "if it fails" chain after the first choice: a Target for each step
    that can be asked, an Attempt (with why) for each that cannot. Only their own keys."""
    entries = list(
        FallbackEntry.objects.filter(user_id=ask.user.pk).values_list("provider", "model")
    )
    if not entries:
        return []
    configs = {
        c.kind: c
        for c in ProviderConfig.objects.filter(
            user_id=ask.user.pk, kind__in={kind for kind, _ in entries}
        )
    }
    tried = {(plan.first.kind, plan.first.model)}
    steps: list[Target | Attempt] = []
    for kind, named in entries:
        if kind not in registry.PROVIDERS:
            continue
        config = configs.get(kind)
        model = named or (config.effective_model if config else registry.spec(kind).default_model)
        if (kind, model) in tried:
            continue
        tried.add((kind, model))
        try:
            _check_configured(kind, config)
            attachments.check_vision(
                kind, model, any(m.images for m in plan.first.request.messages)
            )
        except TurnError as refusal:
            steps.append(Attempt(kind, model, refusal, 0.0))
            continue
        request = _request_for(ask, plan.first.request, model, config)
        steps.append(_target(kind, model, config, request))
    return steps


def gate(target: Target) -> Target:
    """The target with its breakers checked now (a probe claimed if one is due)."""
    return dataclasses.replace(
        target, blocked=breakers.gate(target.config, target.server, timezone.now())
    )


def failed(target: Target, error: TurnError) -> None:
    breakers.failed(target.config, target.server, error, timezone.now())


def _check_configured(kind: str, config: ProviderConfig | None) -> None:
    if kind == registry.LOCAL:
        return
    spec = registry.spec(kind)
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


def conversation_title(ask: Ask) -> str:
    return ask.text.strip().splitlines()[0][:TITLE_CHARS]


def _create_conversation(ask: Ask, now: dt.datetime) -> int:
    return turn_sql.insert_conversation(
        ask.user.pk, conversation_title(ask), ask.conversation_key, now
    )


def _conversation_for_key(ask: Ask) -> int:
    conversation, _ = Conversation.objects.get_or_create(
        user_id=ask.user.pk,
        external_key=ask.conversation_key,
        defaults={"title": conversation_title(ask)},
    )
    return conversation.pk


def _open(ask: Ask, conversation_id: int, now: dt.datetime) -> list[tuple[Any, ...]]:
    """Touch the person's conversation (which also locks its row until commit, so two
    sends cannot both pass the busy check) and read its newest messages, each with
    whether files came with it (in the same query)."""
    touched = Conversation.objects.filter(pk=conversation_id, user_id=ask.user.pk).update(
        updated_at=now
    )
    if not touched:
        raise TurnError("not_found", "That conversation does not exist, or it was deleted.")
    return list(
        Message.objects.filter(conversation_id=conversation_id)
        .order_by("-created_at", "-id")
        .annotate(has_files=Exists(Attachment.objects.filter(message_id=OuterRef("pk"))))
        .values_list("id", "role", "content", "status", "client_message_id", "has_files")[
            :HISTORY_ROWS
        ]
    )


def _replay(ask: Ask, conversation_id: int, user_message_id: int) -> Replay:
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
    finished = stored_reply(reply, render_html=ask.render_html)
    started = TurnStarted(
        conversation_id,
        reply.pk,
        user_message_id,
        reply.provider,
        reply.model,
        str(reply.compare_id) if reply.compare_id else "",
    )
    return Replay(started=started, finished=finished)


def stored_reply(message: Message, *, render_html: bool = True) -> TurnFinished:
    """A stored assistant message as the event that finished it."""
    error = (
        TurnError(message.error_code or "provider_error", message.error_message)
        if message.status == ERROR
        else None
    )
    return TurnFinished(
        conversation_id=message.conversation_id,
        message_id=message.pk,
        status=message.status,
        content=message.content,
        html=render.to_html(message.content) if render_html else "",
        provider=message.provider,
        model=message.model,
        input_tokens=message.input_tokens,
        output_tokens=message.output_tokens,
        cost=message.cost,
        ttft_ms=message.ttft_ms,
        latency_ms=message.latency_ms or 0.0,
        error=error,
        thinking=message.thinking,
        thinking_ms=message.thinking_ms,
        attempts=tuple(Attempt.from_dict(a) for a in message.attempts or () if isinstance(a, dict)),
        cached=message.cached,
    )


def _request(
    ask: Ask,
    model: str,
    config: ProviderConfig | None,
    rows: list[tuple[Any, ...]],
    files: Sequence[Attachment] = (),
) -> ChatRequest:
    """The system prompt always, the message with its files, then the newest earlier
    messages that fit the token budget (theirs while they fit too)."""
    system = ask.system if ask.system is not None else (config.system_prompt if config else "")
    current = (
        attachments.for_request(ask.text, files, ask.images)
        if files or ask.images
        else ChatMessage(role="user", content=ask.text)
    )
    budget = settings.LLM_HISTORY_TOKENS - estimate_tokens(system) - message_tokens(current)
    earlier: list[ChatMessage] = []
    if ask.history is not None:
        for sent in reversed(ask.history):
            budget -= message_tokens(sent)
            if budget < 0:
                break
            earlier.append(sent)
    else:
        stored = [
            (row_id, role, content, has_files)
            for row_id, role, content, status, _cid, has_files in rows
            if role in (USER, ASSISTANT) and content and status != STREAMING
        ]
        filed = (
            attachments.history(r[0] for r in stored if r[3]) if any(r[3] for r in stored) else {}
        )
        sees = registry.sees_images(ask.kind, model)
        for row_id, role, content, _has in stored:
            again = _again(role, content, filed.get(row_id, []), budget, sees)
            if again is None:
                break
            budget -= message_tokens(again)
            earlier.append(again)
    earlier.reverse()
    earlier.append(current)
    return _request_for(ask, ChatRequest(model=model, messages=tuple(earlier)), model, config)


def _again(
    role: Role, content: str, files: list[Attachment], budget: int, sees: bool
) -> ChatMessage | None:
    """An earlier message as it is sent again, or None when it no longer fits: with its
    files while they fit (images only for a model that reads them), else with a note
    that says they were attached."""
    if files:
        readable = [a for a in files if sees or a.kind != attachments.IMAGE]
        unread = [a for a in files if a not in readable]
        text = (
            attachments.left_out(content, unread, "this model cannot read images")
            if unread
            else content
        )
        cost = estimate_tokens(attachments.folded(text, readable))
        cost += attachments.IMAGE_TOKENS * attachments.images_in(readable)
        why = "the conversation is too long to send them again"
        if cost <= budget:
            try:
                return attachments.message(role, text, readable)
            except OSError:  # removed from storage behind the hub's back
                log.warning("an earlier attachment's file is missing", exc_info=True)
                why = "no longer stored"
        content = attachments.left_out(content, files, why)
    if estimate_tokens(content) > budget:
        return None
    return ChatMessage(role=role, content=content)


def _request_for(
    ask: Ask, asked: ChatRequest, model: str, config: ProviderConfig | None
) -> ChatRequest:
    """`asked`'s messages for `model`, with what the caller set or else `config`'s settings."""
    system = ask.system if ask.system is not None else (config.system_prompt if config else "")
    return ChatRequest(
        model=model,
        messages=asked.messages,
        system=system,
        temperature=ask.temperature
        if ask.temperature is not None
        else (config.temperature if config else None),
        max_tokens=ask.max_tokens
        if ask.max_tokens is not None
        else (config.max_tokens if config else None),
        top_p=config.top_p if config else None,
        stop=tuple(config.stop or ()) if config else (),
        thinking=config.thinking if config else "auto",
    )


# --- the finish trip -----------------------------------------------------------------


def finish(ask: Ask, plan: Plan, outcome: Outcome) -> TurnFinished:
    finished, now = finished_event(ask, plan, outcome)
    answered = outcome.answered
    answered_upstream = not outcome.cached and outcome.status != ERROR
    with transaction.atomic():
        turn_sql.store_reply(finished, plan.user_message_id, seq=outcome.seq, now=now)
        if answered_upstream and breakers.needs_reset(answered.config, answered.server):
            breakers.succeeded(answered.config, answered.server)
        limits.record_usage(
            user_id=ask.user.pk,
            day=timezone.localdate(now),
            provider=answered.kind,
            model=answered.model,
            input_tokens=finished.input_tokens,
            output_tokens=finished.output_tokens,
            cost=finished.cost,
            failed=outcome.status == ERROR,
        )
    return finished


def finished_event(
    ask: Ask, plan: Plan, outcome: Outcome, *, render_html: bool = True
) -> tuple[TurnFinished, dt.datetime]:
    """The event that ends the reply (tokens counted or estimated, cost, HTML unless the
    caller renders it itself), and now."""
    answered = outcome.answered
    if outcome.cached:
        input_tokens = output_tokens = 0
    elif outcome.usage is not None:
        input_tokens, output_tokens = outcome.usage.input_tokens, outcome.usage.output_tokens
    else:
        request = answered.request
        input_tokens = estimate_tokens(request.system) + sum(
            message_tokens(m) for m in request.messages
        )
        output_tokens = estimate_tokens(outcome.content) if outcome.content else 0
    now = timezone.now()
    day = timezone.localdate(now)
    cost = pricing.cost(answered.kind, answered.model, day, input_tokens, output_tokens)
    html = render.to_html(outcome.content) if ask.render_html and render_html else ""
    finished = TurnFinished(
        conversation_id=plan.conversation_id,
        message_id=plan.message_id,
        status=outcome.status,
        content=outcome.content,
        html=html,
        provider=answered.kind,
        model=answered.model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost=cost,
        ttft_ms=outcome.ttft_ms,
        latency_ms=outcome.latency_ms,
        error=outcome.error,
        finish_reason=outcome.finish_reason,
        thinking=outcome.thinking,
        thinking_ms=outcome.thinking_ms,
        attempts=outcome.attempts,
        cached=outcome.cached,
    )
    return finished, now


start_trip = trips.trip(start)
finish_trip = trips.trip(finish)
progress_trip = trips.trip(turn_sql.write_progress)
fallbacks_trip = trips.trip(fallbacks)
gate_trip = trips.trip(gate)
failed_trip = trips.trip(failed)
