"""OpenID Connect Discovery 1.0 §3-4: the OpenID Provider document is the RFC 8414 document,
from the same builder, plus the OpenID fields."""

from __future__ import annotations

from starlette.testclient import TestClient

from authgate.app import build_services, create_app
from authgate.config import Settings
from tests.conftest import ISSUER, Account

OIDC = "/.well-known/openid-configuration"
RFC8414 = "/.well-known/oauth-authorization-server"


def test_openid_configuration(client: TestClient) -> None:
    resp = client.get(OIDC)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["access-control-allow-origin"] == "*"
    assert "max-age" in resp.headers["cache-control"]
    body = resp.json()
    # §3 REQUIRED fields.
    assert body["issuer"] == ISSUER
    assert body["authorization_endpoint"] == f"{ISSUER}/oauth2/authorize"
    assert body["token_endpoint"] == f"{ISSUER}/oauth2/tokens"
    assert body["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert body["userinfo_endpoint"] == f"{ISSUER}/oauth2/userinfo"
    assert body["response_types_supported"] == ["code"]
    assert body["subject_types_supported"] == ["public"]
    # Signed with the keys of the access tokens: the configured algorithm, in the JWKS.
    assert body["id_token_signing_alg_values_supported"] == ["ES256"]
    algs = {k["alg"] for k in client.get("/.well-known/jwks.json").json()["keys"]}
    assert algs == {"ES256"}
    assert body["scopes_supported"] == [
        "admin", "email", "offline_access", "openid", "profile", "read", "write",
    ]  # fmt: skip
    assert set(body["claims_supported"]) == {
        "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "azp", "at_hash", "amr",
        "acr", "idp", "name", "preferred_username", "updated_at", "email", "email_verified",
    }  # fmt: skip
    assert body["acr_values_supported"] == [
        "urn:authgate:acr:password",
        "urn:authgate:acr:upstream",
    ]
    assert body["prompt_values_supported"] == ["none", "login", "consent", "select_account"]
    # Defaults that would claim what authgate does not do are stated.
    assert body["request_uri_parameter_supported"] is False
    assert body["request_parameter_supported"] is False
    assert body["claims_parameter_supported"] is False


def test_one_builder_for_both_documents(client: TestClient) -> None:
    """Every RFC 8414 field is the same in both; the OpenID document only adds."""
    oauth = client.get(RFC8414).json()
    oidc = client.get(OIDC).json()
    for name, value in oauth.items():
        if name != "scopes_supported":
            assert oidc[name] == value, name
    assert set(oauth["scopes_supported"]) < set(oidc["scopes_supported"])
    # The RFC 8414 document is left as MCP clients know it: no OpenID fields or scopes.
    assert "userinfo_endpoint" not in oauth and "openid" not in oauth["scopes_supported"]


def test_a_setting_reaches_both_documents(client: TestClient, admin: Account) -> None:
    assert "registration_endpoint" in client.get(OIDC).json()
    resp = client.put(
        "/api/v2/oauth2-provider/settings",
        json={"dynamic_client_registration_enabled": False},
        headers={"Authorization": f"Bearer {admin.api_token}"},
    )
    assert resp.status_code == 200, resp.text
    assert "registration_endpoint" not in client.get(RFC8414).json()
    assert "registration_endpoint" not in client.get(OIDC).json()


def test_issuer_with_path(settings: Settings) -> None:
    """OIDC Discovery §4: issuer + /.well-known/openid-configuration."""
    issuer = "http://testserver/tenant/a"
    custom = settings.model_copy(update={"issuer": issuer})
    services = build_services(custom)
    with TestClient(create_app(custom, services=services), base_url="http://testserver") as c:
        for path in ("/tenant/a" + OIDC, OIDC):
            body = c.get(path).json()
            assert body["issuer"] == issuer
            assert body["userinfo_endpoint"] == issuer + "/oauth2/userinfo"
    services.store.close()
