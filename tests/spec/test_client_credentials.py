"""RFC 6749 §4.4 client_credentials: confidential clients an operator allowed, no refresh token,
the same audience and scope rules as the other grants."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jwt as pyjwt
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core import resources, service_access
from authgate.core.context import SYSTEM
from authgate.core.models import ScopeInfo
from authgate.core.resources import ResourceFields
from tests.conftest import ISSUER, Client, issued, make_client
from tests.flows import RESOURCE, assert_oauth_error, assert_token_response, token_request


def _cc(
    services: Services,
    *,
    service_access: Mapping[str, Sequence[str]] | None = None,
    **fields: object,
) -> Client:
    return make_client(
        services,
        grant_types=["client_credentials"],
        redirect_uris=[],
        service_access=service_access,
        **fields,
    )


def test_issues_a_jwt_for_the_client(client: TestClient, services: Services) -> None:
    app = _cc(services, scope="read", service_access={RESOURCE: ["read"]})
    resp = token_request(
        client,
        {"grant_type": "client_credentials", "resource": RESOURCE, "scope": "read"},
        basic=(app.id, app.secret or ""),
    )
    body = assert_token_response(resp)
    assert "refresh_token" not in body and body["scope"] == "read"
    claims = pyjwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == app.id == claims["client_id"]
    assert claims["aud"] == RESOURCE and "auth_time" not in claims
    state = issued(services, app.id)
    # No grant: a grant is a user's consent and a refresh family; the token row says it all.
    assert (state.access, state.refresh, state.grants) == (1, 0, 0)
    row = services.store.get_access_token_by_prefix(claims["jti"])
    assert row is not None and row.grant_id is None and row.user_id is None
    assert row.app_id == app.id and row.audience == RESOURCE and row.scope == "read"
    secrets = services.store.list_secrets(app.id)
    assert [s.id for s in secrets] == [row.secret_id]


def test_without_resource_gets_authgate_audience(client: TestClient, services: Services) -> None:
    app = _cc(services, service_access={ISSUER: []})  # authgate's own API, no scope
    body = assert_token_response(
        token_request(
            client, {"grant_type": "client_credentials"}, basic=(app.id, app.secret or "")
        )
    )
    assert body["access_token"].startswith("agat_")  # authgate's own API uses opaque tokens
    assert "scope" not in body


def test_not_allowed_for_app(client: TestClient, confidential: Client, services: Services) -> None:
    resp = token_request(
        client,
        {"grant_type": "client_credentials"},
        basic=(confidential.id, confidential.secret or ""),
    )
    assert_oauth_error(resp, 400, "unauthorized_client")
    assert issued(services, confidential.id).access == 0


def test_unknown_resource_and_scope(client: TestClient, services: Services) -> None:
    app = _cc(services, scope="read", service_access={RESOURCE: ["read", "write"]})
    creds = (app.id, app.secret or "")
    unknown = token_request(
        client,
        {"grant_type": "client_credentials", "resource": "https://nope.example.com"},
        basic=creds,
    )
    assert_oauth_error(unknown, 400, "invalid_target")
    wide = token_request(
        client,
        {"grant_type": "client_credentials", "resource": RESOURCE, "scope": "read write"},
        basic=creds,
    )
    assert_oauth_error(wide, 400, "invalid_scope")
    assert issued(services, app.id).access == 0


def test_public_clients_cannot(client: TestClient, public: Client, services: Services) -> None:
    resp = token_request(client, {"grant_type": "client_credentials", "client_id": public.id})
    assert_oauth_error(resp, 400, "unauthorized_client")


def test_authentication_required(client: TestClient, services: Services) -> None:
    app = _cc(services)
    resp = token_request(client, {"grant_type": "client_credentials", "client_id": app.id})
    assert_oauth_error(resp, 401, "invalid_client")


def test_4_4_only_what_the_registry_still_defines(client: TestClient, services: Services) -> None:
    """A granted scope the resource no longer defines is not issued; a granted resource deleted
    since is invalid_target, and the stale entry can still be revoked."""
    resources.create_resource(
        services.ctx,
        SYSTEM,
        ResourceFields(
            identifier="https://gone.example.com",
            name="Gone",
            scopes=(ScopeInfo("a", ""), ScopeInfo("b", "")),
        ),
    )
    app = _cc(services, service_access={"https://gone.example.com": ["a", "b"]})
    creds = (app.id, app.secret or "")
    data = {"grant_type": "client_credentials", "resource": "https://gone.example.com"}
    assert assert_token_response(token_request(client, data, basic=creds))["scope"] == "a b"
    resources.update_resource(
        services.ctx,
        SYSTEM,
        "https://gone.example.com",
        ResourceFields(scopes=[ScopeInfo("a", "")]),
    )
    assert assert_token_response(token_request(client, data, basic=creds))["scope"] == "a"
    assert_oauth_error(
        token_request(client, {**data, "scope": "b"}, basic=creds), 400, "invalid_scope"
    )
    resources.delete_resource(services.ctx, SYSTEM, "https://gone.example.com")
    assert_oauth_error(token_request(client, data, basic=creds), 400, "invalid_target")
    assert issued(services, app.id).access == 2
    after = service_access.revoke(services.ctx, SYSTEM, app.id, "https://gone.example.com")
    assert after.service_access == ()
