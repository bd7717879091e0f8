"""The shared HTTP layer: the outbound URL guard, SSE parsing, the session, error words."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from email.utils import formatdate

import aiohttp
import pytest

from llm.providers import guard, http, registry
from llm.providers.base import (
    AuthFailed,
    ChatMessage,
    ChatRequest,
    ContextTooLong,
    Credentials,
    ProviderOptions,
    RateLimited,
    Refused,
    Unavailable,
)
from llm.providers.guard import PrivateHosts, check_url
from llm.providers.sse import SSEEvent, SSEParser
from tests.fakes.openai_server import FakeOpenAI
from tests.providers.conftest import FAST, collect

PRIVATE_OFF = ProviderOptions(
    connect_timeout=2.0, first_byte_timeout=1.0, idle_timeout=0.5, private_hosts=()
)
NONE = PrivateHosts()
EVERY = PrivateHosts.parse(("0.0.0.0/0", "::/0"))  # every private address allowed


def this_machine() -> list[str]:
    """This machine's own name, where it resolves to a loopback or private address."""
    name = socket.gethostname()
    try:
        found = {str(info[4][0]) for info in socket.getaddrinfo(name, None)}
    except OSError:
        return []
    private = all(not ipaddress.ip_address(a.split("%")[0]).is_global for a in found)
    return [name] if found and private else []


def ask() -> ChatRequest:
    return ChatRequest(model="gpt-4o", messages=(ChatMessage("user", "hi"),))


# --- the guard, on the text -----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.169.254:80/v1",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://METADATA.google.internal./v1",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/v1",
        "http://[fe80::1]/v1",
        "http://100.100.100.200/latest/meta-data/",
    ],
)
@pytest.mark.parametrize("private", [NONE, EVERY])
def test_metadata_and_link_local_are_always_refused(url: str, private: PrivateHosts) -> None:
    with pytest.raises(Refused) as caught:
        check_url(url, private=private)
    assert "Coppertone will not connect to" in caught.value.message


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/v1", "file:///etc/passwd", "gopher://x", "example.com/v1", "//x/v1"],
)
def test_only_http_and_https(url: str) -> None:
    with pytest.raises(Refused) as caught:
        check_url(url, private=EVERY)
    assert caught.value.message in (
        "The base URL must start with http:// or https://.",
        "The base URL has no host name.",
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:11434/v1",
        "http://localhost:1234/v1",
        "http://app.localhost/v1",
        "http://10.0.0.5/v1",
        "http://192.168.1.20:8080/v1",
        "http://172.16.3.4/v1",
        "http://[::1]:8000/v1",
        "http://0.0.0.0:11434/v1",
    ],
)
def test_private_and_loopback_only_when_allowed(url: str) -> None:
    with pytest.raises(Refused) as caught:
        check_url(url, private=NONE)
    assert "LLM_PRIVATE_HOSTS" in caught.value.message
    check_url(url, private=EVERY)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1",
        "https://api.anthropic.com",
        "https://generativelanguage.googleapis.com/v1beta",
        "https://my-resource.openai.azure.com",
        "http://8.8.8.8/v1",
    ],
)
def test_public_hosts_pass(url: str) -> None:
    check_url(url, private=NONE)


def test_credentials_in_the_url_are_refused() -> None:
    with pytest.raises(Refused) as caught:
        check_url("https://user:sk-secret@api.openai.com/v1", private=NONE)
    assert "sk-secret" not in caught.value.message
    assert "API key field" in caught.value.message


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:11434/v1", True),
        ("http://127.0.0.1:6379/v1", False),  # same host, another port
        ("http://localhost:11434/v1", True),
        ("http://10.1.2.3/v1", True),
        ("http://10.2.0.1/v1", False),
        ("http://[::1]:8080/v1", True),
        ("http://[::1]:8081/v1", False),
    ],
)
def test_the_allowlist_names_addresses_networks_and_ports(url: str, allowed: bool) -> None:
    listed = PrivateHosts.parse(("127.0.0.1:11434", "10.1.0.0/16", "[::1]:8080"))
    if allowed:
        check_url(url, private=listed)
    else:
        with pytest.raises(Refused, match="LLM_PRIVATE_HOSTS"):
            check_url(url, private=listed)


@pytest.mark.parametrize(
    "url",
    [
        "http://[64:ff9b::a00:1]/v1",  # NAT64 of 10.0.0.1
        "http://[64:ff9b::7f00:1]/v1",  # NAT64 of 127.0.0.1
        "http://[::10.0.0.1]/v1",  # IPv4-compatible
        "http://[::127.0.0.1]/v1",
        "http://[2002:a00:1::]/v1",  # 6to4 of 10.0.0.1
        "http://[fec0::1]/v1",  # site-local
        "http://[64:ff9b::a9fe:a9fe]/v1",  # NAT64 of the metadata address
    ],
)
def test_ipv6_forms_of_private_addresses_are_refused(url: str) -> None:
    with pytest.raises(Refused):
        check_url(url, private=NONE)


@pytest.mark.parametrize("entry", ["nonsense", "10.0.0.0/33", "127.0.0.1:port"])
def test_a_malformed_allowlist_entry_is_explained(entry: str) -> None:
    with pytest.raises(ValueError, match="127.0.0.1:11434"):
        PrivateHosts.parse((entry,))


def test_a_bad_port_is_refused_in_words() -> None:
    with pytest.raises(Refused, match="not a valid URL"):
        check_url("http://example.com:99999/v1", private=NONE)


# --- the guard, at call time and at connect time ------------------------------------


async def test_a_metadata_base_url_is_refused_at_call_time() -> None:
    creds = Credentials(api_key="sk-x", base_url="http://169.254.169.254/v1")
    out = await collect(registry.create("openai", FAST).stream(ask(), creds))
    assert isinstance(out.error, Refused)
    assert "metadata" in out.error.message


async def test_loopback_is_refused_when_private_hosts_are_off(fake_openai: FakeOpenAI) -> None:
    out = await collect(
        registry.create("openai", PRIVATE_OFF).stream(ask(), fake_openai.credentials())
    )
    assert isinstance(out.error, Refused)
    assert fake_openai.requests == []


async def test_loopback_is_allowed_when_private_hosts_are_on(fake_openai: FakeOpenAI) -> None:
    out = await collect(registry.create("openai", FAST).stream(ask(), fake_openai.credentials()))
    assert out.error is None and out.text


async def test_a_name_that_resolves_to_loopback_is_refused_at_connect_time(
    fake_openai: FakeOpenAI,
) -> None:
    # 127.0.0.1 written in hex, and this machine's own name: both pass the text check;
    # only the address the socket would reach gives them away.
    for host in ("0x7f000001", *this_machine()):
        creds = fake_openai.credentials(base_url=f"http://{host}:{fake_openai.port}/v1")
        check_url(creds.base_url, private=NONE)  # the text alone looks public
        out = await collect(registry.create("openai", PRIVATE_OFF).stream(ask(), creds))
        assert isinstance(out.error, Refused), host
        assert "private or loopback" in out.error.message
    assert fake_openai.requests == []


async def test_an_url_aiohttp_cannot_use_is_refused_in_words() -> None:
    creds = Credentials(api_key="sk-x", base_url="http://2130706433/v1")
    out = await collect(registry.create("openai", FAST).stream(ask(), creds))
    assert isinstance(out.error, Refused)
    assert "not a valid URL" in out.error.message


async def test_the_session_itself_refuses_localhost(fake_openai: FakeOpenAI) -> None:
    # Even a caller that skipped check_url cannot reach a refused address.
    session = await http.client(private=NONE)
    with pytest.raises(aiohttp.ClientConnectorError) as caught:
        await session.get(f"http://localhost:{fake_openai.port}/v1/models")
    assert isinstance(caught.value.os_error, guard.GuardRefusal)
    assert fake_openai.requests == []


async def test_redirects_are_not_followed(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail(307, body="moved")
    out = await collect(registry.create("openai", FAST).stream(ask(), fake_openai.credentials()))
    assert isinstance(out.error, http.ProtocolError)
    assert "redirect" in out.error.message and "does not follow" in out.error.message
    assert len(fake_openai.requests) == 1


def test_connect_timeout_in_its_own_words() -> None:
    # A listener whose accept queue is full: the kernel drops new SYNs, so connect hangs.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(8):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    options = ProviderOptions(connect_timeout=0.3, max_retries=0, private_hosts=("127.0.0.0/8",))
    creds = Credentials(api_key="sk-x", base_url=f"http://127.0.0.1:{port}/v1")
    try:
        out = asyncio.run(collect(registry.create("openai", options).stream(ask(), creds)))
    finally:
        for sock in [*fillers, server]:
            sock.close()
    assert isinstance(out.error, http.ConnectTimedOut)
    assert "Could not connect to OpenAI within 0.3 s" in out.error.message


async def test_a_stream_labelled_text_plain_is_still_read(fake_openai: FakeOpenAI) -> None:
    # A proxy in front of a local server relabels the stream; the bytes are still SSE.
    fake_openai.reply("relabelled", content_type="text/plain; charset=utf-8")
    out = await collect(registry.create("openai", FAST).stream(ask(), fake_openai.credentials()))
    assert out.error is None
    assert out.text == "relabelled"


async def test_a_json_document_instead_of_a_stream_is_named(fake_openai: FakeOpenAI) -> None:
    target = http.Target("Proxy", FAST)
    url = f"{fake_openai.origin}/v1/models"
    headers = {"Authorization": f"Bearer {fake_openai.api_key}"}
    with pytest.raises(http.ProtocolError, match="did not answer with a stream of events"):
        async for _ in http.stream_events(target, "GET", url, headers=headers, body=None):
            pass


# --- the pooled session -----------------------------------------------------------------


def test_one_session_per_loop_closed_with_its_loop() -> None:
    async def grab() -> tuple[aiohttp.ClientSession, aiohttp.ClientSession]:
        return await http.client(EVERY), await http.client(EVERY)

    first, again = asyncio.run(grab())
    assert first is again
    assert first.closed  # asyncio.run finalised it with the loop
    second, _ = asyncio.run(grab())
    assert second is not first


async def test_finished_streams_reuse_one_connection(fake_openai: FakeOpenAI) -> None:
    adapter = registry.create("openai", FAST)
    for text in ("first", "second", "third"):
        fake_openai.reply(text)
        out = await collect(adapter.stream(ask(), fake_openai.credentials()))
        assert out.text == text
    ports = {r.peer_port for r in fake_openai.chat_requests}
    assert len(ports) == 1  # one pooled connection, no new handshake per reply


async def test_a_stopped_stream_does_not_return_its_connection(fake_openai: FakeOpenAI) -> None:
    adapter = registry.create("openai", FAST)
    fake_openai.reply(chunks=["word "] * 100, delay=0.05)
    events = adapter.stream(ask(), fake_openai.credentials())
    await anext(aiter(events))
    await events.aclose()  # type: ignore[attr-defined]
    fake_openai.reply("next")
    out = await collect(adapter.stream(ask(), fake_openai.credentials()))
    assert out.text == "next"
    first, second = (r.peer_port for r in fake_openai.chat_requests)
    assert first != second  # the half-read connection was closed, not reused


async def test_the_guard_policy_gets_its_own_session() -> None:
    assert await http.client(EVERY) is not await http.client(NONE)


# --- server-sent events -------------------------------------------------------------

STREAM = (
    ": keep-alive\r\n\r\n"
    "event: message_start\r\n"
    'data: {"a": "café ☕"}\r\n'
    "\r\n"
    "data: line one\n"
    "data: line two\n"
    "id: 7\n"
    "retry: 1000\n"
    "unknown: field\n"
    "\n"
    "data:\n"
    "\n"
    "event: ping\rdata: {}\r\r"
    "data: no space after colon\n\n"
    ":comment only\n\n"
    "data: [DONE]\n\n"
)
EXPECTED = [
    SSEEvent("message_start", '{"a": "café ☕"}'),
    SSEEvent("message", "line one\nline two"),
    SSEEvent("message", ""),
    SSEEvent("ping", "{}"),
    SSEEvent("message", "no space after colon"),
    SSEEvent("message", "[DONE]"),
]


def feed_in(pieces: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for piece in pieces:
        events += parser.feed(piece)
    return events + parser.close()


def test_sse_whole() -> None:
    assert feed_in([STREAM.encode()]) == EXPECTED


def test_sse_one_byte_at_a_time() -> None:
    # Every cut: inside UTF-8 characters, inside \r\n, inside field names.
    data = STREAM.encode()
    assert feed_in([data[i : i + 1] for i in range(len(data))]) == EXPECTED


@pytest.mark.parametrize("size", [2, 3, 5, 7, 13])
def test_sse_in_uneven_pieces(size: int) -> None:
    data = STREAM.encode()
    assert feed_in([data[i : i + size] for i in range(0, len(data), size)]) == EXPECTED


def test_sse_last_event_without_blank_line_still_counts() -> None:
    assert feed_in([b"data: one\n\ndata: two"]) == [
        SSEEvent("message", "one"),
        SSEEvent("message", "two"),
    ]


def test_sse_a_blank_line_alone_is_no_event() -> None:
    assert feed_in([b"\n\n\r\n: x\n\nevent: lonely\n\n"]) == []


# --- words a person can act on ------------------------------------------------------


def test_summary_is_short_single_line_and_keyless() -> None:
    raw = (
        "Bad key sk-abcdefghijklmnopqrstuvwxyz at https://x/y?key=AIzaSECRET\n<b>x</b> " + "z" * 400
    )
    said = http.summarize(raw, secret="AIzaSECRET")
    assert "sk-abcdefghijklmnop" not in said and "AIzaSECRET" not in said
    assert "?key" not in said
    assert "\n" not in said and "<" not in said
    assert len(said) <= http.SUMMARY_CHARS


def test_summary_keeps_plain_question_marks() -> None:
    said = http.summarize("Did you mean gpt-4o? See https://docs.example/x?key=abc for more.")
    assert said == "Did you mean gpt-4o? See https://docs.example/x for more."


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "12"}, 12.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),
        ({}, None),
        ({"Retry-After": "soon"}, None),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert http.retry_after(headers) == expected


def test_retry_after_as_a_date() -> None:
    wait = http.retry_after({"Retry-After": formatdate(time.time() + 30, usegmt=True)})
    assert wait is not None and 25 <= wait <= 31


@pytest.mark.parametrize(
    ("status", "body", "kind", "words"),
    [
        (401, b'{"error": {"message": "bad"}}', AuthFailed, "rejected the API key"),
        (403, b'{"error": {"message": "nope"}}', AuthFailed, "permissions"),
        (429, b"{}", RateLimited, "try again in a moment"),
        (413, b"", ContextTooLong, "too long"),
        (502, b"<html><body>Bad gateway</body></html>", Unavailable, "(502)"),
        (529, b"", Unavailable, "overloaded"),
        (418, b"<!DOCTYPE html><p>teapot</p>", http.ProtocolError, "HTML page"),
    ],
)
def test_status_words(status: int, body: bytes, kind: type, words: str) -> None:
    error = http.error_for_status("Example AI", status, {}, body)
    assert isinstance(error, kind)
    assert words in error.message
    assert "<" not in error.message


def test_an_upstream_echo_of_the_key_is_removed() -> None:
    key = "my-very-secret-key-123456789"
    body = f'{{"error": {{"message": "key {key} is not valid for model x"}}}}'.encode()
    error = http.error_for_status("Example AI", 400, {}, body, secret=key)
    assert key not in error.message
    assert "[key]" in error.message
