"""Fuzzing the OAuth endpoints with Hypothesis: authorize (GET and POST), token (every grant,
both client authentication methods), introspection, revocation, registration, client
configuration and the metadata documents.

Each request mixes real values minted by the fixture (client ids and secrets, codes, refresh and
access tokens, the registration access token, redirect URIs, PKCE verifiers) with hostile text
(unicode, NUL, very long values, SQL and markup metacharacters, repeated and unknown parameters,
credentials in the query string, bodies that are not what they claim). Whatever arrives:

- never a 5xx;
- an OAuth error is RFC-shaped: JSON whose ``error`` is in the RFC 6749/7591/7009/7662/8707
  vocabulary, ``Cache-Control: no-store``, and a 401 after Basic authentication carries
  ``WWW-Authenticate: Basic``; the authorization endpoint redirects only to a registered
  redirect URI (with ``iss`` and the ``state`` it was sent) and otherwise shows an HTML page;
- no secret the fixture holds (client secrets, codes, tokens, the registration access token,
  passwords) appears in any error body or redirect (tests/leaks.py checks logs and audit too).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from authgate.app import Services, create_app
from authgate.config import Settings
from authgate.core import client_metadata
from tests.conftest import ISSUER, PASSWORD, Account, Client, issued, make_client
from tests.flows import (
    REDIRECT_URI,
    RESOURCE,
    authorize,
    authorize_url,
    consent_page,
    csrf_from,
    exchange_code,
    generate_pkce,
    login,
    token_request,
)
from tests.fuzz.conftest import budget, refused_for_nul
from tests.http_types import Response

pytestmark = pytest.mark.leaks_presented_off

OTHER_REDIRECT = "https://client.example.com/callback"
MCP_RESOURCE = "https://mcp.example.com/mcp"
#: RFC 6749 §4.1.2.1, §5.2; RFC 7009 §2.2.1; RFC 7591 §3.2.2; RFC 7662; RFC 6750 §3.1;
#: RFC 8707 §2.
OAUTH_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "unsupported_response_type",
        "invalid_scope",
        "access_denied",
        "temporarily_unavailable",
        "unsupported_token_type",
        "invalid_redirect_uri",
        "invalid_client_metadata",
        "invalid_software_statement",
        "unapproved_software_statement",
        "invalid_token",
        "insufficient_scope",
        "invalid_target",
    }
)
AUTHORIZE_ERRORS = frozenset(
    {
        "invalid_request",
        "unauthorized_client",
        "access_denied",
        "unsupported_response_type",
        "invalid_scope",
        "temporarily_unavailable",
        "invalid_target",
        "login_required",
        "consent_required",
    }
)
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})

# -- hostile text --------------------------------------------------------------------------

NASTY = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "%00",
    "' OR '1'='1",
    "'; DROP TABLE apps; --",
    '" OR ""="',
    "\\",
    "%",
    "%zz",
    "<script>alert(1)</script>",
    "{{7*7}}",
    "${jndi:ldap://x}",
    "../../../../etc/passwd",
    "\r\nSet-Cookie: x=y",
    "\u202eevil",
    "\ufeff",
    "😀" * 20,
    "Ω≈ç√∫",
    "null",
    "[]",
    "{}",
    "-1",
    "99999999999999999999999999",
    "javascript:alert(1)",
    "data:text/html,x",
    "http://evil.example.com/callback",
    "http://localhost:9876/callback#frag",
    "http://localhost:9876/callback?x=1",
    "http://localhost:1/callback",
    "HTTP://LOCALHOST:9876/callback",
    "plain",
    "S256 ",
    "x" * 5000,
)
hostile = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=12),
    st.text(st.sampled_from("abcXYZ09-._~+/=%&?#:"), max_size=60),
)
ascii_hostile = st.one_of(
    st.sampled_from([n for n in NASTY if n.isascii() and "\r" not in n and "\x00" not in n]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80),
)


def mixed(*valid: str) -> st.SearchStrategy[str]:
    """Mostly real values, sometimes hostile text."""
    return st.one_of(st.sampled_from(valid), st.sampled_from(valid), hostile)


@st.composite
def pairs(
    draw: st.DrawFn,
    required: dict[str, st.SearchStrategy[str]],
    optional: dict[str, st.SearchStrategy[str]],
) -> list[tuple[str, str]]:
    """Parameters as sent on the wire: a chosen subset, sometimes a repeated or unknown one."""
    names = list(required) + draw(st.lists(st.sampled_from(sorted(optional)), unique=True))
    fields = {**required, **optional}
    result = [(name, draw(fields[name])) for name in names]
    if result and draw(st.integers(0, 9)) == 0:
        name = draw(st.sampled_from(names))
        result.append((name, draw(fields[name])))  # repeated (RFC 6749 §3.1: invalid_request)
    if draw(st.integers(0, 9)) == 0:
        result.append((draw(hostile), draw(hostile)))  # unknown parameter
    return draw(st.permutations(result))


# -- the world the fuzzer aims at ----------------------------------------------------------


@dataclass
class World:
    client: TestClient
    anonymous: TestClient
    services: Services
    confidential: Client
    post_client: Client
    machine: Client
    public: Client
    verifiers: list[str]
    codes: list[str]
    refresh_tokens: list[str]
    access_tokens: list[str]
    dynamic_id: str
    registration_token: str
    csrf: str
    secrets: dict[str, list[str]]

    @property
    def client_ids(self) -> list[str]:
        ids = [self.confidential.id, self.post_client.id, self.machine.id, self.public.id]
        return [*ids, self.dynamic_id]

    @property
    def client_secrets(self) -> list[str]:
        clients = (self.confidential, self.post_client, self.machine)
        return [c.secret for c in clients if c.secret]

    def assert_no_secret(self, resp: Response, where: str) -> None:
        text = resp.text + "\n" + resp.headers.get("location", "")
        for kind, values in self.secrets.items():
            for value in values:
                assert value not in text, f"{kind} in {where} ({resp.status_code})"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No rate limits: the fuzzer sends thousands of failing requests from one address."""
    return settings.model_copy(
        update={
            "registration_rate_per_ip": 0,
            "registration_rate_global": 0,
            "sign_in_rate_per_ip": 0,
            "token_rate_per_client": 0,
            "introspection_rate_per_client": 0,
        }
    )


@pytest.fixture
def world(
    client: TestClient, services: Services, settings: Settings, alice: Account
) -> Iterator[World]:
    confidential = make_client(services, redirect_uris=[REDIRECT_URI, OTHER_REDIRECT])
    post_client = make_client(
        services, name="Post app", token_endpoint_auth_method="client_secret_post"
    )
    machine = make_client(
        services,
        name="Machine",
        grant_types=["client_credentials"],
        redirect_uris=[],
        service_access={MCP_RESOURCE: []},
    )
    public = make_client(services, name="Public app", client_type="public")
    login(client, alice.user.username, alice.password)
    verifiers, codes = [], []
    for app in (confidential, post_client, public, confidential):
        pkce = generate_pkce()
        verifiers.append(pkce.verifier)
        codes.append(authorize(client, app.id, challenge=pkce.challenge, resource=RESOURCE))
    # Exchange one code: real access and refresh tokens (the code is now a used one).
    granted = exchange_code(
        client,
        codes[0],
        client_id=confidential.id,
        client_secret=confidential.secret,
        verifier=verifiers[0],
        basic=True,
    ).json()
    machine_token = token_request(
        client,
        {"grant_type": "client_credentials", "resource": MCP_RESOURCE},
        basic=(machine.id, machine.secret or ""),
    ).json()
    registered = client.post("/oauth2/register", json={"redirect_uris": [REDIRECT_URI]})
    assert registered.status_code == 201, registered.text
    dynamic = registered.json()
    csrf = csrf_from(
        consent_page(client, authorize_url(confidential.id, challenge=generate_pkce().challenge))
    )
    with TestClient(create_app(settings, services=services), base_url=ISSUER) as anonymous:
        yield World(
            client=client,
            anonymous=anonymous,
            services=services,
            confidential=confidential,
            post_client=post_client,
            machine=machine,
            public=public,
            verifiers=verifiers,
            codes=codes,
            refresh_tokens=[granted["refresh_token"]],
            access_tokens=[granted["access_token"], machine_token["access_token"]],
            dynamic_id=dynamic["client_id"],
            registration_token=dynamic["registration_access_token"],
            csrf=csrf,
            secrets={
                "client secret": [
                    *(c.secret for c in (confidential, post_client, machine) if c.secret),
                    dynamic["client_secret"],
                ],
                "authorization code": codes,
                "refresh token": [granted["refresh_token"]],
                "access token": [granted["access_token"], machine_token["access_token"]],
                "registration access token": [dynamic["registration_access_token"]],
                "API token": [alice.api_token],
                "password": [PASSWORD],
                "PKCE verifier": verifiers,
                "session": [client.cookies["authgate_session"]],
            },
        )


# -- rules ---------------------------------------------------------------------------------


def assert_oauth_json_error(resp: Response, *, basic: bool) -> dict[str, Any]:
    """RFC 6749 §5.2 (and the same shape in RFC 7009, 7591, 7592, 7662)."""
    assert resp.status_code < 500, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    assert resp.headers.get("cache-control") == "no-store", resp.headers
    body: dict[str, Any] = resp.json()
    assert body.get("error") in OAUTH_ERRORS, body
    assert isinstance(body.get("error_description", ""), str), body
    assert "access_token" not in body and "refresh_token" not in body, body
    if basic and body["error"] == "invalid_client":
        # RFC 6749 §5.2: "the authorization server MUST respond with an HTTP 401 ... and include
        # the WWW-Authenticate response header field".
        assert resp.status_code == 401, body
    if resp.status_code == 401 and basic:
        assert resp.headers.get("www-authenticate", "").startswith("Basic"), resp.headers
    return body


def form_request(
    world: World,
    path: str,
    body: list[tuple[str, str]],
    *,
    basic: tuple[str, str] | None,
    query: list[tuple[str, str]],
    content_type: str,
) -> Response:
    headers = {"Content-Type": content_type}
    if basic is not None:
        raw = f"{quote(basic[0], safe='')}:{quote(basic[1], safe='')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    url = path + ("?" + urlencode(query) if query else "")
    return world.client.post(url, content=urlencode(body).encode(), headers=headers)


CONTENT_TYPES = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=UTF-8",
        "application/json",
        "text/plain",
        "multipart/form-data; boundary=x",
    ]
)


def client_auth(world: World) -> st.SearchStrategy[tuple[tuple[str, str] | None, dict[str, str]]]:
    """(Basic credentials, body credentials): either method, both, none, or nonsense."""
    ids = mixed(*world.client_ids)
    secrets = mixed(*world.client_secrets)
    basic = st.tuples(ids, secrets).map(lambda pair: (pair[0], pair[1]))
    body_only = st.fixed_dictionaries({"client_id": ids}, optional={"client_secret": secrets})
    return st.one_of(
        st.tuples(basic, st.just({})),
        st.tuples(st.none(), body_only),
        st.tuples(basic, body_only),
        st.tuples(st.none(), st.just({})),
    )


def query_leftovers(world: World) -> st.SearchStrategy[list[tuple[str, str]]]:
    """Usually nothing; sometimes a credential in the URL, where it must be refused."""
    wrong_place = st.sampled_from(
        [
            ("client_secret", world.client_secrets[0]),
            ("code", world.codes[1]),
            ("refresh_token", world.refresh_tokens[0]),
            ("token", world.access_tokens[0]),
            ("code_verifier", world.verifiers[1]),
        ]
    )
    return st.one_of(st.just([]), st.just([]), st.just([]), st.lists(wrong_place, max_size=2))


# -- /oauth2/token -------------------------------------------------------------------------


def token_fields(world: World) -> dict[str, st.SearchStrategy[str]]:
    return {
        "code": mixed(*world.codes),
        "redirect_uri": mixed(REDIRECT_URI, OTHER_REDIRECT, "http://127.0.0.1:4000/callback"),
        "code_verifier": mixed(*world.verifiers),
        "refresh_token": mixed(*world.refresh_tokens),
        "resource": mixed(RESOURCE, MCP_RESOURCE, "https://other.example.com"),
        "scope": mixed("read", "read write", "offline_access", "admin"),
        "client_assertion_type": mixed("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        "client_assertion": mixed("eyJhbGciOiJub25lIn0.e30.", "a.b.c"),
    }


GRANT_TYPES = (
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "password",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "urn:ietf:params:oauth:grant-type:device_code",
)


@pytest.mark.parametrize("path", ["/oauth2/tokens", "/oauth2/token"])
def test_token_endpoint(world: World, database_url: str, path: str) -> None:
    fields = token_fields(world)

    @budget(database_url)
    @given(
        grant=st.lists(mixed(*GRANT_TYPES), min_size=0, max_size=2),
        body=pairs({}, fields),
        auth=client_auth(world),
        query=query_leftovers(world),
        content_type=CONTENT_TYPES,
    )
    def check(
        grant: list[str],
        body: list[tuple[str, str]],
        auth: tuple[tuple[str, str] | None, dict[str, str]],
        query: list[tuple[str, str]],
        content_type: str,
    ) -> None:
        basic, credentials = auth
        sent = [("grant_type", g) for g in grant] + body + list(credentials.items())
        resp = form_request(world, path, sent, basic=basic, query=query, content_type=content_type)
        if resp.status_code == 200:
            token = resp.json()
            assert resp.headers["cache-control"] == "no-store"
            assert token["token_type"] == "Bearer" and token["access_token"], token
            assert not query, "a credential in the URL was accepted"
        else:
            body_json = assert_oauth_json_error(resp, basic=basic is not None)
            if query and content_type.startswith("application/x-www-form-urlencoded"):
                assert body_json["error"] in {"invalid_request", "invalid_client"}, body_json
        world.assert_no_secret(resp, f"POST {path}")

    check()


# -- /oauth2/introspect and /oauth2/revoke -------------------------------------------------


@pytest.mark.parametrize("path", ["/oauth2/introspect", "/oauth2/revoke"])
def test_introspection_and_revocation(world: World, database_url: str, path: str) -> None:
    tokens = [*world.access_tokens, *world.refresh_tokens]
    fields = {
        "token_type_hint": mixed("access_token", "refresh_token", "id_token"),
        "resource": mixed(RESOURCE),
    }

    @budget(database_url)
    @given(
        token=st.lists(mixed(*tokens), max_size=2),
        body=pairs({}, fields),
        auth=client_auth(world),
        query=query_leftovers(world),
        content_type=CONTENT_TYPES,
    )
    def check(
        token: list[str],
        body: list[tuple[str, str]],
        auth: tuple[tuple[str, str] | None, dict[str, str]],
        query: list[tuple[str, str]],
        content_type: str,
    ) -> None:
        basic, credentials = auth
        sent = [("token", t) for t in token] + body + list(credentials.items())
        resp = form_request(world, path, sent, basic=basic, query=query, content_type=content_type)
        if resp.status_code == 200:
            assert not query, "a credential in the URL was accepted"
            if path.endswith("introspect"):
                info = resp.json()
                assert isinstance(info["active"], bool), info
                assert resp.headers["cache-control"] == "no-store"
        else:
            assert_oauth_json_error(resp, basic=basic is not None)
        world.assert_no_secret(resp, f"POST {path}")

    check()


# -- /oauth2/authorize ---------------------------------------------------------------------


def authorize_fields(world: World) -> dict[str, st.SearchStrategy[str]]:
    challenge = generate_pkce().challenge
    return {
        "client_id": mixed(*world.client_ids),
        "response_type": mixed("code", "token", "code id_token"),
        "redirect_uri": mixed(REDIRECT_URI, OTHER_REDIRECT, "http://127.0.0.1:5555/callback"),
        "code_challenge": mixed(challenge),
        "code_challenge_method": mixed("S256", "plain"),
        "state": st.one_of(st.just("xyz-state"), hostile),
        "scope": mixed("read", "read write", "openid offline_access"),
        "resource": mixed(RESOURCE, MCP_RESOURCE),
        "prompt": mixed("consent", "none", "login"),
        "nonce": hostile,
        "request_uri": hostile,
    }


REQUIRED_AUTHORIZE = ("client_id", "response_type", "code_challenge", "code_challenge_method")


@st.composite
def authorize_query(draw: st.DrawFn, world: World) -> list[tuple[str, str]]:
    fields = authorize_fields(world)
    if draw(st.booleans()):
        # Close to a valid request: the required members, real values, a few variations.
        base = {
            "client_id": draw(st.sampled_from([world.confidential.id, world.public.id])),
            "response_type": "code",
            "code_challenge": generate_pkce().challenge,
            "code_challenge_method": "S256",
            "redirect_uri": REDIRECT_URI,
        }
        extra = draw(pairs({}, {k: v for k, v in fields.items() if k not in base}))
        return [*base.items(), *extra]
    return draw(pairs({}, fields))


def registered_target(location: str) -> bool:
    """Whether a redirect goes to a registered redirect URI (RFC 8252 §7.3: any loopback port)."""
    parts = urlsplit(location)
    if f"{parts.scheme}://{parts.netloc}{parts.path}" == OTHER_REDIRECT:
        return True
    return parts.scheme == "http" and parts.hostname in LOOPBACK and parts.path == "/callback"


def check_authorize_response(
    world: World, resp: Response, query: list[tuple[str, str]], where: str
) -> None:
    assert resp.status_code < 500, (resp.status_code, resp.text)
    if refused_for_nul(resp):
        return
    location = resp.headers.get("location", "")
    if resp.status_code in (302, 303):
        if location.startswith(("/login", f"{ISSUER}/login")):
            return
        assert registered_target(location), location
        params = parse_qs(urlsplit(location).query, keep_blank_values=True)
        assert params.get("iss") == [ISSUER], location  # RFC 9207
        assert ("code" in params) != ("error" in params), location
        if "error" in params:
            assert params["error"][0] in AUTHORIZE_ERRORS, location
        states = [v for k, v in query if k == "state"]
        refused_state = "state" in params.get("error_description", [""])[0]
        if len(states) == 1 and states[0] and not refused_state:
            # RFC 6749 §4.1.2.1 (an over-long state is refused, not sent back)
            assert params.get("state") == states, location
        return
    assert resp.headers["content-type"].startswith("text/html"), (resp.status_code, resp.headers)
    if resp.status_code >= 400:
        assert "Error" in resp.text or "error" in resp.text, resp.text[:300]
    world.assert_no_secret(resp, where)


def test_authorize_get(world: World, database_url: str) -> None:
    @budget(database_url)
    @given(query=authorize_query(world), signed_in=st.booleans())
    def check(query: list[tuple[str, str]], signed_in: bool) -> None:
        browser = world.client if signed_in else world.anonymous
        resp = browser.get("/oauth2/authorize?" + urlencode(query), follow_redirects=False)
        check_authorize_response(world, resp, query, "GET /oauth2/authorize")
        world.assert_no_secret(resp, "GET /oauth2/authorize")

    check()


def test_authorize_post(world: World, database_url: str) -> None:
    @budget(database_url)
    @given(
        query=authorize_query(world),
        form=pairs(
            {},
            {
                "csrf_token": mixed(world.csrf),
                "decision": mixed("allow", "deny", "Allow"),
            },
        ),
        content_type=CONTENT_TYPES,
        signed_in=st.booleans(),
    )
    def check(
        query: list[tuple[str, str]],
        form: list[tuple[str, str]],
        content_type: str,
        signed_in: bool,
    ) -> None:
        browser = world.client if signed_in else world.anonymous
        resp = browser.post(
            "/oauth2/authorize?" + urlencode(query),
            content=urlencode(form).encode(),
            headers={"Content-Type": content_type},
            follow_redirects=False,
        )
        check_authorize_response(world, resp, query, "POST /oauth2/authorize")
        world.assert_no_secret(resp, "POST /oauth2/authorize")

    check()


# -- /oauth2/register and /oauth2/clients/{id} ---------------------------------------------

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), hostile)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(hostile, inner, max_size=3)
    ),
    max_leaves=8,
)
uris = st.lists(mixed(REDIRECT_URI, OTHER_REDIRECT, "http://127.0.0.1/cb"), max_size=3)
METADATA: dict[str, st.SearchStrategy[Any]] = {
    "redirect_uris": st.one_of(uris, uris, json_value),
    "client_name": st.one_of(hostile, json_value),
    "token_endpoint_auth_method": st.one_of(
        mixed("client_secret_basic", "client_secret_post", "none", "private_key_jwt"), json_value
    ),
    "grant_types": st.one_of(
        st.lists(mixed("authorization_code", "refresh_token", "client_credentials"), max_size=3),
        json_value,
    ),
    "response_types": st.one_of(st.lists(mixed("code", "token"), max_size=2), json_value),
    "scope": st.one_of(mixed("read", "read write"), json_value),
    "client_uri": st.one_of(mixed("https://client.example.com"), json_value),
    "logo_uri": st.one_of(mixed("https://client.example.com/logo.png"), json_value),
    "jwks_uri": st.one_of(mixed("https://client.example.com/jwks.json"), json_value),
    "jwks": json_value,
    "contacts": st.one_of(st.lists(hostile, max_size=2), json_value),
    "software_statement": hostile,
    "client_id": hostile,
    "client_secret": hostile,
}
registration_body = st.one_of(
    st.fixed_dictionaries(
        {"redirect_uris": uris},
        optional={k: v for k, v in METADATA.items() if k != "redirect_uris"},
    ),
    st.fixed_dictionaries({}, optional=METADATA),
    json_value,
)


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


class Large(bytes):
    """A body over the form and JSON limits, with a short repr for Hypothesis' reports."""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes of JSON>"


raw_body = st.one_of(
    registration_body.map(json_bytes),
    registration_body.map(json_bytes),
    st.binary(max_size=200),
    st.just(Large(b'{"redirect_uris": ["' + b"x" * 70_000 + b'"]}')),
)


def test_register(world: World, database_url: str) -> None:
    @budget(database_url)
    @given(
        body=raw_body,
        content_type=st.sampled_from(["application/json", "application/json", "text/plain"]),
        bearer=st.one_of(st.none(), st.none(), ascii_hostile),
    )
    def check(body: bytes, content_type: str, bearer: str | None) -> None:
        headers = {"Content-Type": content_type}
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        resp = world.client.post("/oauth2/register", content=body, headers=headers)
        if resp.status_code == 201:
            info = resp.json()
            assert resp.headers["cache-control"] == "no-store"
            assert info["client_id"] and info["registration_access_token"], info
        else:
            assert_oauth_json_error(resp, basic=False)
        world.assert_no_secret(resp, "POST /oauth2/register")

    check()


def test_client_configuration(world: World, database_url: str) -> None:
    ids = mixed(world.dynamic_id, world.confidential.id)
    tokens = st.one_of(
        st.sampled_from([world.registration_token, world.registration_token]),
        st.none(),
        ascii_hostile,
    )

    @budget(database_url)
    @given(
        method=st.sampled_from(["GET", "GET", "PUT", "PUT", "DELETE"]),
        client_id=ids,
        token=tokens,
        body=raw_body,
    )
    def check(method: str, client_id: str, token: str | None, body: bytes) -> None:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        path = "/oauth2/clients/" + quote(client_id, safe="")
        content = body if method == "PUT" else b""
        resp = world.client.request(method, path, content=content, headers=headers)
        if resp.status_code in (200, 204):
            assert token == world.registration_token and client_id == world.dynamic_id
            return  # RFC 7592 §2.1: the client's own registration, to its own holder
        if resp.status_code == 404 and resp.json() == {"detail": "Not Found"}:
            assert client_id in ("", ".", "..") or "/" in client_id, client_id
            return  # the router: no client_id segment at all (empty, or a "/" in it)
        assert_oauth_json_error(resp, basic=False)
        if resp.status_code == 401:
            assert resp.headers.get("www-authenticate", "").startswith("Bearer"), resp.headers
        world.assert_no_secret(resp, f"{method} /oauth2/clients")

    check()


# -- metadata ------------------------------------------------------------------------------

METADATA_PATHS = (
    "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration",
    "/.well-known/jwks.json",
    "/.well-known/oauth-protected-resource",
)


def test_metadata_documents(world: World, database_url: str) -> None:
    baseline = {path: world.anonymous.get(path) for path in METADATA_PATHS}

    @budget(database_url)
    @given(
        path=st.sampled_from(METADATA_PATHS),
        method=st.sampled_from(["GET", "GET", "GET", "OPTIONS", "HEAD"]),
        query=st.lists(st.tuples(hostile, hostile), max_size=3),
        origin=st.one_of(st.none(), ascii_hostile),
    )
    def check(path: str, method: str, query: list[tuple[str, str]], origin: str | None) -> None:
        headers = {"Origin": origin} if origin is not None else {}
        if method == "OPTIONS":
            headers["Access-Control-Request-Method"] = "GET"
        url = path + ("?" + urlencode(query) if query else "")
        resp = world.anonymous.request(method, url, headers=headers)
        assert resp.status_code < 500, (resp.status_code, resp.text)
        if refused_for_nul(resp):
            return
        if method == "GET":
            # The query string changes nothing: the same document as without one.
            assert resp.status_code == baseline[path].status_code
            assert resp.content == baseline[path].content
        world.assert_no_secret(resp, f"{method} {path}")

    check()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"garbage", id="no-parts"),
        pytest.param(b"--x\r\nContent-Disposition: form-data\r\n\r\nv\r\n--x--\r\n", id="no-name"),
    ],
)
def test_consent_post_with_unreadable_form_is_an_error_page(
    world: World, services: Services, body: bytes
) -> None:
    """Found by the fuzzer: a multipart body the framework could not parse was answered with
    the framework's JSON, not the error page, on the consent page (and every page's form)."""
    url = authorize_url(world.confidential.id, challenge=generate_pkce().challenge)
    before = issued(services, world.confidential.id)
    for path in (url, "/login"):
        resp = world.client.post(
            path,
            content=body,
            headers={"Content-Type": "multipart/form-data; boundary=x"},
            follow_redirects=False,
        )
        assert resp.status_code == 400, resp.text
        assert resp.headers["content-type"].startswith("text/html"), resp.headers
        assert "invalid_request" in resp.text
        assert "location" not in resp.headers
    assert issued(services, world.confidential.id) == before


@pytest.mark.parametrize("member", [[], {}, ["authorization_code"], None, 7])
def test_registration_grant_types_that_are_not_strings(
    client: TestClient, services: Services, member: Any
) -> None:
    """Found by the fuzzer: a list or an object inside grant_types was a 500 (unhashable)."""
    apps = len(services.store.list_apps())
    resp = client.post(
        "/oauth2/register",
        json={"redirect_uris": [REDIRECT_URI], "grant_types": ["authorization_code", member]},
    )
    body = assert_oauth_json_error(resp, basic=False)
    assert resp.status_code == 400 and body["error"] == "invalid_client_metadata", body
    assert len(services.store.list_apps()) == apps


@pytest.mark.parametrize("member", [[], {}, ["refresh_token"]])
def test_client_metadata_document_grant_types_that_are_not_strings(member: Any) -> None:
    """The same check in a Client ID Metadata Document (core/client_metadata.py)."""
    url = "https://client.example.com/client.json"
    document = {
        "client_id": url,
        "client_name": "Example",
        "redirect_uris": ["https://client.example.com/callback"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", member],
    }
    now = datetime.now(UTC)
    with pytest.raises(client_metadata.InvalidDocument, match="grant_types"):
        client_metadata.app_from_document(url, json.dumps(document).encode(), None, now, None)
