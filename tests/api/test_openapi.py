"""GET /api/v1/openapi.json: served without a sign-in, and true to the routes it describes."""

from __future__ import annotations

import re
from typing import Any

import schemathesis
from django.test import Client
from django.urls import URLPattern
from schemathesis.core.result import Ok

from llm.api import urls
from llm.api.openapi import DOCUMENT

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
NOT_DESCRIBED = {"api_not_found"}  # the catch-all that answers any other path with a 404


def _shape(path: str) -> str:
    """Both `replies/<int:message_id>/events` and `/replies/{message_id}/events` give
    `/replies/{}/events`."""
    return "/" + re.sub(r"<[^>]+>|\{[^}]+\}", "{}", path.lstrip("/"))


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_every_route_under_api_v1_is_described_and_nothing_else() -> None:
    routes = [p for p in urls.urlpatterns if isinstance(p, URLPattern)]
    served = {_shape(str(p.pattern)) for p in routes if p.name not in NOT_DESCRIBED}
    described = {_shape(path) for path in DOCUMENT["paths"]}
    assert served == described


def test_it_is_served_to_anyone_as_json(client: Client) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == DOCUMENT
    assert response.json()["openapi"].startswith("3.1")


def test_it_is_a_valid_openapi_document() -> None:
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    schema.validate()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result


def test_every_operation_but_health_and_this_one_needs_a_token_or_session() -> None:
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    for path, _method, operation in _operations():
        if path in ("/health", "/openapi.json"):
            assert operation["security"] == []
        else:
            assert "security" not in operation  # the document's: bearer or session
            assert "401" in operation["responses"], path


def test_every_4xx_has_the_one_error_body() -> None:
    shared = DOCUMENT["components"]["responses"]
    for status, response in shared.items():
        schema = response["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}, status
    for path, method, operation in _operations():
        for status, response in operation["responses"].items():
            if status.startswith("4"):
                assert response == {"$ref": f"#/components/responses/{status}"}, (path, method)
    detail = DOCUMENT["components"]["schemas"]["ErrorDetail"]
    assert detail["required"] == ["code", "message"]
    assert set(detail["properties"]) == {"code", "message", "retry_after", "fields"}


def test_operation_ids_are_unique_and_links_name_real_operations() -> None:
    ids = [operation["operationId"] for _path, _method, operation in _operations()]
    assert len(ids) == len(set(ids))
    for _path, _method, operation in _operations():
        for response in operation["responses"].values():
            for link in response.get("links", {}).values():
                assert link["operationId"] in ids
