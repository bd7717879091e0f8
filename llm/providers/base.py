"""The provider contract: what every adapter takes, yields and raises.

Nothing here imports Django. An adapter is given a `ChatRequest`, the
`Credentials` to use for this one call, and the `ProviderOptions` the operator
chose; it yields `TextDelta` events as the answer arrives (`ThinkingDelta` for a
reasoning model's thinking, never mixed into the answer's text), one `Usage` when
the provider reports it, and a final `Done`. Failures leave an adapter only as a
`ProviderError` subclass whose message is safe to show a person.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import ClassVar, Literal

Role = Literal["system", "user", "assistant"]

# ChatRequest.thinking: "auto" leaves it to the model; "show" asks it to think and
# stream the thinking; "skip" asks it not to think, where the API has a way to say so.
THINKING_MODES = ("auto", "show", "skip")


@dataclass(frozen=True, slots=True)
class Image:
    """An image a vision model is shown: its media type (sniffed) and its bytes as base64."""

    media_type: str
    data: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str
    # Shown with the text, in each adapter's own format; attached text files are already
    # folded into `content`.
    images: tuple[Image, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: tuple[ChatMessage, ...]
    system: str = ""
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()  # sequences that end the reply where they would appear
    thinking: str = "auto"  # one of THINKING_MODES


@dataclass(frozen=True, slots=True)
class Credentials:
    """What one call needs to reach the provider. Built just before the call."""

    api_key: str = ""
    base_url: str = ""
    # Azure OpenAI's `api-version` query parameter; empty elsewhere.
    api_version: str = ""

    def __repr__(self) -> str:  # never let a key reach a log line or a traceback
        hint = f"…{self.api_key[-4:]}" if self.api_key else ""
        return f"Credentials(api_key={hint!r}, base_url={self.base_url!r})"


@dataclass(frozen=True, slots=True)
class ProviderOptions:
    """Operator settings every adapter obeys (coppertone/settings.py, LLM_*)."""

    connect_timeout: float = 10.0
    first_byte_timeout: float = 60.0
    idle_timeout: float = 60.0
    max_retries: int = 2
    max_retry_wait: float = 10.0
    # The most one reply may take from the request to its last byte, drip-fed or not.
    turn_deadline: float = 600.0
    # What a provider may send before it is cut off: a hostile server must not be able
    # to hold the event loop or exhaust memory (llm/providers/sse.py).
    max_sse_line_bytes: int = 1024 * 1024
    max_event_bytes: int = 1024 * 1024
    max_reply_chars: int = 1_000_000
    max_body_bytes: int = 4 * 1024 * 1024  # a non-streamed answer, such as a model list
    # The operator's LLM_PRIVATE_HOSTS: private addresses a base URL may reach.
    private_hosts: tuple[str, ...] = ()
    local_model_path: str = ""
    local_model_threads: int = 0
    local_model_context: int = 2048


# --- events ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    """Reasoning text, streamed before (or between) the answer's TextDeltas."""

    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class Done:
    finish_reason: str = "stop"


Event = TextDelta | ThinkingDelta | Usage | Done


@dataclass(frozen=True, slots=True)
class Ping:
    ok: bool
    latency_ms: float
    detail: str = ""
    models: int | None = None
    # When not ok: the ProviderError's body, {"code", "message", "retry_after"?}.
    error: dict[str, object] | None = None


# --- errors ------------------------------------------------------------------


class ProviderError(Exception):
    """A failure a person can act on. `message` never holds a key or a URL query."""

    code: ClassVar[str] = "provider_error"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def as_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code, "message": self.message}
        if self.retry_after is not None:
            body["retry_after"] = round(self.retry_after)
        return body


class AuthFailed(ProviderError):
    code = "provider_auth"


class RateLimited(ProviderError):
    code = "provider_rate_limited"


class TimedOut(ProviderError):
    code = "provider_timeout"


class Unavailable(ProviderError):
    code = "provider_unavailable"


class BadRequest(ProviderError):
    code = "provider_error"


class ContextTooLong(BadRequest):
    pass


class TooLarge(ProviderError):
    """The provider sent more than the operator's caps allow (a line, an event, a reply)."""

    code = "provider_error"


class Refused(ProviderError):
    """The provider declined to answer (content policy), or the URL guard refused the host."""

    code = "provider_error"


# --- the contract ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """Registry metadata: what forms, auto-detection and the settings page read."""

    kind: str
    label: str
    description: str
    default_model: str
    default_base_url: str = ""
    needs_key: bool = True
    has_base_url: bool = True
    # Lower-case model-name prefixes that select this kind when no provider is named.
    model_prefixes: tuple[str, ...] = ()
    extra_fields: tuple[str, ...] = field(default=())
    # Replies at once per upstream base URL, across all users; 0 = no cap. A local
    # server runs a few at a time and queues (or drops) the rest.
    default_max_concurrent: int = 0
    # How `Provider.keep_alive` keeps the model loaded: "" = not offered, "ollama" =
    # Ollama's native load request, "one_token" = a chat request for one token.
    keep_alive: str = ""
    # How an OpenAI-dialect server is asked to think or not (ChatRequest.thinking):
    # "" = no way, "enable_thinking" (DashScope), "chat_template_kwargs" (vLLM,
    # llama.cpp: the chat template's enable_thinking), "reasoning_effort" (Ollama).
    thinking_switch: str = ""
    # Lower-case model-name prefixes that read images; ("",) = every model (the server
    # decides, as for local servers and deployments); () = none.
    vision_models: tuple[str, ...] = ()


class Provider(ABC):
    kind: ClassVar[str]
    needs_key: ClassVar[bool] = True

    def __init__(self, spec: ProviderSpec, options: ProviderOptions) -> None:
        self.spec = spec
        self.options = options

    @abstractmethod
    def stream(self, request: ChatRequest, creds: Credentials) -> AsyncIterator[Event]:
        """Yield the reply as it arrives; closing the iterator closes the upstream request."""

    @abstractmethod
    async def list_models(self, creds: Credentials) -> list[str]: ...

    @abstractmethod
    async def ping(self, creds: Credentials) -> Ping: ...

    async def keep_alive(self, creds: Credentials, model: str, minutes: int) -> Ping:
        """Load `model` and keep it loaded for `minutes`; ok False where not offered."""
        return keep_alive_refused(self.spec.label)


def keep_alive_refused(label: str) -> Ping:
    error = BadRequest(
        f"Keep-alive is for local servers (Ollama, LM Studio, llama.cpp, vLLM); {label} "
        "keeps its models loaded itself."
    )
    return Ping(ok=False, latency_ms=0.0, detail=error.message, error=error.as_dict())
