"""RFC 7591 dynamic client registration: POST /oauth2/register.

The validation table names the RFC section of each rule; every refused request is checked for
its exact error code, the JSON error shape with ``Cache-Control: no-store``, and that nothing
was stored (no app, no secret, no audit event).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core.models import AuditEvent, AuditQuery
from tests.conftest import ISSUER, Client, grant_access
from tests.flows import (
    REDIRECT_URI,
    assert_oauth_error,
    assert_token_response,
    authorize,
    exchange_code,
    generate_pkce,
    token_request,
)
from tests.http_types import Response

REGISTER = "/oauth2/register"
WEB_URI = "https://client.example.com/callback"
DROP = object()  # a table value that removes the member from the body
BASE: dict[str, Any] = {"client_name": "Example client", "redirect_uris": [WEB_URI]}
PUBLIC_KEY = {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
              "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", "kid": "k1"}  # fmt: skip


def register(client: TestClient, body: dict[str, Any], **kwargs: Any) -> Response:
    return client.post(REGISTER, json=body, **kwargs)


def registered(client: TestClient, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    resp = register(client, body, **kwargs)
    assert resp.status_code == 201, resp.text
    assert resp.headers["cache-control"] == "no-store"
    result: dict[str, Any] = resp.json()
    return result


def events(services: Services, action: str) -> list[AuditEvent]:
    found, _ = services.store.list_audit(AuditQuery(action=action, limit=500))
    return list(found)


def state(services: Services) -> tuple[list[str], int, int]:
    """What a refused registration must leave unchanged: apps, secrets and the audit log."""
    apps = sorted(a.id for a in services.store.list_apps())
    secrets = sum(len(services.store.list_secrets(app_id)) for app_id in apps)
    _, audited = services.store.list_audit(AuditQuery(limit=1))
    return apps, secrets, audited


def body_with(**changes: Any) -> dict[str, Any]:
    body = {**BASE, **changes}
    return {k: v for k, v in body.items() if v is not DROP}


LONG = "https://client.example.com/" + "a" * 2030
JWKS = {"keys": [PUBLIC_KEY]}

INVALID = [
    # redirect_uris (RFC 7591 §2, §3.2.2 invalid_redirect_uri; OAuth 2.1 §2.3.1)
    pytest.param({"redirect_uris": DROP}, "invalid_redirect_uri", id="2-redirect_uris-missing"),
    pytest.param({"redirect_uris": []}, "invalid_redirect_uri", id="2-redirect_uris-empty"),
    pytest.param({"redirect_uris": WEB_URI}, "invalid_redirect_uri", id="2-redirect_uris-string"),
    pytest.param({"redirect_uris": [7]}, "invalid_redirect_uri", id="2-redirect_uris-not-strings"),
    pytest.param({"redirect_uris": ["/callback"]}, "invalid_redirect_uri", id="2-relative"),
    pytest.param({"redirect_uris": [WEB_URI + "#frag"]}, "invalid_redirect_uri", id="2-fragment"),
    pytest.param(
        {"redirect_uris": ["javascript:alert(1)//"]}, "invalid_redirect_uri", id="2-javascript"
    ),
    pytest.param(
        {"redirect_uris": ["data:text/html,<script>x</script>"]},
        "invalid_redirect_uri",
        id="2-data-scheme",
    ),
    pytest.param({"redirect_uris": ["file:///etc/passwd"]}, "invalid_redirect_uri", id="2-file"),
    pytest.param(
        {"redirect_uris": ["vbscript:msgbox(1)"]}, "invalid_redirect_uri", id="2-vbscript"
    ),
    pytest.param(
        {"redirect_uris": ["http://client.example.com/callback"]},
        "invalid_redirect_uri",
        id="2-http-not-loopback",
    ),
    pytest.param(
        {"redirect_uris": ["https://user:pw@client.example.com/cb"]},
        "invalid_redirect_uri",
        id="2-userinfo",
    ),
    pytest.param({"redirect_uris": [LONG]}, "invalid_redirect_uri", id="2-uri-too-long"),
    pytest.param({"redirect_uris": [WEB_URI, WEB_URI]}, "invalid_redirect_uri", id="2-duplicates"),
    pytest.param(
        {"redirect_uris": [f"https://c.example.com/{i}" for i in range(33)]},
        "invalid_redirect_uri",
        id="2-too-many-uris",
    ),
    pytest.param(
        {"token_endpoint_auth_method": "none", "redirect_uris": ["mailto:me@example.com"]},
        "invalid_redirect_uri",
        id="2-public-mailto",
    ),
    # application_type (OpenID Connect Registration §2, RFC 8252 §7)
    pytest.param(
        {"application_type": "web", "redirect_uris": ["http://127.0.0.1:8080/cb"]},
        "invalid_redirect_uri",
        id="2-web-loopback-http",
    ),
    pytest.param(
        {"application_type": "web", "redirect_uris": ["https://localhost/cb"]},
        "invalid_redirect_uri",
        id="2-web-localhost-https",
    ),
    pytest.param(
        {"application_type": "web", "redirect_uris": ["cursor://anysphere.cursor/cb"]},
        "invalid_redirect_uri",
        id="2-web-private-use-scheme",
    ),
    pytest.param(
        {"application_type": "desktop"}, "invalid_client_metadata", id="2-application_type-unknown"
    ),
    # token_endpoint_auth_method
    pytest.param(
        {"token_endpoint_auth_method": "client_secret_jwt"},
        "invalid_client_metadata",
        id="2-auth-method-client_secret_jwt",
    ),
    pytest.param(
        {"token_endpoint_auth_method": "tls_client_auth"},
        "invalid_client_metadata",
        id="2-auth-method-tls_client_auth",
    ),
    pytest.param(
        {"token_endpoint_auth_method": ["none"]},
        "invalid_client_metadata",
        id="2-auth-method-not-string",
    ),
    pytest.param(
        {"token_endpoint_auth_method": "private_key_jwt"},
        "invalid_client_metadata",
        id="2-private_key_jwt-without-keys",
    ),
    pytest.param(
        {"token_endpoint_auth_method": "private_key_jwt", "jwks": JWKS, "jwks_uri": WEB_URI},
        "invalid_client_metadata",
        id="2-private_key_jwt-jwks-and-jwks_uri",
    ),
    pytest.param(
        {
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [{**PUBLIC_KEY, "d": "x"}]},
        },
        "invalid_client_metadata",
        id="2-private_key_jwt-private-key",
    ),
    pytest.param(
        {"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": []}},
        "invalid_client_metadata",
        id="2-private_key_jwt-empty-jwks",
    ),
    pytest.param(
        {"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "http://c.example.com/k"},
        "invalid_client_metadata",
        id="2-private_key_jwt-jwks_uri-http",
    ),
    # grant_types and response_types (§2, §2.1)
    pytest.param({"grant_types": ["implicit"]}, "invalid_client_metadata", id="2-grant-implicit"),
    pytest.param({"grant_types": ["password"]}, "invalid_client_metadata", id="2-grant-password"),
    pytest.param(
        {"grant_types": ["urn:ietf:params:oauth:grant-type:device_code"]},
        "invalid_client_metadata",
        id="2-grant-device-code",
    ),
    pytest.param({"grant_types": []}, "invalid_client_metadata", id="2-grant-types-empty"),
    pytest.param(
        {"grant_types": "authorization_code"},
        "invalid_client_metadata",
        id="2-grant-types-string",
    ),
    pytest.param(
        {"grant_types": ["refresh_token"]}, "invalid_client_metadata", id="2-grant-refresh-only"
    ),
    pytest.param(
        {"token_endpoint_auth_method": "none", "grant_types": ["client_credentials"]},
        "invalid_client_metadata",
        id="2-client_credentials-public",
    ),
    pytest.param({"response_types": ["token"]}, "invalid_client_metadata", id="2-response-token"),
    pytest.param(
        {"response_types": ["code id_token"]},
        "invalid_client_metadata",
        id="2-response-code-id_token",
    ),
    pytest.param({"response_types": "code"}, "invalid_client_metadata", id="2-response-string"),
    pytest.param(
        {"grant_types": ["client_credentials"], "response_types": ["code"]},
        "invalid_client_metadata",
        id="2.1-code-without-authorization_code",
    ),
    pytest.param(
        {"response_types": []}, "invalid_client_metadata", id="2.1-authorization_code-without-code"
    ),
    # human-readable metadata
    pytest.param({"client_name": "n" * 65}, "invalid_client_metadata", id="2-client_name-too-long"),
    pytest.param({"client_name": 42}, "invalid_client_metadata", id="2-client_name-not-string"),
    pytest.param(
        {"client_name": "Evil\nClient"}, "invalid_client_metadata", id="2-client_name-control"
    ),
    pytest.param(
        {"client_uri": "http://client.example.com"},
        "invalid_client_metadata",
        id="2-client_uri-http",
    ),
    pytest.param(
        {"logo_uri": "javascript:alert(1)"}, "invalid_client_metadata", id="2-logo_uri-javascript"
    ),
    pytest.param({"tos_uri": "terms"}, "invalid_client_metadata", id="2-tos_uri-not-url"),
    pytest.param(
        {"policy_uri": "https://u@client.example.com/p"},
        "invalid_client_metadata",
        id="2-policy_uri-userinfo",
    ),
    pytest.param(
        {"logo_uri": "https://client.example.com/" + "l" * 2048},
        "invalid_client_metadata",
        id="2-logo_uri-too-long",
    ),
    pytest.param({"contacts": "me@example.com"}, "invalid_client_metadata", id="2-contacts-string"),
    pytest.param({"contacts": [1]}, "invalid_client_metadata", id="2-contacts-not-strings"),
    pytest.param(
        {"contacts": [f"c{i}@example.com" for i in range(11)]},
        "invalid_client_metadata",
        id="2-contacts-too-many",
    ),
    pytest.param({"scope": ["read"]}, "invalid_client_metadata", id="2-scope-not-string"),
    pytest.param({"scope": 'read "write"'}, "invalid_client_metadata", id="2-scope-bad-chars"),
    pytest.param({"software_id": "s" * 256}, "invalid_client_metadata", id="2-software_id-long"),
    pytest.param({"software_version": 2}, "invalid_client_metadata", id="2-software_version-int"),
    # software statements (§2.3, §3.2.2)
    pytest.param(
        {"software_statement": "eyJhbGciOiJub25lIn0.e30."},
        "unapproved_software_statement",
        id="3.2.2-software_statement",
    ),
]


@pytest.mark.parametrize(("changes", "error"), INVALID)
def test_invalid_metadata_is_refused(
    client: TestClient, services: Services, changes: dict[str, Any], error: str
) -> None:
    before = state(services)
    resp = register(client, body_with(**changes))
    assert_oauth_error(resp, 400, error)
    assert "client_id" not in resp.json() and "registration_access_token" not in resp.json()
    assert resp.headers["access-control-allow-origin"] == "*"
    assert state(services) == before


RAW = [
    pytest.param("application/json", b"[]", id="3.1-body-array"),
    pytest.param("application/json", b"{not json", id="3.1-body-not-json"),
    pytest.param("application/json", b'{"redirect_uris": [], "redirect_uris": []}', id="3.1-dup"),
    pytest.param("application/json", b"\xff\xfe", id="3.1-body-not-utf8"),
    pytest.param(
        "application/x-www-form-urlencoded",
        b"redirect_uris=https%3A%2F%2Fclient.example.com%2Fcb",
        id="3.1-form-encoded",
    ),
    pytest.param(
        "application/json",
        json.dumps({**BASE, "padding": "x" * (64 * 1024)}).encode(),
        id="3.1-body-over-64KiB",
    ),
]


@pytest.mark.parametrize(("content_type", "raw"), RAW)
def test_unreadable_body_is_refused(
    client: TestClient, services: Services, content_type: str, raw: bytes
) -> None:
    before = state(services)
    resp = client.post(REGISTER, content=raw, headers={"Content-Type": content_type})
    assert_oauth_error(resp, 400, "invalid_client_metadata")
    assert state(services) == before


def test_3_2_1_public_client(client: TestClient, services: Services) -> None:
    body = registered(
        client,
        {
            "client_name": "Claude Code",
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "scope": "read write",
            "software_id": "claude-code",
            "software_version": "2.1.0",
            "contacts": ["ops@example.com"],
            "unknown_extension": {"ignored": True},
        },
    )
    client_id = body["client_id"]
    token = body["registration_access_token"]
    assert body == {
        "client_id": client_id,
        "client_id_issued_at": body["client_id_issued_at"],
        "registration_access_token": token,
        "registration_client_uri": f"http://testserver/oauth2/clients/{client_id}",
        "client_name": "Claude Code",
        "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "application_type": "native",
        "scope": "read write",
        "software_id": "claude-code",
        "software_version": "2.1.0",
        "contacts": ["ops@example.com"],
    }
    assert token.startswith("agrat_")
    assert isinstance(body["client_id_issued_at"], int)
    app = services.store.get_app(client_id)
    assert app is not None
    assert app.client_type == "public" and app.token_endpoint_auth_method == "none"
    assert app.dynamically_registered and app.require_pkce and not app.first_party
    assert int(app.created_at.timestamp()) == body["client_id_issued_at"]
    # Stored as its SHA-256 only.
    assert app.registration_token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert services.store.list_secrets(client_id) == []
    [event] = events(services, "client.registered")
    assert event.target_id == client_id and event.actor_id == client_id
    assert event.details["client_type"] == "public"
    assert token not in json.dumps(event.details)


def test_3_2_1_confidential_client_gets_a_secret_once(
    client: TestClient, services: Services
) -> None:
    body = registered(client, {**BASE, "grant_types": ["client_credentials"], "redirect_uris": []})
    secret = body["client_secret"]
    assert secret.startswith("agcs_")
    assert body["client_secret_expires_at"] == 0
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    assert body["response_types"] == []
    [stored] = services.store.list_secrets(body["client_id"])
    assert stored.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    # The secret works, with the registered (default) method, once an operator granted it
    # something to reach (core/service_access.py).
    grant_access(services, body["client_id"], {ISSUER: []})
    resp = token_request(
        client, {"grant_type": "client_credentials"}, basic=(body["client_id"], secret)
    )
    assert_token_response(resp)
    # Neither the secret nor the token is in any audit event.
    found, _ = services.store.list_audit(AuditQuery(limit=500))
    dumped = json.dumps([e.details for e in found])
    assert secret not in dumped and body["registration_access_token"] not in dumped
    # Reading the configuration back never shows the secret again.
    read = client.get(
        body["registration_client_uri"],
        headers={"Authorization": f"Bearer {body['registration_access_token']}"},
    )
    assert read.status_code == 200
    assert "client_secret" not in read.json() and "registration_access_token" not in read.json()


def test_2_defaults(client: TestClient, services: Services) -> None:
    body = registered(client, {"redirect_uris": [WEB_URI, "https://other.example.com/cb"]})
    assert body["client_name"] == "Client (client.example.com)"
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    assert body["response_types"] == ["code"]
    assert body["application_type"] == "web"
    assert "client_secret" in body
    for absent in ("scope", "client_uri", "logo_uri", "contacts", "jwks", "jwks_uri"):
        assert absent not in body
    # The name comes from client_uri when there is one.
    named = registered(client, {"redirect_uris": [WEB_URI], "client_uri": "https://vendor.example"})
    assert named["client_name"] == "Client (vendor.example)"
    app = services.store.get_app(named["client_id"])
    assert app is not None and app.client_uri == "https://vendor.example"


def test_2_secret_method_is_pinned(client: TestClient, services: Services) -> None:
    """DESIGN.md §7: a dynamically registered client uses exactly the method it registered."""
    body = registered(
        client,
        {
            **BASE,
            "redirect_uris": [],
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_post",
        },
    )
    client_id, secret = body["client_id"], body["client_secret"]
    grant_access(services, client_id, {ISSUER: []})  # an operator's grant
    basic = token_request(client, {"grant_type": "client_credentials"}, basic=(client_id, secret))
    assert_oauth_error(basic, 401, "invalid_client")
    post = token_request(
        client,
        {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert_token_response(post)


def test_2_human_readable_metadata_is_kept(client: TestClient, services: Services) -> None:
    body = registered(
        client,
        {
            **BASE,
            "client_uri": "https://client.example.com",
            "logo_uri": "https://client.example.com/logo.png",
            "tos_uri": "https://client.example.com/tos",
            "policy_uri": "https://client.example.com/privacy",
        },
    )
    assert body["logo_uri"] == "https://client.example.com/logo.png"
    assert body["tos_uri"] == "https://client.example.com/tos"
    app = services.store.get_app(body["client_id"])
    assert app is not None
    assert app.icon == "https://client.example.com/logo.png"
    assert app.policy_uri == "https://client.example.com/privacy"


def test_2_private_key_jwt_with_jwks(client: TestClient, services: Services) -> None:
    body = registered(
        client, {**BASE, "token_endpoint_auth_method": "private_key_jwt", "jwks": JWKS}
    )
    assert body["token_endpoint_auth_method"] == "private_key_jwt"
    assert body["jwks"] == JWKS
    assert "client_secret" not in body
    app = services.store.get_app(body["client_id"])
    assert app is not None and app.client_type == "confidential" and app.jwks == JWKS
    assert services.store.list_secrets(app.id) == []


def test_2_private_key_jwt_with_jwks_uri(client: TestClient) -> None:
    body = registered(
        client,
        {
            **BASE,
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": "https://client.example.com/jwks.json",
        },
    )
    assert body["jwks_uri"] == "https://client.example.com/jwks.json"
    assert "jwks" not in body


@pytest.mark.parametrize(
    ("uris", "expected"),
    [
        pytest.param(["http://127.0.0.1/callback"], "native", id="8252-7.3-loopback-ip"),
        pytest.param(["http://[::1]:8080/callback"], "native", id="8252-7.3-loopback-ipv6"),
        pytest.param(["cursor://anysphere.cursor-retrieval/oauth/cb"], "native", id="8252-7.1"),
        pytest.param(["com.example.app:/oauth2redirect"], "native", id="8252-7.1-reverse-dns"),
        pytest.param(
            ["https://vscode.dev/redirect", "http://127.0.0.1:33418"], "native", id="mixed"
        ),
        pytest.param([WEB_URI], "web", id="https-is-web"),
    ],
)
def test_application_type_follows_the_uris_when_omitted(
    client: TestClient, uris: list[str], expected: str
) -> None:
    """Many MCP clients omit application_type; their redirect URIs say what they are."""
    body = registered(client, {"redirect_uris": uris, "token_endpoint_auth_method": "none"})
    assert body["application_type"] == expected
    assert body["redirect_uris"] == uris


@pytest.mark.parametrize(
    ("application_type", "uris"),
    [
        pytest.param("native", ["http://localhost:3118/callback"], id="native-loopback"),
        pytest.param("native", ["vscode://vscode.github-authentication/did-authenticate"], id="n"),
        pytest.param("native", ["https://vscode.dev/redirect"], id="native-claimed-https"),
        pytest.param("web", ["https://claude.ai/api/mcp/auth_callback"], id="web-https"),
    ],
)
def test_application_type_stated(
    client: TestClient, services: Services, application_type: str, uris: list[str]
) -> None:
    body = registered(
        client,
        {
            "redirect_uris": uris,
            "application_type": application_type,
            "token_endpoint_auth_method": "none",
        },
    )
    assert body["application_type"] == application_type
    app = services.store.get_app(body["client_id"])
    assert app is not None and app.application_type == application_type


def test_registered_public_client_completes_the_flow(
    signed_in: TestClient, services: Services
) -> None:
    body = registered(
        signed_in,
        {
            "client_name": "MCP Inspector",
            "redirect_uris": ["http://127.0.0.1:6274/oauth/callback"],
            "token_endpoint_auth_method": "none",
        },
    )
    client_id = body["client_id"]
    pkce = generate_pkce()
    # RFC 8252 §7.3: any port on the loopback host the client registered.
    redirect_uri = "http://127.0.0.1:51999/oauth/callback"
    code = authorize(signed_in, client_id, challenge=pkce.challenge, redirect_uri=redirect_uri)
    resp = exchange_code(
        signed_in,
        code,
        client_id=client_id,
        client_secret=None,
        verifier=pkce.verifier,
        redirect_uri=redirect_uri,
    )
    tokens = assert_token_response(resp)
    assert tokens["refresh_token"]
    app = services.store.get_app(client_id)
    assert app is not None and app.last_used_at is not None  # the use that keeps it alive


def test_registered_confidential_client_completes_the_flow(signed_in: TestClient) -> None:
    body = registered(signed_in, {**BASE, "redirect_uris": [REDIRECT_URI]})
    pkce = generate_pkce()
    code = authorize(signed_in, body["client_id"], challenge=pkce.challenge)
    resp = exchange_code(
        signed_in,
        code,
        client_id=body["client_id"],
        client_secret=body["client_secret"],
        verifier=pkce.verifier,
        basic=True,
    )
    assert_token_response(resp)


def test_cors_like_the_token_endpoint(client: TestClient) -> None:
    preflight = client.options(
        REGISTER,
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in preflight.headers
    resp = register(client, BASE, headers={"Origin": "https://app.example"})
    assert resp.status_code == 201
    assert resp.headers["access-control-allow-origin"] == "*"


def test_registration_is_not_first_party_even_if_asked(
    client: TestClient, services: Services, confidential: Client
) -> None:
    body = registered(
        client, {**BASE, "first_party": True, "require_pkce": False, "client_id": confidential.id}
    )
    assert body["client_id"] != confidential.id
    app = services.store.get_app(body["client_id"])
    assert app is not None and not app.first_party and app.require_pkce
