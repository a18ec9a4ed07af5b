"""The OpenAPI document, generated from the same msgspec types the API decodes.

Swagger UI (served at /docs) reads OpenAPI 3.0, so the JSON Schema that
msgspec produces is lowered to 3.0's dialect: ``anyOf [X, null]`` becomes
``X`` with ``nullable: true``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from serenchat import __version__

STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "No content",
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Too large",
    429: "Rate limited",
    500: "Internal error",
    503: "Unavailable",
}


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path" or "query"
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    response: Any = None  # a type msgspec can describe, or None for no body
    status: int = 200
    body: Any = None
    auth: bool = True
    params: tuple[Param, ...] = ()
    # Error statuses the operation can answer with; 401 is added for every
    # operation that needs a token.
    errors: tuple[int, ...] = (400, 403, 404)


def document(operations: list[Operation], error_type: Any) -> dict[str, Any]:
    types = [error_type]
    for op in operations:
        types += [t for t in (op.body, op.response) if t is not None]
    schemas, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    refs = dict(zip(map(id, types), schemas, strict=True))

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        entry: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": f"{op.method}_{op.path}".replace("/", "_")
            .replace("{", "")
            .replace("}", "")
            .lower(),
            "responses": _responses(op, refs, error_type),
        }
        if op.params:
            entry["parameters"] = [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.where == "path",
                    "description": p.description,
                    "schema": p.schema,
                }
                for p in op.params
            ]
        if op.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[id(op.body)]}},
            }
        if op.auth:
            entry["security"] = [{"bearer": []}]
        paths.setdefault(op.path, {})[op.method.lower()] = entry

    return _lower(
        {
            "openapi": "3.0.3",
            "info": {
                "title": "SerenChat API",
                "version": __version__,
                "description": "REST API of SerenChat. Real-time traffic uses "
                "the WebSocket at /ws; see docs/protocol.md.",
            },
            "servers": [{"url": "/api/v1"}],
            "paths": paths,
            "components": {
                "schemas": components,
                "securitySchemes": {
                    "bearer": {
                        "type": "http",
                        "scheme": "bearer",
                        "bearerFormat": "JWT",
                    }
                },
            },
        }
    )


def _responses(op: Operation, refs: dict[int, Any], error_type: Any) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": STATUS_TEXT[op.status]}
    if op.response is not None:
        ok["content"] = {"application/json": {"schema": refs[id(op.response)]}}
    responses = {str(op.status): ok}
    error_schema = {"application/json": {"schema": refs[id(error_type)]}}
    # Any operation may meet a server fault (500) or a database outage (503).
    statuses = sorted({*op.errors, *((401,) if op.auth else ()), 500, 503})
    for status in statuses:
        responses[str(status)] = {
            "description": STATUS_TEXT[status],
            "content": error_schema,
        }
    return responses


def _lower(node: Any) -> Any:
    """Rewrite JSON Schema 2020-12 constructs that OpenAPI 3.0 lacks."""
    if isinstance(node, list):
        return [_lower(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _lower(value) for key, value in node.items()}
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        node.pop("anyOf")
        if len(rest) == 1 and "$ref" not in rest[0]:
            node.update(rest[0])
        elif len(rest) == 1:
            node["allOf"] = rest
        else:
            node["anyOf"] = rest
        node["nullable"] = True
    return node
