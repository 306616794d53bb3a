"""The management API for registered resources (/api/v2/resources) and signing keys
(/api/v2/keys): bodies, problem documents, what the database holds, audit events, and that
no private key material ever leaves the server.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core import keys
from authgate.core.models import AuditEvent, AuditQuery, SigningKey
from authgate.crypto import jose
from tests.clock import MovableClock
from tests.conftest import ISSUER, Account, Client, make_client
from tests.flows import (
    RESOURCE,
    assert_token_response,
    authorize,
    exchange_code,
    generate_pkce,
    login,
    session_csrf,
)
from tests.web.test_admin_api import assert_problem, bearer

API = "/api/v2"
RESOURCES = f"{API}/resources"
KEYS = f"{API}/keys"
NEW = "https://mcp.notes.example/mcp"


def one(identifier_or_id: str) -> str:
    """The path of one resource: an id, or an identifier URL-encoded into one segment."""
    return f"{RESOURCES}/{quote(identifier_or_id, safe='')}"


def audit_events(services: Services, action: str) -> list[AuditEvent]:
    """Events of ``action`` caused through the API (the fixtures' own are ``system``'s)."""
    events, _ = services.store.list_audit(AuditQuery(action=action, limit=200))
    return [e for e in events if e.actor_type != "system"]


def create(client: TestClient, admin: Account, **body: Any) -> dict[str, Any]:
    payload = {"identifier": NEW, "name": "Notes MCP", **body}
    resp = client.post(RESOURCES, json=payload, headers=bearer(admin))
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


def identifiers(services: Services) -> list[str]:
    return sorted(r.identifier for r in services.store.list_resources())


# Resources: CRUD


def test_create_get_list_update_delete(
    client: TestClient, services: Services, admin: Account, clock: MovableClock
) -> None:
    introspector = make_client(services, name="Notes MCP server")
    created = create(
        client,
        admin,
        identifier="HTTPS://MCP.Notes.Example:443/mcp",
        scopes=[{"name": "notes:read", "description": " Read your notes "}, {"name": "x"}],
        token_format="opaque",
        access_token_ttl=600,
        introspectors=[introspector.id],
    )

    assert set(created) == {
        "id",
        "identifier",
        "name",
        "scopes",
        "token_format",
        "access_token_ttl",
        "introspectors",
        "created_at",
        "updated_at",
    }
    assert created["identifier"] == NEW  # canonical form
    assert created["scopes"] == [
        {"name": "notes:read", "description": "Read your notes"},
        {"name": "x", "description": ""},
    ]
    assert (created["token_format"], created["access_token_ttl"]) == ("opaque", 600)
    assert created["introspectors"] == [introspector.id]
    stored = services.store.get_resource(created["id"])
    assert stored is not None and stored.identifier == NEW and stored.access_token_ttl == 600
    [event] = audit_events(services, "resource.created")
    assert (event.actor_type, event.actor_id) == ("user", admin.user.id)
    assert (event.target_type, event.target_id) == ("resource", created["id"])
    assert event.details["identifier"] == NEW
    assert event.details["scopes"] == ["notes:read", "x"]

    # By id, by URL-encoded identifier, and by another spelling of it.
    for ref in (created["id"], NEW, "https://mcp.notes.example:443/mcp"):
        got = client.get(one(ref), headers=bearer(admin))
        assert got.status_code == 200, (ref, got.text)
        assert got.json() == created
    listed = client.get(RESOURCES, headers=bearer(admin))
    assert listed.status_code == 200
    assert created in listed.json()
    assert {r["identifier"] for r in listed.json()} == {ISSUER, *identifiers(services)}

    clock.advance(minutes=1)
    changed = client.put(
        one(created["id"]),
        json={"name": "Notes", "scopes": [{"name": "notes:write", "description": "Edit"}]},
        headers=bearer(admin),
    )

    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["name"] == "Notes"
    assert body["scopes"] == [{"name": "notes:write", "description": "Edit"}]  # replaced
    # Omitted fields keep their values.
    assert (body["token_format"], body["access_token_ttl"]) == ("opaque", 600)
    assert body["introspectors"] == [introspector.id]
    assert body["created_at"] == created["created_at"]
    assert body["updated_at"] > created["updated_at"]
    stored = services.store.get_resource(created["id"])
    assert stored is not None and stored.name == "Notes"
    [updated] = audit_events(services, "resource.updated")
    assert updated.target_id == created["id"] and updated.details["name"] == "Notes"

    # The identifier may be sent on PUT in any spelling of the same URI.
    same = client.put(
        one(NEW), json={"identifier": NEW.upper().replace("/MCP", "/mcp")}, headers=bearer(admin)
    )
    assert same.status_code == 200, same.text

    deleted = client.delete(one(NEW), headers=bearer(admin))

    assert deleted.status_code == 204 and deleted.content == b""
    assert services.store.get_resource(created["id"]) is None
    assert_problem(client.get(one(created["id"]), headers=bearer(admin)), 404)
    assert_problem(client.delete(one(created["id"]), headers=bearer(admin)), 404)
    [gone] = audit_events(services, "resource.deleted")
    assert (gone.target_id, gone.details["identifier"]) == (created["id"], NEW)


def test_create_defaults(client: TestClient, services: Services, admin: Account) -> None:
    created = create(client, admin)
    assert created["scopes"] == [] and created["introspectors"] == []
    assert (created["token_format"], created["access_token_ttl"]) == ("jwt", None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"identifier": "/relative"}, "identifier"),
        ({"identifier": "https://api.example.com/x#frag"}, "identifier"),
        ({"identifier": "ftp://files.example.com"}, "identifier"),
        ({"identifier": "https://user:pw@api.example.com/x"}, "identifier"),
        ({"name": "   "}, "name"),
        ({"name": "n" * 129}, "name"),
        ({"token_format": "paseto"}, "token_format"),
        ({"access_token_ttl": 59}, "access_token_ttl"),
        ({"access_token_ttl": 86401}, "access_token_ttl"),
        ({"scopes": [{"name": "a b"}]}, "scopes"),
        ({"scopes": [{"name": "read"}, {"name": "read"}]}, "scopes"),
        ({"scopes": [{"name": "read", "description": "d" * 257}]}, "scopes"),
        ({"introspectors": ["no-such-app"]}, "introspectors"),
        ({"scopes": "read"}, "scopes"),
        ({"identifier": None}, "identifier"),
    ],
)
def test_create_invalid_is_400_and_stores_nothing(
    client: TestClient, services: Services, admin: Account, body: dict[str, Any], field: str
) -> None:
    before = identifiers(services)
    payload = {"identifier": NEW, "name": "Notes MCP", **body}

    resp = client.post(RESOURCES, json=payload, headers=bearer(admin))

    problem = assert_problem(resp, 400)
    assert any(key.startswith(field) for key in problem["validations"]), problem
    assert identifiers(services) == before
    assert audit_events(services, "resource.created") == []


def test_public_app_cannot_introspect(
    client: TestClient, services: Services, admin: Account, public: Client
) -> None:
    resp = client.post(
        RESOURCES,
        json={"identifier": NEW, "name": "N", "introspectors": [public.id]},
        headers=bearer(admin),
    )
    assert_problem(resp, 400, field="introspectors")
    assert services.store.get_resource_by_identifier(NEW) is None


@pytest.mark.parametrize(
    "identifier",
    [RESOURCE, RESOURCE + "/", "HTTPS://API.EXAMPLE.COM:443", "https://api.example.com:443/"],
)
def test_duplicate_identifier_is_409(
    client: TestClient, services: Services, admin: Account, identifier: str
) -> None:
    before = services.store.list_resources()

    resp = client.post(
        RESOURCES, json={"identifier": identifier, "name": "Again"}, headers=bearer(admin)
    )

    problem = assert_problem(resp, 409)
    assert RESOURCE in problem["detail"]
    assert services.store.list_resources() == before
    assert audit_events(services, "resource.created") == []


def test_update_invalid_is_400_and_changes_nothing(
    client: TestClient, services: Services, admin: Account
) -> None:
    created = create(client, admin, access_token_ttl=600)
    before = services.store.get_resource(created["id"])

    cases = [
        ({"identifier": "https://elsewhere.example.com"}, "identifier"),
        ({"name": ""}, "name"),
        ({"access_token_ttl": 10}, "access_token_ttl"),
        ({"access_token_ttl": None}, "access_token_ttl"),  # core cannot reset it: refused
        ({"token_format": "JWT"}, "token_format"),
        ({"scopes": [{"name": ""}]}, "scopes"),
        ({"introspectors": ["ghost"]}, "introspectors"),
    ]
    for body, field in cases:
        resp = client.put(one(created["id"]), json=body, headers=bearer(admin))
        problem = assert_problem(resp, 400)
        assert any(key.startswith(field) for key in problem["validations"]), (body, problem)

    assert services.store.get_resource(created["id"]) == before
    assert audit_events(services, "resource.updated") == []
    missing = client.put(one("https://nowhere.example"), json={"name": "x"}, headers=bearer(admin))
    assert_problem(missing, 404)


def test_put_null_ttl_is_fine_when_already_default(
    client: TestClient, services: Services, admin: Account
) -> None:
    created = create(client, admin)
    resp = client.put(one(created["id"]), json=created, headers=bearer(admin))  # a round trip
    assert resp.status_code == 200, resp.text
    assert resp.json()["access_token_ttl"] is None


def test_own_api_resource_cannot_be_deleted(
    client: TestClient, services: Services, admin: Account
) -> None:
    own = services.store.get_resource_by_identifier(ISSUER)
    assert own is not None

    for ref in (own.id, ISSUER, ISSUER + "/"):
        assert_problem(client.delete(one(ref), headers=bearer(admin)), 400)

    assert services.store.get_resource_by_identifier(ISSUER) == own
    assert audit_events(services, "resource.deleted") == []


def test_resources_need_an_administrator(
    client: TestClient, services: Services, admin: Account, alice: Account
) -> None:
    created = create(client, admin)
    before = services.store.list_resources()
    calls = [
        ("GET", RESOURCES, None),
        ("POST", RESOURCES, {"identifier": "https://x.example", "name": "X"}),
        ("GET", one(created["id"]), None),
        ("PUT", one(created["id"]), {"name": "Mine"}),
        ("DELETE", one(created["id"]), None),
    ]
    for method, path, body in calls:
        assert_problem(client.request(method, path, json=body, headers=bearer(alice)), 403)
        assert_problem(client.request(method, path, json=body), 401)
    assert services.store.list_resources() == before


def test_browser_session_change_needs_csrf(
    client: TestClient, services: Services, admin: Account
) -> None:
    login(client, admin.user.username, admin.password)
    body = {"identifier": NEW, "name": "Notes"}
    assert_problem(client.post(RESOURCES, json=body), 403)
    assert services.store.get_resource_by_identifier(NEW) is None
    resp = client.post(RESOURCES, json=body, headers=session_csrf(client))
    assert resp.status_code == 201, resp.text


def test_openapi_describes_resources_and_keys(client: TestClient) -> None:
    doc = client.get(f"{API}/openapi.json").json()
    paths = doc["paths"]
    assert {"get", "post"} <= set(paths[RESOURCES])
    assert {"get", "put", "delete"} <= set(paths[f"{RESOURCES}/{{resource}}"])
    assert "get" in paths[KEYS] and "post" in paths[f"{KEYS}/rotate"]
    assert "application/problem+json" in paths[RESOURCES]["post"]["responses"]["409"]["content"]
    schemas = doc["components"]["schemas"]
    assert set(schemas["ResourceOut"]["properties"]) == {
        "id",
        "identifier",
        "name",
        "scopes",
        "token_format",
        "access_token_ttl",
        "introspectors",
        "created_at",
        "updated_at",
    }
    assert set(schemas["SigningKeyOut"]["properties"]) == {
        "kid",
        "alg",
        "state",
        "created_at",
        "activated_at",
        "retired_at",
        "expires_at",
        "public_jwk",
    }
    assert schemas["SigningKeyOut"]["properties"]["state"]["enum"] == ["next", "active", "retiring"]


# Signing keys


def stored_keys(services: Services) -> list[SigningKey]:
    return list(services.store.list_signing_keys())


def assert_no_private_material(services: Services, *texts: str) -> None:
    """No sealed private key (nor a private JWK member) in any text or any audit event."""
    events, _ = services.store.list_audit(AuditQuery(limit=500))
    audit_text = json.dumps(
        [[e.action, e.target_id, e.details] for e in events], default=str, sort_keys=True
    )
    for key in stored_keys(services):
        assert key.private_key and len(key.private_key) > 40
        assert key.private_key not in audit_text
        for text in texts:
            assert key.private_key not in text
    for text in texts:
        assert '"d":' not in text.replace(" ", "")
        assert "private_key" not in text


def jwt_for(client: TestClient, app: Client) -> str:
    pkce = generate_pkce()
    code = authorize(client, app.id, challenge=pkce.challenge, resource=RESOURCE)
    resp = exchange_code(
        client,
        code,
        client_id=app.id,
        client_secret=app.secret,
        verifier=pkce.verifier,
        resource=RESOURCE,
    )
    token: str = assert_token_response(resp)["access_token"]
    assert token.count(".") == 2, token
    return token


def test_keys_list_and_rotate(
    client: TestClient, services: Services, admin: Account, clock: MovableClock
) -> None:
    listed = client.get(KEYS, headers=bearer(admin))
    assert listed.status_code == 200, listed.text
    before = listed.json()
    assert sorted(k["state"] for k in before) == ["active", "next"]
    [active] = [k for k in before if k["state"] == "active"]
    [upcoming] = [k for k in before if k["state"] == "next"]
    assert active["activated_at"] is not None and active["expires_at"] is None
    assert upcoming["activated_at"] is None
    for key in before:
        assert key["alg"] == services.ctx.policy.signing_alg
        assert key["public_jwk"]["kid"] == key["kid"]
        assert "d" not in key["public_jwk"]

    clock.advance(minutes=5)
    rotated = client.post(f"{KEYS}/rotate", headers=bearer(admin))

    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert (new["kid"], new["state"]) == (upcoming["kid"], "active")
    assert new["activated_at"] is not None
    after = {k["kid"]: k for k in client.get(KEYS, headers=bearer(admin)).json()}
    assert after[active["kid"]]["state"] == "retiring"
    assert after[active["kid"]]["retired_at"] is not None
    expected_expiry = clock.now() + keys.max_token_ttl(services.ctx) + keys.LEEWAY
    assert datetime.fromisoformat(after[active["kid"]]["expires_at"]) == expected_expiry
    assert after[new["kid"]]["state"] == "active"
    [fresh_next] = [k for k in after.values() if k["state"] == "next"]
    assert fresh_next["kid"] not in (active["kid"], new["kid"])
    assert len(after) == 3

    [event] = audit_events(services, "signing_key.rotated")
    assert (event.actor_type, event.actor_id) == ("user", admin.user.id)
    assert (event.target_type, event.target_id) == ("signing_key", new["kid"])
    assert event.details["previous"] == active["kid"]
    assert_no_private_material(services, listed.text, rotated.text, json.dumps(after))


def test_rotation_publishes_old_and_new_and_new_tokens_use_the_new_key(
    client: TestClient, services: Services, admin: Account, confidential: Client
) -> None:
    login(client, admin.user.username, admin.password)
    old_token = jwt_for(client, confidential)
    old_kid = header_kid(old_token)
    jwks_before = client.get("/.well-known/jwks.json").json()["keys"]
    assert old_kid in {k["kid"] for k in jwks_before}

    rotated = client.post(f"{KEYS}/rotate", headers=bearer(admin))
    assert rotated.status_code == 200, rotated.text
    new_kid = rotated.json()["kid"]
    assert new_kid != old_kid

    jwks = client.get("/.well-known/jwks.json")
    assert jwks.status_code == 200
    published = jwks.json()["keys"]
    assert {old_kid, new_kid} <= {k["kid"] for k in published}
    new_token = jwt_for(client, confidential)
    assert header_kid(new_token) == new_kid
    # Both verify against the published set: tokens signed before the rotation stay valid.
    for token in (old_token, new_token):
        _, claims = jose.verify(token, published)
        assert claims["aud"] == RESOURCE
    assert_no_private_material(services, jwks.text, rotated.text)


def test_rotation_with_no_next_key_creates_one(
    client: TestClient, services: Services, admin: Account
) -> None:
    for _ in range(3):
        resp = client.post(f"{KEYS}/rotate", headers=bearer(admin))
        assert resp.status_code == 200, resp.text
    states = sorted(k["state"] for k in client.get(KEYS, headers=bearer(admin)).json())
    assert states == ["active", "next", "retiring", "retiring", "retiring"]
    assert len(audit_events(services, "signing_key.rotated")) == 3


def test_keys_need_an_administrator(client: TestClient, services: Services, alice: Account) -> None:
    before = stored_keys(services)
    assert_problem(client.get(KEYS, headers=bearer(alice)), 403)
    assert_problem(client.post(f"{KEYS}/rotate", headers=bearer(alice)), 403)
    assert_problem(client.post(f"{KEYS}/rotate"), 401)
    assert stored_keys(services) == before
    assert audit_events(services, "signing_key.rotated") == []


def header_kid(token: str) -> str:
    header = json.loads(jose_b64(token.split(".")[0]))
    kid: str = header["kid"]
    assert header["typ"] == "at+jwt"
    return kid


def jose_b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
