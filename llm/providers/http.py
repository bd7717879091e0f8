"""Everything adapters share on the wire: the pooled session, SSE, timeouts, retries, the guard.

- `client()`: one pooled aiohttp session per event loop (and guard policy), closed when
  its loop shuts down its async generators (asyncio.run, asgiref, pytest-asyncio do).
- `stream_events()`: one HTTP request whose answer is server-sent events, parsed
  incrementally, with the first-byte and between-chunks timeouts, the reply's deadline,
  and caps on a line's and an event's size.
- `request_json()`: one HTTP request whose answer is a JSON document, refused past its cap.
- `with_retries()` / `call_with_retries()`: retry 429, 5xx, 529 and connection failures,
  only before the first token, honouring Retry-After, within ProviderOptions' budget;
  a stream's reply is cut off at its cap.
- `check_url()`: the outbound URL guard (guard.py), for forms when a base URL is saved;
  every socket the session opens is checked again on the address it connects to.
- `SSEParser` (sse.py) turns the bytes of a stream into events.

Every failure leaves as a `ProviderError` whose message is safe to show: no key, no
query string, at most a short summary of what the provider said.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import orjson

from llm.providers.base import (
    AuthFailed,
    BadRequest,
    ContextTooLong,
    Event,
    Ping,
    ProviderError,
    ProviderOptions,
    RateLimited,
    Refused,
    TextDelta,
    ThinkingDelta,
    TimedOut,
    TooLarge,
    Unavailable,
)

# The guard and the parser live in their own modules; callers may reach them from here.
from llm.providers.guard import GuardRefusal as GuardRefusal
from llm.providers.guard import PrivateHosts, guarded_socket
from llm.providers.guard import check_url as check_url
from llm.providers.sse import SSEEvent as SSEEvent
from llm.providers.sse import SSEParser, SSETooLarge
from llm.redaction import redact

T = TypeVar("T")

USER_AGENT = "Coppertone/0.1 (+aiohttp)"
MAX_ERROR_BODY = 64 * 1024
SUMMARY_CHARS = 160
# How long to wait for the end of the body after a stream's final event.
DRAIN_SECONDS = 1.0


class ProtocolError(ProviderError):
    """The provider answered with something that is not its documented wire format."""


class ConnectTimedOut(TimedOut):
    """No connection within the connect timeout: worth retrying, unlike a silent model."""


# --- one pooled session per event loop ---------------------------------------------

_sessions: dict[tuple[asyncio.AbstractEventLoop, PrivateHosts], aiohttp.ClientSession] = {}
_keepers: dict[tuple[asyncio.AbstractEventLoop, PrivateHosts], AsyncGenerator[None, None]] = {}


async def _keeper(
    key: tuple[asyncio.AbstractEventLoop, PrivateHosts],
) -> AsyncGenerator[None, None]:
    # An async generator the loop finalises in shutdown_asyncgens(), just before it
    # closes: the one hook asyncio offers to close a session with its loop.
    try:
        yield
    finally:
        session = _sessions.pop(key, None)
        _keepers.pop(key, None)
        if session is not None:
            await session.close()


async def client(private: PrivateHosts) -> aiohttp.ClientSession:
    """The shared session for the running loop; its sockets obey the guard policy."""
    loop = asyncio.get_running_loop()
    key = (loop, private)
    session = _sessions.get(key)
    if session is not None and not session.closed:
        return session
    for stale in [k for k in list(_sessions) if k[0].is_closed()]:
        _sessions.pop(stale, None)
        _keepers.pop(stale, None)
    connector = aiohttp.TCPConnector(
        limit=0,  # streams are long; the operator's workers bound concurrency, not us
        ttl_dns_cache=10,
        socket_factory=guarded_socket(private),
    )
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        headers={"User-Agent": USER_AGENT},
        trust_env=False,
    )
    _sessions[key] = session
    keeper = _keeper(key)
    _keepers[key] = keeper
    await keeper.__anext__()
    return session


# --- errors ------------------------------------------------------------------------


def summarize(text: str, secret: str = "") -> str:
    """A short, single-line, printable summary of an upstream message, keys removed."""
    if secret:
        text = text.replace(secret, "[key]")
    text = re.sub(r"\b(sk|key|AIza)[-_A-Za-z0-9]{12,}", "[key]", text)
    text = redact(text)  # every other key shape (hf_, cpt_, Bearer, URL passwords)
    text = re.sub(r"(https?://[^\s?\"']*)\?[^\s\"']*", r"\1", text)  # queries may carry keys
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = re.sub(r"[<>]", "", re.sub(r"\s+", " ", text)).strip()
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


def upstream_message(body: Any) -> tuple[str, str]:
    """(message, type) from the error shapes providers use."""
    if isinstance(body, list) and body:
        body = body[0]  # Gemini's stream endpoint wraps errors in a list
    if not isinstance(body, dict):
        return "", ""
    err = body.get("error", body)
    if isinstance(err, str):
        return err, ""
    if not isinstance(err, dict):
        return "", ""
    message = err.get("message") or body.get("detail") or body.get("message") or ""
    kind = err.get("type") or err.get("status") or err.get("code") or ""
    if not isinstance(message, str):
        message = json.dumps(message)
    return message, str(kind)


def _retry_delay_from_body(body: Any) -> float | None:
    # Gemini says how long to wait in google.rpc.RetryInfo: {"retryDelay": "37s"}.
    if isinstance(body, list) and body:
        body = body[0]
    details = body.get("error", {}).get("details", []) if isinstance(body, dict) else []
    for detail in details if isinstance(details, list) else []:
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            with contextlib.suppress(ValueError):
                return float(delay[:-1])
    return None


def retry_after(headers: Any, body: Any = None) -> float | None:
    """Seconds the provider asked us to wait (retry-after-ms, Retry-After, RetryInfo)."""
    ms = headers.get("retry-after-ms")
    if ms:
        with contextlib.suppress(ValueError):
            return max(0.0, float(ms) / 1000)
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            with contextlib.suppress(TypeError, ValueError):
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    return _retry_delay_from_body(body)


CONTEXT_WORDS = re.compile(
    r"context[_ ]length|context window|maximum context|prompt is too long|too many tokens"
    r"|input is too long|exceeds the maximum number of tokens|token limit",
    re.IGNORECASE,
)


def error_for_status(
    label: str,
    status: int,
    headers: Any,
    raw: bytes,
    *,
    secret: str = "",
    hint: str = "",
    model: str = "",
) -> ProviderError:
    """The ProviderError for an HTTP error answer, in words a person can act on."""
    text = raw.decode("utf-8", "replace")
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = None
    message, kind = upstream_message(body)
    looks_html = body is None and text.lstrip()[:1] == "<"
    said = summarize(message or ("" if looks_html else text), secret)
    detail = f" ({label} said: {said})" if said else ""
    wait = retry_after(headers, body)
    # Gemini answers a wrong key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID.
    bad_key = "API_KEY_INVALID" in text or kind == "UNAUTHENTICATED"
    if status in (401, 403) or bad_key or kind in ("authentication_error", "permission_error"):
        if not bad_key and (status == 403 or kind == "permission_error"):
            return AuthFailed(
                f"{label} refused this API key access ({status}): check the key and its "
                "permissions in Settings → LLM."
            )
        return AuthFailed(f"{label} rejected the API key: check it in Settings → LLM.")
    if kind == "insufficient_quota":
        # A 429 about billing: waiting does not help, so it is neither retried nor timed.
        return BadRequest(
            f"{label} says this account has run out of credit or quota: check its plan and "
            "billing with the provider."
        )
    if status == 429:
        when = f"in {round(wait)} s" if wait is not None else "in a moment"
        return RateLimited(
            f"{label} is limiting how often you can call it; try again {when}.{detail}",
            retry_after=wait,
        )
    if status == 413 or CONTEXT_WORDS.search(message):
        return ContextTooLong(
            f"The conversation is too long for this model{detail}. Start a new "
            "conversation or choose a model with a longer context."
        )
    if status == 404:
        asked = f" for the model {summarize(model)!r}" if model else ""
        return BadRequest(
            f"{label} answered 404 Not Found{asked}{detail}: check the model name and the "
            f"base URL in Settings → LLM.{hint}"
        )
    if 300 <= status < 400:
        return ProtocolError(
            f"{label} answered with a redirect ({status}), which Coppertone does not follow: "
            "check the base URL in Settings → LLM."
        )
    if status == 529 or kind == "overloaded_error":
        return Unavailable(
            f"{label} is overloaded right now; try again in a moment.", retry_after=wait
        )
    if status >= 500 or status == 408:
        return Unavailable(
            f"{label} had a problem answering ({status}){detail}; try again in a moment.",
            retry_after=wait,
        )
    if looks_html:
        return ProtocolError(
            f"{label} returned an HTML page ({status}) instead of JSON: is the base URL right?"
        )
    return BadRequest(f"{label} refused the request ({status}){detail}.")


def error_in_stream(label: str, body: Any, *, secret: str = "") -> ProviderError:
    """The ProviderError for an error event sent in the middle of a stream."""
    message, kind = upstream_message(body)
    said = summarize(message, secret)
    detail = f" ({label} said: {said})" if said else ""
    statuses = {
        "overloaded_error": 529,
        "rate_limit_error": 429,
        "rate_limit_exceeded": 429,
        "RESOURCE_EXHAUSTED": 429,
        "authentication_error": 401,
        "permission_error": 403,
        "invalid_request_error": 400,
        "INVALID_ARGUMENT": 400,
        "not_found_error": 404,
        "UNAVAILABLE": 503,
    }
    status = statuses.get(kind)
    if status is not None:
        return error_for_status(label, status, {}, json.dumps(body).encode(), secret=secret)
    return Unavailable(f"{label} stopped with an error in the middle of the reply{detail}.")


def _html_error(label: str) -> ProtocolError:
    return ProtocolError(
        f"{label} returned an HTML page instead of JSON: is the base URL right? It should be "
        "the API's address, not a web page."
    )


def _looks_like_sse(first: bytes) -> bool:
    return first.lstrip().startswith((b"data:", b"event:", b"id:", b":"))


def _is_html(content_type: str, first: bytes) -> bool:
    return "html" in content_type or first.lstrip()[:1] == b"<"


# --- requests -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Who is called and under which operator options: for messages and timeouts."""

    label: str
    options: ProviderOptions
    # The key, so that an upstream echo of it is removed from messages; never in a repr.
    secret: str = field(default="", repr=False)
    not_found_hint: str = ""  # appended to a 404's message: what the adapter suspects
    model: str = ""  # the model asked for, named in a 404's message


def _host(url: str) -> str:
    return urlsplit(url).hostname or "the provider"


async def _open(
    target: Target,
    method: str,
    url: str,
    headers: dict[str, str],
    body: Any,
    deadline: float | None = None,
) -> aiohttp.ClientResponse:
    """Send the request; return the response once its status line and headers came."""
    opts = target.options
    private = PrivateHosts.parse(opts.private_hosts)
    check_url(url, private=private)
    session = await client(private)
    timeout = aiohttp.ClientTimeout(total=None, connect=opts.connect_timeout)
    wait = opts.first_byte_timeout
    left = wait if deadline is None else deadline - time.monotonic()
    try:
        async with asyncio.timeout(max(0.0, min(wait, left))):
            return await session.request(
                method,
                url,
                headers=headers,
                json=body,
                allow_redirects=False,
                timeout=timeout,
            )
    except aiohttp.ConnectionTimeoutError:
        raise ConnectTimedOut(
            f"Could not connect to {target.label} within {opts.connect_timeout:g} s: is the "
            "base URL right and the server running?"
        ) from None
    except TimeoutError:
        if left < wait:
            raise past_deadline(target) from None
        raise TimedOut(
            f"{target.label} did not start answering within {opts.first_byte_timeout:g} s; "
            "try again in a moment."
        ) from None
    except aiohttp.InvalidURL:
        raise Refused("The base URL is not a valid URL: check it in Settings → LLM.") from None
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, GuardRefusal):
            raise Refused(
                f"Coppertone will not connect to {_host(url)}: {exc.os_error.reason}."
            ) from None
        raise Unavailable(
            f"Could not connect to {target.label} at {_host(url)}: is the base URL right and "
            "the server running?"
        ) from None
    except aiohttp.ClientError:
        raise Unavailable(
            f"The connection to {target.label} failed before it answered; try again."
        ) from None


async def _read_error(target: Target, response: aiohttp.ClientResponse) -> ProviderError:
    try:
        async with asyncio.timeout(target.options.idle_timeout):
            raw = await response.content.read(MAX_ERROR_BODY)
    except (TimeoutError, aiohttp.ClientError):
        raw = b""
    return error_for_status(
        target.label,
        response.status,
        response.headers,
        raw,
        secret=target.secret,
        hint=target.not_found_hint,
        model=target.model,
    )


def past_deadline(target: Target) -> TimedOut:
    return TimedOut(
        f"{target.label} took longer than {target.options.turn_deadline:g} s, the most one "
        "reply may take; it was stopped there and what arrived is kept. Try again."
    )


def size_words(limit: int) -> str:
    """1048576 -> "1 MB": a cap as a person reads it."""
    for unit, size in (("MB", 1024 * 1024), ("KB", 1024)):
        if limit >= size:
            return f"{limit / size:.3g} {unit}"
    return f"{limit} bytes"


def _too_large(target: Target, exc: SSETooLarge) -> TooLarge:
    what = "a line" if exc.what == "line" else "one event"
    return TooLarge(
        f"{target.label} sent {what} longer than {size_words(exc.limit)}, more than "
        "Coppertone accepts; the reply was stopped there and what arrived is kept. Is the "
        "base URL right?"
    )


def _dropped(target: Target) -> Unavailable:
    return Unavailable(
        f"The connection to {target.label} dropped in the middle of the reply; what arrived "
        "is kept. Try again."
    )


async def stream_events(
    target: Target,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    body: Any,
    is_final: Callable[[SSEEvent], bool] | None = None,
    deadline: float | None = None,
) -> AsyncGenerator[SSEEvent, None]:
    """One streaming request: yield its server-sent events as they arrive.

    After the event `is_final` recognises (OpenAI's [DONE], Anthropic's message_stop)
    the stream ends, even if the server holds the body open. Closing the generator
    closes the connection at once (Stop must reach the provider). `deadline` (monotonic
    time; default: the options' turn deadline from now) ends a stream that never stops,
    however steadily its bytes trickle in.
    """
    opts = target.options
    started = time.monotonic()
    if deadline is None:
        deadline = started + opts.turn_deadline
    response = await _open(target, method, url, headers, body, deadline)
    finished = False
    try:
        if response.status != 200:
            raise await _read_error(target, response)
        content_type = response.headers.get("Content-Type", "").lower()
        parser = SSEParser(max_line=opts.max_sse_line_bytes, max_event=opts.max_event_bytes)
        first = True
        while True:
            now = time.monotonic()
            if first:
                wait = max(0.0, opts.first_byte_timeout - (now - started))
            else:
                wait = opts.idle_timeout
            left = deadline - now
            try:
                async with asyncio.timeout(max(0.0, min(wait, left))):
                    chunk = await response.content.readany()
            except TimeoutError:
                if left < wait:
                    raise past_deadline(target) from None
                if first:
                    raise TimedOut(
                        f"{target.label} did not start answering within "
                        f"{opts.first_byte_timeout:g} s; try again in a moment."
                    ) from None
                raise TimedOut(
                    f"{target.label} went silent for {opts.idle_timeout:g} s in the middle of "
                    "the reply; what arrived is kept. Try again."
                ) from None
            except aiohttp.ClientError:
                raise _dropped(target) from None
            if first and chunk:
                if _is_html(content_type, chunk):
                    raise _html_error(target.label)
                # Judge by the bytes too: some proxies relabel a stream as text/plain.
                if "event-stream" not in content_type and not _looks_like_sse(chunk):
                    raise await _not_a_stream(target, response, chunk)
                first = False
            oversized: SSETooLarge | None = None
            try:
                events = parser.feed(chunk) if chunk else parser.close()
            except SSETooLarge as exc:
                # The whole events before the oversized one are part of the reply.
                events, oversized = exc.events, exc
            for event in events:
                yield event
                if is_final is not None and is_final(event):
                    if oversized is None:
                        wait = min(DRAIN_SECONDS, opts.idle_timeout)
                        finished = await _drain(response, wait)
                    return
            if oversized is not None:
                raise _too_large(target, oversized)
            if not chunk:
                finished = True
                return
    finally:
        if finished:
            response.release()
        else:
            response.close()


async def _drain(response: aiohttp.ClientResponse, wait: float) -> bool:
    """Read what follows the final event, so the connection can go back to the pool."""
    try:
        async with asyncio.timeout(wait):
            while await response.content.readany():
                pass
    except (TimeoutError, aiohttp.ClientError):
        return False  # the caller closes the connection instead
    return True


async def _not_a_stream(
    target: Target, response: aiohttp.ClientResponse, first: bytes
) -> ProviderError:
    # Some servers answer a stream request with a JSON error and status 200.
    with contextlib.suppress(TimeoutError, aiohttp.ClientError):
        async with asyncio.timeout(target.options.idle_timeout):
            first += await response.content.read(MAX_ERROR_BODY)
    try:
        body = json.loads(first)
    except ValueError:
        return ProtocolError(
            f"{target.label} did not answer with a stream of events: is the base URL right?"
        )
    if isinstance(body, dict | list) and upstream_message(body)[0]:
        return error_in_stream(target.label, body, secret=target.secret)
    return ProtocolError(
        f"{target.label} did not answer with a stream of events: is the base URL right?"
    )


async def request_json(
    target: Target, method: str, url: str, *, headers: dict[str, str], body: Any = None
) -> Any:
    """One request whose answer is a JSON document, read whole within the timeouts and caps."""
    deadline = time.monotonic() + target.options.turn_deadline
    response = await _open(target, method, url, headers, body)
    try:
        if response.status != 200:
            raise await _read_error(target, response)
        raw = await _read_body(target, response, deadline)
        if _is_html(response.headers.get("Content-Type", "").lower(), raw[:64]):
            raise _html_error(target.label)
        try:
            return json.loads(raw)
        except ValueError:
            raise ProtocolError(
                f"{target.label} sent an answer Coppertone could not read (not valid JSON): "
                "is the base URL right?"
            ) from None
    finally:
        response.close()


async def _read_body(target: Target, response: aiohttp.ClientResponse, deadline: float) -> bytes:
    """The whole body, refused as soon as it is known to pass the cap (not read to its end)."""
    opts = target.options
    cap = opts.max_body_bytes
    too_large = TooLarge(
        f"{target.label} sent an answer larger than {size_words(cap)}, more than Coppertone "
        "reads: is the base URL right?"
    )
    if (response.content_length or 0) > cap:
        raise too_large
    blocks: list[bytes] = []
    size = 0
    while True:
        left = deadline - time.monotonic()
        try:
            async with asyncio.timeout(max(0.0, min(opts.idle_timeout, left))):
                block = await response.content.readany()
        except TimeoutError:
            if left < opts.idle_timeout:
                raise TimedOut(
                    f"{target.label} took longer than {opts.turn_deadline:g} s to answer; "
                    "try again."
                ) from None
            raise TimedOut(
                f"{target.label} went silent for {opts.idle_timeout:g} s while answering; "
                "try again."
            ) from None
        except aiohttp.ClientError:
            raise Unavailable(
                f"The connection to {target.label} dropped while it answered; try again."
            ) from None
        if not block:
            return b"".join(blocks)
        size += len(block)
        if size > cap:
            raise too_large
        blocks.append(block)


async def model_list(
    target: Target, url: str, *, headers: dict[str, str], field: str
) -> list[dict[str, Any]]:
    """The entries of a model-list answer, `{field: [{...}, ...]}`, as every API shapes it."""
    data = await request_json(target, "GET", url, headers=headers)
    items = data.get(field) if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ProtocolError(
            f"{target.label} answered the model list in a shape Coppertone does not know: "
            "is the base URL right?"
        )
    return [item for item in items if isinstance(item, dict)]


async def timed_ping(list_models: Callable[[], Awaitable[list[str]]]) -> Ping:
    """Ping by listing the models: proves the URL, the key and the API in one call."""
    started = time.monotonic()
    try:
        models = await list_models()
    except ProviderError as exc:
        return _failed_ping(started, exc)
    count = len(models)
    detail = f"{count} model{'s' if count != 1 else ''} available"
    return Ping(ok=True, latency_ms=_since(started), detail=detail, models=count)


async def timed_call(call: Callable[[], Awaitable[str]]) -> Ping:
    """One call as a Ping: its words when it worked, the ProviderError's when not."""
    started = time.monotonic()
    try:
        detail = await call()
    except ProviderError as exc:
        return _failed_ping(started, exc)
    return Ping(ok=True, latency_ms=_since(started), detail=detail)


def _since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _failed_ping(started: float, exc: ProviderError) -> Ping:
    return Ping(ok=False, latency_ms=_since(started), detail=exc.message, error=exc.as_dict())


def parse_json(target: Target, data: str) -> Any:
    """One event's JSON payload, or a ProtocolError a person can understand."""
    try:
        return orjson.loads(data)  # about 4x json.loads on a token's chunk
    except ValueError:
        raise ProtocolError(
            f"{target.label} sent part of the reply that Coppertone could not read "
            "(malformed JSON); what arrived is kept. Try again."
        ) from None


def ended_early(target: Target) -> Unavailable:
    return Unavailable(f"{target.label} ended the reply early; what arrived is kept. Try again.")


# --- retries -------------------------------------------------------------------------

RETRYABLE = (RateLimited, Unavailable, ConnectTimedOut)


def _pause(attempt: int, exc: ProviderError) -> float:
    if exc.retry_after is not None:
        return exc.retry_after
    return min(4.0, 0.25 * 2**attempt) * random.uniform(0.8, 1.2)


def _should_retry(exc: ProviderError, attempt: int, waited: float, opts: ProviderOptions) -> float:
    """Seconds to wait before the next attempt, or -1 to give up."""
    if not isinstance(exc, RETRYABLE) or attempt >= opts.max_retries:
        return -1
    pause = _pause(attempt, exc)
    return pause if waited + pause <= opts.max_retry_wait else -1


async def with_retries(
    opts: ProviderOptions, attempt: Callable[[float], AsyncGenerator[Event, None]]
) -> AsyncIterator[Event]:
    """Run `attempt` again on a passing failure, but never once a token was delivered.

    Every attempt is given the same deadline (monotonic time): the turn deadline counts
    from the first request, retries included. A reply that grows past its cap (thinking
    and answer together: either can be endless) is cut there: what fits is delivered,
    then TooLarge.
    """
    deadline = time.monotonic() + opts.turn_deadline
    room = opts.max_reply_chars
    waited = 0.0
    tries = 0
    while True:
        delivered = False
        try:
            async with contextlib.aclosing(attempt(deadline)) as events:
                async for event in events:
                    if isinstance(event, TextDelta | ThinkingDelta):
                        delivered = True
                        if len(event.text) > room:
                            if room:
                                yield type(event)(event.text[:room])
                            raise TooLarge(
                                f"The reply grew past {opts.max_reply_chars:,} characters, "
                                "the most Coppertone keeps of one reply; it was stopped "
                                "there and what arrived is kept."
                            )
                        room -= len(event.text)
                    yield event
            return
        except ProviderError as exc:
            pause = -1.0 if delivered else _should_retry(exc, tries, waited, opts)
            if pause >= 0 and time.monotonic() + pause >= deadline:
                pause = -1.0
            if pause < 0:
                raise
        tries += 1
        waited += pause
        await asyncio.sleep(pause)


async def call_with_retries(opts: ProviderOptions, call: Callable[[], Awaitable[T]]) -> T:
    waited = 0.0
    tries = 0
    while True:
        try:
            return await call()
        except ProviderError as exc:
            pause = _should_retry(exc, tries, waited, opts)
            if pause < 0:
                raise
        tries += 1
        waited += pause
        await asyncio.sleep(pause)
