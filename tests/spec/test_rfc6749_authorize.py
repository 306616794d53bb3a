"""RFC 6749 §3.1, §4.1.1–4.1.2 and §10.6 at the authorization endpoint, with OAuth 2.1's exact
redirect_uri matching and RFC 8252 §7.3 loopback ports. Errors before the client and the
redirect_uri are verified are pages, never redirects."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from tests.conftest import Account, Client, issued, make_client
from tests.flows import (
    REDIRECT_URI,
    authorize_url,
    callback_params,
    csrf_from,
    decide,
    generate_pkce,
)
from tests.http_types import Response

DEFAULT_CALLBACK = "http://localhost:8080/foo/bar"


def _code_count(services: Services, app_id: str) -> int:
    import sqlalchemy as sa

    with services.store.engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM authorization_codes WHERE app_id = :a"), {"a": app_id}
            ).scalar_one()
        )


def assert_error_page(resp: Response, status: int, error: str) -> None:
    assert resp.status_code == status, resp.text
    assert "location" not in resp.headers
    assert resp.headers["content-type"].startswith("text/html")
    assert f'<code id="error-code">{error}</code>' in resp.text
    assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]


REDIRECT_VARIANTS = [
    pytest.param("http://localhost:8080/foo/bar/nested", id="3.1.2-sub-path"),
    pytest.param("http://localhost:8080/foo", id="3.1.2-parent-path"),
    pytest.param("http://localhost:8080/prepend/foo/bar", id="3.1.2-prefixed-path"),
    pytest.param("http://localhost:8080/", id="3.1.2-root-path"),
    pytest.param("https://localhost:8080/foo/bar", id="3.1.2-other-scheme"),
    pytest.param("http://sub.localhost:8080/foo/bar", id="3.1.2-subdomain"),
    pytest.param("http://localhost1:8080/foo/bar", id="3.1.2-other-host"),
    pytest.param("http://evil.example/foo/bar", id="3.1.2-foreign-host"),
    pytest.param("http://localhost:8080/foo/bar#frag", id="3.1.2-fragment"),
    pytest.param("http://localhost:8080/foo/bar?x=1", id="3.1.2-query-added"),
    pytest.param("http://127.0.0.1:8080/foo/bar", id="8252-7.3-other-loopback-host"),
    pytest.param("http://user@localhost:8080/foo/bar", id="3.1.2-userinfo"),
    pytest.param("HTTP://localhost:8080/foo/bar/", id="3.1.2-trailing-slash"),
]


@pytest.mark.parametrize("redirect_uri", REDIRECT_VARIANTS)
def test_unregistered_redirect_uri_is_a_page_not_a_redirect(
    signed_in: TestClient, services: Services, redirect_uri: str
) -> None:
    app = make_client(services, redirect_uris=[DEFAULT_CALLBACK])
    pkce = generate_pkce()
    url = authorize_url(app.id, redirect_uri=redirect_uri, challenge=pkce.challenge)
    resp = signed_in.get(url, follow_redirects=False)
    assert_error_page(resp, 400, "invalid_request")
    # The consent POST is refused the same way: no code is ever issued.
    post = signed_in.post(url, data={"decision": "allow"}, follow_redirects=False)
    assert_error_page(post, 400, "invalid_request")
    assert _code_count(services, app.id) == 0


@pytest.mark.parametrize(
    ("registered", "requested"),
    [
        pytest.param(
            "http://localhost:8080/cb", "http://localhost:51234/cb", id="8252-7.3-localhost"
        ),
        pytest.param("http://127.0.0.1/cb", "http://127.0.0.1:9999/cb", id="8252-7.3-ipv4"),
        pytest.param("http://[::1]:1/cb", "http://[::1]:2/cb", id="8252-7.3-ipv6"),
    ],
)
def test_loopback_port_may_vary(
    signed_in: TestClient, services: Services, registered: str, requested: str
) -> None:
    app = make_client(services, redirect_uris=[registered])
    pkce = generate_pkce()
    resp = decide(
        signed_in, authorize_url(app.id, redirect_uri=requested, challenge=pkce.challenge)
    )
    assert resp.headers["location"].startswith(requested + "?")
    assert "code" in callback_params(resp)


def test_port_on_non_loopback_host_must_match(signed_in: TestClient, services: Services) -> None:
    app = make_client(services, redirect_uris=["https://app.example.com/cb"])
    url = authorize_url(
        app.id, redirect_uri="https://app.example.com:8443/cb", challenge=generate_pkce().challenge
    )
    assert_error_page(signed_in.get(url, follow_redirects=False), 400, "invalid_request")


def test_any_registered_redirect_uri_matches(signed_in: TestClient, services: Services) -> None:
    second = "cursor://anysphere.cursor-retrieval/oauth/callback"
    app = make_client(services, redirect_uris=[REDIRECT_URI, second], client_type="public")
    resp = decide(
        signed_in, authorize_url(app.id, redirect_uri=second, challenge=generate_pkce().challenge)
    )
    assert resp.headers["location"].startswith(second + "?code=")


def test_redirect_uri_required_when_several_registered(
    signed_in: TestClient, services: Services
) -> None:
    app = make_client(services, redirect_uris=[REDIRECT_URI, "http://127.0.0.1:9876/callback"])
    url = authorize_url(app.id, redirect_uri=None, challenge=generate_pkce().challenge)
    assert_error_page(signed_in.get(url, follow_redirects=False), 400, "invalid_request")


def test_single_registered_redirect_uri_is_the_default(
    signed_in: TestClient, confidential: Client
) -> None:
    url = authorize_url(confidential.id, redirect_uri=None, challenge=generate_pkce().challenge)
    resp = decide(signed_in, url)
    assert resp.headers["location"].startswith(REDIRECT_URI + "?code=")


def test_registered_query_is_kept(signed_in: TestClient, services: Services) -> None:
    app = make_client(services, redirect_uris=["http://localhost:9876/cb?tenant=a"])
    url = authorize_url(
        app.id,
        redirect_uri="http://localhost:9876/cb?tenant=a",
        challenge=generate_pkce().challenge,
    )
    params = callback_params(decide(signed_in, url))
    assert params["tenant"] == "a" and "code" in params


@pytest.mark.parametrize(
    ("client_id", "status", "error"),
    [
        pytest.param(None, 400, "invalid_request", id="4.1.1-missing-client_id"),
        pytest.param("non-existent-client", 400, "invalid_client", id="4.1.2.1-unknown-client"),
        pytest.param("x" * 300, 400, "invalid_client", id="4.1.2.1-oversize-client_id"),
    ],
)
def test_bad_client_is_a_page(
    signed_in: TestClient, client_id: str | None, status: int, error: str
) -> None:
    params = {"response_type": "code", "redirect_uri": REDIRECT_URI}
    if client_id is not None:
        params["client_id"] = client_id
    resp = signed_in.get("/oauth2/authorize?" + urlencode(params), follow_redirects=False)
    assert_error_page(resp, status, error)


def test_repeated_client_id_is_a_page(signed_in: TestClient, confidential: Client) -> None:
    url = authorize_url(confidential.id) + "&client_id=" + confidential.id
    assert_error_page(signed_in.get(url, follow_redirects=False), 400, "invalid_request")


def test_repeated_redirect_uri_is_a_page(signed_in: TestClient, confidential: Client) -> None:
    url = authorize_url(confidential.id) + "&redirect_uri=" + REDIRECT_URI
    assert_error_page(signed_in.get(url, follow_redirects=False), 400, "invalid_request")


VERIFIED_CLIENT_ERRORS = [
    pytest.param({"response_type": "token"}, "unsupported_response_type", id="4.1.2.1-implicit"),
    pytest.param(
        {"response_type": "code id_token"}, "unsupported_response_type", id="4.1.2.1-hybrid"
    ),
    pytest.param({"response_type": ""}, "invalid_request", id="4.1.2.1-empty-response_type"),
    pytest.param({"scope": 'bad"scope'}, "invalid_scope", id="3.3-malformed-scope"),
    pytest.param(
        {"code_challenge_method": "S512"}, "invalid_request", id="7636-4.3-unknown-method"
    ),
]


@pytest.mark.parametrize(("override", "error"), VERIFIED_CLIENT_ERRORS)
def test_errors_after_verification_redirect_with_state_and_iss(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    override: dict[str, str],
    error: str,
) -> None:
    pkce = generate_pkce()
    params = {
        "client_id": confidential.id,
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        "state": "st4te",
    }
    params.update(override)
    resp = signed_in.get("/oauth2/authorize?" + urlencode(params), follow_redirects=False)
    got = callback_params(resp)
    assert resp.headers["location"].startswith(REDIRECT_URI + "?")
    assert got["error"] == error
    assert got["iss"] == "http://testserver"
    assert "code" not in got
    if len(params["state"]) < 100:
        assert got["state"] == "st4te"
    assert _code_count(services, confidential.id) == 0


# "state: REQUIRED if a "state" parameter was present in the client authorization request.
# The exact value received from the client" (§4.1.2.1): an error that cannot carry the state
# the client sent is shown as a page, never redirected without it.
@pytest.mark.parametrize(
    "suffix",
    [
        pytest.param("&state=" + "s" * 3000, id="4.1.2.1-oversize-state"),
        pytest.param("&state=" + "s" * 5000, id="4.1.2.1-state-over-the-parameter-limit"),
    ],
)
def test_state_too_long_to_echo_is_a_page(
    signed_in: TestClient, services: Services, confidential: Client, suffix: str
) -> None:
    url = authorize_url(confidential.id, challenge=generate_pkce().challenge, state=None) + suffix
    resp = signed_in.get(url, follow_redirects=False)
    assert_error_page(resp, 400, "invalid_request")
    assert "too long" in resp.text
    assert _code_count(services, confidential.id) == 0


def test_repeated_state_is_a_page(signed_in: TestClient, confidential: Client) -> None:
    url = authorize_url(confidential.id, challenge=generate_pkce().challenge) + "&state=two"
    resp = signed_in.get(url, follow_redirects=False)
    assert_error_page(resp, 400, "invalid_request")
    assert "state parameter was repeated" in resp.text


def test_unknown_parameters_are_ignored(signed_in: TestClient, confidential: Client) -> None:
    url = authorize_url(
        confidential.id,
        challenge=generate_pkce().challenge,
        extra={"foo": "bar", "client_secret": "ignored"},
    )
    assert "code" in callback_params(decide(signed_in, url))


def test_not_signed_in_goes_to_login_and_back(client: TestClient, confidential: Client) -> None:
    url = authorize_url(confidential.id, challenge=generate_pkce().challenge)
    resp = client.get(url, follow_redirects=False)
    assert resp.status_code == 302
    assert resp.headers["location"].startswith("/login?return_to=%2Foauth2%2Fauthorize%3F")
    page = client.get(resp.headers["location"])
    assert 'name="return_to" value="/oauth2/authorize?' in page.text


def test_state_is_echoed_exactly(signed_in: TestClient, confidential: Client) -> None:
    state = "a b&c=d/é~"
    url = authorize_url(confidential.id, challenge=generate_pkce().challenge, state=state)
    got = callback_params(decide(signed_in, url))
    assert got["state"] == state


def test_no_state_means_no_state_in_response(signed_in: TestClient, confidential: Client) -> None:
    url = authorize_url(confidential.id, challenge=generate_pkce().challenge, state=None)
    got = callback_params(decide(signed_in, url))
    assert "state" not in got and "code" in got


def test_deny_redirects_access_denied(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    url = authorize_url(confidential.id, challenge=generate_pkce().challenge)
    got = callback_params(decide(signed_in, url, "deny"))
    assert got == {
        "error": "access_denied",
        "error_description": "The resource owner denied the request",
        "state": "xyz-state",
        "iss": "http://testserver",
    }
    assert _code_count(services, confidential.id) == 0


def test_consent_page_shows_what_is_asked(signed_in: TestClient, services: Services) -> None:
    app = make_client(
        services, name="<b>Evil</b> & Co", icon="https://cdn.example.com/i.png", scope="read write"
    )
    url = authorize_url(
        app.id,
        challenge=generate_pkce().challenge,
        scope="read",
        resource="https://mcp.example.com/mcp",
    )
    page = signed_in.get(url)
    assert page.status_code == 200
    assert "&lt;b&gt;Evil&lt;/b&gt; &amp; Co" in page.text and "<b>Evil</b>" not in page.text
    assert '<strong id="username">alice</strong>' in page.text
    assert '<strong id="redirect-host">localhost:9876</strong>' in page.text
    assert '<span id="resource">https://mcp.example.com/mcp</span>' in page.text
    assert (
        "<code>read</code>: Read your files" in page.text and "<code>write</code>" not in page.text
    )
    assert '<strong id="resource-name">Example MCP server</strong>' in page.text
    assert 'src="https://cdn.example.com/i.png"' in page.text
    assert csrf_from(page)


def test_consent_page_security_headers(signed_in: TestClient, confidential: Client) -> None:
    page = signed_in.get(authorize_url(confidential.id, challenge=generate_pkce().challenge))
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "default-src 'none'" in csp
    assert "form-action 'self' http://localhost:9876" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "access-control-allow-origin" not in page.headers


@pytest.mark.parametrize(
    "form",
    [
        pytest.param({"decision": "allow"}, id="csrf-missing"),
        pytest.param({"decision": "allow", "csrf_token": "0" * 64}, id="csrf-wrong"),
        pytest.param({"decision": "allow", "csrf_token": ""}, id="csrf-empty"),
    ],
)
def test_consent_post_without_valid_csrf_changes_nothing(
    signed_in: TestClient, services: Services, confidential: Client, form: dict[str, str]
) -> None:
    url = authorize_url(confidential.id, challenge=generate_pkce().challenge)
    resp = signed_in.post(url, data=form, follow_redirects=False)
    assert_error_page(resp, 403, "access_denied")
    assert _code_count(services, confidential.id) == 0
    assert issued(services, confidential.id).grants == 0


def test_csrf_token_of_another_session_is_refused(
    client: TestClient,
    services: Services,
    confidential: Client,
    alice: Account,
    admin: Account,
) -> None:
    from tests.flows import login

    url = authorize_url(confidential.id, challenge=generate_pkce().challenge)
    login(client, admin.user.username, admin.password)
    admin_token = csrf_from(client.get(url))
    client.cookies.clear()
    login(client, alice.user.username, alice.password)
    resp = client.post(
        url, data={"decision": "allow", "csrf_token": admin_token}, follow_redirects=False
    )
    assert_error_page(resp, 403, "access_denied")
    assert _code_count(services, confidential.id) == 0


def test_consent_post_without_session_goes_to_login(
    client: TestClient, services: Services, confidential: Client
) -> None:
    url = authorize_url(confidential.id, challenge=generate_pkce().challenge)
    resp = client.post(url, data={"decision": "allow", "csrf_token": "x"}, follow_redirects=False)
    assert resp.status_code == 302 and resp.headers["location"].startswith("/login?")
    assert _code_count(services, confidential.id) == 0


def test_authorize_has_no_cors(signed_in: TestClient, confidential: Client) -> None:
    url = authorize_url(confidential.id, challenge=generate_pkce().challenge)
    resp = signed_in.get(url, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in resp.headers
    pre = signed_in.options(
        url, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in pre.headers
