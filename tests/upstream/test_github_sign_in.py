"""Sign-in through GitHub (``kind`` "github", an OAuth app), end to end through authgate's
pages against the GitHub stand-in (tests/upstream/github_standin.py: GitHub itself cannot be
reached from the test machines): the happy path ending in an MCP client's token, verified
addresses only, organisation and team conditions, the admin role from a team, GitHub's
refusals (``error=access_denied``, a token endpoint answering 200 with an error, a scope not
granted), GitHub down, a forged or replayed callback, a renamed login, a disabled user.
Each asserts the page, the audit trail and the database; each runs on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from starlette.testclient import TestClient

from authgate.core import accounts
from authgate.core.context import SYSTEM
from authgate.core.id_tokens import ACR_UPSTREAM
from authgate.core.models import AuditEvent, AuditQuery, User
from authgate.core.upstream import providers
from authgate.core.upstream.providers import ProviderSpec
from authgate.services import Services
from tests.conftest import make_client
from tests.e2e.test_mcp_sdk import free_port
from tests.flows import (
    RESOURCE,
    assert_token_response,
    authorize_url,
    callback_params,
    decide,
    exchange_code,
    generate_pkce,
)
from tests.upstream import github_standin
from tests.upstream.conftest import callback_url, finish, query_of, start
from tests.upstream.github_standin import Account, GitHub, email

CALLBACK = callback_url("github")


@pytest.fixture
def gh(tls: tuple[Path, Path, Path]) -> Iterator[GitHub]:
    ca, cert, key = tls
    with github_standin.running(ca, cert, key) as running:
        running.redirect_uri = CALLBACK
        yield running


def add_github(services: Services, base: str, **rules: Any) -> None:
    spec = ProviderSpec(
        id="github",
        display_name="GitHub",
        kind="github",
        issuer=base,
        client_id=github_standin.CLIENT_ID,
        client_secret=rules.pop("client_secret", github_standin.CLIENT_SECRET),
        **rules,
    )
    providers.create_provider(services.ctx, SYSTEM, spec)


def octocat(**fields: Any) -> Account:
    values: dict[str, Any] = {
        "id": 583231,
        "login": "octocat",
        "name": "The Octocat",
        "emails": [email("octocat@example.com", primary=True)],
    }
    return Account(**(values | fields))


def sign_in(client: TestClient, gh: GitHub, account_id: int | None, return_to: str = "/") -> Any:
    url = start(client, "github", return_to)
    return finish(client, gh.authorize(url, account_id, back_to=CALLBACK))


def audit(services: Services, action: str) -> list[AuditEvent]:
    events, _ = services.store.list_audit(AuditQuery(action=action, limit=100))
    return list(events)


def reasons(services: Services) -> list[str]:
    return [e.details["reason"] for e in reversed(audit(services, "upstream.sign_in_refused"))]


def users_with(services: Services, username: str) -> list[User]:
    return [u for u in services.store.list_users() if u.username == username]


def assert_refused(resp: Any, status: int, title: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("text/html")
    assert title in resp.text
    assert re.search(r'id="error-reference">[0-9a-f]{8,}<', resp.text), resp.text
    assert "authgate_session" not in resp.headers.get("set-cookie", "")


def test_sign_in_through_github_ends_in_an_mcp_clients_token(
    client: TestClient, services: Services, gh: GitHub
) -> None:
    gh.add(octocat())
    add_github(services, gh.base + "/", jit_create=True)  # the trailing "/" is dropped
    app = make_client(services)
    pkce = generate_pkce()
    wanted = authorize_url(
        app.id,
        challenge=pkce.challenge,
        resource=RESOURCE,
        scope="openid email read",
        extra={"nonce": "client-nonce"},
    )
    page = client.get(f"/login?{urlencode({'return_to': wanted})}")
    assert 'action="/login/upstream/github"' in page.text and "Sign in with GitHub" in page.text

    # The authorization request: GitHub's endpoint, PKCE S256 and state; no OIDC nonce.
    url = start(client, "github", wanted)
    sent = query_of(url)
    assert url.startswith(f"{gh.base}/login/oauth/authorize?")
    assert sent["client_id"] == github_standin.CLIENT_ID
    assert sent["redirect_uri"] == CALLBACK
    assert sent["scope"] == "read:user user:email"
    assert sent["code_challenge_method"] == "S256" and len(sent["code_challenge"]) == 43
    assert len(sent["state"]) >= 32 and "nonce" not in sent
    done = finish(client, gh.authorize(url, 583231, back_to=CALLBACK))
    assert done.status_code == 303, done.text
    assert done.headers["location"] == wanted
    assert "authgate_session" in client.cookies

    # What authgate sent GitHub: the code with client secret and verifier, JSON asked for;
    # then the API with the token, a User-Agent and GitHub's media type.
    [token_request] = [r for r in gh.requests if r.path == "/login/oauth/access_token"]
    assert token_request.headers["accept"] == "application/json"
    assert token_request.form["client_secret"] == github_standin.CLIENT_SECRET
    assert len(token_request.form["code_verifier"]) >= 43
    assert token_request.form["redirect_uri"] == CALLBACK
    assert gh.api_calls() == ["/api/v3/user", "/api/v3/user/emails"]
    for call in (r for r in gh.requests if r.path.startswith("/api/v3/")):
        assert call.headers["authorization"].startswith("Bearer gho_")
        assert call.headers["user-agent"].startswith("authgate")
        assert call.headers["accept"] == "application/vnd.github+json"

    # A user created just in time, linked by GitHub's numeric id (not the login).
    [user] = users_with(services, "octocat")
    assert (user.name, user.email, user.email_verified) == (
        "The Octocat",
        "octocat@example.com",
        True,
    )
    assert user.password_hash is None and not user.is_admin
    identity = services.store.get_upstream_identity("github", "583231")
    assert identity is not None and identity.user_id == user.id
    [linked] = audit(services, "upstream_identity.linked")
    assert linked.details == {"provider": "github", "subject": "583231", "method": "created"}
    [logged] = audit(services, "upstream.logged_in")
    assert logged.target_id == user.id and logged.details["idp"] == gh.base

    # The client's authorization completes; its ID token says GitHub signed the person in.
    code = callback_params(decide(client, wanted))["code"]
    body = assert_token_response(
        exchange_code(
            client,
            code,
            client_id=app.id,
            client_secret=app.secret,
            verifier=pkce.verifier,
            resource=RESOURCE,
        )
    )
    keys = KeySet.import_key_set(client.get("/.well-known/jwks.json").json())
    claims = jwt.decode(body["id_token"], keys).claims
    assert claims["sub"] == user.id and claims["idp"] == gh.base
    assert claims["acr"] == ACR_UPSTREAM and claims["amr"] == ["fed"]
    assert claims["nonce"] == "client-nonce"


def test_only_a_verified_address_is_used_the_primary_first(
    client: TestClient, services: Services, gh: GitHub
) -> None:
    gh.add(
        octocat(
            emails=[
                email("old@example.org", verified=False, primary=True),
                email("second@example.com"),
                email("third@example.com"),
            ]
        )
    )
    gh.add(Account(id=2, login="nomail", emails=[email("nomail@example.com", verified=False)]))
    add_github(services, gh.base, jit_create=True, allowed_domains=("example.com",))
    assert sign_in(client, gh, 583231).status_code == 303
    [user] = users_with(services, "octocat")
    assert (user.email, user.email_verified) == ("second@example.com", True)

    # No verified address: the allowed domains cannot be checked, so nobody is created.
    client.cookies.clear()
    before = services.store.count_users()
    assert_refused(sign_in(client, gh, 2), 403, "You could not be signed in")
    assert services.store.count_users() == before
    assert services.store.get_upstream_identity("github", "2") is None
    assert reasons(services) == ["email_not_verified"]

    # Without domains the account is created, with no address rather than an unverified one.
    providers.update_provider(services.ctx, SYSTEM, "github", {"allowed_domains": ()})
    client.cookies.clear()
    assert sign_in(client, gh, 2).status_code == 303
    [nomail] = users_with(services, "nomail")
    assert nomail.email in (None, "") and not nomail.email_verified


def test_an_organisation_governs_who_is_created(
    client: TestClient, services: Services, gh: GitHub
) -> None:
    gh.add(octocat(orgs={"Acme": "pending"}))
    add_github(services, gh.base, jit_create=True, required_claim="orgs", required_values=("acme",))
    stored = services.store.get_upstream_provider("github")
    assert stored is not None and stored.scopes == "read:user user:email read:org"

    # An invitation not yet accepted is no membership.
    url = start(client, "github")
    assert query_of(url)["scope"] == "read:user user:email read:org"
    assert_refused(
        finish(client, gh.authorize(url, 583231, back_to=CALLBACK)),
        403,
        "You could not be signed in",
    )
    assert services.store.get_upstream_identity("github", "583231") is None
    assert "/api/v3/user/memberships/orgs/acme" in gh.api_calls()

    gh.accounts[583231].orgs = {"Acme": "active"}  # GitHub compares logins without case
    client.cookies.clear()
    assert sign_in(client, gh, 583231).status_code == 303
    assert services.store.get_upstream_identity("github", "583231") is not None

    # Someone in another organisation only is refused.
    gh.add(
        Account(id=7, login="stranger", emails=[email("s@example.com")], orgs={"other": "active"})
    )
    client.cookies.clear()
    assert_refused(sign_in(client, gh, 7), 403, "You could not be signed in")
    assert reasons(services) == ["claim_missing", "claim_missing"]
    assert users_with(services, "stranger") == []


def test_a_team_governs_who_is_created(client: TestClient, services: Services, gh: GitHub) -> None:
    gh.add(octocat(orgs={"acme": "active"}, teams={"acme/everyone"}))
    add_github(
        services,
        gh.base,
        jit_create=True,
        required_claim="teams",
        required_values=("acme/mcp-users",),
    )
    assert_refused(sign_in(client, gh, 583231), 403, "You could not be signed in")
    assert reasons(services) == ["claim_missing"]
    assert "/api/v3/orgs/acme/teams/mcp-users/memberships/octocat" in gh.api_calls()

    gh.accounts[583231].teams.add("acme/mcp-users")
    client.cookies.clear()
    assert sign_in(client, gh, 583231).status_code == 303
    assert len(users_with(services, "octocat")) == 1


def test_the_admin_role_follows_a_team_and_an_organisation(
    client: TestClient, services: Services, gh: GitHub
) -> None:
    gh.add(octocat(orgs={"acme": "active"}, teams={"acme/authgate-admins"}))
    add_github(
        services,
        gh.base,
        jit_create=True,
        admin_claim="teams",
        admin_values=("acme/authgate-admins",),
    )
    assert sign_in(client, gh, 583231).status_code == 303
    [user] = users_with(services, "octocat")
    assert user.is_admin
    assert client.get("/api/v2/users").status_code == 200  # the session carries the role

    # Out of the team: the role goes at the next sign-in, audited.
    gh.accounts[583231].teams = set()
    client.cookies.clear()
    assert sign_in(client, gh, 583231).status_code == 303
    now = services.store.get_user(user.id)
    assert now is not None and not now.is_admin
    [mapped] = audit(services, "user.role_mapped")
    assert mapped.details == {"provider": "github", "claim": "teams", "is_admin": False}

    # An organisation may be the admin condition too.
    providers.update_provider(
        services.ctx, SYSTEM, "github", {"admin_claim": "orgs", "admin_values": ("acme",)}
    )
    client.cookies.clear()
    assert sign_in(client, gh, 583231).status_code == 303
    again = services.store.get_user(user.id)
    assert again is not None and again.is_admin


def test_github_saying_no_is_a_page(client: TestClient, services: Services, gh: GitHub) -> None:
    gh.add(octocat())
    add_github(services, gh.base, jit_create=True)
    resp = sign_in(client, gh, None)  # the person presses "Cancel" at GitHub
    assert_refused(resp, 403, "You could not be signed in")
    assert "(access_denied)" in resp.text
    assert reasons(services) == ["provider_error"]
    assert not any(r.path == "/login/oauth/access_token" for r in gh.requests)
    assert services.store.count_users() == 0


@pytest.mark.parametrize(
    "answer",
    [
        {"error": "bad_verification_code", "error_description": "The code is incorrect."},
        {"error": "incorrect_client_credentials"},
        {"token_type": "bearer"},  # no access token at all
    ],
)
def test_a_token_endpoint_answering_200_with_an_error_is_a_refusal(
    client: TestClient, services: Services, gh: GitHub, answer: dict[str, str]
) -> None:
    gh.add(octocat())
    add_github(services, gh.base, jit_create=True)
    gh.token_answer = answer
    resp = sign_in(client, gh, 583231)
    assert_refused(resp, 403, "You could not be signed in")
    assert "GitHub did not complete the sign-in." in resp.text
    assert reasons(services) == ["token_exchange_failed"]
    assert gh.api_calls() == [] and services.store.count_users() == 0


def test_a_wrong_client_secret_is_githubs_error_not_a_500(
    client: TestClient, services: Services, gh: GitHub
) -> None:
    gh.add(octocat())
    add_github(services, gh.base, jit_create=True, client_secret="not-the-secret")
    assert_refused(sign_in(client, gh, 583231), 403, "You could not be signed in")
    assert reasons(services) == ["token_exchange_failed"]


def test_a_scope_the_person_did_not_grant_is_a_refusal(
    client: TestClient, services: Services, gh: GitHub
) -> None:
    gh.add(octocat(orgs={"acme": "active"}))
    add_github(services, gh.base, jit_create=True, admin_claim="orgs", admin_values=("acme",))
    gh.grant_scope = "read:user user:email"  # read:org withheld
    resp = sign_in(client, gh, 583231)
    assert_refused(resp, 403, "You could not be signed in")
    assert "GitHub did not grant the access this sign-in needs" in resp.text
    assert reasons(services) == ["scope_not_granted"]
    assert gh.api_calls() == [] and services.store.count_users() == 0


@pytest.mark.parametrize("trouble", ["api_503", "api_502", "api_timeout", "unreachable"])
def test_github_down_is_a_503_page(
    client: TestClient, services: Services, gh: GitHub, trouble: str
) -> None:
    gh.add(octocat())
    base = f"https://127.0.0.1:{free_port()}" if trouble == "unreachable" else gh.base
    add_github(services, base, jit_create=True)
    if trouble == "api_timeout":
        gh.api_stall = 3.5  # past AUTHGATE_FETCH_TIMEOUT_SECONDS (3 in these tests)
    elif trouble.startswith("api_"):
        gh.api_status = int(trouble[4:])
    url = start(client, "github")  # no request to GitHub yet: no discovery for GitHub
    if trouble == "unreachable":
        state = query_of(url)["state"]
        resp = client.get(f"/login/upstream/github/callback?code=abc&state={state}")
    else:
        resp = finish(client, gh.authorize(url.replace(base, gh.base), 583231, back_to=CALLBACK))
    assert_refused(resp, 503, "The identity provider is not answering")
    assert reasons(services) == ["provider_unavailable"]
    assert services.store.count_users() == 0


def test_a_forged_or_replayed_callback_is_refused(
    client: TestClient, services: Services, gh: GitHub
) -> None:
    gh.add(octocat())
    add_github(services, gh.base, jit_create=True)
    url = start(client, "github")
    back = gh.authorize(url, 583231, back_to=CALLBACK)
    state_cookie = client.cookies.get("authgate_upstream_state")

    # A wrong state, and the right one from another browser (login CSRF), change nothing.
    params = query_of(back)
    wrong = client.get(f"/login/upstream/github/callback?{urlencode(params | {'state': 'x' * 43})}")
    assert_refused(wrong, 400, "The sign-in could not be verified")
    with TestClient(client.app, base_url=str(client.base_url)) as other:
        assert_refused(finish(other, back), 400, "The sign-in could not be verified")
    assert not any(r.path == "/login/oauth/access_token" for r in gh.requests)

    client.cookies.set("authgate_upstream_state", str(state_cookie), path="/login/upstream")
    assert finish(client, back).status_code == 303
    # Replayed with the cookie put back: the transaction is spent; GitHub is not asked again.
    client.cookies.set("authgate_upstream_state", str(state_cookie), path="/login/upstream")
    client.cookies.delete("authgate_session")
    assert_refused(finish(client, back), 400, "The sign-in could not be verified")
    assert reasons(services) == ["state_invalid", "state_invalid", "state_invalid"]
    assert len([r for r in gh.requests if r.path == "/login/oauth/access_token"]) == 1


def test_a_renamed_login_is_the_same_person_and_a_reused_login_is_not(
    client: TestClient, services: Services, gh: GitHub
) -> None:
    gh.add(octocat())
    add_github(services, gh.base, jit_create=True)
    assert sign_in(client, gh, 583231).status_code == 303
    [user] = users_with(services, "octocat")

    # octocat renames the account; someone else takes the old login.
    gh.accounts[583231].login = "octocat-renamed"
    gh.add(Account(id=999, login="octocat", emails=[email("squatter@example.com")]))
    client.cookies.clear()
    assert sign_in(client, gh, 583231).status_code == 303
    assert "octocat" in client.get("/").text
    assert len(audit(services, "upstream_identity.linked")) == 1  # found by id, not linked anew

    client.cookies.clear()
    assert sign_in(client, gh, 999).status_code == 303
    squatter = services.store.get_upstream_identity("github", "999")
    assert squatter is not None and squatter.user_id != user.id
    renamed = services.store.get_upstream_identity("github", "583231")
    assert renamed is not None and renamed.user_id == user.id


def test_link_by_verified_email_only_when_the_operator_allows_it(
    client: TestClient, services: Services, gh: GitHub, alice: Any
) -> None:
    accounts.update_user(
        services.ctx, SYSTEM, alice.user.id, email="alice@example.com", email_verified=True
    )
    gh.add(Account(id=42, login="alice-gh", emails=[email("alice@example.com", primary=True)]))
    add_github(services, gh.base)  # no linking by address, no creation
    assert_refused(sign_in(client, gh, 42), 403, "You could not be signed in")
    assert reasons(services) == ["account_not_linked"]

    providers.update_provider(services.ctx, SYSTEM, "github", {"link_by_verified_email": True})
    client.cookies.clear()
    assert sign_in(client, gh, 42).status_code == 303
    identity = services.store.get_upstream_identity("github", "42")
    assert identity is not None and identity.user_id == alice.user.id
    [linked] = audit(services, "upstream_identity.linked")
    assert linked.details["method"] == "verified_email"


def test_a_disabled_user_stays_out(client: TestClient, services: Services, gh: GitHub) -> None:
    gh.add(octocat())
    add_github(services, gh.base, jit_create=True)
    assert sign_in(client, gh, 583231).status_code == 303
    [user] = users_with(services, "octocat")
    accounts.update_user(services.ctx, SYSTEM, user.id, disabled=True)
    client.cookies.clear()
    resp = sign_in(client, gh, 583231)
    assert_refused(resp, 403, "You could not be signed in")
    assert "This account is disabled." in resp.text
    assert "authgate_session" not in client.cookies
    assert reasons(services) == ["user_disabled"]


def test_githubs_code_token_and_secret_never_reach_the_audit_trail_or_the_logs(
    client: TestClient, services: Services, gh: GitHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="authgate")
    gh.add(octocat(orgs={"acme": "active"}))
    add_github(services, gh.base, jit_create=True, required_claim="orgs", required_values=("acme",))
    url = start(client, "github")
    assert urlsplit(gh.base).netloc in client.get("/login").headers["content-security-policy"]
    back = gh.authorize(url, 583231, back_to=CALLBACK)
    assert finish(client, back).status_code == 303
    [token_request] = [r for r in gh.requests if r.path == "/login/oauth/access_token"]
    [api_call, *_] = [r for r in gh.requests if r.path.startswith("/api/v3/")]
    secrets = [
        github_standin.CLIENT_SECRET,
        query_of(back)["code"],
        query_of(url)["state"],
        token_request.form["code_verifier"],
        api_call.headers["authorization"].removeprefix("Bearer "),
        client.cookies["authgate_session"],
    ]
    events, _ = services.store.list_audit(AuditQuery(limit=500))
    trail = repr([(e.action, e.details) for e in events])
    logs = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("authgate"))
    assert "/login/upstream/github/callback" in logs and "upstream.logged_in" in trail
    for secret in secrets:
        assert secret not in trail
        assert secret not in logs


def test_an_explicit_client_secret_basic_is_an_http_basic_header(
    client: TestClient, services: Services, gh: GitHub
) -> None:
    gh.add(octocat())
    add_github(services, gh.base, jit_create=True, token_auth_method="client_secret_basic")
    done = sign_in(client, gh, 583231)
    assert done.status_code == 303, done.text
    [token_request] = [r for r in gh.requests if r.path == "/login/oauth/access_token"]
    pair = f"{github_standin.CLIENT_ID}:{github_standin.CLIENT_SECRET}".encode()
    assert token_request.headers["authorization"] == "Basic " + base64.b64encode(pair).decode()
    assert "client_secret" not in token_request.form
    assert token_request.form["client_id"] == github_standin.CLIENT_ID
    assert services.store.get_upstream_identity("github", "583231") is not None
