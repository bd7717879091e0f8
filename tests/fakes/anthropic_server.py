"""A fake Anthropic Messages API: `POST /v1/messages` (streaming or not) and `GET /v1/models`.

Speaks the wire format of https://docs.anthropic.com/en/api/messages-streaming: named
SSE events `message_start` (the Message with empty content and the input usage),
`content_block_start`, `ping`, `content_block_delta` with `text_delta`,
`content_block_stop`, `message_delta` (stop_reason and the cumulative output usage),
`message_stop`; in-stream `error` events. With thinking, a `thinking` content block
comes first (`thinking_delta` deltas, then a `signature_delta`), optionally a
`redacted_thinking` block, then the text block
(https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking). Errors are
`{"type": "error", "error": {"type", "message"}, "request_id"}`; 529 is overloaded.
Requests need `x-api-key` and `anthropic-version`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer, Frames, Plan, sse

ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your rate limit."),
    500: ("api_error", "An unexpected error has occurred internal to Anthropic's systems."),
    529: ("overloaded_error", "Overloaded"),
}


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    kind, default = ERRORS.get(status, ("api_error", "Internal server error"))
    return {
        "type": "error",
        "error": {"type": kind, "message": message or default},
        "request_id": "req_fake0001",
    }


STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}


class FakeAnthropic(FakeServer):
    name = "anthropic"
    api_key = "sk-ant-fake-0000000000005678"
    default_models = ("claude-sonnet-4-5", "claude-opus-4-1", "claude-3-5-haiku-latest")

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_get("/v1/models", self.list_models)

    def _refuse(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-api-key")
        if key is None and self.require_key:
            return web.json_response(error_body(401, "x-api-key header is required"), status=401)
        if not self.auth_ok(key):
            return web.json_response(error_body(401), status=401)
        if "anthropic-version" not in request.headers:
            return web.json_response(
                error_body(400, "anthropic-version: header is required"), status=400
            )
        return None

    async def list_models(self, request: web.Request) -> web.StreamResponse:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        data = [
            {
                "type": "model",
                "id": m,
                "display_name": m.replace("-", " ").title(),
                "created_at": "2025-09-29T00:00:00Z",
            }
            for m in self.models
        ]
        return await self.json_answer(
            request,
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            },
        )

    async def messages(self, request: web.Request) -> web.StreamResponse:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        body = await request.json()
        if "max_tokens" not in body:
            return web.json_response(error_body(400, "max_tokens: Field required"), status=400)
        model = str(body.get("model", ""))
        ident = "msg_fake01XFDUDYJgAACzvnptvVoYEL"

        def stop_reason(plan: Plan) -> str:
            reason = plan.finish_reason or "stop"
            return STOP_REASONS.get(reason, reason)

        def message(plan: Plan, content: list[Any], stop: str | None, out: int) -> dict[str, Any]:
            return {
                "id": ident,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": plan.tokens()[0],
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": out,
                },
            }

        def frames(plan: Plan) -> Frames:
            finish = [
                sse(
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": stop_reason(plan), "stop_sequence": None},
                        "usage": {"output_tokens": plan.tokens()[1]},
                    },
                    "message_delta",
                ),
                sse({"type": "message_stop"}, "message_stop"),
            ]

            def start(index: int, block: dict[str, Any]) -> str:
                return sse(
                    {"type": "content_block_start", "index": index, "content_block": block},
                    "content_block_start",
                )

            def block_delta(index: int, delta: dict[str, Any]) -> str:
                return sse(
                    {"type": "content_block_delta", "index": index, "delta": delta},
                    "content_block_delta",
                )

            def stop(index: int) -> str:
                return sse({"type": "content_block_stop", "index": index}, "content_block_stop")

            # The thinking blocks, each whole: start, deltas, stop.
            thoughts: list[str] = []
            if plan.thinking:
                thoughts.append(start(0, {"type": "thinking", "thinking": ""}))
                thoughts += [
                    block_delta(0, {"type": "thinking_delta", "thinking": piece})
                    for piece in plan.thinking_pieces()
                ]
                thoughts += [
                    block_delta(0, {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbc"}),
                    stop(0),
                ]
            if plan.redacted_thinking:
                index = 1 if plan.thinking else 0
                thoughts += [
                    start(index, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pz"}),
                    stop(index),
                ]
            text_index = int(bool(plan.thinking)) + int(plan.redacted_thinking)
            text_start = start(text_index, {"type": "text", "text": ""})
            block_stop = stop(text_index)
            # Without thinking the text block opens before the ping, as the API sends it.
            opening = [] if thoughts else [text_start]
            return Frames(
                head=[
                    sse(
                        {"type": "message_start", "message": message(plan, [], None, 1)},
                        "message_start",
                    ),
                    *opening,
                    sse({"type": "ping"}, "ping"),
                ],
                content=[
                    *thoughts,
                    *([text_start] if thoughts else []),
                    *(
                        block_delta(text_index, {"type": "text_delta", "text": piece})
                        for piece in plan.pieces()
                    ),
                ],
                tail=[block_stop, *finish],
                tail_early=[block_stop],
                error=sse(
                    {
                        "type": "error",
                        "error": {"type": "overloaded_error", "message": "Overloaded"},
                    },
                    "error",
                ),
                malformed='event: content_block_delta\ndata: {"type": "content_block_del\n\n',
            )

        def whole(plan: Plan) -> dict[str, Any]:
            content: list[dict[str, Any]] = []
            if plan.thinking:
                content.append(
                    {"type": "thinking", "thinking": plan.thinking, "signature": "EqQBCgIYAhIM"}
                )
            content.append({"type": "text", "text": plan.text})
            return message(plan, content, stop_reason(plan), plan.tokens()[1])

        def error(plan: Plan) -> web.Response:
            headers = {"retry-after": plan.retry_after} if plan.retry_after is not None else {}
            if isinstance(plan.body, str):
                return web.Response(text=plan.body, status=plan.status, headers=headers)
            return web.json_response(
                plan.body or error_body(plan.status), status=plan.status, headers=headers
            )

        return await self.answer_chat(
            request, stream=bool(body.get("stream")), frames=frames, whole=whole, error=error
        )
