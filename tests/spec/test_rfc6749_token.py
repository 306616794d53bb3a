"""RFC 6749 §2.3, §3.2, §4.1.3 and §5.2 at the token endpoint: client authentication, the
authorization_code grant, and the JSON errors. Every error asserts body, status, headers and
that nothing was issued (and the code was not consumed)."""

from __future__ import annotations

import base64

import httpx
import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from tests.clock import MovableClock
from tests.conftest import Account, Client, issued, make_client
from tests.flows import (
    REDIRECT_URI,
    RESOURCE,
    assert_oauth_error,
    assert_token_response,
    authorize,
    exchange_code,
    generate_pkce,
    token_request,
)


@pytest.fixture
def code_and_verifier(signed_in: TestClient, confidential: Client) -> tuple[str, str]:
    pkce = generate_pkce()
    return authorize(signed_in, confidential.id, challenge=pkce.challenge), pkce.verifier


def _base(code: str, verifier: str, client: Client) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": REDIRECT_URI,
        "client_id": client.id,
        "client_secret": client.secret or "",
    }


def assert_nothing_issued(services: Services, app_id: str) -> None:
    state = issued(services, app_id)
    assert (state.access, state.refresh, state.grants, state.consumed_codes) == (0, 0, 0, 0)


def test_success_post_and_basic(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    for basic in (False, True):
        pkce = generate_pkce()
        code = authorize(signed_in, confidential.id, challenge=pkce.challenge)
        resp = exchange_code(
            signed_in,
            code,
            client_id=confidential.id,
            client_secret=confidential.secret,
            verifier=pkce.verifier,
            basic=basic,
        )
        body = assert_token_response(resp)
        assert body["refresh_token"].startswith("agrt_")
        assert body["expires_in"] == 3600
        assert "scope" not in body  # nothing requested, nothing granted: no empty scope
        assert resp.headers["pragma"] == "no-cache"
        assert resp.headers["access-control-allow-origin"] == "*"
    state = issued(services, confidential.id)
    assert (state.access, state.refresh, state.grants, state.consumed_codes) == (2, 2, 2, 2)


def test_singular_token_path_is_an_alias(
    signed_in: TestClient, confidential: Client, code_and_verifier: tuple[str, str]
) -> None:
    code, verifier = code_and_verifier
    resp = token_request(signed_in, _base(code, verifier, confidential), path="/oauth2/token")
    assert_token_response(resp)


def test_access_token_works_on_users_me(
    signed_in: TestClient,
    confidential: Client,
    code_and_verifier: tuple[str, str],
    alice: Account,
) -> None:
    code, verifier = code_and_verifier
    token = assert_token_response(token_request(signed_in, _base(code, verifier, confidential)))[
        "access_token"
    ]
    signed_in.cookies.clear()
    me = signed_in.get("/api/v2/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    assert me.json()["username"] == "alice"


MALFORMED_SECRETS = [
    pytest.param("1234_4321", id="2.3.1-no-scheme"),
    pytest.param("notag_1234567890_" + "a" * 46, id="2.3.1-wrong-scheme"),
    pytest.param("agcs_1234", id="2.3.1-missing-secret"),
    pytest.param("agcs__" + "a" * 46, id="2.3.1-missing-prefix"),
    pytest.param("agcs_1234567890_" + "a" * 46, id="2.3.1-bad-checksum"),
    pytest.param("agat_1234567890_" + "a" * 46, id="2.3.1-other-kind"),
]


@pytest.mark.parametrize("secret", MALFORMED_SECRETS)
def test_malformed_client_secret(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    code_and_verifier: tuple[str, str],
    secret: str,
) -> None:
    code, verifier = code_and_verifier
    data = _base(code, verifier, confidential) | {"client_secret": secret}
    body = assert_oauth_error(token_request(signed_in, data), 401, "invalid_client")
    assert body["error_description"] == "The client credentials are invalid"
    assert_nothing_issued(services, confidential.id)


def test_secret_of_another_app(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    code_and_verifier: tuple[str, str],
) -> None:
    other = make_client(services, name="Other")
    code, verifier = code_and_verifier
    data = _base(code, verifier, confidential) | {"client_secret": other.secret or ""}
    assert_oauth_error(token_request(signed_in, data), 401, "invalid_client")
    assert_nothing_issued(services, confidential.id)


@pytest.mark.parametrize(
    ("header", "desc"),
    [
        pytest.param("Basic !!!notbase64", None, id="2.3.1-not-base64"),
        pytest.param("Basic " + base64.b64encode(b"no-colon").decode(), None, id="2.3.1-no-colon"),
        pytest.param("Basic " + base64.b64encode(b":secret").decode(), None, id="2.3.1-empty-id"),
        pytest.param(
            "Basic " + base64.b64encode(b"\xff\xfe:x").decode(), None, id="2.3.1-not-utf8"
        ),
    ],
)
def test_malformed_basic_header(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    code_and_verifier: tuple[str, str],
    header: str,
    desc: str | None,
) -> None:
    code, verifier = code_and_verifier
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": REDIRECT_URI,
    }
    resp = signed_in.post("/oauth2/tokens", data=data, headers={"Authorization": header})
    assert_oauth_error(resp, 401, "invalid_client")
    assert resp.headers["www-authenticate"].startswith("Basic")
    assert_nothing_issued(services, confidential.id)


def test_wrong_basic_secret_has_www_authenticate(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    code_and_verifier: tuple[str, str],
) -> None:
    code, verifier = code_and_verifier
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": REDIRECT_URI,
    }
    resp = token_request(signed_in, data, basic=(confidential.id, "agcs_wrong"))
    assert_oauth_error(resp, 401, "invalid_client")
    assert resp.headers["www-authenticate"] == 'Basic realm="authgate", charset="UTF-8"'
    assert_nothing_issued(services, confidential.id)


def test_post_failure_has_no_www_authenticate(
    signed_in: TestClient, confidential: Client, code_and_verifier: tuple[str, str]
) -> None:
    code, verifier = code_and_verifier
    data = _base(code, verifier, confidential) | {"client_secret": "agcs_wrong"}
    resp = token_request(signed_in, data)
    assert_oauth_error(resp, 401, "invalid_client")
    assert "www-authenticate" not in resp.headers


def test_basic_and_post_at_once_is_invalid_request(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    code_and_verifier: tuple[str, str],
) -> None:
    code, verifier = code_and_verifier
    data = _base(code, verifier, confidential)
    resp = token_request(signed_in, data, basic=(confidential.id, confidential.secret or ""))
    assert_oauth_error(resp, 400, "invalid_request", "one client authentication method")
    assert_nothing_issued(services, confidential.id)


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        pytest.param(
            {"client_id": "non-existent-client"}, 401, "invalid_client", id="2.3-unknown-client"
        ),
        pytest.param({"client_id": ""}, 401, "invalid_client", id="2.3-empty-client_id"),
        pytest.param({"client_secret": ""}, 401, "invalid_client", id="2.3-missing-secret"),
        pytest.param({"code": ""}, 400, "invalid_request", id="4.1.3-missing-code"),
        pytest.param({"grant_type": "foobar"}, 400, "unsupported_grant_type", id="5.2-unsupported"),
        pytest.param({"grant_type": ""}, 400, "unsupported_grant_type", id="5.2-empty-grant_type"),
        pytest.param({"grant_type": "implicit"}, 400, "unsupported_grant_type", id="5.2-implicit"),
        pytest.param({"grant_type": "password"}, 400, "unsupported_grant_type", id="5.2-password"),
        pytest.param(
            {"redirect_uri": "http://localhost:9876/other"},
            400,
            "invalid_grant",
            id="4.1.3-redirect-mismatch",
        ),
        pytest.param({"redirect_uri": ""}, 400, "invalid_grant", id="4.1.3-redirect-missing"),
    ],
)
def test_token_request_errors(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    code_and_verifier: tuple[str, str],
    change: dict[str, str],
    status: int,
    error: str,
) -> None:
    code, verifier = code_and_verifier
    data = _base(code, verifier, confidential) | change
    assert_oauth_error(token_request(signed_in, data), status, error)
    assert_nothing_issued(services, confidential.id)


MALFORMED_CODES = [
    pytest.param("1234_4321", id="4.1.3-code-no-scheme"),
    pytest.param("notag_1234567890_" + "a" * 46, id="4.1.3-code-wrong-scheme"),
    pytest.param("agac_1234", id="4.1.3-code-missing-secret"),
    pytest.param("agac__" + "a" * 46, id="4.1.3-code-missing-prefix"),
    pytest.param("agac_1234567890_" + "a" * 46, id="4.1.3-code-unknown"),
]


@pytest.mark.parametrize("bad_code", MALFORMED_CODES)
def test_malformed_codes(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    code_and_verifier: tuple[str, str],
    bad_code: str,
) -> None:
    _, verifier = code_and_verifier
    data = _base(bad_code, verifier, confidential)
    body = assert_oauth_error(token_request(signed_in, data), 400, "invalid_grant")
    assert body["error_description"] == "The authorization code is invalid or expired"
    assert_nothing_issued(services, confidential.id)


def test_tampered_code_secret(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    code_and_verifier: tuple[str, str],
) -> None:
    code, verifier = code_and_verifier
    head, prefix, rest = code.split("_")
    # Same prefix, a different secret whose checksum is recomputed would still fail the hash.
    tampered = f"{head}_{prefix}_{rest[::-1]}"
    assert_oauth_error(
        token_request(signed_in, _base(tampered, verifier, confidential)), 400, "invalid_grant"
    )
    assert_token_response(token_request(signed_in, _base(code, verifier, confidential)))


def test_expired_code(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    code_and_verifier: tuple[str, str],
    clock: MovableClock,
) -> None:
    code, verifier = code_and_verifier
    clock.advance(seconds=601)
    body = assert_oauth_error(
        token_request(signed_in, _base(code, verifier, confidential)), 400, "invalid_grant"
    )
    assert body["error_description"] == "The authorization code is invalid or expired"
    assert_nothing_issued(services, confidential.id)


def test_code_of_another_client(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    code_and_verifier: tuple[str, str],
) -> None:
    other = make_client(services, name="Other")
    code, verifier = code_and_verifier
    data = _base(code, verifier, other)
    assert_oauth_error(token_request(signed_in, data), 400, "invalid_grant")
    assert_nothing_issued(services, confidential.id)
    assert_nothing_issued(services, other.id)
    # The rightful client can still redeem it.
    assert_token_response(token_request(signed_in, _base(code, verifier, confidential)))


def test_reused_code_revokes_what_it_issued(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    code_and_verifier: tuple[str, str],
    alice: Account,
) -> None:
    code, verifier = code_and_verifier
    first = assert_token_response(token_request(signed_in, _base(code, verifier, confidential)))
    replay = token_request(signed_in, _base(code, verifier, confidential))
    assert_oauth_error(replay, 400, "invalid_grant")
    state = issued(services, confidential.id)
    assert (state.access, state.live_access, state.grants) == (1, 0, 1)
    signed_in.cookies.clear()
    me = signed_in.get(
        "/api/v2/users/me", headers={"Authorization": f"Bearer {first['access_token']}"}
    )
    assert me.status_code == 401
    again = token_request(
        signed_in,
        {
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": confidential.id,
            "client_secret": confidential.secret or "",
        },
    )
    assert_oauth_error(again, 400, "invalid_grant")
    events, _ = services.store.list_audit(
        __import__("authgate.core.models", fromlist=["AuditQuery"]).AuditQuery(
            action="authorization_code.replayed"
        )
    )
    assert len(events) == 1 and events[0].details["app_id"] == confidential.id
    assert code not in str(events[0].details)


def test_scope_at_exchange_is_ignored(signed_in: TestClient, services: Services) -> None:
    app = make_client(services, scope="read write")
    pkce = generate_pkce()
    code = authorize(signed_in, app.id, challenge=pkce.challenge, scope="read", resource=RESOURCE)
    data = _base(code, pkce.verifier, app) | {"scope": "read write admin"}
    body = assert_token_response(token_request(signed_in, data))
    assert body["scope"] == "read"


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("code", id="3.2-repeated-code"),
        pytest.param("redirect_uri", id="3.2-repeated-redirect_uri"),
        pytest.param("code_verifier", id="3.2-repeated-verifier"),
        pytest.param("client_id", id="3.2-repeated-client_id"),
    ],
)
def test_repeated_parameters(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    code_and_verifier: tuple[str, str],
    name: str,
) -> None:
    code, verifier = code_and_verifier
    data = _base(code, verifier, confidential)
    pairs = [*data.items(), (name, data[name])]
    resp = signed_in.post(
        "/oauth2/tokens",
        content=httpx.QueryParams(tuple(pairs)).__str__(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_oauth_error(resp, 400, "invalid_request", name)
    assert_nothing_issued(services, confidential.id)


def test_repeated_grant_type(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    code_and_verifier: tuple[str, str],
) -> None:
    code, verifier = code_and_verifier
    pairs = [*_base(code, verifier, confidential).items(), ("grant_type", "authorization_code")]
    resp = signed_in.post(
        "/oauth2/tokens",
        content=str(httpx.QueryParams(tuple(pairs))),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    # RFC 6749 §5.2: invalid_request "includes a parameter more than once".
    assert_oauth_error(resp, 400, "invalid_request", "grant_type parameter was repeated")
    assert_nothing_issued(services, confidential.id)


def test_unknown_parameters_are_ignored(
    signed_in: TestClient, confidential: Client, code_and_verifier: tuple[str, str]
) -> None:
    code, verifier = code_and_verifier
    data = _base(code, verifier, confidential) | {"foo": "bar", "nonce": "x"}
    assert_token_response(token_request(signed_in, data))


def test_secret_in_query_string_is_refused(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    code_and_verifier: tuple[str, str],
) -> None:
    code, verifier = code_and_verifier
    data = _base(code, verifier, confidential)
    secret = data.pop("client_secret")
    resp = signed_in.post(f"/oauth2/tokens?client_secret={secret}", data=data)
    assert_oauth_error(resp, 400, "invalid_request", "request body")
    assert_nothing_issued(services, confidential.id)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param("application/json", b'{"grant_type":"authorization_code"}', id="3.2-json"),
        pytest.param("text/plain", b"grant_type=authorization_code", id="3.2-text"),
        pytest.param("application/x-www-form-urlencoded", b"grant_type=%ff%fe", id="3.2-bad-utf8"),
        pytest.param("application/x-www-form-urlencoded", b"grant_type=a%00b", id="3.2-nul"),
    ],
)
def test_malformed_bodies(
    signed_in: TestClient, services: Services, confidential: Client, content_type: str, body: bytes
) -> None:
    resp = signed_in.post("/oauth2/tokens", content=body, headers={"Content-Type": content_type})
    assert_oauth_error(resp, 400, "invalid_request")
    assert_nothing_issued(services, confidential.id)


def test_token_endpoint_rejects_get(signed_in: TestClient) -> None:
    resp = signed_in.get("/oauth2/tokens")
    assert resp.status_code == 405


def test_cors_preflight(signed_in: TestClient) -> None:
    resp = signed_in.options(
        "/oauth2/tokens",
        headers={"Origin": "https://claude.example", "Access-Control-Request-Method": "POST"},
    )
    assert resp.status_code == 204
    assert resp.headers["access-control-allow-origin"] == "*"
    assert "POST" in resp.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in resp.headers


def test_public_client_needs_no_secret_and_may_not_send_one(
    signed_in: TestClient, services: Services, public: Client
) -> None:
    pkce = generate_pkce()
    code = authorize(signed_in, public.id, challenge=pkce.challenge)
    bad = exchange_code(
        signed_in, code, client_id=public.id, client_secret="agcs_x", verifier=pkce.verifier
    )
    assert_oauth_error(bad, 401, "invalid_client")
    assert_nothing_issued(services, public.id)
    ok = exchange_code(
        signed_in, code, client_id=public.id, client_secret=None, verifier=pkce.verifier
    )
    assert_token_response(ok)


def test_confidential_client_without_secret_is_invalid_client(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    code_and_verifier: tuple[str, str],
) -> None:
    code, verifier = code_and_verifier
    resp = exchange_code(
        signed_in, code, client_id=confidential.id, client_secret=None, verifier=verifier
    )
    assert_oauth_error(resp, 401, "invalid_client", "authentication is required")
    assert_nothing_issued(services, confidential.id)


@pytest.mark.parametrize(
    ("pinned", "basic"),
    [
        pytest.param("client_secret_post", True, id="pinned-post-used-basic"),
        pytest.param("client_secret_basic", False, id="pinned-basic-used-post"),
    ],
)
def test_pinned_auth_method_is_the_only_one(
    signed_in: TestClient, services: Services, pinned: str, basic: bool
) -> None:
    app = make_client(services, token_endpoint_auth_method=pinned)
    pkce = generate_pkce()
    code = authorize(signed_in, app.id, challenge=pkce.challenge)
    resp = exchange_code(
        signed_in,
        code,
        client_id=app.id,
        client_secret=app.secret,
        verifier=pkce.verifier,
        basic=basic,
    )
    assert_oauth_error(resp, 401, "invalid_client", pinned)
    assert_nothing_issued(services, app.id)
    ok = exchange_code(
        signed_in,
        code,
        client_id=app.id,
        client_secret=app.secret,
        verifier=pkce.verifier,
        basic=not basic,
    )
    assert_token_response(ok)


def test_basic_credentials_are_form_urlencoded(
    signed_in: TestClient, confidential: Client, code_and_verifier: tuple[str, str]
) -> None:
    # RFC 6749 §2.3.1: the client_id and secret are form-urlencoded before Basic encoding.
    code, verifier = code_and_verifier
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": REDIRECT_URI,
    }
    raw = f"{confidential.id}:{confidential.secret}".encode()
    resp = signed_in.post(
        "/oauth2/tokens",
        data=data,
        headers={"Authorization": "Basic " + base64.b64encode(raw).decode()},
    )
    assert_token_response(resp)


def test_deleted_secret_revokes_tokens_issued_with_it(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    code_and_verifier: tuple[str, str],
) -> None:
    from authgate.core import clients
    from authgate.core.context import SYSTEM

    code, verifier = code_and_verifier
    body = assert_token_response(token_request(signed_in, _base(code, verifier, confidential)))
    secret = services.store.list_secrets(confidential.id)[0]
    clients.delete_secret(services.ctx, SYSTEM, confidential.id, secret.id)
    assert issued(services, confidential.id).live_access == 0
    signed_in.cookies.clear()
    me = signed_in.get(
        "/api/v2/users/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 401


def test_deleted_app_cannot_exchange(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    code_and_verifier: tuple[str, str],
) -> None:
    from authgate.core import clients
    from authgate.core.context import SYSTEM

    code, verifier = code_and_verifier
    clients.delete_app(services.ctx, SYSTEM, confidential.id)
    resp = token_request(signed_in, _base(code, verifier, confidential))
    assert_oauth_error(resp, 401, "invalid_client")
