"""Secrets never leak: every flow here runs under the checker of tests/leaks.py, which fails a
test when an issued secret, code, token or password shows up in a log line, an audit entry, an
error response, or any response but the one that issued it.

Each test also asserts, at its end, that the checker saw the secrets of the flow (so a flow that
silently stopped issuing them cannot pass for a clean one) and that it found nothing. The last
tests prove that the checker catches a planted leak in each place it looks.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core import registration_settings as runtime_settings
from authgate.core.context import SYSTEM
from authgate.crypto import secrets
from tests.conftest import PASSWORD, Account, Client, make_client
from tests.flows import (
    REDIRECT_URI,
    RESOURCE,
    assert_oauth_error,
    assert_token_response,
    authorize,
    csrf_from,
    exchange_code,
    generate_pkce,
    login,
    refresh,
    token_request,
)
from tests.leaks import Recorder, audit_entries, recording

MCP_RESOURCE = "https://mcp.example.com/mcp"
API = "/api/v2"
REPO = Path(__file__).resolve().parents[2]


def assert_clean(recorder: Recorder, services: Services, *kinds: str) -> None:
    """The checker saw these kinds of secret, and none of them leaked (so far)."""
    missing = set(kinds) - recorder.kinds()
    assert not missing, f"the checker never saw a {missing}"
    assert recorder.leaks(audit_entries(services)) == []


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def code_and_tokens(
    client: TestClient, app: Client, *, basic: bool, resource: str = RESOURCE
) -> tuple[str, dict[str, Any]]:
    pkce = generate_pkce()
    code = authorize(client, app.id, challenge=pkce.challenge, resource=resource)
    granted = assert_token_response(
        exchange_code(
            client,
            code,
            client_id=app.id,
            client_secret=app.secret,
            verifier=pkce.verifier,
            resource=resource,
            basic=basic,
        )
    )
    return code, granted


# -- the grants ----------------------------------------------------------------------------


@pytest.mark.parametrize("basic", [True, False], ids=["client_secret_basic", "client_secret_post"])
def test_authorization_code_refresh_introspect_revoke(
    signed_in: TestClient,
    services: Services,
    leak_recorder: Recorder,
    basic: bool,
) -> None:
    method = "client_secret_basic" if basic else "client_secret_post"
    app = make_client(services, token_endpoint_auth_method=method)
    assert app.secret is not None
    basic_auth = (app.id, app.secret) if basic else None
    body_auth = {} if basic else {"client_id": app.id, "client_secret": app.secret}
    pkce = generate_pkce()
    fresh = authorize(signed_in, app.id, challenge=pkce.challenge, resource=RESOURCE)
    wrong_verifier = exchange_code(
        signed_in,
        fresh,
        client_id=app.id,
        client_secret=app.secret,
        verifier=generate_pkce().verifier,
        resource=RESOURCE,
        basic=basic,
    )
    assert_oauth_error(wrong_verifier, 400, "invalid_grant")
    code, granted = code_and_tokens(signed_in, app, basic=basic)

    renewed = token_request(
        signed_in,
        {"grant_type": "refresh_token", "refresh_token": granted["refresh_token"], **body_auth},
        basic=basic_auth,
    )
    renewed_body = assert_token_response(renewed)
    for token in (renewed_body["access_token"], renewed_body["refresh_token"]):
        info = token_request(
            signed_in,
            {"token": token, **body_auth},
            path="/oauth2/introspect",
            basic=basic_auth,
        )
        assert info.status_code == 200 and info.json()["active"] is True
    revoked = token_request(
        signed_in,
        {"token": renewed_body["refresh_token"], **body_auth},
        path="/oauth2/revoke",
        basic=basic_auth,
    )
    assert revoked.status_code == 200
    # Errors that carry secrets in the request: a replayed code, a used refresh token.
    replay = token_request(
        signed_in,
        {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
         **body_auth},
        basic=basic_auth,
    )  # fmt: skip
    assert_oauth_error(replay, 400, "invalid_grant")
    reused = token_request(
        signed_in,
        {"grant_type": "refresh_token", "refresh_token": granted["refresh_token"], **body_auth},
        basic=basic_auth,
    )
    assert_oauth_error(reused, 400, "invalid_grant")
    # Where a person or an operator looks afterwards.
    for path in ("/account/apps", f"{API}/users/me/apps", "/metrics", "/healthz", "/readyz"):
        assert signed_in.get(path).status_code == 200, path
    assert_clean(
        leak_recorder,
        services,
        "authorization code",
        "refresh token",
        "signed access token (JWT)",
        "client secret",
        "session token",
        "password",
        "PKCE verifier",
    )


def test_public_client_and_opaque_tokens(
    signed_in: TestClient, services: Services, public: Client, leak_recorder: Recorder
) -> None:
    _, granted = code_and_tokens(signed_in, public, basic=False, resource=MCP_RESOURCE)
    assert granted["access_token"].startswith("agat_")
    info = token_request(
        signed_in,
        {"token": granted["access_token"], "client_id": public.id},
        path="/oauth2/introspect",
    )
    assert info.status_code in (200, 401), info.text
    renewed = refresh(signed_in, granted["refresh_token"], client_id=public.id, client_secret=None)
    assert_token_response(renewed)
    assert_clean(leak_recorder, services, "opaque access token", "refresh token")


def test_client_credentials(
    client: TestClient, services: Services, leak_recorder: Recorder
) -> None:
    machine = make_client(
        services,
        grant_types=["client_credentials"],
        redirect_uris=[],
        service_access={RESOURCE: [], MCP_RESOURCE: []},
    )
    assert machine.secret is not None
    for resource in (RESOURCE, MCP_RESOURCE):
        granted = token_request(
            client,
            {"grant_type": "client_credentials", "resource": resource},
            basic=(machine.id, machine.secret),
        )
        assert_token_response(granted)
    wrong = token_request(
        client,
        {"grant_type": "client_credentials"},
        basic=(machine.id, machine.secret[:-1] + ("A" if machine.secret[-1] != "A" else "B")),
    )
    assert_oauth_error(wrong, 401, "invalid_client")
    assert_clean(leak_recorder, services, "client secret", "opaque access token")


# -- secrets in the wrong place, wrong secrets ---------------------------------------------


def test_credentials_in_the_query_string_are_refused_and_not_echoed(
    signed_in: TestClient, services: Services, confidential: Client, leak_recorder: Recorder
) -> None:
    assert confidential.secret is not None
    pkce = generate_pkce()
    code = authorize(signed_in, confidential.id, challenge=pkce.challenge)
    _, granted = code_and_tokens(signed_in, confidential, basic=True)
    in_url = {
        "client_secret": confidential.secret,
        "code": code,
        "code_verifier": pkce.verifier,
        "refresh_token": granted["refresh_token"],
    }
    for name, value in in_url.items():
        resp = signed_in.post(
            f"/oauth2/tokens?{name}={value}",
            data={"grant_type": "authorization_code", "client_id": confidential.id},
        )
        assert_oauth_error(resp, 400, "invalid_request", "URL")
    for path in ("/oauth2/introspect", "/oauth2/revoke"):
        resp = signed_in.post(
            f"{path}?token={granted['access_token']}",
            data={"client_id": confidential.id, "client_secret": confidential.secret},
        )
        assert_oauth_error(resp, 400, "invalid_request", "URL")
    # The code still works: the refusals consumed nothing.
    assert_token_response(
        exchange_code(
            signed_in,
            code,
            client_id=confidential.id,
            client_secret=confidential.secret,
            verifier=pkce.verifier,
        )
    )
    assert_clean(leak_recorder, services, "client secret", "authorization code", "refresh token")


def test_wrong_and_misplaced_secrets_are_not_echoed(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    public: Client,
    alice: Account,
    leak_recorder: Recorder,
) -> None:
    other = make_client(services, name="Other app")
    assert confidential.secret is not None and other.secret is not None
    code, granted = code_and_tokens(signed_in, confidential, basic=True)
    attempts: list[tuple[dict[str, str], tuple[str, str] | None, int, str]] = [
        # another client's secret
        ({"grant_type": "refresh_token", "refresh_token": granted["refresh_token"]},
         (confidential.id, other.secret), 401, "invalid_client"),
        # a refresh token presented by the wrong client
        ({"grant_type": "refresh_token", "refresh_token": granted["refresh_token"]},
         (other.id, other.secret), 400, "invalid_grant"),
        # a client secret where the refresh token goes
        ({"grant_type": "refresh_token", "refresh_token": confidential.secret},
         (confidential.id, confidential.secret), 400, "invalid_grant"),
        # an access token where the code goes
        ({"grant_type": "authorization_code", "code": granted["access_token"],
          "redirect_uri": REDIRECT_URI}, (confidential.id, confidential.secret), 400,
         "invalid_grant"),
        # an API token as a client secret
        ({"grant_type": "client_credentials", "client_id": confidential.id,
          "client_secret": alice.api_token}, None, 401, "invalid_client"),
        # a used code, a refresh token as a code
        ({"grant_type": "authorization_code", "code": granted["refresh_token"],
          "redirect_uri": REDIRECT_URI}, (confidential.id, confidential.secret), 400,
         "invalid_grant"),
    ]  # fmt: skip
    for data, basic, status, error in attempts:
        assert_oauth_error(token_request(signed_in, data, basic=basic), status, error)
    # A refresh token where a bearer token goes, a client secret as the API token.
    for token in (granted["refresh_token"], confidential.secret, code):
        resp = signed_in.get(f"{API}/users/me", headers=bearer(token))
        assert resp.status_code == 401, resp.text
    assert_clean(leak_recorder, services, "client secret", "refresh token", "API token")


def test_sign_in_failures_do_not_echo_the_password(
    client: TestClient, services: Services, alice: Account, leak_recorder: Recorder
) -> None:
    wrong = "not the password, but close " + "x" * 8
    for username, password in (("alice", wrong), ("nobody-here", PASSWORD), ("alice", PASSWORD)):
        page = client.get("/login")
        resp = client.post(
            "/login",
            data={"username": username, "password": password, "csrf_token": csrf_from(page)},
            follow_redirects=False,
        )
        assert resp.status_code == (303 if password == PASSWORD and username == "alice" else 401)
    assert client.get("/account/apps").status_code == 200
    assert_clean(leak_recorder, services, "password", "session token")
    assert wrong in leak_recorder.secrets  # the wrong password is watched too


# -- management: API and pages ------------------------------------------------------------


def test_admin_api_issues_each_secret_once(
    client: TestClient,
    services: Services,
    admin: Account,
    confidential: Client,
    leak_recorder: Recorder,
) -> None:
    auth = bearer(admin.api_token)
    made = client.post(
        f"{API}/users",
        json={"username": "carol", "password": "carol's long passphrase 42"},
        headers=auth,
    )
    assert made.status_code == 201, made.text
    too_short = client.post(
        f"{API}/users", json={"username": "dave", "password": "short"}, headers=auth
    )
    assert too_short.status_code == 400
    secret = client.post(f"{API}/oauth2-provider/apps/{confidential.id}/secrets", headers=auth)
    assert secret.status_code == 201 and secret.json()["client_secret_full"].startswith("agcs_")
    token = client.post(f"{API}/users/me/tokens", json={"name": "ci"}, headers=auth)
    assert token.status_code == 201 and token.json()["token"].startswith("agpat_")
    initial = client.post(
        f"{API}/oauth2-provider/registration-tokens", json={"name": "ci"}, headers=auth
    )
    assert initial.status_code == 201 and initial.json()["token"].startswith("agiat_")
    for path in (
        "/users",
        "/users/me/tokens",
        f"/oauth2-provider/apps/{confidential.id}",
        f"/oauth2-provider/apps/{confidential.id}/secrets",
        "/oauth2-provider/registration-tokens",
        "/audit?limit=200",
    ):
        listed = client.get(f"{API}{path}", headers=auth)
        assert listed.status_code == 200, (path, listed.text)
    assert_clean(
        leak_recorder, services, "password", "client secret", "API token", "initial access token"
    )


def test_admin_pages_issue_each_secret_once(
    client: TestClient,
    services: Services,
    admin: Account,
    confidential: Client,
    leak_recorder: Recorder,
) -> None:
    login(client, "admin", PASSWORD)

    def csrf() -> str:
        return csrf_from(client.get("/admin/users"))

    typed = client.post(
        "/admin/users",
        data={"csrf_token": csrf(), "username": "erin", "password": "erin's typed passphrase 7"},
    )
    assert typed.status_code == 200, typed.text  # a typed password is not shown back
    assert services.store.get_user_by_username("erin") is not None
    generated = client.post("/admin/users", data={"csrf_token": csrf(), "username": "frank"})
    assert generated.status_code == 201
    frank = services.store.get_user_by_username("frank")
    assert frank is not None
    reset = client.post(f"/admin/users/{frank.id}/password", data={"csrf_token": csrf()})
    assert reset.status_code == 200
    made = client.post(f"/admin/apps/{confidential.id}/secrets", data={"csrf_token": csrf()})
    assert made.status_code == 201
    for path in (
        "/admin",
        "/admin/users",
        "/admin/apps",
        f"/admin/apps/{confidential.id}",
        "/admin/audit",
        "/admin/settings",
    ):
        assert client.get(path).status_code == 200, path
    assert_clean(leak_recorder, services, "password", "client secret", "session token")


# -- dynamic registration ------------------------------------------------------------------


def test_registration_and_client_configuration(
    client: TestClient, services: Services, leak_recorder: Recorder
) -> None:
    _, initial = runtime_settings.create_initial_access_token(services.ctx, SYSTEM, "ci")
    body = {"client_name": "Dynamic", "redirect_uris": [REDIRECT_URI]}
    made = client.post("/oauth2/register", json=body, headers=bearer(initial))
    assert made.status_code == 201, made.text
    info = made.json()
    rat = info["registration_access_token"]
    path = f"/oauth2/clients/{info['client_id']}"
    assert client.get(path, headers=bearer(rat)).status_code == 200
    updated = client.put(
        path,
        json={**body, "client_id": info["client_id"], "client_name": "Renamed"},
        headers=bearer(rat),
    )
    assert updated.status_code == 200, updated.text
    # Wrong places and wrong tokens: the token in the URL, the client secret as the token.
    assert_oauth_error(client.get(f"{path}?access_token={rat}"), 400, "invalid_request")
    wrong = client.get(path, headers=bearer(info["client_secret"]))
    assert_oauth_error(wrong, 401, "invalid_token")
    bad = client.put(path, json={**body, "client_secret": "agcs_wrong"}, headers=bearer(rat))
    assert bad.status_code == 400, bad.text
    assert client.delete(path, headers=bearer(rat)).status_code == 204
    gone = client.get(path, headers=bearer(rat))
    assert_oauth_error(gone, 401, "invalid_token")
    assert_clean(
        leak_recorder,
        services,
        "registration access token",
        "client secret",
        "initial access token",
    )


# -- the checker catches what it must ------------------------------------------------------


def leaky_app(made: list[str]) -> Starlette:
    """An app that issues a refresh token (request #0) and then leaks it on purpose: in an error
    body, in a later success, in a log line."""

    def issue(_: Request) -> JSONResponse:
        made.append(secrets.generate("rt").value)
        return JSONResponse({"refresh_token": made[-1]})

    def fail(_: Request) -> JSONResponse:
        return JSONResponse({"error": "invalid_grant", "error_description": made[0]}, 400)

    def echo(_: Request) -> PlainTextResponse:
        return PlainTextResponse(f"hello {made[0]}")

    def log(_: Request) -> PlainTextResponse:
        logging.getLogger("authgate.planted").info("issued %s", made[0])
        return PlainTextResponse("ok")

    async def sign_in(request: Request) -> PlainTextResponse:
        form = await request.form()
        logging.getLogger("authgate.planted").warning("sign-in attempt: %s", dict(form))
        return PlainTextResponse("no", 401)

    routes = [("/issue", issue), ("/fail", fail), ("/echo", echo), ("/log", log)]
    return Starlette(
        routes=[
            *(Route(path, endpoint) for path, endpoint in routes),
            Route("/login", sign_in, methods=["POST"]),
        ]
    )


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param(None, [], id="issued-once-is-fine"),
        pytest.param("/fail", ["in response #1 to GET /fail (400)"], id="error-body"),
        pytest.param("/echo", ["in response #1 to GET /echo (200)"], id="later-response"),
        pytest.param("/log", ["in log line #0 (authgate.planted)"], id="log-line"),
    ],
)
def test_checker_catches_a_planted_leak(path: str | None, expected: list[str]) -> None:
    recorder = Recorder()
    made: list[str] = []
    with recording(recorder), TestClient(leaky_app(made)) as browser:
        assert browser.get("/issue").status_code == 200
        if path is not None:
            browser.get(path)
    found = recorder.leaks()
    assert len(found) == len(expected), found
    for message, fragment in zip(found, expected, strict=True):
        assert message.startswith("refresh token"), message
        assert fragment in message, message
        assert made[0] not in message  # the report names the kind and place, not the secret


def test_checker_catches_a_secret_in_the_audit_log() -> None:
    recorder = Recorder()
    with recording(recorder):
        value = secrets.generate("cs").value
    clean = ("app.created 1", '{"action": "app.created", "details": {"name": "x"}}')
    leaked = ("secret.created 2", f'{{"action": "secret.created", "details": {{"v": "{value}"}}}}')
    assert recorder.leaks([clean]) == []
    [message] = recorder.leaks([clean, leaked])
    assert message == "client secret in audit entry secret.created 2"


def test_checker_catches_a_presented_password_in_a_log() -> None:
    recorder = Recorder()
    with recording(recorder), TestClient(leaky_app([])) as browser:
        resp = browser.post("/login", data={"username": "u", "password": "hunter2 but longer"})
        assert resp.status_code == 401
    [message] = recorder.leaks()
    assert message == "password in log line #0 (authgate.planted)", message


PLANTED_TEST = """
import logging
from pathlib import Path

import pytest

from authgate.crypto import secrets


@pytest.fixture
def client():
    return None


def test_logs_a_token(client):
    token = secrets.generate("rt").value
    Path("planted.txt").write_text(token)
    logging.getLogger("authgate.planted").warning("refresh token is %s", token)
"""


def test_plugin_fails_a_test_that_leaks(tmp_path: Path) -> None:
    """End to end: pytest with the plugin fails a test that logs a token, and its report names
    the kind of secret and the place, but not the secret."""
    (tmp_path / "test_planted.py").write_text(textwrap.dedent(PLANTED_TEST))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.leaks", "-q", "--show-capture=no",
         "-p", "no:cacheprovider", "-p", "no:randomly", "test_planted.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert "1 failed" in output, output
    assert "secret leak (1)" in output, output
    assert "refresh token in log line #0 (authgate.planted)" in output, output
    token = (tmp_path / "planted.txt").read_text()
    assert re.fullmatch(r"agrt_\w+", token) and token not in output
