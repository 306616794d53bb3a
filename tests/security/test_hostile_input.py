"""Hostile input at every endpoint: oversized and deeply nested bodies, long parameters and
headers, invalid UTF-8, NUL bytes, repeated parameters and SQL metacharacters. The answer is
always a clean, spec-shaped 4xx (OAuth JSON ``error``, an error page, or problem+json) and
nothing is stored; never a 500.

Sources: RFC 6749 §3.1 and §3.2 ("Request and response parameters MUST NOT be included more
than once"), §5.2 (error response), RFC 7591 §3.2.2, RFC 6819 §4.4.1.x and §5.1.4.1.x
(input validation), RFC 9700 §4.x, OAuth 2.1 draft §3.1, CWE-89 (SQL injection), CWE-20,
CWE-400 / CWE-674 (resource exhaustion, uncontrolled recursion: e.g. CVE-2020-10735-style
parser exhaustion), and PostgreSQL's refusal of NUL in text (a classic 500 in servers that
pass request strings to it unchecked).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from tests.conftest import Account, Client
from tests.flows import (
    REDIRECT_URI,
    RESOURCE,
    assert_oauth_error,
    assert_token_response,
    authorize,
    authorize_url,
    callback_params,
    csrf_from,
    decide,
    generate_pkce,
)
from tests.http_types import Response
from tests.security.helpers import assert_error_page, snapshot
from tests.spec.test_rfc7591 import PUBLIC_KEY

TOKEN = "/oauth2/tokens"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
SQL = [
    "' OR '1'='1",
    "'; DROP TABLE users; --",
    '" OR 1=1 --',
    "admin'--",
    "%",
    "_",
    "\\",
    "1; SELECT pg_sleep(0)",
    "') UNION SELECT token_hash FROM sessions --",
]


def _post_raw(client: TestClient, path: str, body: bytes, **headers: str) -> Response:
    return client.post(path, content=body, headers={**FORM, **headers})


# Size


def test_body_over_one_mebibyte_is_413(client: TestClient, services: Services) -> None:
    before = snapshot(services)
    resp = _post_raw(client, TOKEN, b"grant_type=client_credentials&x=" + b"a" * (1024 * 1024))
    assert resp.status_code == 413
    assert resp.json()["error"] == "invalid_request"
    assert resp.headers["cache-control"] == "no-store"
    assert snapshot(services) == before


@pytest.mark.parametrize("path", ["/oauth2/tokens", "/oauth2/revoke", "/oauth2/introspect"])
def test_form_over_64_kib_is_invalid_request(
    client: TestClient, services: Services, path: str
) -> None:
    before = snapshot(services)
    resp = _post_raw(client, path, b"token=x&pad=" + b"a" * (65 * 1024))
    assert_oauth_error(resp, 400, "invalid_request", "too large")
    assert snapshot(services) == before


def test_registration_over_64_kib_is_refused(client: TestClient, services: Services) -> None:
    before = snapshot(services)
    body = b'{"redirect_uris": ["' + REDIRECT_URI.encode() + b'"], "x": "' + b"a" * 70000 + b'"}'
    resp = client.post(
        "/oauth2/register", content=body, headers={"Content-Type": "application/json"}
    )
    assert_oauth_error(resp, 400, "invalid_client_metadata", "at most")
    assert snapshot(services) == before


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("[" * 20000 + "]" * 20000, id="cwe674-nested-arrays"),
        pytest.param('{"a":' * 10000 + "1" + "}" * 10000, id="cwe674-nested-objects"),
        pytest.param(
            '{"redirect_uris":["' + REDIRECT_URI + '"],"client_name":' + "[" * 5000
            + "]" * 5000 + "}",
            id="cwe674-nested-member",
        ),
    ],
)  # fmt: skip
def test_deeply_nested_registration_json(client: TestClient, services: Services, body: str) -> None:
    before = snapshot(services)
    # Media types are case-insensitive (RFC 9110 §8.3.1); this spelling also keeps the suite's
    # leak recorder, which reads JSON request bodies, out of the parser under attack.
    resp = client.post(
        "/oauth2/register", content=body.encode(), headers={"Content-Type": "Application/JSON"}
    )
    assert_oauth_error(resp, 400, "invalid_client_metadata", "not valid JSON")
    assert snapshot(services) == before


def test_deeply_nested_client_assertion(client: TestClient, services: Services) -> None:
    """A client assertion is parsed (unverified) to find the client: nesting must not crash."""
    import base64

    payload = base64.urlsafe_b64encode(b"[" * 1400 + b"]" * 1400).rstrip(b"=").decode()
    assertion = f"eyJhbGciOiJFUzI1NiJ9.{payload}.c2ln"
    before = snapshot(services)
    resp = client.post(
        TOKEN,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )
    assert_oauth_error(resp, 401, "invalid_client")
    assert snapshot(services) == before


def test_ten_thousand_character_token_parameters(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    """Every parameter is capped (core/params.py); the code survives every refused request."""
    pkce = generate_pkce()
    code = authorize(signed_in, confidential.id, challenge=pkce.challenge, resource=RESOURCE)
    good = {
        "grant_type": "authorization_code",
        "client_id": confidential.id,
        "client_secret": confidential.secret or "",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": pkce.verifier,
        "resource": RESOURCE,
    }
    before = snapshot(services)
    for name in ("client_id", "client_secret", "code", "redirect_uri", "code_verifier",
                 "resource"):  # fmt: skip
        resp = signed_in.post(TOKEN, data={**good, name: "a" * 10000})
        assert_oauth_error(resp, 400, "invalid_request", f"The {name} parameter is too long")
    assert snapshot(services) == before
    assert_token_response(signed_in.post(TOKEN, data=good))


def test_ten_thousand_character_authorize_parameters(
    signed_in: TestClient, services: Services, public: Client
) -> None:
    before = snapshot(services)
    for name in ("client_id", "redirect_uri", "state", "scope", "resource", "code_challenge",
                 "prompt"):  # fmt: skip
        params = {
            "client_id": public.id,
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "code_challenge": generate_pkce().challenge,
            "state": "s",
            name: "a" * 10000,
        }
        resp = signed_in.get("/oauth2/authorize", params=params, follow_redirects=False)
        assert resp.status_code in (302, 400), (name, resp.status_code)
        if resp.status_code == 302:
            # Client and redirect_uri were verified: the error goes back to the client.
            assert resp.headers["location"].startswith(REDIRECT_URI + "?error=invalid_request")
        else:
            assert_error_page(resp, 400, "invalid_request", f"The {name} parameter is too long")
    assert snapshot(services) == before


def test_very_long_headers(client: TestClient, services: Services, confidential: Client) -> None:
    before = snapshot(services)
    basic = client.post(
        TOKEN,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic " + "QUFB" * 4000},
    )
    assert_oauth_error(basic, 401, "invalid_client")
    bearer = client.get("/api/v2/users/me", headers={"Authorization": "Bearer " + "a" * 16000})
    assert bearer.status_code == 401
    assert bearer.headers["content-type"].startswith("application/problem+json")
    cookie = client.get("/", headers={"Cookie": "authgate_session=" + "a" * 16000})
    assert cookie.status_code == 200 and "Sign in" in cookie.text
    rid = client.get("/healthz", headers={"X-Request-Id": "r" * 5000, "User-Agent": "u" * 16000})
    assert rid.status_code == 200 and len(rid.headers["x-request-id"]) <= 64
    assert snapshot(services) == before


# Encoding


@pytest.mark.parametrize(
    ("path", "error"),
    [
        pytest.param(TOKEN, "invalid_request", id="6749-3.2-token"),
        pytest.param("/oauth2/revoke", "invalid_request", id="7009-revoke"),
        pytest.param("/oauth2/introspect", "invalid_request", id="7662-introspect"),
    ],
)
def test_invalid_utf8_and_nul_in_oauth_forms(
    client: TestClient, services: Services, path: str, error: str
) -> None:
    before = snapshot(services)
    for body in (b"grant_type=client_credentials&token=\xff\xfe", b"token=a%00b&client_id=x",
                 b"token=%ff%fe&client_id=x", b"token=a\x00b"):  # fmt: skip
        resp = _post_raw(client, path, body)
        assert_oauth_error(resp, 400, error)
    assert snapshot(services) == before


def test_invalid_utf8_in_registration(client: TestClient, services: Services) -> None:
    before = snapshot(services)
    resp = client.post(
        "/oauth2/register",
        content=b'{"redirect_uris": ["\xff"]}',
        headers={"Content-Type": "application/json"},
    )
    assert_oauth_error(resp, 400, "invalid_client_metadata")
    nul = client.post(
        "/oauth2/register",
        json={"redirect_uris": [REDIRECT_URI], "client_name": "a\x00b",
              "token_endpoint_auth_method": "none"},
    )  # fmt: skip
    assert_oauth_error(nul, 400, "invalid_client_metadata")
    jwks = client.post(
        "/oauth2/register",
        json={"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "private_key_jwt",
              "jwks": {"keys": [{**PUBLIC_KEY, "kid": "a\x00b"}]}},
    )  # fmt: skip
    assert_oauth_error(jwks, 400, "invalid_client_metadata", "NUL")
    assert snapshot(services) == before


def test_hostile_usernames_at_sign_in(
    client: TestClient, services: Services, alice: Account
) -> None:
    before = snapshot(services)
    for username in ["al\x00ice", "\u202eecila", "a" * 10000, *SQL]:
        page = client.get("/login")
        resp = client.post(
            "/login",
            data={"username": username, "password": alice.password,
                  "csrf_token": csrf_from(page)},
            follow_redirects=False,
        )  # fmt: skip
        assert resp.status_code == 401, (username[:20], resp.status_code)
        assert "Incorrect username or password." in resp.text
        assert "location" not in resp.headers
    assert snapshot(services) == before


def test_invalid_utf8_at_sign_in(client: TestClient, services: Services, alice: Account) -> None:
    before = snapshot(services)
    for value in (b"%ff%fe", b"\xff\xfe", b"%c0%af", b"al%00ice", b"alice%00"):
        token = csrf_from(client.get("/login")).encode()
        body = b"username=" + value + b"&password=x&csrf_token=" + token
        resp = _post_raw(client, "/login", body)
        assert resp.status_code in (400, 401), (value, resp.status_code)
        assert resp.headers["content-type"].startswith("text/html")
    assert snapshot(services) == before


def test_invalid_utf8_at_authorize_is_a_page(
    signed_in: TestClient, services: Services, public: Client
) -> None:
    before = snapshot(services)
    resp = signed_in.get(
        "/oauth2/authorize?client_id=%ff%fe&response_type=code", follow_redirects=False
    )
    assert_error_page(resp, 400, "invalid_client")
    assert snapshot(services) == before


@pytest.mark.parametrize(
    "urls",
    [
        pytest.param(
            [
                "/oauth2/authorize?client_id=a%00b&response_type=code",
                "/oauth2/authorize?client_id={app}&response_type=code&state=a%00b",
                "/oauth2/authorize?client_id={app}&response_type=code&scope=read%00",
                "/oauth2/authorize?client_id={app}&redirect_uri=" + REDIRECT_URI + "%00",
                "/oauth2/authorize?client_id={app}&resource=https%3A%2F%2Fx%00",
            ],
            id="6749-4.1.1-authorize",
        ),
        pytest.param(
            [
                "/oauth2/clients/a%00b",
                "/api/v2/oauth2-provider/apps/a%00b",
                "/admin/apps/a%00b",
                "/login?return_to=/a%00b",
            ],
            id="7592-admin-and-pages",
        ),
    ],
)
def test_nul_in_the_url_is_invalid_request(
    signed_in: TestClient, services: Services, public: Client, admin: Account, urls: list[str]
) -> None:
    """PostgreSQL refuses NUL in text: a NUL must be a 400 before any lookup, not a 5xx."""
    before = snapshot(services)
    for url in urls:
        resp = signed_in.get(
            url.format(app=public.id),
            headers={"Authorization": f"Bearer {admin.api_token}"},
            follow_redirects=False,
        )
        assert_oauth_error(resp, 400, "invalid_request", "NUL")
    assert snapshot(services) == before


# Repeated parameters (RFC 6749 §3.1)


def test_repeated_token_parameters_are_refused(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    """RFC 6749 §3.1: repeated, even with the same value, is an error; the code survives."""
    pkce = generate_pkce()
    code = authorize(signed_in, confidential.id, challenge=pkce.challenge, resource=RESOURCE)
    pairs = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("client_id", confidential.id),
        ("client_secret", confidential.secret or ""),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", pkce.verifier),
        ("resource", RESOURCE),
    ]
    before = snapshot(services)
    for name, error in [
        ("grant_type", "invalid_request"),  # RFC 6749 §5.2: a repeated parameter
        ("code", "invalid_request"),
        ("client_id", "invalid_request"),
        ("client_secret", "invalid_request"),
        ("redirect_uri", "invalid_request"),
        ("code_verifier", "invalid_request"),
        ("resource", "invalid_target"),
    ]:
        body = httpx.QueryParams([*pairs, (name, dict(pairs)[name])])
        resp = _post_raw(signed_in, TOKEN, str(body).encode())
        assert_oauth_error(resp, 400, error)
    assert snapshot(services) == before
    assert_token_response(
        _post_raw(signed_in, TOKEN, str(httpx.QueryParams(tuple(pairs))).encode())
    )


@pytest.mark.parametrize("path", ["/oauth2/revoke", "/oauth2/introspect"])
def test_repeated_token_at_revoke_and_introspect(
    client: TestClient, services: Services, confidential: Client, path: str
) -> None:
    before = snapshot(services)
    resp = client.post(
        path,
        content=b"token=a&token=b",
        headers=FORM,
        auth=(confidential.id, confidential.secret or ""),
    )
    assert_oauth_error(resp, 400, "invalid_request", "repeated")
    assert snapshot(services) == before


# SQL metacharacters in every field (CWE-89): refused cleanly, and every table still there.


def _tables_intact(services: Services, before: Any) -> None:
    assert snapshot(services) == before


def test_sql_metacharacters_at_the_token_endpoint(
    client: TestClient, services: Services, confidential: Client
) -> None:
    before = snapshot(services)
    fields = ("client_id", "code", "redirect_uri", "code_verifier", "refresh_token", "scope",
              "resource", "client_secret")  # fmt: skip
    for field, payload in ((f, p) for f in fields for p in SQL):
        grant = "refresh_token" if field in ("refresh_token", "scope") else "authorization_code"
        data = {
            "grant_type": grant,
            "client_id": confidential.id,
            "client_secret": confidential.secret or "",
            "code": "agac_0123456789_" + "a" * 46,
            "refresh_token": "agrt_0123456789_" + "a" * 46,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": "v" * 43,
        }
        data[field] = payload
        resp = client.post(TOKEN, data=data)
        assert resp.status_code in (400, 401), (payload, resp.status_code, resp.text)
        assert resp.json()["error"] in (
            "invalid_request", "invalid_client", "invalid_grant", "invalid_scope",
            "invalid_target",
        ), resp.json()  # fmt: skip
    _tables_intact(services, before)


def test_sql_metacharacters_at_authorize(
    signed_in: TestClient, services: Services, public: Client
) -> None:
    before = snapshot(services)
    fields = ("client_id", "redirect_uri", "scope", "state", "resource", "code_challenge")
    for field, payload in ((f, p) for f in fields for p in SQL):
        params = {
            "client_id": public.id,
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "code_challenge": generate_pkce().challenge,
            "state": "s",
        }
        params[field] = payload
        resp = signed_in.get("/oauth2/authorize", params=params, follow_redirects=False)
        assert resp.status_code in (200, 302, 400), (payload, resp.status_code)
        if resp.status_code == 302:
            assert resp.headers["location"].startswith(REDIRECT_URI + "?")
        if field == "state" and resp.status_code == 200:
            assert 'name="csrf_token"' in resp.text  # a consent page: the state is just echoed
    _tables_intact(services, before)


@pytest.mark.parametrize("path", ["/oauth2/revoke", "/oauth2/introspect"])
def test_sql_metacharacters_at_revoke_and_introspect(
    client: TestClient, services: Services, confidential: Client, path: str
) -> None:
    before = snapshot(services)
    for payload in SQL:
        resp = client.post(
            path, data={"token": "tok:" + payload, "token_type_hint": payload},
            auth=(confidential.id, confidential.secret or ""),
        )  # fmt: skip
        assert resp.status_code == 200, (payload, resp.text)
        if path.endswith("introspect"):
            assert resp.json() == {"active": False}
        unauthenticated = client.post(path, data={"token": "x", "client_id": payload})
        assert_oauth_error(unauthenticated, 401, "invalid_client")
    _tables_intact(services, before)


def test_sql_metacharacters_in_client_configuration_and_registration(
    client: TestClient, services: Services
) -> None:
    before = snapshot(services)
    for payload in SQL:
        resp = client.get(
            "/oauth2/clients/" + httpx.URL(payload).raw_path.decode().lstrip("/"),
            headers={"Authorization": f"Bearer agrat_{payload}"},
        )
        assert resp.status_code in (401, 404), (payload, resp.status_code)
        if resp.status_code == 401:
            assert resp.json()["error"] == "invalid_token"
        reg = client.post(
            "/oauth2/register",
            json={"redirect_uris": [payload], "client_name": payload, "scope": payload},
        )
        assert reg.status_code == 400, (payload, reg.text)
        assert reg.json()["error"] in ("invalid_redirect_uri", "invalid_client_metadata")
    _tables_intact(services, before)


def test_sql_metacharacters_are_stored_verbatim_when_valid(
    client: TestClient, services: Services, signed_in: TestClient
) -> None:
    """The positive control: metacharacters in a free-text field (client_name, state) are data,
    stored and echoed exactly (bound parameters, not string-built SQL)."""
    name = "Robert'); DROP TABLE apps;-- %_\\"
    resp = client.post(
        "/oauth2/register",
        json={"redirect_uris": [REDIRECT_URI], "client_name": name,
              "token_endpoint_auth_method": "none"},
    )  # fmt: skip
    assert resp.status_code == 201, resp.text
    app = services.store.get_app(resp.json()["client_id"])
    assert app is not None and app.name == name
    state = "' OR '1'='1"
    got = callback_params(
        decide(
            signed_in,
            authorize_url(app.id, challenge=generate_pkce().challenge, state=state),
        )
    )
    assert got["state"] == state and "code" in got
