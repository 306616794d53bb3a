"""The management API's reference page: every operation of the OpenAPI document, rendered on the
server, public like the document itself, under the pages' security headers."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from authgate.web.pages.api_reference import sections, type_name


def test_every_operation_of_the_document_is_on_the_page(client: TestClient) -> None:
    doc = client.get("/api/v2/openapi.json").json()
    page = client.get("/api/v2/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src" in page.headers["content-security-policy"]
    assert "<script" not in page.text
    expected = {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert len(expected) > 20
    shown = set(re.findall(r"<h3><code>(GET|POST|PUT|PATCH|DELETE) ([^<]+)</code></h3>", page.text))
    assert shown == expected
    # Every schema has its section, and a body type links to it.
    for name in doc["components"]["schemas"]:
        assert f'id="schema-{name}"' in page.text
    assert 'href="#schema-AppOut"' in page.text
    assert 'href="/api/v2/openapi.json"' in page.text


def test_an_operation_shows_its_parameters_body_fields_and_responses(client: TestClient) -> None:
    doc = client.get("/api/v2/openapi.json").json()
    ops = {(op.method, op.path): op for section in sections(doc) for op in section.operations}
    create = ops[("POST", "/api/v2/oauth2-provider/apps")]
    fields = {f.name: f for f in create.fields}
    assert fields["name"].where == "body" and fields["name"].required
    assert fields["redirect_uris"].type.startswith("list of")
    statuses = {r.status for r in create.replies}
    assert {"400", "401"} <= statuses and statuses & {"200", "201"}
    listing = ops[("GET", "/api/v2/oauth2-provider/apps")]
    assert [f.where for f in listing.fields if f.name == "user_id"] == ["query"]
    assert any(r.type == "list of AppOut" for r in listing.replies)


def test_type_names_read_as_words() -> None:
    assert type_name({"$ref": "#/components/schemas/AppOut"}) == "AppOut"
    assert type_name({"anyOf": [{"type": "string"}, {"type": "null"}]}) == "string or null"
    assert type_name({"type": "array", "items": {"type": "string"}}) == "list of string"
    assert type_name({"type": "object", "additionalProperties": {"type": "integer"}}) == (
        "map of integer"
    )
    assert type_name({"enum": ["jwt", "opaque"]}) == "jwt | opaque"
    assert type_name({}) == "any"
