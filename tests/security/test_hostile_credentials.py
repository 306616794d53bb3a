"""Hostile client credentials and parameters (CWE-158, NUL byte injection; RFC 6749 §5.2).

PostgreSQL refuses a NUL in text, even to compare it: a client_id carrying one that reached a
query failed as "database unavailable", a 503 — a stranger could make a node look down. Every
place a client-controlled string reaches a lookup refuses it first, as the client error it is,
on both backends, and the node stays ready. A repeated ``grant_type`` is ``invalid_request``.
Each attack travels over real HTTP (``live``) and leaves the database as it was.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from authgate.app import Services
from authgate.config import Settings
from authgate.core.client_assertion import ASSERTION_TYPE
from tests.conftest import Client
from tests.fetch.server import DocumentServer, Route, serve
from tests.flows import REDIRECT_URI, generate_pkce
from tests.security.helpers import Snapshot, snapshot
from tests.security.live import Live

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ENDPOINTS = ["/oauth2/tokens", "/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"]
BODIES = {
    "/oauth2/tokens": "grant_type=client_credentials",
    "/oauth2/token": "grant_type=refresh_token&refresh_token=agrt_x",
    "/oauth2/introspect": "token=agat_x",
    "/oauth2/revoke": "token=agat_x",
}


@pytest.fixture
def docs(tmp_path: Path) -> Iterator[DocumentServer]:
    (tmp_path / "tls").mkdir()
    yield from serve(tmp_path / "tls")


@pytest.fixture
def settings(tmp_path: Path, database_url: str, docs: DocumentServer) -> Settings:
    return Settings(
        issuer="http://testserver",
        data_dir=tmp_path,
        database_url=database_url,
        secret_key="test-secret-key-" + "x" * 32,
        fetch_allow_hosts="127.0.0.1",
        fetch_ca_bundle=str(tmp_path / "tls" / "ca.pem"),
        fetch_timeout_seconds=2,
    )


def basic(raw: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode(), **FORM}


def assert_still_ready(http: httpx.Client, services: Services, before: Snapshot) -> None:
    assert http.get("/readyz").status_code == 200
    assert snapshot(services) == before


def assert_json_error(resp: httpx.Response, status: int, error: str, text: str = "") -> None:
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert body["error"] == error, body
    assert text in body.get("error_description", ""), body
    assert resp.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param("a\x00b:secret", id="nul-in-client_id"),
        pytest.param("a%00b:secret", id="encoded-nul-in-client_id"),
        pytest.param("\x00:secret", id="client_id-only-nul"),
        pytest.param("a\x01b:secret", id="control-character-in-client_id"),
        pytest.param("https://evil.example/a\x00:x", id="nul-in-document-url"),
    ],
)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_nul_in_basic_credentials_is_invalid_client(
    live: Live, services: Services, confidential: Client, credentials: str, endpoint: str
) -> None:
    before = snapshot(services)
    with live.client() as http:
        resp = http.post(endpoint, content=BODIES[endpoint], headers=basic(credentials))
        assert_json_error(resp, 401, "invalid_client")
        assert resp.headers["www-authenticate"].startswith("Basic")
        assert_still_ready(http, services, before)


def test_nul_in_a_secret_is_invalid_client(
    live: Live, services: Services, confidential: Client
) -> None:
    before = snapshot(services)
    with live.client() as http:
        for secret in (f"{confidential.secret}\x00", "%00", "agcs_\x00_x"):
            resp = http.post(
                "/oauth2/tokens",
                content=BODIES["/oauth2/tokens"],
                headers=basic(f"{confidential.id}:{secret}"),
            )
            assert_json_error(resp, 401, "invalid_client")
            assert resp.headers["www-authenticate"].startswith("Basic")
        assert_still_ready(http, services, before)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("grant_type=client_credentials&client_id=a%00b&client_secret=x", id="post"),
        pytest.param("grant_type=client_credentials&client_id=x&client_secret=a%00b", id="secret"),
        pytest.param("token=x&client_id=a%00b", id="public-client_id"),
    ],
)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_nul_in_body_credentials_is_a_client_error(
    live: Live, services: Services, body: str, endpoint: str
) -> None:
    before = snapshot(services)
    with live.client() as http:
        resp = http.post(endpoint, content=body, headers=FORM)
        assert_json_error(resp, 400, "invalid_request", "NUL")
        assert "www-authenticate" not in resp.headers
        assert_still_ready(http, services, before)


def _assertion_naming(subject: str) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part({'sub': subject, 'iss': subject})}.c2ln"


@pytest.mark.parametrize("subject", ["a\x00b", "https://x.example/\x00", "a\nb"])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_control_character_in_an_assertion_subject_is_invalid_client(
    live: Live, services: Services, subject: str, endpoint: str
) -> None:
    before = snapshot(services)
    assertion = _assertion_naming(subject)
    with live.client() as http:
        data = {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
        resp = http.post(
            endpoint,
            content=BODIES[endpoint] + "&" + httpx.QueryParams(data).__str__(),
            headers=FORM,
        )
        assert_json_error(resp, 401, "invalid_client")
        assert "www-authenticate" not in resp.headers
        assert_still_ready(http, services, before)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/oauth2/authorize?response_type=code&client_id=a%00b", id="authorize"),
        pytest.param(
            "GET",
            "/oauth2/authorize?response_type=code&client_id=https://x.example/c%00",
            id="authorize-document",
        ),
        pytest.param("GET", "/oauth2/clients/a%00b", id="rfc7592-read"),
        pytest.param("DELETE", "/oauth2/clients/a%00b", id="rfc7592-delete"),
        pytest.param("DELETE", "/oauth2/tokens?client_id=a%00b", id="withdraw-grants"),
        pytest.param("GET", "/api/v2/oauth2-provider/apps/a%00b", id="management-api"),
    ],
)
def test_nul_in_a_url_is_invalid_request(
    live: Live, services: Services, method: str, path: str
) -> None:
    before = snapshot(services)
    with live.client() as http:
        resp = http.request(method, path, headers={"Authorization": "Bearer agrat_x_y"})
        assert resp.status_code == 400, resp.text
        assert resp.json() == {
            "error": "invalid_request",
            "error_description": "The URL contains a NUL character",
        }
        assert "location" not in resp.headers
        assert_still_ready(http, services, before)


@pytest.mark.parametrize(
    "field",
    ["client_name", "software_id", "contacts", "redirect_uris", "jwks"],
)
def test_nul_in_a_registration_is_invalid_client_metadata(
    live: Live, services: Services, field: str
) -> None:
    key = {"kty": "EC", "crv": "P-256", "kid": "k\x00",
           "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
           "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}  # fmt: skip
    values: dict[str, Any] = {
        "client_name": "a\x00b",
        "software_id": "a\x00b",
        "contacts": ["a\x00@b.example"],
        "redirect_uris": ["https://app.example/c\x00b"],
        "jwks": {"keys": [key]},
    }
    body = {
        "redirect_uris": ["https://app.example/callback"],
        "token_endpoint_auth_method": "private_key_jwt" if field == "jwks" else "none",
        field: values[field],
    }
    before = snapshot(services)
    with live.client() as http:
        resp = http.post("/oauth2/register", json=body)
        assert_json_error(resp, 400, "invalid_client_metadata", "NUL")
        assert_still_ready(http, services, before)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("software_id", "a\x00b"),
        ("software_version", "\x00"),
        ("client_name", "a\x00b"),
        ("jwks", {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "\x00",
                            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}),
    ],
    ids=["software_id", "software_version", "client_name", "jwks-kid"],
)  # fmt: skip
def test_nul_in_a_metadata_document_is_invalid_client(
    live: Live, services: Services, docs: DocumentServer, field: str, value: Any
) -> None:
    url = docs.url("/client.json")
    document: dict[str, Any] = {
        "client_id": url,
        "client_name": "Document client",
        "redirect_uris": [REDIRECT_URI],
        field: value,
    }
    if field == "jwks":
        document["token_endpoint_auth_method"] = "private_key_jwt"
    docs.routes["/client.json"] = Route.json(document)
    before = snapshot(services)
    pkce = generate_pkce()
    params = {
        "client_id": url,
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
    }
    with live.client() as http:
        page = http.get("/oauth2/authorize", params=params)
        assert page.status_code == 400, page.text[:500]
        assert "location" not in page.headers
        assert '<code id="error-code">invalid_client</code>' in page.text
        token = http.post(
            "/oauth2/tokens",
            content=f"grant_type=authorization_code&code=agac_x&client_id={url}",
            headers=FORM,
        )
        assert_json_error(token, 401, "invalid_client", "NUL")
        assert_still_ready(http, services, before)
    assert services.store.get_app(url) is None


def test_repeated_grant_type_is_invalid_request(
    live: Live, services: Services, confidential: Client
) -> None:
    """RFC 6749 §5.2: invalid_request "includes a parameter more than once" — grant_type too,
    whether the two values agree or not (docs/specs.md, §3.1)."""
    before = snapshot(services)
    auth = f"{confidential.id}:{confidential.secret}"
    with live.client() as http:
        for pair in ("client_credentials", "authorization_code"):
            body = (
                f"grant_type=client_credentials&grant_type={pair}&resource=https://api.example.com"
            )
            resp = http.post("/oauth2/tokens", content=body, headers=basic(auth))
            assert_json_error(resp, 400, "invalid_request", "grant_type parameter was repeated")
            assert "www-authenticate" not in resp.headers
        assert_still_ready(http, services, before)
