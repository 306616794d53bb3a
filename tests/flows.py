"""Flow steps shared by every HTTP test: PKCE, sign-in, authorize, exchange, refresh, errors."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.http_types import HttpClient, Response

REDIRECT_URI = "http://localhost:9876/callback"
RESOURCE = "https://api.example.com"
# RFC 7636 Appendix B.
VECTOR_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
VECTOR_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
TOKEN_URL = "/oauth2/tokens"


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str


def generate_pkce() -> Pkce:
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    digest = hashlib.sha256(verifier.encode()).digest()
    return Pkce(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


def login(client: HttpClient, username: str, password: str) -> None:
    page = client.get("/login")
    assert page.status_code == 200, page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    resp = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf.group(1)},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    assert "authgate_session" in client.cookies


def authorize_url(
    client_id: str,
    *,
    redirect_uri: str | None = REDIRECT_URI,
    challenge: str | None = None,
    state: str | None = "xyz-state",
    resource: str | None = None,
    scope: str | None = None,
    extra: dict[str, str] | None = None,
) -> str:
    params: dict[str, str] = {"client_id": client_id, "response_type": "code"}
    for name, value in (
        ("redirect_uri", redirect_uri),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256" if challenge else None),
        ("state", state),
        ("resource", resource),
        ("scope", scope),
    ):
        if value is not None:
            params[name] = value
    params.update(extra or {})
    return "/oauth2/authorize?" + urlencode(params)


def consent_page(client: HttpClient, url: str) -> Response:
    resp = client.get(url, follow_redirects=False)
    assert resp.status_code == 200, resp.text
    return resp


def csrf_from(page: Response) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match is not None, page.text
    return match.group(1)


def decide(client: HttpClient, url: str, decision: str = "allow") -> Response:
    page = client.get(url, follow_redirects=False)
    if page.status_code == 302 and decision == "allow":
        return page  # remembered consent (core/consent.py): no page, straight to the client
    assert page.status_code == 200, page.text
    return client.post(
        url, data={"csrf_token": csrf_from(page), "decision": decision}, follow_redirects=False
    )


def callback_params(resp: Response) -> dict[str, str]:
    assert resp.status_code == 302, resp.text
    location = resp.headers["location"]
    query = parse_qs(urlsplit(location).query)
    return {k: v[0] for k, v in query.items()}


def authorize(client: HttpClient, client_id: str, **kwargs: Any) -> str:
    """Run the browser part (the client must be signed in) and return the code."""
    params = callback_params(decide(client, authorize_url(client_id, **kwargs)))
    assert "code" in params, params
    return params["code"]


def token_request(
    client: HttpClient,
    data: dict[str, str],
    *,
    basic: tuple[str, str] | None = None,
    path: str = TOKEN_URL,
) -> Response:
    if basic is None:  # the two httpx generations type "no auth" differently
        return client.post(path, data=data)
    return client.post(path, data=data, auth=basic)


def exchange_code(
    client: HttpClient,
    code: str,
    *,
    client_id: str,
    client_secret: str | None,
    verifier: str | None,
    redirect_uri: str | None = REDIRECT_URI,
    resource: str | None = None,
    basic: bool = False,
) -> Response:
    data = {"grant_type": "authorization_code", "code": code}
    if redirect_uri is not None:
        data["redirect_uri"] = redirect_uri
    if verifier is not None:
        data["code_verifier"] = verifier
    if resource is not None:
        data["resource"] = resource
    if basic and client_secret is not None:
        return token_request(client, data, basic=(client_id, client_secret))
    data["client_id"] = client_id
    if client_secret is not None:
        data["client_secret"] = client_secret
    return token_request(client, data)


def refresh(
    client: HttpClient,
    refresh_token: str,
    *,
    client_id: str,
    client_secret: str | None,
    **extra: str,
) -> Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    if client_secret is not None:
        data["client_secret"] = client_secret
    data.update(extra)
    return token_request(client, data)


def assert_oauth_error(
    resp: Response, status: int, error: str, description: str | None = None
) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.headers["cache-control"] == "no-store"
    body: dict[str, Any] = resp.json()
    assert body["error"] == error, body
    assert isinstance(body.get("error_description"), str) and body["error_description"]
    if description is not None:
        assert description in body["error_description"], body
    assert "access_token" not in body and "refresh_token" not in body
    return body


def assert_token_response(resp: Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    body: dict[str, Any] = resp.json()
    assert body["token_type"] == "Bearer"
    token = body["access_token"]
    # Opaque for authgate's own API and opaque resources; an RFC 9068 JWT otherwise.
    assert token.startswith("agat_") or token.count(".") == 2, token
    assert isinstance(body["expires_in"], int) and body["expires_in"] > 0
    return body


def session_csrf(client: HttpClient) -> dict[str, str]:
    """The header a browser-session change to the API must carry (read from a page's form)."""
    page = client.get("/logout")
    return {"X-CSRF-Token": csrf_from(page)}
