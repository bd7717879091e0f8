"""A fake Gemini API (Generative Language API, v1beta).

`POST /v1beta/models/{model}:streamGenerateContent?alt=sse` answers SSE frames, each a
GenerateContentResponse (`candidates[].content.parts[].text`, `usageMetadata`,
`modelVersion`), the last with `finishReason`; there is no end marker. Lines end in
\\r\\n as Google's servers send them. `POST /v1beta/models/{model}:generateContent`
answers one GenerateContentResponse; `GET /v1beta/models` lists `models/...` names.
With thinking, thought-summary parts (`"thought": true`) come in chunks before the text
(https://ai.google.dev/gemini-api/docs/thinking). The "finish_reason_null" scenario is a
Gemini-dialect server such as LiteLLM's: `"finishReason": null` on every chunk but the
last. The key travels in `x-goog-api-key`. Errors are
`{"error": {"code", "message", "status", "details"}}`; like the real API, a wrong key is
400 INVALID_ARGUMENT with reason API_KEY_INVALID, and a missing one 403 PERMISSION_DENIED.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer, Frames, Plan, sse

STATUSES = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "models/unknown is not found for API version v1beta."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: ("INTERNAL", "An internal error has occurred. Please retry."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
}

FINISH = {"stop": "STOP", "length": "MAX_TOKENS"}


def error_body(
    status: int, message: str | None = None, details: list[Any] | None = None
) -> dict[str, Any]:
    name, default = STATUSES.get(status, ("UNKNOWN", "Unknown error."))
    error: dict[str, Any] = {"code": status, "message": message or default, "status": name}
    if details:
        error["details"] = details
    return {"error": error}


def bad_key_body() -> dict[str, Any]:
    return error_body(
        400,
        "API key not valid. Please pass a valid API key.",
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        ],
    )


class FakeGemini(FakeServer):
    name = "gemini"
    api_key = "AIzaFakeGeminiKey000000000000000009012"
    default_models = ("gemini-2.0-flash", "gemini-2.5-pro", "text-embedding-004")

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1beta"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1beta/models/{call}", self.call)
        app.router.add_get("/v1beta/models", self.list_models)

    def _refuse(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-goog-api-key")
        if key is None and self.require_key:
            return web.json_response(
                error_body(
                    403,
                    "Method doesn't allow unregistered callers (callers without established "
                    "identity). Please use API Key or other form of API consumer identity "
                    "to call this API.",
                ),
                status=403,
            )
        if not self.auth_ok(key):
            return web.json_response(bad_key_body(), status=400)
        return None

    async def list_models(self, request: web.Request) -> web.StreamResponse:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        models = []
        for m in self.models:
            embedding = "embedding" in m
            methods = ["embedContent"] if embedding else ["generateContent", "countTokens"]
            models.append(
                {
                    "name": f"models/{m}",
                    "version": "001",
                    "displayName": m.replace("-", " ").title(),
                    "inputTokenLimit": 1048576,
                    "outputTokenLimit": 8192,
                    "supportedGenerationMethods": methods,
                }
            )
        return await self.json_answer(request, {"models": models})

    async def call(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["call"].partition(":")
        if method not in ("streamGenerateContent", "generateContent"):
            return web.json_response(error_body(404, "Method not found."), status=404)
        refused = self._refuse(request)
        if refused is not None:
            return refused
        body = await request.json()
        if not body.get("contents"):
            return web.json_response(
                error_body(400, "* GenerateContentRequest.contents: contents is not specified"),
                status=400,
            )
        stream = method == "streamGenerateContent"
        if stream and request.query.get("alt") != "sse":
            # Without alt=sse the real API streams one JSON array; the adapter never asks.
            return web.json_response(
                error_body(400, "This fake only streams with alt=sse."), status=400
            )

        def usage(plan: Plan, out: int) -> dict[str, Any]:
            prompt = plan.tokens()[0]
            return {
                "promptTokenCount": prompt,
                "candidatesTokenCount": out,
                "totalTokenCount": prompt + out,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
            }

        def response(
            plan: Plan, text: str, out: int, finish: bool, thought: bool = False
        ) -> dict[str, Any]:
            part: dict[str, Any] = {"text": text, "thought": True} if thought else {"text": text}
            candidate: dict[str, Any] = {
                "content": {"parts": [part], "role": "model"},
                "index": 0,
            }
            if finish:
                reason = plan.finish_reason or "stop"
                candidate["finishReason"] = FINISH.get(reason, reason)
            elif plan.null_finish:
                candidate["finishReason"] = None
            return {
                "candidates": [candidate],
                "usageMetadata": usage(plan, out),
                "modelVersion": model,
                "responseId": "fakeResponseId0001",
            }

        def frames(plan: Plan) -> Frames:
            pieces = plan.pieces()
            total = plan.tokens()[1]
            last = len(pieces) - 1
            # Each chunk carries the usage so far; the last one has the final counts.
            content = [
                sse(response(plan, piece, total if i == last else min(i + 1, total), i == last))
                for i, piece in enumerate(pieces)
            ]
            early = [
                sse(response(plan, piece, min(i + 1, total), False))
                for i, piece in enumerate(pieces)
            ]
            thoughts = [
                sse(response(plan, piece, 0, False, thought=True))
                for piece in plan.thinking_pieces()
            ]
            return Frames(
                head=thoughts,
                content=content,
                tail=[],
                tail_early=[],
                error=sse(error_body(503)),
                malformed='data: {"candidates": [{"content": {"parts": [{"text": "x\n\n',
                early_content=early,
            )

        def whole(plan: Plan) -> dict[str, Any]:
            answer = response(plan, plan.text, plan.tokens()[1], True)
            if plan.thinking:
                parts = answer["candidates"][0]["content"]["parts"]
                parts.insert(0, {"text": plan.thinking, "thought": True})
            return answer

        def error(plan: Plan) -> web.Response:
            # Google sends no Retry-After header: the wait is in the body's RetryInfo.
            headers: dict[str, str] = {}
            if isinstance(plan.body, str):
                return web.Response(text=plan.body, status=plan.status, headers=headers)
            if plan.body is not None:
                return web.json_response(plan.body, status=plan.status, headers=headers)
            details = None
            if plan.retry_after is not None:
                details = [
                    {
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": f"{plan.retry_after}s",
                    }
                ]
            return web.json_response(
                error_body(plan.status, details=details), status=plan.status, headers=headers
            )

        def crlf(plan: Plan) -> Plan:
            return plan if plan.line_ending != "\n" else replace(plan, line_ending="\r\n")

        return await self.answer_chat(
            request, stream=stream, frames=frames, whole=whole, error=error, adjust=crlf
        )
