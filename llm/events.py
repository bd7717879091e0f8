"""What a reply is made of, for every transport: its events and its one error type.

A reply's log is `TurnStarted`, then `TurnWaiting` while it is queued for a capped
server, `ThinkingDelta`… (a reasoning model's thinking) and `TextDelta`… as they come,
then `TurnFinished` (complete, stopped or failed). A turn refused before it starts
raises `TurnError` and has no log. Every transport builds its error body from
`TurnError.as_dict()`, so the words and the fields are the same on the WebSocket,
HTTP, SSE and MQTT (docs/api.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Self

from llm.providers.base import ProviderError, TextDelta, ThinkingDelta

__all__ = [
    "Event",
    "TextDelta",
    "ThinkingDelta",
    "TurnError",
    "TurnFinished",
    "TurnStarted",
    "TurnWaiting",
]

INTERNAL_MESSAGE = "Something went wrong on our side; your message is kept. Try again."


class TurnError(Exception):
    """Something a person is told, as `{"code", "message", "retry_after"?}`.

    Raised before a turn starts (nothing was streamed or stored); carried on a
    `TurnFinished` whose reply failed.
    """

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

    @classmethod
    def of(cls, error: TurnError) -> Self:
        """`error` as this class (a transport's own error shape), keeping its words."""
        if isinstance(error, cls):
            return error
        return cls(error.code, error.message, retry_after=error.retry_after)

    @classmethod
    def from_provider(cls, exc: ProviderError) -> TurnError:
        return cls(exc.code, exc.message, retry_after=exc.retry_after)

    @classmethod
    def internal(cls) -> TurnError:
        return cls("internal", INTERNAL_MESSAGE)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TurnError) and self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash((self.code, self.message))


@dataclass(frozen=True, slots=True)
class TurnStarted:
    conversation_id: int
    message_id: int
    user_message_id: int
    provider: str
    model: str
    compare_id: str = ""  # the columns of one compare share it

    def as_dict(self) -> dict[str, Any]:
        body = {
            "conversation_id": self.conversation_id,
            "message_id": self.message_id,
            "provider": self.provider,
            "model": self.model,
        }
        if self.compare_id:
            body["compare_id"] = self.compare_id
        return body


@dataclass(frozen=True, slots=True)
class TurnWaiting:
    """The reply is queued for a server at its concurrency cap: `ahead` will go first."""

    ahead: int


@dataclass(frozen=True, slots=True)
class Attempt:
    """A provider asked before the one that answered, and why it did not."""

    provider: str
    model: str
    error: TurnError
    ms: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "error": self.error.as_dict(),
            "ms": round(self.ms, 1),
        }

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> Attempt:
        error = body.get("error") or {}
        return cls(
            body.get("provider", ""),
            body.get("model", ""),
            TurnError(error.get("code", "provider_error"), error.get("message", "")),
            float(body.get("ms") or 0.0),
        )


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
    error: TurnError | None  # when status == "error"
    finish_reason: str = "stop"  # the provider's: "stop", "length", ...
    thinking: str = ""  # a reasoning model's thinking, apart from the answer
    thinking_ms: float | None = None
    attempts: tuple[Attempt, ...] = ()  # fallbacks: who failed before `provider` answered
    cached: bool = False  # played back from the person's reply cache

    def as_dict(self) -> dict[str, Any]:
        """The chat response body of docs/api.md (`error` only on a failed reply)."""
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
            "thinking": self.thinking,
            "thinking_ms": None if self.thinking_ms is None else round(self.thinking_ms, 1),
            "answered_by": {"provider": self.provider, "model": self.model},
            "attempts": [attempt.as_dict() for attempt in self.attempts],
            "cached": self.cached,
        }
        if self.error is not None:
            body["error"] = self.error.as_dict()
        return body

    def failure(self) -> TurnError:
        """Why a failed reply failed (a generic provider error if nothing was recorded)."""
        return self.error or TurnError("provider_error", "The reply failed.")


Event = TurnStarted | TurnWaiting | ThinkingDelta | TextDelta | TurnFinished
