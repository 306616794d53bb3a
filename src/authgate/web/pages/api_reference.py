"""The management API's reference as a page (`/api/v2/docs`), rendered on the server from the
OpenAPI document the API publishes at `/api/v2/openapi.json`: it works without JavaScript,
under the pages' strict Content-Security-Policy and without any outside host."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from authgate.web.templating import render

METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    where: str  # path, query, header, body
    type: str
    required: bool
    description: str


@dataclass(frozen=True, slots=True)
class Reply:
    status: str
    description: str
    type: str


@dataclass(frozen=True, slots=True)
class Operation:
    anchor: str
    method: str
    path: str
    summary: str
    description: str
    fields: list[Field]
    body_type: str
    replies: list[Reply]


@dataclass(frozen=True, slots=True)
class Section:
    tag: str
    operations: list[Operation]


@dataclass(frozen=True, slots=True)
class Schema:
    name: str
    description: str
    fields: list[Field]


def type_name(schema: dict[str, Any]) -> str:
    """A schema in a few words: `AppOut`, `list of string`, `string or null`."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    for combined in ("anyOf", "oneOf", "allOf"):
        if combined in schema:
            return " or ".join(type_name(part) for part in schema[combined])
    kind = schema.get("type")
    if kind == "array":
        return "list of " + type_name(schema.get("items", {}))
    if kind == "object" and "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        return "map of " + (type_name(extra) if isinstance(extra, dict) else "any")
    if "enum" in schema:
        return " | ".join(str(v) for v in schema["enum"])
    return str(kind or "any")


def _body_schema(operation: dict[str, Any]) -> dict[str, Any]:
    content = operation.get("requestBody", {}).get("content", {})
    for media in content.values():
        schema: dict[str, Any] = media.get("schema", {})
        return schema
    return {}


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/components/schemas/"):
        return schema
    found: dict[str, Any] = doc.get("components", {}).get("schemas", {}).get(ref.rsplit("/")[-1])
    return found or {}


def _properties(schema: dict[str, Any], where: str) -> list[Field]:
    required = set(schema.get("required", []))
    return [
        Field(
            name=name,
            where=where,
            type=type_name(prop),
            required=name in required,
            description=prop.get("description", ""),
        )
        for name, prop in schema.get("properties", {}).items()
    ]


def _fields(doc: dict[str, Any], operation: dict[str, Any]) -> list[Field]:
    fields = [
        Field(
            name=p["name"],
            where=p.get("in", ""),
            type=type_name(p.get("schema", {})),
            required=bool(p.get("required")),
            description=p.get("description", ""),
        )
        for p in operation.get("parameters", [])
    ]
    return fields + _properties(_resolve(doc, _body_schema(operation)), "body")


def _replies(operation: dict[str, Any]) -> list[Reply]:
    replies = []
    for status, reply in operation.get("responses", {}).items():
        schema: dict[str, Any] = {}
        for media in reply.get("content", {}).values():
            schema = media.get("schema", {})
            break
        shown = type_name(schema) if schema else ""
        if shown and "$ref" not in schema and schema.get("title"):
            shown = schema["title"] if shown == "object" else shown
        replies.append(Reply(str(status), reply.get("description", ""), shown))
    return replies


def sections(doc: dict[str, Any]) -> list[Section]:
    """Every operation of the document, grouped by its first tag, in the document's order."""
    grouped: dict[str, list[Operation]] = {}
    for path, item in doc.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            tag = (operation.get("tags") or ["other"])[0]
            grouped.setdefault(tag, []).append(
                Operation(
                    anchor=operation.get("operationId", f"{method}-{path}"),
                    method=method.upper(),
                    path=path,
                    summary=operation.get("summary", ""),
                    description=operation.get("description", ""),
                    fields=_fields(doc, operation),
                    body_type=type_name(_body_schema(operation))
                    if "requestBody" in operation
                    else "",
                    replies=_replies(operation),
                )
            )
    return [Section(tag, ops) for tag, ops in grouped.items()]


def schemas(doc: dict[str, Any]) -> list[Schema]:
    """The document's named schemas (request and response bodies) with their fields."""
    named = doc.get("components", {}).get("schemas", {})
    return [
        Schema(name, schema.get("description", ""), _properties(schema, "body"))
        for name, schema in sorted(named.items())
    ]


async def page(request: Request) -> Response:
    doc = request.app.openapi()
    named = schemas(doc)
    return render(
        request,
        "api_reference.html",
        {
            "info": doc.get("info", {}),
            "sections": sections(doc),
            "schemas": named,
            "schema_names": {schema.name for schema in named},
        },
    )
