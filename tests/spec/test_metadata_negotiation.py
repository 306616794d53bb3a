"""Metadata negotiation (RFC 7591 §2, §3.2.1; OpenID Connect RP Metadata Choices), over HTTP
from the real bodies of the clients people use (tests/fixtures/clients/).

"The authorization server MAY reject or replace any of the client's requested metadata values
submitted during the registration and substitute them with suitable values" (RFC 7591 §2):
grant types, response types and auth methods authgate does not support are dropped, not
refused, while what remains is usable; the response, the stored app, the admin views and the
audit entry say what was registered and what was dropped."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.config import Settings
from authgate.core.client_assertion import ASSERTION_TYPE
from authgate.core.models import App, AuditEvent, AuditQuery
from tests.clock import MovableClock
from tests.conftest import ISSUER, Account
from tests.fetch.server import DocumentServer, Route, serve
from tests.flows import (
    RESOURCE,
    assert_oauth_error,
    assert_token_response,
    authorize,
    authorize_url,
    consent_page,
    generate_pkce,
    login,
    token_request,
)
from tests.http_types import Response

FIXTURES = Path(__file__).parent.parent / "fixtures" / "clients"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
DOC_PATH = "/oauth/client.json"
JWKS_PATH = "/oauth/jwks.json"


def fixture(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    assert body.pop("_source").startswith("https://")
    body.pop("_notes", None)
    return body


@pytest.fixture
def docs(tmp_path: Path) -> Iterator[DocumentServer]:
    (tmp_path / "tls").mkdir()
    yield from serve(tmp_path / "tls")


@pytest.fixture
def settings(tmp_path: Path, database_url: str, docs: DocumentServer) -> Settings:
    return Settings(
        issuer=ISSUER,
        data_dir=tmp_path,
        database_url=database_url,
        secret_key="test-secret-key-" + "x" * 32,
        fetch_allow_hosts="127.0.0.1",
        fetch_ca_bundle=str(tmp_path / "tls" / "ca.pem"),
        fetch_timeout_seconds=1,
    )


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "chatgpt-1", "use": "sig"}, private=True)


def audit_of(services: Services, action: str, app_id: str) -> AuditEvent:
    found, _ = services.store.list_audit(AuditQuery(action=action, limit=50))
    events = [e for e in found if e.target_id == app_id]
    assert len(events) == 1, events
    return events[0]


def stored(services: Services, app_id: str) -> App:
    app = services.store.get_app(app_id)
    assert app is not None
    return app


# Dynamic registration (RFC 7591 §3.2.1: the response holds what was registered).

REGISTRATIONS = [
    pytest.param(
        fixture("claude-ai.registration.json"),
        ["authorization_code", "refresh_token"],
        ["none"],
        {"grant_types": [JWT_BEARER]},
        id="7591-2-claude.ai-jwt-bearer-dropped",
    ),
    pytest.param(
        fixture("vscode.registration.json"),
        ["authorization_code", "refresh_token"],
        ["none"],
        {"grant_types": [DEVICE_CODE]},
        id="7591-2-vscode-device_code-dropped",
    ),
    pytest.param(
        {**fixture("claude-desktop.registration.json"), "response_types": ["code", "token"]},
        ["authorization_code", "refresh_token"],
        ["none"],
        {"response_types": ["token"]},
        id="7591-2.1-response-type-token-dropped",
    ),
    pytest.param(
        {
            "client_name": "Mixed",
            "redirect_uris": ["https://client.example.com/cb"],
            "token_endpoint_auth_method": "client_secret_basic",
            "token_endpoint_auth_methods_supported": ["tls_client_auth", "client_secret_basic"],
            "grant_types": ["authorization_code", "password", "client_credentials"],
        },
        ["authorization_code", "client_credentials"],
        ["client_secret_basic"],
        {"token_endpoint_auth_methods": ["tls_client_auth"], "grant_types": ["password"]},
        id="7591-2-unknown-method-and-grant-dropped",
    ),
    pytest.param(
        {
            **fixture("claude-desktop.registration.json"),
            "grant_types": ["authorization_code", "client_credentials"],
        },
        ["authorization_code"],
        ["none"],
        {"grant_types": ["client_credentials"]},
        id="6749-4.4-client_credentials-dropped-from-public",
    ),
]


@pytest.mark.parametrize(("body", "grants", "methods", "dropped"), REGISTRATIONS)
def test_registration_drops_what_is_not_supported(
    client: TestClient,
    services: Services,
    admin: Account,
    body: dict[str, Any],
    grants: list[str],
    methods: list[str],
    dropped: dict[str, list[str]],
) -> None:
    resp = client.post("/oauth2/register", json=body)
    assert resp.status_code == 201, resp.text
    info = resp.json()
    assert info["grant_types"] == grants
    assert info["token_endpoint_auth_method"] == methods[0]
    assert info["response_types"] == ["code"]
    assert ("client_secret" in info) == methods[0].startswith("client_secret")
    app = stored(services, info["client_id"])
    assert list(app.grant_types) == grants
    assert app.token_endpoint_auth_method == methods[0]
    event = audit_of(services, "client.registered", app.id)
    assert event.details["dropped"] == dropped
    assert event.details["grant_types"] == grants
    # RFC 7592 §2.1 and the admin API show the same registered values.
    read = client.get(
        info["registration_client_uri"].removeprefix(ISSUER),
        headers={"Authorization": f"Bearer {info['registration_access_token']}"},
    ).json()
    assert read["grant_types"] == grants
    view = client.get(
        f"/api/v2/oauth2-provider/apps/{app.id}",
        headers={"Authorization": f"Bearer {admin.api_token}"},
    ).json()
    assert view["grant_types"] == grants
    assert view["token_endpoint_auth_methods"] == methods


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"grant_types": [JWT_BEARER]}, id="7591-2-only-unsupported-grants"),
        pytest.param(
            {"token_endpoint_auth_methods_supported": ["tls_client_auth"], "grant_types": None},
            id="7591-2-only-unsupported-methods",
        ),
        pytest.param({"response_types": ["token"]}, id="7591-2.1-no-code-response-type"),
    ],
)
def test_registration_with_nothing_usable_is_refused(
    client: TestClient, services: Services, body: dict[str, Any]
) -> None:
    base = fixture("claude-ai.registration.json")
    base.pop("token_endpoint_auth_method")
    base.update({k: v for k, v in body.items() if v is not None})
    if body.get("grant_types", "keep") is None:
        base.pop("grant_types")
    before = len(services.store.list_apps())
    assert_oauth_error(client.post("/oauth2/register", json=base), 400, "invalid_client_metadata")
    assert len(services.store.list_apps()) == before


def test_registration_with_a_method_list_is_honoured_per_request(
    client: TestClient, services: Services, admin: Account, rsa_key: RSAKey
) -> None:
    """RP Metadata Choices in a registration: ``none`` and ``private_key_jwt`` with ``jwks``."""
    body = {
        **fixture("claude-desktop.registration.json"),
        "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "jwks": {"keys": [dict(rsa_key.as_dict(private=False))]},
    }
    body.pop("token_endpoint_auth_method")
    info = client.post("/oauth2/register", json=body).json()
    assert info["token_endpoint_auth_method"] == "none"
    assert info["token_endpoint_auth_methods_supported"] == ["none", "private_key_jwt"]
    assert "client_secret" not in info
    app = stored(services, info["client_id"])
    assert app.is_public and app.jwks is not None
    assert audit_of(services, "client.registered", app.id).details[
        "token_endpoint_auth_methods"
    ] == ["none", "private_key_jwt"]
    # The console's app page says what the token endpoint accepts.
    login(client, admin.user.username, admin.password)
    page = client.get(f"/admin/apps/{app.id}")
    assert page.status_code == 200
    assert "<code>none</code> or <code>private_key_jwt</code>" in page.text


# Client ID Metadata Documents.


def publish(docs: DocumentServer, body: dict[str, Any]) -> str:
    url = docs.url(DOC_PATH)
    docs.routes[DOC_PATH] = Route.json({**body, "client_id": url}, cache_control="max-age=600")
    return url


def test_claude_ai_document_is_accepted_without_its_jwt_bearer_grant(
    signed_in: TestClient, services: Services, docs: DocumentServer
) -> None:
    body = fixture("claude-ai.document.json")
    url = publish(docs, body)
    redirect = body["redirect_uris"][0]
    page = consent_page(
        signed_in,
        authorize_url(url, redirect_uri=redirect, challenge=generate_pkce().challenge),
    )
    assert page.status_code == 200
    app = stored(services, url)
    assert app.grant_types == ("authorization_code", "refresh_token")
    assert app.is_public and app.token_endpoint_auth_method == "none"
    event = audit_of(services, "app.created", url)
    assert event.details["dropped"] == {"grant_types": [JWT_BEARER]}
    assert event.details["grant_types"] == ["authorization_code", "refresh_token"]


def test_document_with_only_unsupported_grants_is_refused(
    signed_in: TestClient, services: Services, docs: DocumentServer
) -> None:
    body = {**fixture("claude-ai.document.json"), "grant_types": [JWT_BEARER, DEVICE_CODE]}
    url = publish(docs, body)
    resp = signed_in.get(
        authorize_url(
            url, redirect_uri=body["redirect_uris"][0], challenge=generate_pkce().challenge
        ),
        follow_redirects=False,
    )
    assert resp.status_code == 400 and "location" not in resp.headers
    assert "grant_types must include authorization_code" in resp.text
    assert services.store.get_app(url) is None


def _assertion(key: RSAKey, client_id: str, clock: MovableClock) -> str:
    now = int(clock.now().timestamp())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": f"{ISSUER}/oauth2/tokens",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 120,
    }
    return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)


def _code_request(client: TestClient, app_id: str, redirect: str, **auth: str) -> Response:
    pkce = generate_pkce()
    code = authorize(
        client, app_id, redirect_uri=redirect, challenge=pkce.challenge, resource=RESOURCE
    )
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect,
        "code_verifier": pkce.verifier,
        **auth,
    }
    return token_request(client, data)


@pytest.mark.parametrize(
    "named",
    [
        pytest.param(True, id="rp-choices-as-published"),
        pytest.param(False, id="rp-choices-without-token_endpoint_auth_method"),
    ],
)
def test_chatgpt_document_authenticates_with_either_method(
    signed_in: TestClient,
    services: Services,
    docs: DocumentServer,
    clock: MovableClock,
    rsa_key: RSAKey,
    named: bool,
) -> None:
    body = fixture("chatgpt.document.json")
    if not named:
        body.pop("token_endpoint_auth_method")
    docs.routes[JWKS_PATH] = Route.json({"keys": [dict(rsa_key.as_dict(private=False))]})
    body["jwks_uri"] = docs.url(JWKS_PATH)
    url = publish(docs, body)
    redirect = body["redirect_uris"][0]
    # An assertion: private_key_jwt.
    with_key = _code_request(
        signed_in,
        url,
        redirect,
        client_assertion_type=ASSERTION_TYPE,
        client_assertion=_assertion(rsa_key, url, clock),
    )
    assert "refresh_token" in assert_token_response(with_key)
    app = stored(services, url)
    assert app.is_public and app.token_endpoint_auth_method == "none"
    assert app.jwks_uri == docs.url(JWKS_PATH)
    event = audit_of(services, "app.created", url)
    assert event.details["token_endpoint_auth_methods"] == ["none", "private_key_jwt"]
    assert event.details["dropped"] == {}
    # Nothing: none (PKCE).
    assert_token_response(_code_request(signed_in, url, redirect, client_id=url))
    # A bad assertion is refused, not taken for "none".
    assert rsa_key.kid is not None
    other = RSAKey.generate_key(2048, parameters={"kid": rsa_key.kid}, private=True)
    forged = _code_request(
        signed_in,
        url,
        redirect,
        client_assertion_type=ASSERTION_TYPE,
        client_assertion=_assertion(other, url, clock),
    )
    assert_oauth_error(forged, 401, "invalid_client")
    # A secret is no method it registered.
    secret = _code_request(signed_in, url, redirect, client_id=url, client_secret="x")
    assert_oauth_error(secret, 401, "invalid_client")


def test_document_whose_private_key_jwt_is_unusable_keeps_none(
    signed_in: TestClient, services: Services, docs: DocumentServer
) -> None:
    body = fixture("chatgpt.document.json")
    body.pop("jwks_uri")  # no keys at all: private_key_jwt cannot be used
    url = publish(docs, body)
    redirect = body["redirect_uris"][0]
    assert_token_response(_code_request(signed_in, url, redirect, client_id=url))
    app = stored(services, url)
    assert app.is_public and app.jwks is None and not app.jwks_uri
    event = audit_of(services, "app.created", url)
    assert event.details["dropped"] == {"token_endpoint_auth_methods": ["private_key_jwt"]}
