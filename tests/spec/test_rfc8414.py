"""RFC 8414 authorization server metadata, RFC 9728 protected resource metadata, and RFC 9207
`iss`: every place authgate names itself is the one configured issuer string."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from authgate.app import build_services, create_app
from authgate.config import Settings
from tests.conftest import Client, make_account, make_client
from tests.flows import authorize, authorize_url, callback_params, decide, generate_pkce, login


def test_metadata_document(client: TestClient) -> None:
    resp = client.get("/.well-known/oauth-authorization-server")
    assert resp.status_code == 200
    body = resp.json()
    assert body["issuer"] == "http://testserver"
    assert body["authorization_endpoint"] == "http://testserver/oauth2/authorize"
    assert body["token_endpoint"] == "http://testserver/oauth2/tokens"
    assert body["response_types_supported"] == ["code"]
    assert body["grant_types_supported"] == [
        "authorization_code",
        "client_credentials",
        "refresh_token",
    ]
    assert body["code_challenge_methods_supported"] == ["S256"]
    assert body["authorization_response_iss_parameter_supported"] is True
    assert set(body["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "none",
        "private_key_jwt",
    }
    # Only what is enabled: nothing of later features yet.
    assert body["jwks_uri"] == "http://testserver/.well-known/jwks.json"
    assert body["introspection_endpoint"] == "http://testserver/oauth2/introspect"
    assert body["revocation_endpoint"] == "http://testserver/oauth2/revoke"
    # What a client can sensibly ask for (issue 17): every resource's scopes + offline_access.
    assert body["scopes_supported"] == ["admin", "offline_access", "read", "write"]
    # Registration is on by default (DESIGN.md §7); switching it off removes the endpoint.
    assert body["registration_endpoint"] == "http://testserver/oauth2/register"
    assert resp.headers["access-control-allow-origin"] == "*"
    assert "max-age" in resp.headers["cache-control"]


def test_protected_resource_metadata(client: TestClient) -> None:
    body = client.get("/.well-known/oauth-protected-resource").json()
    assert body["resource"] == "http://testserver"
    assert body["authorization_servers"] == ["http://testserver"]
    assert "header" in body["bearer_methods_supported"]


def test_iss_on_success_is_the_issuer(signed_in: TestClient, confidential: Client) -> None:
    url = authorize_url(confidential.id, challenge=generate_pkce().challenge)
    assert callback_params(decide(signed_in, url))["iss"] == "http://testserver"


def test_issuer_with_path_uses_path_insertion(tmp_path: Path, settings: Settings) -> None:
    issuer = "http://testserver/tenant/a"
    custom = settings.model_copy(update={"issuer": issuer})
    services = build_services(custom)
    account = make_account(services, "pathuser", admin=False)
    app = make_client(services)
    with TestClient(create_app(custom, services=services), base_url="http://testserver") as c:
        inserted = c.get("/.well-known/oauth-authorization-server/tenant/a")
        assert inserted.status_code == 200
        body = inserted.json()
        assert body["issuer"] == issuer
        assert body["token_endpoint"] == issuer + "/oauth2/tokens"
        login(c, account.user.username, account.password)
        code_url = authorize_url(app.id, challenge=generate_pkce().challenge)
        got = callback_params(decide(c, code_url))
        assert got["iss"] == issuer
    services.store.close()


def test_trailing_slash_issuer_is_kept_byte_identical(settings: Settings) -> None:
    issuer = "http://testserver/"
    custom = settings.model_copy(update={"issuer": issuer})
    services = build_services(custom)
    account = make_account(services, "slash", admin=False)
    app = make_client(services)
    with TestClient(create_app(custom, services=services), base_url="http://testserver") as c:
        body = c.get("/.well-known/oauth-authorization-server").json()
        assert body["issuer"] == issuer
        assert body["authorization_endpoint"] == "http://testserver/oauth2/authorize"
        login(c, account.user.username, account.password)
        code = authorize(c, app.id, challenge=generate_pkce().challenge)
        assert code
        got = callback_params(decide(c, authorize_url(app.id, challenge=generate_pkce().challenge)))
        assert got["iss"] == issuer
    services.store.close()
