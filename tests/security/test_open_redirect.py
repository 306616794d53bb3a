"""Open redirects through every path that sends a browser somewhere.

Sources: RFC 9700 §4.11 (open redirection: at the client and at the authorization server),
RFC 6749 §4.1.2.1 and §10.15 (never redirect to an unverified redirect URI), RFC 6819 §4.2.4
and §5.2.3.5 (validate redirect URIs), OAuth 2.1 draft §7.12, and the sign-in return target
(the `next` / `return_to` class of bugs: CWE-601, e.g. CVE-2023-28117 in Sentry's
`next` parameter handling was a `/\\` open redirect of exactly this shape).

authgate's sign-in page takes `return_to`; only a local absolute path survives
(``web/pages/login.py`` ``safe_return_to``), everything else becomes ``/``.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from tests.conftest import Account, Client, make_client
from tests.flows import REDIRECT_URI, authorize_url, csrf_from, generate_pkce, login
from tests.http_types import Response
from tests.security.helpers import (
    assert_error_page,
    assert_unframable,
    code_count,
    hidden,
    snapshot,
)
from tests.security.live import Live

EVIL = "https://evil.example/cb"

# Each row is one attack class; every value in it is tried.
RETURN_TO_ATTACKS = [
    pytest.param(
        ["https://evil.example/", "http://evil.example", "HTTPS://EVIL.EXAMPLE/"],
        id="cwe601-absolute-url",
    ),
    pytest.param(["//evil.example", "///evil.example"], id="cwe601-scheme-relative"),
    pytest.param(
        ["/\\evil.example", "\\\\evil.example", "\\/evil.example", "http:\\\\evil.example"],
        id="cwe601-backslashes",
    ),
    pytest.param(["https:evil.example", "evil.example"], id="cwe601-no-slashes"),
    pytest.param(
        ["javascript:alert(document.domain)", "JaVaScRiPt:alert(1)",
         "data:text/html,<script>alert(1)</script>"],
        id="cwe601-script-schemes",
    ),
    pytest.param(
        ["/\t/evil.example", "/\n/evil.example", " //evil.example"],
        id="cwe601-characters-browsers-strip",
    ),
    pytest.param(["/\r\nSet-Cookie: x=1"], id="cwe113-header-injection"),
    pytest.param(["%2F%2Fevil.example", "%5C%5Cevil.example"], id="cwe601-percent-encoded"),
    pytest.param(["\uff0f\uff0fevil.example"], id="cwe601-fullwidth-solidus"),
    pytest.param(["/" + "a" * 5000], id="cwe601-oversized"),
]  # fmt: skip


@pytest.mark.parametrize("targets", RETURN_TO_ATTACKS)
def test_sign_in_return_target_never_leaves_the_site(
    client: TestClient, services: Services, alice: Account, targets: list[str]
) -> None:
    for target in targets:
        client.cookies.clear()
        # 1. The sign-in page does not even carry the hostile target in its form.
        page = client.get("/login", params={"return_to": target})
        assert page.status_code == 200
        assert hidden(page, "return_to") == "/", target
        assert_unframable(page)
        # 2. Posting it anyway (a forged form) signs in and lands on "/".
        before = snapshot(services)
        resp = client.post(
            "/login",
            data={
                "username": alice.user.username,
                "password": alice.password,
                "csrf_token": csrf_from(page),
                "return_to": target,
            },
            follow_redirects=False,
        )
        assert resp.status_code == 303, resp.text
        assert resp.headers["location"] == "/", target
        assert "set-cookie: x" not in str(resp.headers).lower()
        assert snapshot(services).rows["sessions"] == before.rows["sessions"] + 1
        # 3. Signed in, the sign-in page forwards at once, and only to "/".
        again = client.get("/login", params={"return_to": target}, follow_redirects=False)
        assert again.status_code == 302
        assert again.headers["location"] == "/", target
        # 4. Signing out goes to the sign-in page, never to the target.
        out = client.post(
            "/logout",
            data={"csrf_token": csrf_from(client.get("/logout")), "return_to": target},
            follow_redirects=False,
        )
        assert out.status_code == 303
        assert out.headers["location"] == "/login", target


def test_encoded_return_targets(signed_in: TestClient) -> None:
    """What arrives percent-encoded is checked after decoding (once, as the server sees it)."""
    for raw_query, expected in [
        ("return_to=%2F%2Fevil.example", "/"),
        ("return_to=%252F%252Fevil.example", "/"),
        ("return_to=%2F%5Cevil.example", "/"),
        ("return_to=%2F%09%2Fevil.example", "/"),
        ("return_to=%2Faccount%2Fapps%3Fa%3D1", "/account/apps?a=1"),  # the control
    ]:
        resp = signed_in.get("/login?" + raw_query, follow_redirects=False)
        assert resp.status_code == 302
        assert resp.headers["location"] == expected, raw_query


def test_sign_out_with_hostile_return_to_when_signed_out(client: TestClient) -> None:
    resp = client.get("/logout", params={"return_to": "//evil.example"}, follow_redirects=False)
    assert resp.status_code == 302
    assert resp.headers["location"] == "/login"


def _get_and_post(client: TestClient, params: dict[str, str]) -> list[Response]:
    """The consent page request, and a consent POST carrying this session's CSRF token."""
    url = "/oauth2/authorize?" + urlencode(params)
    token = csrf_from(client.get("/logout"))
    return [
        client.get(url, follow_redirects=False),
        client.post(url, data={"decision": "allow", "csrf_token": token}, follow_redirects=False),
    ]


# Requests whose redirect_uri is not verified: whatever else is wrong, the answer is a page.
UNVERIFIED = [
    pytest.param({"client_id": "no-such-client"}, "invalid_client", id="4.1.2.1-unknown-client"),
    pytest.param({"client_id": ""}, "invalid_request", id="4.1.2.1-empty-client_id"),
    pytest.param({"client_id": None}, "invalid_request", id="4.1.2.1-missing-client_id"),
    pytest.param({}, "invalid_request", id="4.1.2.1-unregistered-redirect"),
    pytest.param(
        {"response_type": "token"}, "invalid_request", id="4.1.2.1-bad-redirect-and-implicit"
    ),
    pytest.param(
        {"code_challenge": None}, "invalid_request", id="4.1.2.1-bad-redirect-and-no-pkce"
    ),
    pytest.param(
        {"code_challenge_method": "plain"},
        "invalid_request",
        id="4.1.2.1-bad-redirect-and-plain-pkce",
    ),
    pytest.param({"scope": "admin"}, "invalid_request", id="4.1.2.1-bad-redirect-and-bad-scope"),
    pytest.param(
        {"resource": "https://unknown.example"},
        "invalid_request",
        id="8707-bad-redirect-and-bad-resource",
    ),
    pytest.param(
        {"prompt": "none"}, "invalid_request", id="oidc-3.1.2.6-bad-redirect-and-prompt-none"
    ),
    pytest.param(
        {"client_id": "https://127.0.0.1/client.json"},
        "invalid_client",
        id="cimd-unfetchable-document-client",
    ),
]


@pytest.mark.parametrize(("override", "error"), UNVERIFIED)
def test_errors_never_redirect_to_an_unverified_uri(
    signed_in: TestClient,
    services: Services,
    public: Client,
    override: dict[str, str | None],
    error: str,
) -> None:
    params: dict[str, str | None] = {
        "client_id": public.id,
        "response_type": "code",
        "redirect_uri": EVIL,
        "code_challenge": generate_pkce().challenge,
        "code_challenge_method": "S256",
        "state": "s1",
    }
    params.update(override)
    sent = {k: v for k, v in params.items() if v is not None}
    before = snapshot(services)
    for resp in _get_and_post(signed_in, sent):
        assert_error_page(resp, 400, error)
        assert "evil.example" not in resp.text
    assert snapshot(services) == before


def test_repeated_redirect_uri_with_a_registered_one_first_is_a_page(
    signed_in: TestClient, services: Services, public: Client
) -> None:
    """RFC 6749 §3.1: a repeated parameter is an error; the first value must not win."""
    url = (
        authorize_url(public.id, challenge=generate_pkce().challenge)
        + "&redirect_uri="
        + httpx.URL(EVIL).raw_path.decode()
    )
    assert_error_page(signed_in.get(url, follow_redirects=False), 400, "invalid_request")
    assert code_count(services) == 0


def test_anonymous_prompt_none_with_bad_redirect_is_a_page(
    client: TestClient, services: Services, public: Client
) -> None:
    """OIDC Core §3.1.2.6 errors are redirected only to a verified URI."""
    url = authorize_url(
        public.id, redirect_uri=EVIL, challenge=generate_pkce().challenge, extra={"prompt": "none"}
    )
    assert_error_page(client.get(url, follow_redirects=False), 400, "invalid_request")


def test_self_registered_client_error_before_sign_in_is_a_page(
    client: TestClient, services: Services
) -> None:
    """DESIGN.md §7, RFC 9700 §4.11.2: a client that registered itself could use the error
    redirect as an open redirector to any URI it registered; before sign-in it gets a page."""
    resp = client.post(
        "/oauth2/register",
        json={
            "redirect_uris": ["https://attacker.example/cb"],
            "token_endpoint_auth_method": "none",
        },
    )
    assert resp.status_code == 201, resp.text
    client_id = resp.json()["client_id"]
    url = authorize_url(
        client_id,
        redirect_uri="https://attacker.example/cb",
        challenge=generate_pkce().challenge,
        extra={"response_type": "token"},
    )
    assert_error_page(client.get(url, follow_redirects=False), 400, "unsupported_response_type")


def test_not_signed_in_goes_to_a_local_sign_in_page(client: TestClient, services: Services) -> None:
    """The only redirect before the redirect URI is verified is to authgate's own sign-in."""
    app = make_client(services, redirect_uris=[REDIRECT_URI])
    url = authorize_url(app.id, challenge=generate_pkce().challenge)
    resp = client.get(url, follow_redirects=False)
    assert resp.status_code == 302
    assert resp.headers["location"].startswith("/login?return_to=%2Foauth2%2Fauthorize%3F")


def test_deny_redirects_only_to_the_registered_uri(
    client: TestClient, services: Services, alice: Account
) -> None:
    app = make_client(services, redirect_uris=[REDIRECT_URI])
    login(client, alice.user.username, alice.password)
    url = authorize_url(app.id, challenge=generate_pkce().challenge)
    token = csrf_from(client.get(url))
    resp = client.post(url, data={"csrf_token": token, "decision": "deny"}, follow_redirects=False)
    assert resp.status_code == 302
    assert resp.headers["location"].startswith(REDIRECT_URI + "?error=access_denied")
    assert code_count(services, app.id) == 0


# RFC 9700 §4.11.2: "the authorization server [...] MAY redirect only if it trusts the redirect
# URI". A client that registered itself chose its URI; until the person has consented to that
# client, its invalid requests are a page, signed in or not (DESIGN.md §7).
SELF_REGISTERED_ERRORS = [
    pytest.param({"response_type": "token"}, "unsupported_response_type", id="4.1.2.1-implicit"),
    pytest.param({"code_challenge": None}, "invalid_request", id="9700-2.1.1-no-pkce"),
    # An unknown scope is left out, not refused (issue 17); a malformed one still is.
    pytest.param({"scope": 'bad"scope'}, "invalid_scope", id="3.3-malformed-scope"),
    pytest.param({"resource": "https://unknown.example"}, "invalid_target", id="8707-unknown"),
    pytest.param({"prompt": "none"}, "consent_required", id="oidc-3.1.2.6-prompt-none"),
]


def _register_live(http: httpx.Client) -> str:
    resp = http.post(
        "/oauth2/register",
        json={"redirect_uris": [ATTACKER_CB], "token_endpoint_auth_method": "none"},
    )
    assert resp.status_code == 201, resp.text
    client_id: str = resp.json()["client_id"]
    return client_id


ATTACKER_CB = "https://attacker.example/cb"


def _live_params(client_id: str, override: dict[str, str | None]) -> dict[str, str]:
    params: dict[str, str | None] = {
        "client_id": client_id,
        "response_type": "code",
        "redirect_uri": ATTACKER_CB,
        "code_challenge": generate_pkce().challenge,
        "code_challenge_method": "S256",
        "state": "s1",
    }
    params.update(override)
    return {k: v for k, v in params.items() if v is not None}


@pytest.mark.parametrize(("override", "error"), SELF_REGISTERED_ERRORS)
def test_signed_in_user_gets_a_page_for_a_self_registered_client_never_consented_to(
    live: Live,
    services: Services,
    alice: Account,
    override: dict[str, str | None],
    error: str,
) -> None:
    with live.client() as attacker, live.client() as browser:
        client_id = _register_live(attacker)
        login(browser, alice.user.username, alice.password)
        url = "/oauth2/authorize?" + urlencode(_live_params(client_id, override))
        before = snapshot(services)
        token = csrf_from(browser.get("/logout"))
        answers = [browser.get(url)]
        if "prompt" not in override:  # a consent POST is the person's answer, not a prompt
            answers.append(browser.post(url, data={"decision": "allow", "csrf_token": token}))
        for resp in answers:
            assert_error_page(resp, 400, error)
            assert "attacker.example" not in resp.text
        assert snapshot(services) == before


def test_self_registered_client_errors_redirect_once_the_user_consented(
    live: Live, services: Services, alice: Account
) -> None:
    with live.client() as attacker, live.client() as browser:
        client_id = _register_live(attacker)
        login(browser, alice.user.username, alice.password)
        bad = "/oauth2/authorize?" + urlencode(_live_params(client_id, {"response_type": "token"}))
        assert_error_page(browser.get(bad), 400, "unsupported_response_type")
        # The person consents once: from now on the client's URI is one they trusted.
        good = "/oauth2/authorize?" + urlencode(_live_params(client_id, {}))
        page = browser.get(good)
        allowed = browser.post(good, data={"decision": "allow", "csrf_token": csrf_from(page)})
        assert allowed.status_code == 302
        assert allowed.headers["location"].startswith(ATTACKER_CB + "?code=")
        resp = browser.get(bad)
        assert resp.status_code == 302
        got = parse_qs(urlsplit(resp.headers["location"]).query)
        assert resp.headers["location"].startswith(ATTACKER_CB + "?")
        assert got["error"] == ["unsupported_response_type"]
        assert (got["state"], got["iss"]) == (["s1"], [services.ctx.policy.issuer])
        # Withdrawing the consent makes it a page again.
        csrf = {"X-CSRF-Token": csrf_from(browser.get("/logout"))}
        withdrawn = browser.delete("/oauth2/tokens", params={"client_id": client_id}, headers=csrf)
        assert withdrawn.status_code == 204
        assert_error_page(browser.get(bad), 400, "unsupported_response_type")
        # Another person, who never consented, still gets the page.
        browser.cookies.clear()
        assert_error_page(browser.get(bad), 400, "unsupported_response_type")


def test_operator_app_errors_still_redirect_for_a_signed_in_user(
    live: Live, services: Services, alice: Account
) -> None:
    app = make_client(services, redirect_uris=[REDIRECT_URI])
    with live.client() as browser:
        login(browser, alice.user.username, alice.password)
        url = authorize_url(app.id, challenge=None)
        resp = browser.get(url)
        got = parse_qs(urlsplit(resp.headers["location"]).query)
        assert resp.status_code == 302 and resp.headers["location"].startswith(REDIRECT_URI)
        assert got["error"] == ["invalid_request"] and got["state"] == ["xyz-state"]


@pytest.mark.parametrize("length", [2049, 4097])
def test_state_too_long_to_echo_is_a_page(
    live: Live, services: Services, alice: Account, length: int
) -> None:
    """RFC 6749 §4.1.2.1: an error redirect carries "the exact value received from the client"
    as state; one authgate will not echo makes the error a page, never a redirect without it."""
    app = make_client(services, redirect_uris=[REDIRECT_URI])
    with live.client() as browser:
        login(browser, alice.user.username, alice.password)
        before = snapshot(services)
        url = authorize_url(app.id, challenge=generate_pkce().challenge, state="s" * length)
        token = csrf_from(browser.get("/logout"))
        for resp in (
            browser.get(url),
            browser.post(url, data={"decision": "allow", "csrf_token": token}),
        ):
            assert_error_page(resp, 400, "invalid_request", "state parameter is too long")
        assert snapshot(services) == before
