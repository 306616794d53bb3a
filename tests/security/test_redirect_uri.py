"""redirect_uri manipulation: exact string matching, with the loopback port as the one exception.

Sources: RFC 9700 §2.1 and §4.1 (insufficient redirect URI validation: "authorization servers
MUST utilize exact string matching", with the attacks of §4.1.1–4.1.3: subdomains, paths,
userinfo, parser confusion), OAuth 2.1 draft §4.1.1 and §2.3.1, RFC 6749 §3.1.2 and §10.6,
RFC 6819 §4.1.5 and §5.2.3.5, RFC 8252 §7.3 (loopback: only the port may vary, http only),
and published bypasses of prefix or parser-based matching (e.g. CVE-2023-6927 in Keycloak:
a wildcard redirect bypass; CVE-2024-1132 in Keycloak: path traversal in redirect_uri).
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from tests.conftest import Client, issued, make_client
from tests.flows import (
    assert_oauth_error,
    assert_token_response,
    authorize,
    callback_params,
    csrf_from,
    decide,
    exchange_code,
    generate_pkce,
)
from tests.http_types import Response
from tests.security.helpers import assert_error_page, code_count, snapshot

WEB = "https://app.example.com/cb"
LOOPBACK = "http://127.0.0.1:8080/cb"


@pytest.fixture
def app(services: Services) -> Client:
    return make_client(services, redirect_uris=[WEB, LOOPBACK])


# One row per attack class; every URI in it is tried.
MANIPULATED = [
    pytest.param(["https://APP.example.com/cb", "https://app.example.com/CB",
                  "HTTPS://app.example.com/cb"], id="9700-4.1-case-changes"),
    pytest.param(["https://app.example.com/%63b", "https://app%2Eexample.com/cb"],
                 id="9700-4.1-percent-encoding"),
    pytest.param(["https://app.example.com/cb/../evil", "https://app.example.com/evil/../cb",
                  "https://app.example.com/cb%2F..%2Fevil"], id="9700-4.1.3-path-traversal"),
    pytest.param(["https://app.example.com/cb/", "https://app.example.com/cb;x=1"],
                 id="9700-4.1-path-suffixes"),
    pytest.param(["https://app.example.com@evil.example/cb",
                  "https://evil.example@app.example.com/cb",
                  "https://app.example.com%40evil.example/cb"], id="9700-4.1.1-userinfo"),
    pytest.param(["https://app.example.com\\@evil.example/cb",
                  "https://evil.example\\app.example.com/cb"], id="9700-4.1.1-backslashes"),
    pytest.param(["https://\u0430pp.example.com/cb", "https://xn--pp-7bc.example.com/cb"],
                 id="9700-4.1-idn-punycode"),
    pytest.param(["https://app.example.com./cb"], id="9700-4.1-trailing-dot-host"),
    pytest.param(["https://app.example.com/cb?x=1", "https://app.example.com/cb?"],
                 id="9700-4.1-extra-query"),
    pytest.param(["https://app.example.com/cb#x", "https://app.example.com/cb#"],
                 id="6749-3.1.2-fragment"),
    pytest.param(["https://app.example.com:443/cb", "https://app.example.com:8443/cb"],
                 id="9700-4.1-ports"),
    pytest.param(["http://app.example.com/cb"], id="oauth21-2.3.1-http-downgrade"),
    pytest.param(["https://evil.app.example.com/cb", "https://app.example.com.evil.example/cb",
                  "https://app.example.comevil.example/cb"], id="9700-4.1.1-subdomain-and-suffix"),
    pytest.param([" https://app.example.com/cb", "https://app.example.com/cb%0d%0aLocation:x",
                  "https://app.example.com/cb\r\nX: y"], id="cwe113-whitespace-and-crlf"),
    # Loopback (RFC 8252 §7.3): the port may vary, nothing else.
    pytest.param(["http://localhost:8080/cb", "http://127.0.0.2:8080/cb",
                  "http://[::ffff:127.0.0.1]:8080/cb", "http://2130706433:8080/cb",
                  "http://0x7f000001:8080/cb", "http://127.1:8080/cb",
                  "http://127.0.0.1.evil.example:8080/cb"], id="8252-7.3-other-host-forms"),
    pytest.param(["https://127.0.0.1:8080/cb"], id="8252-7.3-https-is-not-loopback-http"),
    pytest.param(["http://127.0.0.1:8080@evil.example/cb", "http://user@127.0.0.1:9999/cb"],
                 id="8252-7.3-userinfo"),
    pytest.param(["http://127.0.0.1:9999/cb/../x", "http://127.0.0.1:9999/cb?x=1",
                  "http://127.0.0.1:99999/cb"], id="8252-7.3-port-varies-but-not-the-rest"),
]  # fmt: skip


def _both(client: TestClient, app_id: str, redirect_uri: str) -> Iterator[Response]:
    params = {
        "client_id": app_id,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "code_challenge": generate_pkce().challenge,
        "code_challenge_method": "S256",
        "state": "st",
    }
    url = "/oauth2/authorize?" + urlencode(params)
    yield client.get(url, follow_redirects=False)
    token = csrf_from(client.get("/logout"))
    yield client.post(url, data={"decision": "allow", "csrf_token": token}, follow_redirects=False)


@pytest.mark.parametrize("variants", MANIPULATED)
def test_manipulated_redirect_uri_is_refused_with_a_page(
    signed_in: TestClient, services: Services, app: Client, variants: list[str]
) -> None:
    before = snapshot(services)
    for requested in variants:
        for resp in _both(signed_in, app.id, requested):
            assert_error_page(resp, 400, "invalid_request", "redirect_uri")
    assert code_count(services, app.id) == 0
    assert snapshot(services) == before


@pytest.mark.parametrize(
    "requested",
    [
        pytest.param(WEB, id="control-exact-web"),
        pytest.param(LOOPBACK, id="control-exact-loopback"),
        pytest.param("http://127.0.0.1:51234/cb", id="8252-7.3-port-may-vary"),
        pytest.param("http://127.0.0.1/cb", id="8252-7.3-port-omitted"),
    ],
)
def test_registered_redirect_uri_is_accepted(
    signed_in: TestClient, app: Client, requested: str
) -> None:
    """The controls: without them every refusal above could be a refusal of everything."""
    pkce = generate_pkce()
    resp = decide(
        signed_in,
        "/oauth2/authorize?"
        + urlencode(
            {
                "client_id": app.id,
                "response_type": "code",
                "redirect_uri": requested,
                "code_challenge": pkce.challenge,
            }
        ),
    )
    assert resp.headers["location"].startswith(requested + "?code=")
    assert callback_params(resp)["iss"] == "http://testserver"


TOKEN_MISMATCH = [
    "https://APP.example.com/cb",
    "https://app.example.com/cb/",
    "https://app.example.com/cb?x=1",
    "https://app.example.com/%63b",
    "https://app.example.com@evil.example/cb",
    "http://127.0.0.1:8080/cb",
    "https://evil.example/cb",
]


def test_token_request_redirect_uri_must_be_identical(
    signed_in: TestClient, services: Services, app: Client
) -> None:
    """RFC 6749 §4.1.3, RFC 9700 §4.1: the code is bound to the exact redirect_uri it was sent
    to; a failed exchange does not consume it."""
    pkce = generate_pkce()
    code = authorize(signed_in, app.id, redirect_uri=WEB, challenge=pkce.challenge)
    before = issued(services, app.id)
    for variant in TOKEN_MISMATCH:
        resp = exchange_code(
            signed_in,
            code,
            client_id=app.id,
            client_secret=app.secret,
            verifier=pkce.verifier,
            redirect_uri=variant,
        )
        assert_oauth_error(resp, 400, "invalid_grant", "redirect_uri does not match")
    missing = exchange_code(
        signed_in,
        code,
        client_id=app.id,
        client_secret=app.secret,
        verifier=pkce.verifier,
        redirect_uri=None,
    )
    assert_oauth_error(missing, 400, "invalid_grant", "redirect_uri is required")
    assert issued(services, app.id) == before
    ok = exchange_code(
        signed_in, code, client_id=app.id, client_secret=app.secret, verifier=pkce.verifier,
        redirect_uri=WEB,
    )  # fmt: skip
    assert_token_response(ok)


def test_loopback_code_is_bound_to_the_port_it_was_sent_to(
    signed_in: TestClient, services: Services, app: Client
) -> None:
    """RFC 8252 §7.3 lets the port vary at authorize; the token request must repeat it."""
    pkce = generate_pkce()
    sent_to = "http://127.0.0.1:40001/cb"
    code = authorize(signed_in, app.id, redirect_uri=sent_to, challenge=pkce.challenge)
    for variant in (LOOPBACK, "http://127.0.0.1:40002/cb"):
        resp = exchange_code(
            signed_in, code, client_id=app.id, client_secret=app.secret, verifier=pkce.verifier,
            redirect_uri=variant,
        )  # fmt: skip
        assert_oauth_error(resp, 400, "invalid_grant")
    assert issued(services, app.id).access == 0
