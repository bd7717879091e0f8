"""A fake OpenAI-compatible server: Chat Completions, models, and Azure's deployment paths.

Speaks the wire format of https://platform.openai.com/docs/api-reference/chat-streaming:
`chat.completion.chunk` objects as `data:` lines, a first chunk carrying the role, a
chunk with `finish_reason`, with `stream_options.include_usage` a last chunk whose
`choices` is empty and which carries `usage`, then `data: [DONE]`. Errors are
`{"error": {"message", "type", "param", "code"}}`.

Azure OpenAI's form is served too: `/openai/deployments/{deployment}/chat/completions
?api-version=...` with the key in an `api-key` header, and `/openai/models`.

Reasoning streams as `delta.reasoning_content` (DeepSeek, vLLM, DashScope), as
`delta.reasoning` (Ollama, newer vLLM) or as `<think>…</think>` at the start of the
content (servers without a reasoning parser), before the text.

Ollama's native load request is served at the host root: `POST /api/generate` with a
model and no prompt answers `{"done": true, "done_reason": "load"}`
(https://github.com/ollama/ollama/blob/main/docs/api.md, "Load a model").
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer, Frames, Plan, Recorded, chunked, sse

ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again in 1s.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    kind, code, default = ERRORS.get(status, ("server_error", None, "Error."))
    return {"error": {"message": message or default, "type": kind, "param": None, "code": code}}


class FakeOpenAI(FakeServer):
    name = "openai"
    api_key = "sk-fake-openai-0000000000001234"
    default_models = ("gpt-4o", "gpt-4o-mini", "o3-mini")

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    @property
    def azure_base_url(self) -> str:
        """An Azure resource endpoint, as a user pastes it (no path)."""
        return self.origin

    @property
    def keep_alive_requests(self) -> list[Recorded]:
        """Ollama load requests (POST /api/generate) and one-token chat requests."""
        return [
            r
            for r in self.chat_requests
            if r.path == "/api/generate"
            or (
                isinstance(r.json, dict)
                and 1 in (r.json.get("max_tokens"), r.json.get("max_completion_tokens"))
            )
        ]

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/generate", self.ollama_generate)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self.azure_chat)
        app.router.add_get("/openai/models", self.azure_models)

    # --- auth --------------------------------------------------------------------

    def _bearer_ok(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else None
        return self.auth_ok(token)

    def _unauthorized(self) -> web.Response:
        return web.json_response(error_body(401), status=401)

    # --- routes ------------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        if not self._bearer_ok(request):
            return self._unauthorized()
        body = await request.json()
        return await self._chat(request, body, str(body.get("model", "")))

    async def ollama_generate(self, request: web.Request) -> web.StreamResponse:
        # Only the load form (no prompt): what Coppertone's keep-alive sends.
        if not self._bearer_ok(request):
            return self._unauthorized()
        body = await request.json()
        if not body.get("model"):
            return web.json_response({"error": "model is required"}, status=400)
        if body.get("prompt"):
            return web.json_response({"error": "this fake only loads models"}, status=400)
        return web.json_response(
            {
                "model": body["model"],
                "created_at": "2025-01-01T00:00:00.000000Z",
                "response": "",
                "done": True,
                "done_reason": "load",
            }
        )

    async def azure_chat(self, request: web.Request) -> web.StreamResponse:
        if "api-version" not in request.query:
            return web.json_response(
                {"error": {"code": "404", "message": "Resource not found"}}, status=404
            )
        if not self.auth_ok(request.headers.get("api-key")):
            return web.json_response(
                {
                    "error": {
                        "code": "401",
                        "message": "Access denied due to invalid subscription key or wrong "
                        "API endpoint. Make sure to provide a valid key for an active "
                        "subscription and use a correct regional API endpoint for your resource.",
                    }
                },
                status=401,
            )
        body = await request.json()
        return await self._chat(request, body, request.match_info["deployment"])

    async def list_models(self, request: web.Request) -> web.StreamResponse:
        if not self._bearer_ok(request):
            return self._unauthorized()
        return await self.json_answer(request, self._models_body())

    async def azure_models(self, request: web.Request) -> web.StreamResponse:
        if not self.auth_ok(request.headers.get("api-key")):
            return self._unauthorized()
        return await self.json_answer(request, self._models_body())

    def _models_body(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 1715367049, "owned_by": "system"}
                for m in self.models
            ],
        }

    async def _chat(
        self, request: web.Request, body: dict[str, Any], model: str
    ) -> web.StreamResponse:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        created = int(time.time())
        ident = f"chatcmpl-fake{created}"

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
            data: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": choices,
            }
            if include_usage:
                data["usage"] = None
            data.update(extra)
            return data

        def delta(content: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"index": 0, "delta": content, "logprobs": None, "finish_reason": finish}

        def usage(plan: Plan) -> dict[str, int]:
            prompt, completion = plan.tokens()
            return {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }

        def thinking(plan: Plan) -> list[str]:
            """The reasoning frames before the text, in the plan's field."""
            if plan.thinking_field == "think_tags":
                return []  # in the content itself
            return [
                sse(chunk([delta({"content": None, plan.thinking_field: piece})]))
                for piece in plan.thinking_pieces()
            ]

        def content(plan: Plan) -> list[str]:
            pieces = plan.pieces()
            if plan.thinking and plan.thinking_field == "think_tags":
                # Four characters at a time: the tags arrive cut across chunks.
                pieces = chunked(f"<think>{plan.thinking}</think>\n\n") + pieces
            return [sse(chunk([delta({"content": piece})])) for piece in pieces]

        def frames(plan: Plan) -> Frames:
            finish = plan.finish_reason or "stop"
            tail = [sse(chunk([delta({}, finish)]))]
            if include_usage:
                tail.append(sse(chunk([], usage=usage(plan))))
            return Frames(
                head=[sse(chunk([delta({"role": "assistant", "content": "", "refusal": None})]))],
                content=thinking(plan) + content(plan),
                tail=[*tail, sse("[DONE]")],
                tail_early=[],  # the text, then nothing: no finish_reason, no [DONE]
                error=sse(error_body(500)),
                malformed='data: {"id":"chatcmpl-broken","choices":[{"delta":{"content":"x"\n\n',
            )

        def whole(plan: Plan) -> dict[str, Any]:
            return {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": plan.text,
                            "refusal": None,
                            **({"reasoning_content": plan.thinking} if plan.thinking else {}),
                        },
                        "logprobs": None,
                        "finish_reason": plan.finish_reason or "stop",
                    }
                ],
                "usage": usage(plan),
            }

        def error(plan: Plan) -> web.Response:
            headers = {"Retry-After": plan.retry_after} if plan.retry_after is not None else {}
            if isinstance(plan.body, str):
                return web.Response(text=plan.body, status=plan.status, headers=headers)
            return web.json_response(
                plan.body or error_body(plan.status), status=plan.status, headers=headers
            )

        return await self.answer_chat(
            request, stream=bool(body.get("stream")), frames=frames, whole=whole, error=error
        )
