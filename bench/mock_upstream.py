"""A fast mock of OpenAI's chat completions API, for the benchmark.

Raw asyncio (uvloop when installed) with a hand-written HTTP/1.1 reader and
pre-built byte strings, so that one process answers far faster than anything
relaying through it. Run it alone:

    python -m bench.mock_upstream --port 9100 --tokens 10 --delay-ms 0

The reply's length and pace come from the model name when it reads
`mock-t<tokens>-d<ms per token>` (`mock-t2000-d0`, `mock-t300-d10`), else from
`--tokens` and `--delay-ms`; that way Coppertone and LiteLLM, which pass the model
name through, ask for the same reply shape as a direct client. Streaming answers
follow OpenAI's wire format byte for byte: `chat.completion.chunk` events, a usage
chunk when `stream_options.include_usage` is set, then `data: [DONE]`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import signal
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, cast

# Every token is one 5-character word, so a client counts tokens from text length alone.
WORDS = (" lake", " tide", " fern", " moss", " reed", " dune", " reef", " cove")
TOKEN_CHARS = 5
MODEL_SHAPE = re.compile(r"mock-t(\d+)-d(\d+(?:\.\d+)?)")
MAX_TOKENS = 100_000
MAX_BODY = 4 * 1024 * 1024

_ids = itertools.count(1)


def reply_text(tokens: int) -> str:
    """The exact text a reply of `tokens` tokens carries (clients check it)."""
    return "".join(WORDS[i % len(WORDS)] for i in range(tokens))


@dataclass(frozen=True, slots=True)
class Shape:
    tokens: int
    delay: float  # seconds between tokens


def shape_for(model: str, default: Shape) -> Shape:
    match = MODEL_SHAPE.search(model)
    if match is None:
        return default
    return Shape(min(int(match.group(1)), MAX_TOKENS), float(match.group(2)) / 1000)


def _chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk (Transfer-Encoding: chunked)."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _event(obj: object) -> bytes:
    return _chunk(b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n")


def _response(status: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (
        b"HTTP/1.1 " + status.encode() + b"\r\nContent-Type: " + content_type
        + b"\r\nContent-Length: " + str(len(body)).encode()
        + b"\r\nConnection: keep-alive\r\n\r\n" + body
    )  # fmt: skip


def _error(status: str, message: str) -> bytes:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
    return _response(status, json.dumps(body).encode())


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
)
DONE = _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"
MODELS = _response(
    "200 OK",
    json.dumps(
        {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "mock"}
                for m in ("mock", "mock-t10-d0", "mock-t2000-d0")
            ],
        }
    ).encode(),
)


class Reply:
    """The byte strings of one streamed reply, built once per request."""

    def __init__(self, model: str, shape: Shape, prompt_tokens: int, usage: bool) -> None:
        cid = f"chatcmpl-mock{next(_ids)}"
        created = int(time.time())
        base = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_mock",
        }
        extra = {"usage": None} if usage else {}
        first = {
            **base,
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": "", "refusal": None},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
            **extra,
        }
        self.head = STREAM_HEAD + _event(first)
        # A token chunk is a fixed prefix, the word, a fixed suffix: join bytes, no json.dumps.
        probe = {
            **base,
            "choices": [
                {"index": 0, "delta": {"content": "\x00"}, "logprobs": None, "finish_reason": None}
            ],
            **extra,
        }
        prefix, _, suffix = json.dumps(probe, separators=(",", ":")).partition("\\u0000")
        self.tokens = [_chunk(f"data: {prefix}{word}{suffix}\n\n".encode()) for word in WORDS]
        last = {
            **base,
            "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
            **extra,
        }
        tail = _event(last)
        if usage:
            tail += _event(
                {
                    **base,
                    "choices": [],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": shape.tokens,
                        "total_tokens": prompt_tokens + shape.tokens,
                    },
                }
            )
        self.tail = tail + DONE

    def token(self, i: int) -> bytes:
        return self.tokens[i % len(WORDS)]


def completion(model: str, shape: Shape, prompt_tokens: int) -> bytes:
    body = {
        "id": f"chatcmpl-mock{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_mock",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": reply_text(shape.tokens),
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": shape.tokens,
            "total_tokens": prompt_tokens + shape.tokens,
        },
    }
    return _response("200 OK", json.dumps(body, separators=(",", ":")).encode())


class MockProtocol(asyncio.Protocol):
    def __init__(self, default: Shape) -> None:
        self.default = default
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False  # one response at a time; a pipelined request waits its turn
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports quack like asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next_request()

    def _next_request(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.transport is None:
            return
        head = self.buffer[:end].decode("latin-1").split("\r\n")
        method, _, rest = head[0].partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip() or 0)
        if length > MAX_BODY:
            self._send(_error("413 Payload Too Large", "body too large"), close=True)
            return
        if len(self.buffer) < end + 4 + length:
            return
        body = self.buffer[end + 4 : end + 4 + length]
        self.buffer = self.buffer[end + 4 + length :]
        self._answer(method, path, body)

    def _answer(self, method: str, path: str, body: bytes) -> None:
        if method == "GET" and path.endswith("/models"):
            self._send(MODELS)
            return
        if method != "POST" or not path.endswith("/chat/completions"):
            self._send(_error("404 Not Found", f"no route for {method} {path}"))
            return
        try:
            request = json.loads(body)
            model = str(request.get("model") or "mock")
            messages = request.get("messages") or []
        except (ValueError, AttributeError):
            self._send(_error("400 Bad Request", "the body is not a JSON object"))
            return
        shape = shape_for(model, self.default)
        prompt_tokens = 1 + sum(len(str(m.get("content", ""))) for m in messages) // 4
        if not request.get("stream"):
            if shape.delay:
                self.busy = True
                wait = shape.delay * shape.tokens
                answer = completion(model, shape, prompt_tokens)
                self.timer = asyncio.get_running_loop().call_later(wait, self._send, answer)
            else:
                self._send(completion(model, shape, prompt_tokens))
            return
        usage = bool((request.get("stream_options") or {}).get("include_usage"))
        reply = Reply(model, shape, prompt_tokens, usage)
        if not shape.delay:
            parts = [reply.head]
            parts.extend(reply.token(i) for i in range(shape.tokens))
            parts.append(reply.tail)
            self._send(b"".join(parts))
            return
        # Paced: the first token goes at once, token i at start + i * delay, with no drift.
        self.busy = True
        assert self.transport is not None
        self.transport.write(reply.head)
        self._pace(reply, shape, 0, asyncio.get_running_loop().time())

    def _pace(self, reply: Reply, shape: Shape, i: int, start: float) -> None:
        if self.transport is None:
            return
        if i + 1 >= shape.tokens:
            self._send(reply.token(i) + reply.tail if i < shape.tokens else reply.tail)
            return
        self.transport.write(reply.token(i))
        loop = asyncio.get_running_loop()
        self.timer = loop.call_at(
            start + (i + 1) * shape.delay, self._pace, reply, shape, i + 1, start
        )

    def _send(self, data: bytes, close: bool = False) -> None:
        self.timer = None
        self.busy = False
        if self.transport is None:
            return
        self.transport.write(data)
        if close:
            self.transport.close()
        elif self.buffer:
            self._next_request()


async def serve(host: str, port: int, default: Shape) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: MockProtocol(default), host, port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"mock upstream on http://{host}:{port}/v1", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--tokens", type=int, default=10, help="tokens per reply")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="milliseconds per token")
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the mock listens on the loopback interface only")
    run_fast(serve(args.host, args.port, Shape(args.tokens, args.delay_ms / 1000)))


def run_fast(main: Coroutine[Any, Any, None]) -> None:
    """asyncio.run on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


if __name__ == "__main__":
    main()
