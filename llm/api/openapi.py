"""The OpenAPI 3.1 description of /api/v1 (docs/api.md), served at /api/v1/openapi.json.

Written by hand beside the views it describes, and kept true by tests: every route
under /api/v1 is in it and nothing else is (tests/api/test_openapi.py), and
schemathesis fuzzes a live server against it (tests/api/test_openapi_fuzz.py), so a
field, a status or a content type that a view gains must be added here too.
Response objects are closed (`additionalProperties: false`): an undocumented field,
such as a secret that should not be there, fails the fuzz test.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from llm import conversations as conversation_rules
from llm import exports
from llm.api.base import STATUS_FOR_CODE, ApiError
from llm.api.chat import MAX_DAYS, MAX_PAGE
from llm.forms import (
    MAX_CONCURRENT,
    MAX_FALLBACKS,
    MAX_KEEP_ALIVE_MINUTES,
    MAX_KEY_CHARS,
    MAX_MODEL_CHARS,
    MAX_STOP_CHARS,
    MAX_STOP_SEQUENCES,
    MAX_SYSTEM_PROMPT_CHARS,
    MAX_TIMEOUT_SECONDS,
    MIN_TIMEOUT_SECONDS,
)
from llm.models import Message, Thinking
from llm.presets import MAX_NAME_CHARS, MAX_PLACEHOLDERS
from llm.providers import registry

Schema = dict[str, Any]

BIGINT = 2**63 - 1  # ids are BigAutoField
MAX_OFFSET = 10**9  # int_param's bound for offset and after


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(optional: Schema | None = None, **required: Any) -> Schema:
    """A closed object: these properties, each required, and the `optional` ones."""
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
        "additionalProperties": False,
    }


def _text(longest: int, **extra: Any) -> Schema:
    return {"type": ["string", "number", "null"], "maxLength": longest, **extra}


def _json(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Schema]:
    return {str(status): {"$ref": f"#/components/responses/{status}"} for status in statuses}


NULLABLE_NUMBER = {"type": ["number", "null"], "minimum": 0}
TIMESTAMP = {"type": "string", "format": "date-time"}
COST = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$", "description": "US dollars"}
USAGE = _object(
    input_tokens={"type": "integer", "minimum": 0},
    output_tokens={"type": "integer", "minimum": 0},
)
# Text is stored, and PostgreSQL stores no NUL; and it must hold one character that
# Python's str.strip() keeps (these are the ones it strips), not whitespace alone.
NO_NUL = r"^[^\x00]*$"
SHOWN = (
    r"^[^\x00]*[^\x00\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    r"[^\x00]*$"
)
KINDS = list(registry.PROVIDERS)
PROVIDER_CODES = [code for code in STATUS_FOR_CODE if code.startswith("provider_")]

ERROR_DETAIL = _object(
    {
        "retry_after": {"type": "integer", "minimum": 0, "description": "seconds"},
        "fields": {
            "type": "object",
            "description": "What is wrong with each field of the body (a 400 on a form).",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    },
    code={"enum": list(STATUS_FOR_CODE)},
    message={"type": "string", "minLength": 1},
)

CHAT_RESULT_FIELDS: Schema = {
    "conversation_id": {"type": "integer"},
    "message_id": {"type": "integer"},
    "content": {"type": "string"},
    # "": a message imported from elsewhere, which no provider of ours wrote.
    "provider": {"enum": [*KINDS, ""]},
    "model": {"type": "string"},
    "status": {"enum": ["complete", "stopped", "error"]},
    "usage": USAGE,
    "cost": COST,
    "ttft_ms": NULLABLE_NUMBER,
    "latency_ms": {"type": "number", "minimum": 0},
    "thinking": {"type": "string"},
    "thinking_ms": NULLABLE_NUMBER,
    "answered_by": _object(provider={"enum": [*KINDS, ""]}, model={"type": "string"}),
    "attempts": {
        "type": "array",
        "items": _object(
            provider={"enum": KINDS},
            model={"type": "string"},
            error={"type": "object"},
            ms={"type": "number", "minimum": 0},
        ),
    },
    "cached": {"type": "boolean"},
}

COUNT = {"type": "integer", "minimum": 0}
TOTALS: Schema = {
    "requests": COUNT,
    "errors": COUNT,
    "input_tokens": COUNT,
    "output_tokens": COUNT,
    "cost": COST,
}
TOKEN_FIELDS: Schema = {
    "id": {"type": "integer"},
    "name": {"type": "string"},
    "prefix": {"type": "string"},
    "created_at": TIMESTAMP,
    "last_used_at": {"type": ["string", "null"], "format": "date-time"},
}

NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
SECONDS = {
    "type": ["number", "null"],
    "minimum": MIN_TIMEOUT_SECONDS,
    "maximum": MAX_TIMEOUT_SECONDS,
}
STOP_SEQUENCE = {"type": "string", "minLength": 1, "maxLength": MAX_STOP_CHARS, "pattern": NO_NUL}
SECONDS_IN = {
    "type": ["number", "string", "null"],
    "minimum": MIN_TIMEOUT_SECONDS,
    "maximum": MAX_TIMEOUT_SECONDS,
    "description": "seconds; empty or null: the operator's default",
}

SCHEMAS: dict[str, Schema] = {
    "ErrorDetail": ERROR_DETAIL,
    "Error": _object(error=_ref("ErrorDetail")),
    "Health": _object(
        {"error": _ref("ErrorDetail")},
        status={"enum": ["ok", "error"]},
        database={"type": "string", "description": '"ok", or why not'},
        channel_layer={"type": "string", "description": '"ok", or why not'},
    ),
    "Breaker": _object(
        state={
            "enum": ["closed", "open"],
            "description": "open: recent failures, so turns skip this configuration until retry_at",
        },
        retry_at=NULLABLE_TIME,
        failure={"type": "string", "description": "the last failure, while open"},
    ),
    "Provider": _object(
        {
            "api_version": {"type": "string", "description": "Azure OpenAI only"},
            "keep_alive_minutes": {
                "type": "integer",
                "minimum": 0,
                "maximum": MAX_KEEP_ALIVE_MINUTES,
                "description": "local servers only; 0 is off",
            },
            "keep_alive_at": {**NULLABLE_TIME, "description": "the last keep-alive ping"},
            "keep_alive_result": {"type": "string", "description": '"ok, 41 ms" or why not'},
        },
        kind={"enum": KINDS},
        label={"type": "string"},
        configured={"type": "boolean"},
        model={"type": "string"},
        temperature={"type": "number", "minimum": 0, "maximum": 2},
        max_tokens={"type": "integer", "minimum": 1, "maximum": 32000},
        base_url={"type": "string"},
        key_hint={"type": "string", "maxLength": 4, "description": "the key's last characters"},
        system_prompt={"type": "string"},
        needs_key={"type": "boolean"},
        last_verified_at={"type": ["string", "null"], "format": "date-time"},
        last_error={"type": "string"},
        enabled={"type": "boolean", "description": "false: the chat and fallbacks skip it"},
        top_p={"type": ["number", "null"], "minimum": 0, "maximum": 1},
        stop={"type": "array", "items": {"type": "string"}, "maxItems": MAX_STOP_SEQUENCES},
        thinking={"enum": Thinking.values},
        connect_timeout=SECONDS,
        first_byte_timeout=SECONDS,
        idle_timeout=SECONDS,
        max_concurrent={
            "type": ["integer", "null"],
            "minimum": 0,
            "maximum": MAX_CONCURRENT,
            "description": "null: the kind's default; 0: no cap",
        },
        cache_replies={"type": "boolean"},
        breaker=_ref("Breaker"),
    ),
    "ProviderUpdate": {
        "type": "object",
        "description": "Omitted fields keep their stored values; an omitted or empty api_key "
        "keeps the stored key. As a form would, the text fields take a number as its text "
        "and null as empty, and temperature and max_tokens take their number as text. A "
        "field the kind does not have (api_key and base_url of the local model, api_version "
        "of any kind but Azure OpenAI) is refused unless it is null or empty.",
        "properties": {
            "api_key": _text(MAX_KEY_CHARS, writeOnly=True),
            "base_url": _text(500),
            "api_version": _text(32, description="Azure OpenAI only"),
            "model": _text(200),
            "temperature": {"type": ["number", "string"], "minimum": 0, "maximum": 2},
            "max_tokens": {"type": ["integer", "string"], "minimum": 1, "maximum": 32000},
            "system_prompt": _text(MAX_SYSTEM_PROMPT_CHARS),
            "enabled": {"type": "boolean"},
            "top_p": {
                "type": ["number", "string", "null"],
                "minimum": 0,
                "maximum": 1,
                "description": "empty or null: not sent",
            },
            "stop": {
                "oneOf": [
                    {"type": "array", "items": STOP_SEQUENCE, "maxItems": MAX_STOP_SEQUENCES},
                    {"type": "string", "maxLength": MAX_STOP_CHARS, "pattern": NO_NUL},
                    {"type": "null"},
                ],
                "description": "a list of stop sequences, or one as a string; null or an empty "
                "string: none",
            },
            "thinking": {
                "enum": [*Thinking.values, "", None],
                "description": "empty or null keeps the stored choice",
            },
            "connect_timeout": SECONDS_IN,
            "first_byte_timeout": SECONDS_IN,
            "idle_timeout": SECONDS_IN,
            "max_concurrent": {
                "type": ["integer", "string", "null"],
                "minimum": 0,
                "maximum": MAX_CONCURRENT,
                "description": "empty or null: the kind's default; 0: no cap",
            },
            "keep_alive_minutes": {
                "type": ["integer", "string", "null"],
                "minimum": 0,
                "maximum": MAX_KEEP_ALIVE_MINUTES,
                "description": "local servers only (others take 0 or null); 0: off",
            },
            "cache_replies": {"type": "boolean"},
        },
        "additionalProperties": False,
    },
    "ProviderTest": {
        "oneOf": [
            _object(
                ok={"const": True},
                latency_ms=NULLABLE_NUMBER,
                models={"type": "integer", "minimum": 0, "description": "how many it lists"},
            ),
            _object(ok={"const": False}, error=_ref("ErrorDetail")),
        ]
    },
    "Models": _object(models={"type": "array", "items": {"type": "string"}}),
    "FallbackStep": _object(
        provider={"enum": KINDS},
        model={"type": "string", "description": "empty: the model on that provider's card"},
    ),
    "Fallbacks": _object(
        chain={"type": "array", "items": _ref("FallbackStep"), "maxItems": MAX_FALLBACKS}
    ),
    "FallbacksUpdate": {
        "type": "object",
        "description": "The whole chain, in order; an empty list removes every fallback. A "
        "provider and model may appear once (a missing, null or empty model is the same "
        "step). A provider the caller has not set up is kept, and skipped when replies fall "
        "back.",
        "required": ["chain"],
        "properties": {
            "chain": {
                "type": "array",
                "maxItems": MAX_FALLBACKS,
                "items": {
                    "type": "object",
                    "required": ["provider"],
                    "properties": {
                        "provider": {"enum": KINDS},
                        "model": {
                            "type": ["string", "null"],
                            "maxLength": MAX_MODEL_CHARS,
                            "pattern": NO_NUL,
                        },
                    },
                    "additionalProperties": False,
                },
            }
        },
        "additionalProperties": False,
    },
    "ProviderHealth": _object(
        window_minutes={"type": "integer", "minimum": 1},
        since=TIMESTAMP,
        providers={
            "type": "array",
            "items": _object(
                provider={"type": "string"},
                label={"type": "string"},
                requests=COUNT,
                errors=COUNT,
                error_rate={"type": "number", "minimum": 0, "maximum": 1},
                p95_ttft_ms=NULLABLE_NUMBER,
                open_breakers={
                    **COUNT,
                    "description": "configurations turns skip for now",
                },
            ),
        },
        open_upstreams={
            "type": "array",
            "items": _object(
                address={"type": "string", "description": "scheme://host:port"},
                retry_at=TIMESTAMP,
                failure={"type": "string"},
            ),
        },
    ),
    "ChatRequest": {
        "type": "object",
        "required": ["message"],
        "properties": {
            "message": {
                "type": "string",
                "minLength": 1,
                "maxLength": settings.LLM_MAX_MESSAGE_CHARS,
                "pattern": SHOWN,
            },
            "conversation_id": {"type": ["integer", "null"], "minimum": 1, "maximum": BIGINT},
            "provider": {
                "enum": [*KINDS, None],
                "description": "Without it the model name picks the provider, else the "
                "caller's default, else the local model.",
            },
            "model": {"type": ["string", "null"], "pattern": NO_NUL},
            "preset": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": BIGINT,
                "description": "A preset of the caller's or a published one: its provider, "
                "model, system prompt, temperature and max tokens, where provider and model "
                "are not sent. Any other is 404.",
            },
            "client_message_id": {"type": ["string", "null"], "format": "uuid"},
            "stream": {"type": ["boolean", "null"]},
        },
    },
    "ChatResult": _object({"error": _ref("ErrorDetail")}, **CHAT_RESULT_FIELDS),
    "ChatFailed": {
        "allOf": [
            _ref("ChatResult"),
            {"required": ["error"], "properties": {"status": {"const": "error"}}},
        ],
        "description": "The turn had started: the text so far, and why it failed.",
    },
    "StopPending": _object(message_id={"type": "integer"}, status={"const": "streaming"}),
    "CompareRequest": {
        "type": "object",
        "required": ["message", "targets"],
        "properties": {
            "message": {
                "type": "string",
                "minLength": 1,
                "maxLength": settings.LLM_MAX_MESSAGE_CHARS,
                "pattern": SHOWN,
            },
            "targets": {
                "type": "array",
                "minItems": 2,
                "maxItems": 4,
                "items": {
                    "type": "object",
                    "properties": {
                        "provider": {"enum": [*KINDS, None]},
                        "model": {"type": ["string", "null"], "maxLength": 200, "pattern": NO_NUL},
                    },
                    # A provider, or a model whose name picks one.
                    "anyOf": [
                        {"required": ["provider"], "properties": {"provider": {"enum": KINDS}}},
                        {
                            "required": ["model"],
                            "properties": {"model": {"type": "string", "minLength": 1}},
                        },
                    ],
                },
            },
            "client_message_id": {"type": ["string", "null"], "format": "uuid"},
            "stream": {"type": ["boolean", "null"]},
        },
    },
    "CompareResult": _object(
        compare_id={"type": "string", "format": "uuid"},
        replies={"type": "array", "items": {"type": "object"}},
    ),
    "ConversationSummary": _object(
        {
            "snippet": {
                "type": "string",
                "description": "with q only: where it matched, as HTML (the text escaped, "
                "the match in <mark>)",
            }
        },
        id={"type": "integer"},
        title={"type": "string"},
        created_at=TIMESTAMP,
        updated_at=TIMESTAMP,
        messages={"type": "integer", "minimum": 0, "description": "how many"},
        pinned={"type": "boolean", "description": "pinned ones come first in every list"},
    ),
    "ConversationList": _object(
        conversations={"type": "array", "items": _ref("ConversationSummary")},
        total={"type": "integer", "minimum": 0},
    ),
    "Message": _object(
        {"error": _ref("ErrorDetail")},
        id={"type": "integer"},
        role={"enum": Message.Role.values},
        content={"type": "string"},
        status={"enum": Message.Status.values},
        provider={"type": "string"},
        model={"type": "string"},
        usage=USAGE,
        cost=COST,
        seq={
            "type": "integer",
            "minimum": 0,
            "description": "the reply's event content is current as of",
        },
        ttft_ms=NULLABLE_NUMBER,
        latency_ms=NULLABLE_NUMBER,
        thinking={"type": "string"},
        attempts=CHAT_RESULT_FIELDS["attempts"],
        cached={"type": "boolean"},
        compare_id={"type": ["string", "null"], "format": "uuid"},
        created_at=TIMESTAMP,
    ),
    "ConversationDetail": _object(
        id={"type": "integer"},
        title={"type": "string"},
        created_at=TIMESTAMP,
        updated_at=TIMESTAMP,
        pinned={"type": "boolean"},
        messages={"type": "array", "items": _ref("Message")},
        total_messages={"type": "integer", "minimum": 0},
    ),
    "UsageTotals": _object(**TOTALS),
    "Usage": _object(
        days={"type": "integer", "minimum": 1, "maximum": MAX_DAYS},
        since={"type": "string", "format": "date"},
        total=_ref("UsageTotals"),
        per_day={
            "type": "array",
            "items": _object(day={"type": "string", "format": "date"}, **TOTALS),
        },
        per_provider={
            "type": "array",
            "items": _object(
                provider={"type": "string"},
                model={"type": "string"},
                **TOTALS,
            ),
        },
        budget=_ref("UsageBudget"),
    ),
    "UsageBudget": _object(
        monthly_budget={**COST, "type": ["string", "null"], "description": "US dollars a month"},
        spent={**COST, "description": "US dollars this month"},
        left={**COST, "type": ["string", "null"]},
        used_percent={"type": ["integer", "null"], "minimum": 0},
        resets_on={"type": "string", "format": "date"},
        warning={
            "type": ["string", "null"],
            "description": "From 80% of the budget on, the words the widget shows.",
        },
    ),
    "Token": _object(**TOKEN_FIELDS),
    "TokenList": _object(tokens={"type": "array", "items": _ref("Token")}),
    "TokenCreate": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": SHOWN}
        },
    },
    "TokenCreated": _object(
        token={"type": "string", "description": "shown this once"},
        **TOKEN_FIELDS,
    ),
}

ERROR_RESPONSES: dict[str, Schema] = {
    str(status): _json(words, _ref("Error"))
    for status, words in [
        (400, "bad_request: the request is wrong, and the message says how"),
        (401, "unauthenticated: no valid token or session"),
        (402, "budget_exceeded: this month's budget is spent"),
        (403, "a session without its CSRF token, or a token where only a session may act"),
        (404, "not_found: no such thing, or another person's"),
        (405, "bad_request: another method is needed here"),
        (409, "busy (a reply is streaming there) or not_configured"),
        (413, "too_large"),
        (429, "rate_limited, with retry_after and a Retry-After header"),
    ]
}


def _path_param(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


def _query_int(name: str, default: int, lowest: int, highest: int) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": lowest, "maximum": highest, "default": default},
    }


ID = {"type": "integer", "minimum": 1, "maximum": BIGINT}
KIND = _path_param("kind", {"enum": KINDS}, "a provider kind")
PAGE = [_query_int("limit", 50, 1, MAX_PAGE), _query_int("offset", 0, 0, MAX_OFFSET)]
NO_CONTENT = {"204": {"description": "done"}}
NO_AUTH: list[Schema] = []


def _event(name: str, data: Schema) -> Schema:
    """One server-sent event as a client's parser gives it: its name, id and JSON data."""
    return _object(
        event={"const": name},
        id={"type": "string", "pattern": "^[0-9]+$", "description": "the event's seq"},
        data={"type": "string", "contentMediaType": "application/json", "contentSchema": data},
    )


TEXT = {"type": "string"}
AHEAD = {"type": "integer", "minimum": 0}
# Open API 3.1 has no schema for a stream as a whole: `schema` describes each event.
SSE = {
    "text/event-stream": {
        "schema": {
            "oneOf": [
                _event("start", _ref("ReplyStarted")),
                _event("waiting", _object(ahead=AHEAD)),
                _event("thinking", _object(text=TEXT)),
                _event("delta", _object(text=TEXT)),
                _event("done", _ref("ReplyDone")),
                _event("error", _ref("ChatFailed")),
            ]
        }
    }
}
# A compare's columns share one stream: every event names its reply (message_id), and a
# column that could not start is an error event (id 0) naming its target.
MESSAGE_ID = {"type": "integer"}
COMPARE_SSE = {
    "text/event-stream": {
        "schema": {
            "oneOf": [
                _event("start", _ref("ReplyStarted")),
                _event("waiting", _object(message_id=MESSAGE_ID, ahead=AHEAD)),
                _event("thinking", _object(message_id=MESSAGE_ID, text=TEXT)),
                _event("delta", _object(message_id=MESSAGE_ID, text=TEXT)),
                _event("done", _ref("ReplyDone")),
                _event("error", _ref("ChatFailed")),
                _event(
                    "error",
                    _object(
                        provider={"enum": [*KINDS, None]},
                        model={"type": ["string", "null"]},
                        compare_id={"type": "string", "format": "uuid"},
                        error=_ref("ErrorDetail"),
                    ),
                ),
            ]
        }
    }
}
SCHEMAS["ReplyStarted"] = _object(
    {"compare_id": {"type": "string", "format": "uuid"}},
    conversation_id={"type": "integer"},
    message_id={"type": "integer"},
    provider={"enum": KINDS},
    model={"type": "string"},
)
SCHEMAS["ReplyDone"] = _object(
    **{**CHAT_RESULT_FIELDS, "status": {"enum": ["complete", "stopped"]}},
    html={"type": "string", "description": "the reply as sanitized HTML"},
)

PROVIDER_FAILED = {
    str(status): _json(
        "the provider failed",
        {
            "allOf": [
                _ref("Error"),
                {"properties": {"error": {"properties": {"code": {"enum": PROVIDER_CODES}}}}},
            ]
        },
    )
    for status in (502, 504)
}
CHAT_FAILED = {
    str(status): _json("the provider failed once the turn had started", _ref("ChatFailed"))
    for status in (502, 504)
}


def _operation(
    operation_id: str, summary: str, responses: dict[str, Schema], **extra: Any
) -> Schema:
    return {"operationId": operation_id, "summary": summary, "responses": responses, **extra}


def _body(name: str, *, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": _ref(name)}}}


def _links(**targets: tuple[str, str, str]) -> Schema:
    """Links a client (and the fuzzer's stateful phase) follows: name -> (operation, parameter,
    where its value is in this response)."""
    return {
        name: {"operationId": operation, "parameters": {parameter: f"$response.body#{pointer}"}}
        for name, (operation, parameter, pointer) in targets.items()
    }


def _with_links(response: Schema, **targets: tuple[str, str, str]) -> Schema:
    return {**response, "links": _links(**targets)}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


# A day exactly as YYYY-MM-DD (a real one, else 400), or empty: no bound.
DAY = {"type": "string", "pattern": r"^([0-9]{4}-[0-9]{2}-[0-9]{2})?$"}
# llm/conversations.py FilterForm: the same rules as the conversations page.
CONVERSATION_FILTERS = [
    _query(
        "q",
        {"type": "string", "maxLength": conversation_rules.MAX_QUERY_CHARS, "pattern": NO_NUL},
        "search titles and message text (PostgreSQL: full-text, ranked; SQLite: the "
        "phrase as written, any case); each result then has a snippet",
    ),
    _query(
        "provider",
        {"enum": [*KINDS, ""]},
        "only conversations with a reply from this provider (empty: any)",
    ),
    _query(
        "model",
        {"type": "string", "maxLength": conversation_rules.MAX_MODEL_CHARS, "pattern": NO_NUL},
        "only conversations with a reply from this model (its exact name)",
    ),
    _query("since", DAY, "last activity on or after this day (YYYY-MM-DD)"),
    _query("until", DAY, "last activity on or before this day; not before since"),
    _query(
        "pinned",
        {"enum": ["true", "false", ""]},
        "only the pinned ones, or only the rest (empty: both)",
    ),
]

FOLLOW_REPLY = {
    "FollowReply": ("followReply", "message_id", "/message_id"),
    "StopReply": ("stopReply", "message_id", "/message_id"),
}

PATHS: dict[str, Schema] = {
    "/health": {
        "get": _operation(
            "health",
            "Whether the database and the channel layer answer",
            {
                "200": _json("all is well", _ref("Health")),
                "503": _json("a part is down", _ref("Health")),
            },
            security=NO_AUTH,
        )
    },
    "/health/providers": {
        "get": _operation(
            "providersHealth",
            "Staff only: replies, errors and p95 time to first token per provider kind over "
            "the last 15 minutes, and the open circuit breakers (others get 404)",
            {"200": _json("the table", _ref("ProviderHealth")), **_errors(401, 404)},
        )
    },
    "/openapi.json": {
        "get": _operation(
            "openapi",
            "This document",
            {"200": _json("OpenAPI 3.1", {"type": "object"})},
            security=NO_AUTH,
        )
    },
    "/providers": {
        "get": _operation(
            "listProviders",
            "Every provider kind, with the caller's settings for it",
            {
                "200": _json(
                    "the kinds",
                    _object(providers={"type": "array", "items": _ref("Provider")}),
                ),
                **_errors(401),
            },
        )
    },
    "/providers/{kind}": {
        "parameters": [KIND],
        "get": _operation(
            "getProvider",
            "One provider kind",
            {"200": _json("it", _ref("Provider")), **_errors(401, 404)},
        ),
        "put": _operation(
            "saveProvider",
            "Save the caller's settings for a kind (no body: keep them as they are)",
            {
                "200": _with_links(
                    _json("as saved", _ref("Provider")),
                    TestProvider=("testProvider", "kind", "/kind"),
                    ProviderModels=("providerModels", "kind", "/kind"),
                ),
                **_errors(400, 401, 403, 404),
            },
            requestBody=_body("ProviderUpdate", required=False),
        ),
        "delete": _operation(
            "deleteProvider",
            "Forget that configuration and its key",
            {**NO_CONTENT, **_errors(401, 403, 404)},
        ),
    },
    "/providers/{kind}/test": {
        "parameters": [KIND],
        "post": _operation(
            "testProvider",
            "Test the connection: a call to the provider",
            {"200": _json("how it went", _ref("ProviderTest")), **_errors(401, 403, 404, 409, 429)},
        ),
    },
    "/providers/{kind}/models": {
        "parameters": [KIND],
        "get": _operation(
            "providerModels",
            "The models the provider lists",
            {
                "200": _json("the names", _ref("Models")),
                **_errors(401, 404, 409, 429),
                **PROVIDER_FAILED,
            },
        ),
    },
    "/fallbacks": {
        "get": _operation(
            "getFallbacks",
            "The caller's chain of providers to ask when a reply fails",
            {"200": _json("in order", _ref("Fallbacks")), **_errors(401)},
        ),
        "put": _operation(
            "saveFallbacks",
            "Replace the caller's chain, all at once",
            {"200": _json("as saved", _ref("Fallbacks")), **_errors(400, 401, 403)},
            requestBody=_body("FallbacksUpdate"),
        ),
    },
    "/chat": {
        "post": _operation(
            "chat",
            "Send a message; the reply outlives the request",
            {
                "200": {
                    "description": "the reply (JSON), or its events with stream: true",
                    "content": {"application/json": {"schema": _ref("ChatResult")}, **SSE},
                    "links": _links(**FOLLOW_REPLY),
                },
                **_errors(400, 401, 402, 403, 404, 409, 413, 429),
                **CHAT_FAILED,
            },
            requestBody=_body("ChatRequest"),
        )
    },
    "/compare": {
        "post": _operation(
            "compare",
            "Send one message to 2-4 models at once: a reply each",
            {
                "200": {
                    "description": "every column's reply (JSON), or their events with stream: true",
                    "content": {
                        "application/json": {"schema": _ref("CompareResult")},
                        **COMPARE_SSE,
                    },
                },
                **_errors(400, 401, 403, 409, 413, 429),
            },
            requestBody=_body("CompareRequest"),
        )
    },
    "/replies/{message_id}/events": {
        "get": _operation(
            "followReply",
            "Follow a reply: its events after Last-Event-ID (or after), then live",
            {
                "200": {"description": "SSE until done or error", "content": SSE},
                **_errors(400, 401, 404),
            },
            parameters=[
                _path_param("message_id", ID, "the reply's message id"),
                _query_int("after", 0, 0, MAX_OFFSET),
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                    "description": "the seq of the last event seen; wins over after",
                },
            ],
        )
    },
    "/replies/{message_id}/stop": {
        "post": _operation(
            "stopReply",
            "Stop a reply wherever it runs, and answer how it ended (whatever its status)",
            {
                "200": _json("how it ended", _ref("ChatResult")),
                "202": _json("not ended within 5 s", _ref("StopPending")),
                **_errors(401, 403, 404),
            },
            parameters=[_path_param("message_id", ID, "the reply's message id")],
        )
    },
    "/conversations": {
        "get": _operation(
            "listConversations",
            "The caller's conversations, pinned first, then the newest (with q: the best "
            "matches first within each)",
            {
                "200": _with_links(
                    _json("a page", _ref("ConversationList")),
                    GetConversation=("getConversation", "id", "/conversations/0/id"),
                    UpdateConversation=("updateConversation", "id", "/conversations/0/id"),
                    ExportConversation=("exportConversation", "id", "/conversations/0/id"),
                    DeleteConversation=("deleteConversation", "id", "/conversations/0/id"),
                ),
                **_errors(400, 401),
            },
            parameters=[*PAGE, *CONVERSATION_FILTERS],
        )
    },
    "/conversations/{id}": {
        "parameters": [_path_param("id", ID, "a conversation id")],
        "get": _operation(
            "getConversation",
            "A conversation and a page of its messages, oldest first",
            {
                "200": _with_links(
                    _json("it", _ref("ConversationDetail")),
                    FollowReply=("followReply", "message_id", "/messages/1/id"),
                    StopReply=("stopReply", "message_id", "/messages/1/id"),
                ),
                **_errors(400, 401, 404),
            },
            parameters=PAGE,
        ),
        "patch": _operation(
            "updateConversation",
            "Rename or pin it (no activity: its place among the newest stays)",
            {"200": _json("as saved", _ref("ConversationSummary")), **_errors(400, 401, 403, 404)},
            requestBody=_body("ConversationUpdate", required=False),
        ),
        "delete": _operation(
            "deleteConversation",
            "Delete it and its messages",
            {**NO_CONTENT, **_errors(401, 403, 404)},
        ),
    },
    "/usage": {
        "get": _operation(
            "usage",
            "The caller's tokens and cost per day and per provider",
            {"200": _json("totals", _ref("Usage")), **_errors(400, 401)},
            parameters=[_query_int("days", 30, 1, MAX_DAYS)],
        )
    },
    "/tokens": {
        "get": _operation(
            "listTokens",
            "The caller's API tokens (never the tokens themselves)",
            {
                "200": _with_links(
                    _json("them", _ref("TokenList")),
                    RevokeToken=("revokeToken", "id", "/tokens/0/id"),
                ),
                **_errors(401),
            },
        ),
        "post": _operation(
            "createToken",
            "Create a token (browser session only; a token cannot mint tokens)",
            {
                "201": _with_links(
                    _json("the token, shown this once", _ref("TokenCreated")),
                    RevokeToken=("revokeToken", "id", "/id"),
                ),
                **_errors(400, 401, 403),
            },
            requestBody=_body("TokenCreate"),
        ),
    },
    "/tokens/{id}": {
        "parameters": [_path_param("id", ID, "a token id")],
        "delete": _operation("revokeToken", "Revoke it", {**NO_CONTENT, **_errors(401, 403, 404)}),
    },
}

# --- presets and prompt templates (llm/api/presets.py) -----------------------------------------

NAME_IN = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS, "pattern": SHOWN}
PUBLISHED_IN = {
    "type": "boolean",
    "description": "staff only: true from anyone else is a 400",
}
OWNED_FIELDS: Schema = {
    "id": {"type": "integer"},
    "name": {"type": "string"},
    "published": {"type": "boolean"},
    "mine": {"type": "boolean", "description": "false: published by staff, read-only to you"},
    "created_at": TIMESTAMP,
    "updated_at": TIMESTAMP,
}
PRESET_IN: Schema = {
    "name": NAME_IN,
    "provider": {"enum": KINDS},
    "model": {
        "type": ["string", "null"],
        "maxLength": MAX_MODEL_CHARS,
        "pattern": NO_NUL,
        "description": "empty or null: the model on that provider's card",
    },
    "system_prompt": {
        "type": ["string", "null"],
        "maxLength": MAX_SYSTEM_PROMPT_CHARS,
        "pattern": NO_NUL,
        "description": "empty or null: the card's system prompt",
    },
    "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
    "max_tokens": {"type": ["integer", "null"], "minimum": 1, "maximum": 32000},
    "published": PUBLISHED_IN,
}
TEMPLATE_IN: Schema = {
    "name": NAME_IN,
    "text": {
        "type": "string",
        "minLength": 1,
        "maxLength": settings.LLM_MAX_MESSAGE_CHARS,
        # No pattern here (not whitespace alone, no NUL): with the name's, generating
        # bodies for the fuzz test became too slow. The server says so with a 400.
        "description": "with {placeholders} (letters, digits, underscores); {{ and }} are "
        f"literal braces; at most {MAX_PLACEHOLDERS} different placeholders; not "
        "whitespace alone, and no NUL",
    },
    "published": PUBLISHED_IN,
}


def _body_of(properties: Schema, required: list[str], description: str) -> Schema:
    return {
        "type": "object",
        "description": description,
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


SCHEMAS.update(
    {
        "Preset": _object(
            **OWNED_FIELDS,
            provider={"enum": KINDS},
            model={"type": "string", "description": "empty: the model on that provider's card"},
            system_prompt={"type": "string", "description": "empty: the card's system prompt"},
            temperature={"type": ["number", "null"], "minimum": 0, "maximum": 2},
            max_tokens={"type": ["integer", "null"], "minimum": 1, "maximum": 32000},
        ),
        "PresetList": _object(presets={"type": "array", "items": _ref("Preset")}),
        "PresetCreate": _body_of(
            PRESET_IN, ["name", "provider"], "A name is unique among the caller's presets."
        ),
        "PresetUpdate": _body_of(
            PRESET_IN, [], "Omitted fields keep their stored values; null empties a field."
        ),
        "TemplatePart": {
            "oneOf": [
                _object(text={"type": "string", "description": "literal text, braces as shown"}),
                _object(placeholder={"type": "string", "description": "a name to fill in"}),
            ]
        },
        "Template": _object(
            **OWNED_FIELDS,
            text={"type": "string"},
            placeholders={
                "type": "array",
                "items": {"type": "string"},
                "maxItems": MAX_PLACEHOLDERS,
                "description": "each name once, in the order they first appear",
            },
            parts={
                "type": "array",
                "items": _ref("TemplatePart"),
                "description": "the text in order: join the texts and the values filled in",
            },
        ),
        "TemplateList": _object(templates={"type": "array", "items": _ref("Template")}),
        "TemplateCreate": _body_of(
            TEMPLATE_IN,
            ["name", "text"],
            "Unbalanced braces or a bad placeholder name is a 400 that says where.",
        ),
        "TemplateUpdate": _body_of(TEMPLATE_IN, [], "Omitted fields keep their stored values."),
    }
)


def _library_paths(plural: str, one: str, title: str) -> dict[str, Schema]:
    """The same five operations for presets and templates."""
    get_op, put_op, delete_op = f"get{title}", f"update{title}", f"delete{title}"
    item_links = {
        f"Get{title}": (get_op, "id", "/id"),
        f"Update{title}": (put_op, "id", "/id"),
        f"Delete{title}": (delete_op, "id", "/id"),
    }
    listed = {
        f"Get{title}": (get_op, "id", f"/{plural}/0/id"),
        f"Update{title}": (put_op, "id", f"/{plural}/0/id"),
    }
    return {
        f"/{plural}": {
            "get": _operation(
                f"list{title}s",
                f"The caller's {plural}, then those staff published (mine: false)",
                {
                    "200": _with_links(_json("them", _ref(f"{title}List")), **listed),
                    **_errors(401),
                },
            ),
            "post": _operation(
                f"create{title}",
                f"Create a {one} of the caller's",
                {
                    "201": _with_links(_json("as saved", _ref(title)), **item_links),
                    **_errors(400, 401, 403),
                },
                requestBody=_body(f"{title}Create"),
            ),
        },
        f"/{plural}/{{id}}": {
            "parameters": [_path_param("id", ID, f"a {one} id")],
            "get": _operation(
                get_op,
                f"One {one}: the caller's, or one staff published",
                {"200": _json("it", _ref(title)), **_errors(401, 404)},
            ),
            "put": _operation(
                put_op,
                f"Change a {one} of the caller's (anyone else's, published or not, is 404)",
                {"200": _json("as saved", _ref(title)), **_errors(400, 401, 403, 404)},
                requestBody=_body(f"{title}Update", required=False),
            ),
            "delete": _operation(
                delete_op,
                f"Delete a {one} of the caller's (anyone else's is 404)",
                {**NO_CONTENT, **_errors(401, 403, 404)},
            ),
        },
    }


PATHS.update(_library_paths("presets", "preset", "Preset"))
PATHS.update(_library_paths("templates", "template", "Template"))

# --- files to attach (llm/api/files.py, llm/attachments.py) --------------------------------

FILE_ID = {**ID, "description": "a file id from POST /files"}
SCHEMAS["File"] = _object(
    id={"type": "integer"},
    name={"type": "string", "minLength": 1, "maxLength": 255},
    content_type={
        "type": "string",
        "description": "sniffed from the bytes: image/png, image/jpeg, image/webp, image/gif, "
        "application/pdf, or a text type",
    },
    size={"type": "integer", "minimum": 1, "maximum": settings.LLM_MAX_FILE_BYTES},
)
SCHEMAS["FileUpload"] = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {
            "type": "string",
            "format": "binary",
            "contentMediaType": "application/octet-stream",
            "minLength": 1,
            "description": "UTF-8 text (text, Markdown, code, CSV), a PDF (its text is what a "
            f"model reads) or a PNG, JPEG, WebP or GIF image; at most "
            f"{settings.LLM_MAX_FILE_BYTES} bytes and {settings.LLM_MAX_ATTACHMENT_CHARS} "
            "characters of text. What it is comes from its bytes, never its name.",
        }
    },
}
# Sent with a message: the caller's own files, not yet sent; another's id is a 404.
SCHEMAS["ChatRequest"]["properties"]["attachments"] = {
    "type": ["array", "null"],
    "items": FILE_ID,
    "maxItems": settings.LLM_MAX_FILES_PER_MESSAGE,
    "description": "ids from POST /files, not yet sent with a message; images need a model "
    "that reads them (a 400 names those that do)",
}
SCHEMAS["Message"]["properties"]["attachments"] = {
    "type": "array",
    "items": _ref("File"),
    "description": "the files sent with it",
}
FILE_LINKS = {
    "GetFile": ("getFile", "id", "/id"),
    "DeleteFile": ("deleteFile", "id", "/id"),
}
PATHS["/files"] = {
    "post": _operation(
        "uploadFile",
        "Upload a file to attach to a message (multipart, field file)",
        {
            "201": _with_links(_json("as stored", _ref("File")), **FILE_LINKS),
            **_errors(400, 401, 403, 413),
        },
        requestBody={
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": _ref("FileUpload"),
                    "encoding": {"file": {"contentType": "application/octet-stream"}},
                }
            },
        },
    )
}
PATHS["/files/{id}"] = {
    "parameters": [_path_param("id", FILE_ID, "a file id")],
    "get": _operation(
        "getFile",
        "Download a file of the caller's, as stored (anyone else's is 404)",
        {
            "200": {
                "description": "the file, with its sniffed content type, as an attachment",
                "headers": {
                    "Content-Disposition": {
                        "schema": {"type": "string", "pattern": "^attachment"},
                    }
                },
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            },
            **_errors(401, 404),
        },
    ),
    "delete": _operation(
        "deleteFile",
        "Delete a file of the caller's and its stored bytes (anyone else's is 404)",
        {**NO_CONTENT, **_errors(401, 403, 404)},
    ),
}

# --- exporting, importing and deleting conversations (llm/api/conversations.py) ------------

NO_NUL_TEXT = {"type": "string", "pattern": NO_NUL}
IMPORT_TEXT = {
    "oneOf": [
        {**NO_NUL_TEXT, "maxLength": settings.LLM_MAX_REPLY_CHARS},
        {
            "type": "array",
            "description": "OpenAI's content parts, text ones only (joined)",
            "items": {
                "type": "object",
                "required": ["type", "text"],
                "properties": {"type": {"const": "text"}, "text": NO_NUL_TEXT},
            },
        },
    ]
}
IMPORT_MESSAGES = {
    "type": "array",
    "minItems": 1,
    "maxItems": exports.MAX_IMPORT_MESSAGES,
    "items": {
        "type": "object",
        "description": "Other fields are ignored; provider (a known kind) and model are kept "
        "on assistant messages.",
        "required": ["role", "content"],
        "properties": {
            "role": {"enum": list(exports.ROLES)},
            "content": IMPORT_TEXT,
            "thinking": {"oneOf": [IMPORT_TEXT, {"type": "null"}]},
        },
    },
}

SCHEMAS.update(
    {
        "ConversationUpdate": {
            "type": "object",
            "description": "Omitted fields stay as they are.",
            "properties": {
                "title": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": conversation_rules.MAX_TITLE_CHARS,
                    "pattern": SHOWN,
                },
                "pinned": {"type": "boolean"},
            },
            "additionalProperties": False,
        },
        "ExportedMessage": _object(
            {"thinking": {"type": "string"}, "error": _ref("ErrorDetail")},
            role={"enum": Message.Role.values},
            content={"type": "string"},
            status={"enum": Message.Status.values},
            provider={"type": "string"},
            model={"type": "string"},
            created_at=TIMESTAMP,
            usage=USAGE,
            cost=COST,
        ),
        "ConversationExport": _object(
            format={"const": exports.FORMAT},
            version={"const": exports.VERSION},
            exported_at=TIMESTAMP,
            id={"type": "integer"},
            title={"type": "string"},
            pinned={"type": "boolean"},
            created_at=TIMESTAMP,
            updated_at=TIMESTAMP,
            messages={"type": "array", "items": _ref("ExportedMessage")},
        ),
        "ConversationImport": {
            "description": 'Our export, OpenAI\'s {"messages": [...]} body, or a bare list of '
            f"messages; at most {exports.MAX_IMPORT_BYTES} bytes (413 above).",
            "oneOf": [
                {
                    "type": "object",
                    "required": ["messages"],
                    "properties": {"messages": IMPORT_MESSAGES},
                },
                IMPORT_MESSAGES,
            ],
        },
        "ConversationsDelete": {
            "description": "Those of the ids that are the caller's (anyone else's are ignored), "
            "or every conversation of the caller's with a reply from the provider.",
            "oneOf": [
                _object(
                    ids={
                        "type": "array",
                        "minItems": 1,
                        "maxItems": conversation_rules.MAX_BULK,
                        "items": ID,
                    }
                ),
                _object(provider={"enum": KINDS}),
            ],
        },
        "ConversationsDeleted": _object(
            deleted={"type": "integer", "minimum": 0},
            ids={"type": "array", "items": {"type": "integer"}, "description": "in order"},
        ),
    }
)

PATHS.update(
    {
        "/conversations/{id}/export": {
            "get": _operation(
                "exportConversation",
                "Download it as Markdown or as our JSON export (which the import takes back)",
                {
                    "200": {
                        "description": "the file (Content-Disposition: attachment)",
                        "content": {
                            "application/json": {"schema": _ref("ConversationExport")},
                            "text/markdown": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(400, 401, 404),
                },
                parameters=[
                    _path_param("id", ID, "a conversation id"),
                    _query(
                        "format", {"enum": list(exports.FORMATS), "default": "json"}, "md or json"
                    ),
                ],
            )
        },
        "/conversations/import": {
            "post": _operation(
                "importConversation",
                "A new conversation with the file's messages, all complete; no provider is asked",
                {
                    "201": _with_links(
                        _json("the new conversation", _ref("ConversationSummary")),
                        GetConversation=("getConversation", "id", "/id"),
                    ),
                    **_errors(400, 401, 403, 413),
                },
                requestBody=_body("ConversationImport"),
            )
        },
        "/conversations/delete": {
            "post": _operation(
                "deleteConversations",
                "Delete several at once: by ids, or every one with a reply from a provider",
                {
                    "200": _json("what was deleted", _ref("ConversationsDeleted")),
                    **_errors(400, 401, 403),
                },
                requestBody=_body("ConversationsDelete"),
            )
        },
    }
)

DOCUMENT: Schema = {
    "openapi": "3.1.0",
    "info": {
        "title": "Coppertone API",
        "version": "1",
        "description": "The HTTP API of docs/api.md. Every error has the body "
        '{"error": {"code", "message", "retry_after"?, "fields"?}}.',
    },
    "servers": [{"url": "/api/v1"}],
    "security": [{"bearer": []}, {"session": []}],
    "paths": PATHS,
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "A token from Settings → API tokens.",
            },
            "session": {
                "type": "apiKey",
                "in": "cookie",
                "name": settings.SESSION_COOKIE_NAME,
                "description": "The browser session; writes also need the X-CSRFToken header.",
            },
        },
        "schemas": SCHEMAS,
        "responses": ERROR_RESPONSES,
    },
}


async def openapi_json(request: HttpRequest) -> HttpResponse:
    """No authentication: the document describes the API, it holds nothing of anyone's."""
    if request.method not in ("GET", "HEAD"):
        return ApiError(
            "bad_request", "Use GET here.", status=405, allowed=("GET", "HEAD")
        ).response()
    return JsonResponse(DOCUMENT)
