"""Access token scope (RFC 6749 §3.3), as clients send it.

"The authorization server MAY fully or partially ignore the scope requested by the client,
based on the authorization server policy or the resource owner's instructions. If the issued
access token scope is different from the one requested by the client, the authorization server
MUST include the "scope" response parameter to inform the client of the actual scope granted."

The issued scope is the request narrowed to what the resource defines and the client may have:
``offline_access`` and OpenID names are accepted (a refresh token is issued as before; the
OpenID scopes authgate honours, with ``openid``, are issued: tests/spec/test_oidc_core.py), spaces
are tolerated, a name no resource defines is left out. ``invalid_scope`` only when every name
the client asked for (beside those accepted extras) is defined by the resource and forbidden
to this client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core.models import AuditQuery
from tests.conftest import Client, make_client
from tests.flows import (
    REDIRECT_URI,
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

FIXTURES = Path(__file__).parent.parent / "fixtures" / "clients"


def granted_scopes(services: Services, app_id: str) -> list[str]:
    """The scope of every grant (consent) and access token stored for the app."""
    with services.store.engine.connect() as conn:
        grants = conn.execute(sa.text("SELECT scope FROM grants WHERE app_id = :a"), {"a": app_id})
        tokens = conn.execute(
            sa.text("SELECT scope FROM access_tokens WHERE app_id = :a"), {"a": app_id}
        )
        return [r[0] for r in grants] + [r[0] for r in tokens]


def tokens_for(client: TestClient, app: Client, scope: str | None) -> dict[str, Any]:
    pkce = generate_pkce()
    code = authorize(client, app.id, challenge=pkce.challenge, resource=RESOURCE, scope=scope)
    return assert_token_response(
        exchange_code(
            client, code, client_id=app.id, client_secret=app.secret, verifier=pkce.verifier
        )
    )


# RESOURCE (tests/conftest.py) defines "read" and "write".
ISSUED = [
    pytest.param("read offline_access", None, "read", id="3.3-offline_access-accepted"),
    # Issue 20: the OpenID scopes authgate honours are issued (and an ID token with them).
    pytest.param("openid profile email", None, "openid profile email", id="3.3-openid-scopes"),
    pytest.param("openid read", None, "openid read", id="3.3-openid-beside-resource-scope"),
    pytest.param("address openid", None, "openid", id="3.3-unheld-openid-scope-left-out"),
    pytest.param("  read   write ", None, "read write", id="3.3-whitespace-tolerated"),
    pytest.param("claudeai", None, "", id="3.3-undefined-name-empty-scope"),
    pytest.param("read mcp:tools", None, "read", id="3.3-other-resource-scope-left-out"),
    pytest.param("read write", "read", "read", id="3.3-narrowed-to-allow-list"),
    pytest.param("read write", "claudeai", "read write", id="3.3-undefined-allow-list-ignored"),
    pytest.param(None, "read", "read", id="3.3-no-request-gets-allow-list"),
]


@pytest.mark.parametrize(("requested", "app_scope", "issued"), ISSUED)
def test_issued_scope(
    signed_in: TestClient,
    services: Services,
    requested: str | None,
    app_scope: str | None,
    issued: str,
) -> None:
    app = make_client(services, scope=app_scope)
    body = tokens_for(signed_in, app, requested)
    # RFC 6749 §5.1: the scope is reported whenever there is one (an empty one is none).
    assert body.get("scope", "") == issued
    assert "refresh_token" in body  # offline_access or not (DESIGN.md §5)
    assert granted_scopes(services, app.id) == [issued, issued]
    found = services.store.get_app(app.id)
    assert found is not None and found.scope == app_scope


def test_whole_scopes_supported_works(signed_in: TestClient, services: Services) -> None:
    """The MCP SDKs request the server's whole ``scopes_supported`` when a resource lists none."""
    listed = signed_in.get("/.well-known/oauth-authorization-server").json()["scopes_supported"]
    assert listed == ["admin", "offline_access", "read", "write"]
    app = make_client(services)
    body = tokens_for(signed_in, app, " ".join(listed))
    assert body["scope"] == "read write"
    # And for authgate's own API, whose admin scope this app may not have: withheld.
    pkce = generate_pkce()
    code = authorize(signed_in, app.id, challenge=pkce.challenge, scope=" ".join(listed))
    own = assert_token_response(
        exchange_code(
            signed_in, code, client_id=app.id, client_secret=app.secret, verifier=pkce.verifier
        )
    )
    assert "admin" not in own.get("scope", "").split()


@pytest.mark.parametrize(
    ("requested", "app_scope"),
    [
        pytest.param("write", "read", id="3.3-defined-but-forbidden"),
        pytest.param("write offline_access openid", "read", id="3.3-forbidden-with-extras"),
    ],
)
def test_forbidden_scope_is_invalid_scope(
    signed_in: TestClient, services: Services, requested: str, app_scope: str
) -> None:
    app = make_client(services, scope=app_scope)
    url = authorize_url(
        app.id, challenge=generate_pkce().challenge, resource=RESOURCE, scope=requested
    )
    got = callback_params(signed_in.get(url, follow_redirects=False))
    assert got["error"] == "invalid_scope"
    assert "write" in got["error_description"]
    assert granted_scopes(services, app.id) == []


def test_refresh_with_the_authorization_scope(signed_in: TestClient, services: Services) -> None:
    """Clients send on refresh the scope they sent at authorization: names that were left out
    then are left out again; the token keeps its scope."""
    app = make_client(services)
    first = tokens_for(signed_in, app, "read offline_access openid")
    assert first["scope"] == "read openid"
    again = assert_token_response(
        refresh(
            signed_in,
            first["refresh_token"],
            client_id=app.id,
            client_secret=app.secret,
            scope="read offline_access openid",
        )
    )
    assert again["scope"] == "read openid"
    wider = refresh(
        signed_in,
        again["refresh_token"],
        client_id=app.id,
        client_secret=app.secret,
        scope="read write",
    )
    assert_oauth_error(wider, 400, "invalid_scope")


def test_claude_registration_scope_is_not_an_allow_list(
    signed_in: TestClient, services: Services
) -> None:
    """claude.ai registers ``scope: claudeai`` and asks for it at authorize: a name no resource
    defines restricts nothing and grants nothing; the token is usable, with an empty scope."""
    body = json.loads((FIXTURES / "claude-desktop.registration.json").read_text())
    body = {k: v for k, v in body.items() if not k.startswith("_")}
    # The test's redirect (flows.REDIRECT_URI) stands in for claude.ai's callback.
    body["redirect_uris"] = [REDIRECT_URI]
    info = signed_in.post("/oauth2/register", json=body).json()
    assert info["scope"] == "claudeai"
    found = services.store.get_app(info["client_id"])
    assert found is not None and found.scope == "claudeai"
    pkce = generate_pkce()
    code = authorize(
        signed_in, info["client_id"], challenge=pkce.challenge, resource=RESOURCE, scope="claudeai"
    )
    token = assert_token_response(
        exchange_code(
            signed_in, code, client_id=info["client_id"], client_secret=None, verifier=pkce.verifier
        )
    )
    assert "scope" not in token and "refresh_token" in token
    # Asking for the resource's scopes then works: "claudeai" is no allow-list.
    pkce = generate_pkce()
    code = authorize(
        signed_in,
        info["client_id"],
        challenge=pkce.challenge,
        resource=RESOURCE,
        scope="read write offline_access",
    )
    wide = assert_token_response(
        exchange_code(
            signed_in, code, client_id=info["client_id"], client_secret=None, verifier=pkce.verifier
        )
    )
    assert wide["scope"] == "read write"
    consented, _ = services.store.list_audit(AuditQuery(action="consent.granted", limit=10))
    assert any(e.details.get("scope") == "read write" for e in consented)
