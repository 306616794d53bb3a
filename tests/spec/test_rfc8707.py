"""RFC 8707 resource indicators: the token's audience is exactly the resource consented to."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core.errors import InvalidTargetError
from authgate.core.resources import canonical_resource
from tests.conftest import Client, issued
from tests.flows import (
    RESOURCE,
    assert_oauth_error,
    assert_token_response,
    authorize,
    authorize_url,
    callback_params,
    exchange_code,
    generate_pkce,
    refresh,
)


def _audience(services: Services, app_id: str) -> set[str]:
    import sqlalchemy as sa

    with services.store.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT audience FROM access_tokens WHERE app_id = :a"), {"a": app_id}
        )
        return {r[0] for r in rows}


def _flow(
    client: TestClient, app: Client, *, at_authorize: str | None, at_token: str | None
) -> Any:
    pkce = generate_pkce()
    code = authorize(client, app.id, challenge=pkce.challenge, resource=at_authorize)
    return exchange_code(
        client,
        code,
        client_id=app.id,
        client_secret=app.secret,
        verifier=pkce.verifier,
        resource=at_token,
    )


def test_no_resource_gets_authgate_audience(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    assert_token_response(_flow(signed_in, confidential, at_authorize=None, at_token=None))
    assert _audience(services, confidential.id) == {"http://testserver"}


def test_valid_resource(signed_in: TestClient, services: Services, confidential: Client) -> None:
    assert_token_response(_flow(signed_in, confidential, at_authorize=RESOURCE, at_token=RESOURCE))
    assert _audience(services, confidential.id) == {RESOURCE}


def test_resource_at_authorize_only(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    assert_token_response(_flow(signed_in, confidential, at_authorize=RESOURCE, at_token=None))
    assert _audience(services, confidential.id) == {RESOURCE}


@pytest.mark.parametrize(
    ("at_authorize", "at_token"),
    [
        pytest.param(None, RESOURCE, id="2.2-token-only"),
        pytest.param(RESOURCE, "https://other.example.com", id="2.2-mismatch"),
        pytest.param(RESOURCE, "not a uri", id="2-malformed-at-token"),
    ],
)
def test_resource_mismatch_is_invalid_target(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    at_authorize: str | None,
    at_token: str,
) -> None:
    resp = _flow(signed_in, confidential, at_authorize=at_authorize, at_token=at_token)
    assert_oauth_error(resp, 400, "invalid_target")
    state = issued(services, confidential.id)
    assert (state.access, state.consumed_codes) == (0, 0)


def test_equivalent_spelling_is_the_same_resource(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    resp = _flow(
        signed_in, confidential, at_authorize="https://API.example.com:443/", at_token=RESOURCE
    )
    assert_token_response(resp)
    assert _audience(services, confidential.id) == {RESOURCE}


@pytest.mark.parametrize(
    "resource",
    [
        pytest.param("api.example.com", id="2-relative"),
        pytest.param("https://api.example.com/#frag", id="2-fragment"),
        pytest.param("urn:example:resource", id="2-not-http"),
        pytest.param("https://user@api.example.com", id="2-userinfo"),
        pytest.param("https://api.example.com:99999", id="2-bad-port"),
    ],
)
def test_invalid_resource_at_authorize_is_redirected(
    signed_in: TestClient, confidential: Client, resource: str
) -> None:
    url = authorize_url(confidential.id, challenge=generate_pkce().challenge, resource=resource)
    got = callback_params(signed_in.get(url, follow_redirects=False))
    assert got["error"] == "invalid_target"
    assert got["state"] == "xyz-state" and got["iss"] == "http://testserver"


def test_two_resources_are_refused(signed_in: TestClient, confidential: Client) -> None:
    url = authorize_url(confidential.id, challenge=generate_pkce().challenge, resource=RESOURCE)
    got = callback_params(
        signed_in.get(url + "&resource=https%3A%2F%2Fb.example", follow_redirects=False)
    )
    assert got["error"] == "invalid_target"


def test_refresh_with_same_or_no_resource(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    body = assert_token_response(
        _flow(signed_in, confidential, at_authorize=RESOURCE, at_token=RESOURCE)
    )
    same = assert_token_response(
        refresh(
            signed_in,
            body["refresh_token"],
            client_id=confidential.id,
            client_secret=confidential.secret,
            resource=RESOURCE,
        )
    )
    assert_token_response(
        refresh(
            signed_in,
            same["refresh_token"],
            client_id=confidential.id,
            client_secret=confidential.secret,
        )
    )
    assert _audience(services, confidential.id) == {RESOURCE}


def test_refresh_with_different_resource(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    body = assert_token_response(
        _flow(signed_in, confidential, at_authorize=RESOURCE, at_token=None)
    )
    resp = refresh(
        signed_in,
        body["refresh_token"],
        client_id=confidential.id,
        client_secret=confidential.secret,
        resource="https://other.example.com",
    )
    assert_oauth_error(resp, 400, "invalid_target")
    assert issued(services, confidential.id).access == 1
    # The refresh token was not consumed by the refusal.
    assert_token_response(
        refresh(
            signed_in,
            body["refresh_token"],
            client_id=confidential.id,
            client_secret=confidential.secret,
        )
    )


def test_token_for_another_audience_is_refused_by_authgate_api(
    signed_in: TestClient, confidential: Client
) -> None:
    body = assert_token_response(
        _flow(signed_in, confidential, at_authorize=RESOURCE, at_token=None)
    )
    signed_in.cookies.clear()
    resp = signed_in.get(
        "/api/v2/users/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert resp.status_code == 401
    assert "audience" in resp.json()["detail"]
    assert "resource_metadata=" in resp.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("https://MCP.Example.com", "https://mcp.example.com"),
        ("https://mcp.example.com/", "https://mcp.example.com"),
        ("https://mcp.example.com:443/mcp", "https://mcp.example.com/mcp"),
        ("http://localhost:80/x/", "http://localhost/x/"),
        ("https://mcp.example.com:8443/mcp?x=1", "https://mcp.example.com:8443/mcp?x=1"),
        ("https://[::1]:8443/", "https://[::1]:8443"),
    ],
)
def test_canonical_form(value: str, canonical: str) -> None:
    assert canonical_resource(value) == canonical


def test_canonical_rejects_garbage() -> None:
    with pytest.raises(InvalidTargetError):
        canonical_resource("https://exa mple.com")


def test_unregistered_resource_is_invalid_target(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    url = authorize_url(
        confidential.id,
        challenge=generate_pkce().challenge,
        resource="https://unregistered.example.com",
    )
    got = callback_params(signed_in.get(url, follow_redirects=False))
    assert got["error"] == "invalid_target"
    assert "not registered" in got["error_description"]
    assert issued(services, confidential.id).grants == 0


def test_resource_scopes_unknown_are_left_out(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    # RFC 6749 §3.3: a scope the resource does not define is left out of the token, not refused
    # (tests/spec/test_rfc6749_scope.py has the whole table).
    pkce = generate_pkce()
    code = authorize(
        signed_in, confidential.id, challenge=pkce.challenge, resource=RESOURCE, scope="delete"
    )
    body = assert_token_response(
        exchange_code(
            signed_in,
            code,
            client_id=confidential.id,
            client_secret=confidential.secret,
            verifier=pkce.verifier,
        )
    )
    assert "scope" not in body
    assert _audience(services, confidential.id) == {RESOURCE}
