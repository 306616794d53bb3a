"""Sign-in through a real upstream OpenID Provider (node-oidc-provider, started by the suite),
end to end through authgate's pages: the happy path ending in an MCP client's token whose ID
token says which provider signed the person in, several providers at once, the account rules
(linking, just-in-time creation, domains, the admin role, disabled users), the provider's
refusal, a replayed or cross-browser callback, the RFC 9207 ``iss`` check, and a provider
that is down. Each runs on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from starlette.testclient import TestClient

from authgate.app import create_app
from authgate.core import accounts
from authgate.core.context import SYSTEM
from authgate.core.id_tokens import ACR_UPSTREAM
from authgate.core.models import AuditEvent, AuditQuery, User
from authgate.core.upstream import providers
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
from tests.upstream import provider
from tests.upstream.conftest import (
    add_provider,
    callback_url,
    finish,
    query_of,
    sign_in,
    start,
)

ALICE = {
    "email": "alice@example.com",
    "email_verified": True,
    "name": "Alice Upstream",
    "preferred_username": "alice",
    "groups": ["staff"],
}


def audit(services: Services, action: str) -> list[AuditEvent]:
    events, _ = services.store.list_audit(AuditQuery(action=action, limit=100))
    return list(events)


def users_named(services: Services, email: str) -> list[User]:
    return [u for u in services.store.list_users() if u.email == email]


def assert_refused(resp: Any, status: int, title: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("text/html")
    assert title in resp.text
    assert re.search(r'id="error-reference">[0-9a-f]{8,}<', resp.text), resp.text
    assert "authgate_session" not in resp.headers.get("set-cookie", "")


def signed_in_user(client: TestClient) -> str:
    home = client.get("/", follow_redirects=False)
    assert home.status_code == 200, home.text
    return home.text


def test_sign_in_ends_in_an_mcp_clients_token_whose_id_token_names_the_provider(
    client: TestClient, services: Services, op: provider.OpenIdProvider
) -> None:
    op.set_account("alice-sub", ALICE)
    add_provider(services, "corp", op.issuer, display_name="Corp SSO", jit_create=True)
    app = make_client(services)
    pkce = generate_pkce()
    wanted = authorize_url(
        app.id,
        challenge=pkce.challenge,
        resource=RESOURCE,
        scope="openid email read",
        extra={"nonce": "client-nonce"},
    )

    # The authorization request sends the person to sign in, with a button for the provider.
    page = client.get(f"/login?{urlencode({'return_to': wanted})}")
    assert 'action="/login/upstream/corp"' in page.text and "Sign in with Corp SSO" in page.text
    assert urlsplit(op.issuer).netloc in page.headers["content-security-policy"]
    url = start(client, "corp", wanted)
    sent = query_of(url)
    assert url.startswith(op.issuer)
    assert sent["client_id"] == provider.CLIENT_ID
    assert sent["redirect_uri"] == callback_url("corp")
    assert sent["code_challenge_method"] == "S256" and len(sent["code_challenge"]) == 43
    assert sent["scope"] == "openid email profile groups"
    assert len(sent["state"]) >= 32 and len(sent["nonce"]) >= 32
    back = op.drive(url, "alice-sub", callback_url("corp"))
    assert query_of(back)["iss"] == op.issuer  # node-oidc-provider sends RFC 9207 iss
    done = finish(client, back)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == wanted
    assert "authgate_session" in client.cookies

    # A user was created just in time, with the provider's verified address, and linked.
    [user] = users_named(services, "alice@example.com")
    assert (user.username, user.name, user.email_verified) == ("alice", "Alice Upstream", True)
    assert user.password_hash is None and not user.is_admin
    identity = services.store.get_upstream_identity("corp", "alice-sub")
    assert identity is not None and identity.user_id == user.id
    [linked] = audit(services, "upstream_identity.linked")
    assert linked.details == {"provider": "corp", "subject": "alice-sub", "method": "created"}
    [logged] = audit(services, "upstream.logged_in")
    assert logged.target_id == user.id and logged.details["idp"] == op.issuer

    # The MCP client's authorization completes and its ID token says how the person signed in.
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
    assert claims["sub"] == user.id and claims["aud"] == app.id
    assert claims["idp"] == op.issuer and claims["acr"] == ACR_UPSTREAM
    assert claims["amr"] == ["fed"] and claims["nonce"] == "client-nonce"
    assert claims["email"] == "alice@example.com" and claims["email_verified"] is True

    # Signing in again finds the same person by (provider, subject): no second account.
    client.cookies.clear()
    again = sign_in(client, op, "corp", "alice-sub")
    assert again.status_code == 303
    assert len(users_named(services, "alice@example.com")) == 1
    assert len(audit(services, "upstream_identity.linked")) == 1


def test_two_providers_at_once_are_two_buttons_and_two_identities(
    client: TestClient,
    services: Services,
    op: provider.OpenIdProvider,
    op2: provider.OpenIdProvider,
) -> None:
    op.set_account("bob", {"email": "bob@corp.example", "email_verified": True})
    op2.set_account("bob", {"email": "bob@partner.example", "email_verified": True})
    add_provider(services, "corp", op.issuer, display_name="Corp", jit_create=True)
    add_provider(services, "partner", op2.issuer, display_name="Partner", jit_create=True)
    page = client.get("/login")
    assert "Sign in with Corp" in page.text and "Sign in with Partner" in page.text
    assert 'id="login-form"' in page.text  # the password form stays unless switched off

    assert sign_in(client, op, "corp", "bob").status_code == 303
    client.cookies.clear()
    assert sign_in(client, op2, "partner", "bob").status_code == 303
    # The same subject at two issuers is two people.
    corp = services.store.get_upstream_identity("corp", "bob")
    partner = services.store.get_upstream_identity("partner", "bob")
    assert corp is not None and partner is not None and corp.user_id != partner.user_id


def test_a_person_outside_the_allowed_domains_is_refused_and_nothing_is_created(
    client: TestClient, services: Services, op: provider.OpenIdProvider
) -> None:
    op.set_account("mallory", {"email": "mallory@elsewhere.example", "email_verified": True})
    add_provider(services, "corp", op.issuer, jit_create=True, allowed_domains=("example.com",))
    before = services.store.count_users()
    resp = sign_in(client, op, "corp", "mallory")
    assert_refused(resp, 403, "You could not be signed in")
    assert services.store.count_users() == before
    assert services.store.get_upstream_identity("corp", "mallory") is None
    [refused] = audit(services, "upstream.sign_in_refused")
    assert refused.details == {"reason": "domain_not_allowed"}


def test_a_required_claim_governs_just_in_time_creation(
    client: TestClient, services: Services, op: provider.OpenIdProvider
) -> None:
    op.set_account("carol", {"email": "carol@example.com", "email_verified": True, "groups": []})
    add_provider(
        services,
        "corp",
        op.issuer,
        jit_create=True,
        required_claim="groups",
        required_values=("mcp-users",),
    )
    assert_refused(sign_in(client, op, "corp", "carol"), 403, "You could not be signed in")
    assert audit(services, "upstream.sign_in_refused")[0].details["reason"] == "claim_missing"
    op.set_account("carol", {"email": "carol@example.com", "groups": ["mcp-users"]})
    assert sign_in(client, op, "corp", "carol").status_code == 303
    assert services.store.get_upstream_identity("corp", "carol") is not None


def test_no_link_by_an_unverified_email_even_when_linking_is_allowed(
    client: TestClient, services: Services, op: provider.OpenIdProvider, alice: Any
) -> None:
    accounts.update_user(services.ctx, SYSTEM, alice.user.id, email="alice@example.com")
    op.set_account("someone", {"email": "alice@example.com", "email_verified": False})
    add_provider(services, "corp", op.issuer, link_by_verified_email=True, jit_create=True)
    resp = sign_in(client, op, "corp", "someone")
    assert_refused(resp, 403, "You could not be signed in")
    assert services.store.get_upstream_identity("corp", "someone") is None
    assert len(users_named(services, "alice@example.com")) == 1  # no duplicate created either
    assert audit(services, "upstream.sign_in_refused")[0].details["reason"] == "email_not_verified"


def test_link_by_verified_email_only_when_the_provider_allows_it(
    client: TestClient, services: Services, op: provider.OpenIdProvider, alice: Any
) -> None:
    accounts.update_user(services.ctx, SYSTEM, alice.user.id, email="alice@example.com")
    op.set_account("alice-sub", ALICE)
    add_provider(services, "corp", op.issuer)  # linking by email off, no JIT
    assert_refused(sign_in(client, op, "corp", "alice-sub"), 403, "You could not be signed in")
    assert services.store.get_upstream_identity("corp", "alice-sub") is None
    assert audit(services, "upstream.sign_in_refused")[0].details["reason"] == "account_not_linked"

    providers.update_provider(services.ctx, SYSTEM, "corp", {"link_by_verified_email": True})
    assert sign_in(client, op, "corp", "alice-sub").status_code == 303
    identity = services.store.get_upstream_identity("corp", "alice-sub")
    assert identity is not None and identity.user_id == alice.user.id
    [linked] = audit(services, "upstream_identity.linked")
    assert linked.details["method"] == "verified_email"
    assert "alice" in signed_in_user(client)


def test_the_admin_role_follows_the_configured_group(
    client: TestClient, services: Services, op: provider.OpenIdProvider
) -> None:
    op.set_account(
        "dana",
        {
            "email": "dana@example.com",
            "email_verified": True,
            "groups": ["staff", "authgate-admins"],
        },
    )
    add_provider(
        services,
        "corp",
        op.issuer,
        jit_create=True,
        admin_claim="groups",
        admin_values=("authgate-admins",),
    )
    assert sign_in(client, op, "corp", "dana").status_code == 303
    [dana] = users_named(services, "dana@example.com")
    assert dana.is_admin
    assert client.get("/api/v2/users").status_code == 200  # the session carries the role

    op.set_account(
        "dana", {"email": "dana@example.com", "email_verified": True, "groups": ["staff"]}
    )
    client.cookies.clear()
    assert sign_in(client, op, "corp", "dana").status_code == 303
    dana_now = services.store.get_user(dana.id)
    assert dana_now is not None and not dana_now.is_admin
    [mapped] = audit(services, "user.role_mapped")
    assert mapped.details == {"provider": "corp", "claim": "groups", "is_admin": False}


def test_a_disabled_user_stays_out_whatever_the_provider_says(
    client: TestClient, services: Services, op: provider.OpenIdProvider
) -> None:
    op.set_account("erin", {"email": "erin@example.com", "email_verified": True})
    add_provider(services, "corp", op.issuer, jit_create=True)
    assert sign_in(client, op, "corp", "erin").status_code == 303
    [erin] = users_named(services, "erin@example.com")
    accounts.update_user(services.ctx, SYSTEM, erin.id, disabled=True)
    client.cookies.clear()
    resp = sign_in(client, op, "corp", "erin")
    assert_refused(resp, 403, "You could not be signed in")
    assert "This account is disabled." in resp.text
    assert "authgate_session" not in client.cookies
    assert audit(services, "upstream.sign_in_refused")[0].details["reason"] == "user_disabled"


def test_the_provider_saying_no_is_a_page_not_a_500(
    client: TestClient, services: Services, op: provider.OpenIdProvider
) -> None:
    add_provider(services, "corp", op.issuer, jit_create=True)
    resp = sign_in(client, op, "corp", "refuse")  # the provider answers error=access_denied
    assert_refused(resp, 403, "You could not be signed in")
    assert "(access_denied)" in resp.text
    assert audit(services, "upstream.sign_in_refused")[0].details["reason"] == "provider_error"


def test_a_callback_is_single_use_and_bound_to_the_browser_that_started_it(
    client: TestClient, services: Services, op: provider.OpenIdProvider
) -> None:
    op.set_account("frank", {"email": "frank@example.com", "email_verified": True})
    add_provider(services, "corp", op.issuer, jit_create=True)
    url = start(client, "corp")
    back = op.drive(url, "frank", callback_url("corp"))
    state_cookie = client.cookies.get("authgate_upstream_state")

    # Another browser (no state cookie: a link an attacker sends) cannot use it (login CSRF).
    with TestClient(client.app, base_url=str(client.base_url)) as other:
        assert_refused(finish(other, back), 400, "The sign-in could not be verified")
    assert "authgate_session" not in client.cookies

    assert finish(client, back).status_code == 303
    # Replayed, even with the state cookie put back: the transaction is gone.
    client.cookies.set("authgate_upstream_state", str(state_cookie), path="/login/upstream")
    client.cookies.delete("authgate_session")
    assert_refused(finish(client, back), 400, "The sign-in could not be verified")
    reasons = [e.details["reason"] for e in audit(services, "upstream.sign_in_refused")]
    assert reasons == ["state_invalid", "state_invalid"]


def test_a_response_whose_iss_is_another_issuer_is_refused(
    client: TestClient, services: Services, op: provider.OpenIdProvider
) -> None:
    """RFC 9207: the provider says it sends ``iss``; another value, or none, is a mix-up."""
    op.set_account("gina", {"email": "gina@example.com", "email_verified": True})
    add_provider(services, "corp", op.issuer, jit_create=True)
    for forged in ("https://evil.example", None):
        client.cookies.clear()
        back = op.drive(start(client, "corp"), "gina", callback_url("corp"))
        params = query_of(back)
        if forged is None:
            del params["iss"]
        else:
            params["iss"] = forged
        resp = client.get(f"/login/upstream/corp/callback?{urlencode(params)}")
        assert_refused(resp, 400, "The sign-in could not be verified")
    assert services.store.get_upstream_identity("corp", "gina") is None
    reasons = [e.details["reason"] for e in audit(services, "upstream.sign_in_refused")]
    assert reasons == ["issuer_mismatch", "issuer_mismatch"]


def test_a_provider_that_is_down_is_a_503_page(client: TestClient, services: Services) -> None:
    add_provider(services, "corp", f"https://127.0.0.1:{free_port()}", jit_create=True)
    page = client.get("/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match is not None
    resp = client.post(
        "/login/upstream/corp",
        data={"csrf_token": match.group(1), "return_to": "/"},
        follow_redirects=False,
    )
    assert_refused(resp, 503, "The identity provider is not answering")
    assert 'href="/login"' in resp.text
    [refused] = audit(services, "upstream.sign_in_refused")
    assert refused.details == {"reason": "provider_unavailable"}


def test_secrets_never_reach_the_audit_trail_or_the_logs(
    client: TestClient,
    services: Services,
    op: provider.OpenIdProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="authgate")
    op.set_account("hank", {"email": "hank@example.com", "email_verified": True})
    add_provider(services, "corp", op.issuer, jit_create=True)
    url = start(client, "corp")
    back = op.drive(url, "hank", callback_url("corp"))
    assert finish(client, back).status_code == 303
    stored = services.store.get_upstream_provider("corp")
    assert stored is not None and stored.client_secret is not None
    assert provider.CLIENT_SECRET not in stored.client_secret  # sealed at rest
    secrets = [
        provider.CLIENT_SECRET,
        query_of(back)["code"],
        query_of(url)["state"],
        query_of(url)["nonce"],
        client.cookies["authgate_session"],
    ]
    events, _ = services.store.list_audit(AuditQuery(limit=500))
    trail = repr([(e.action, e.details) for e in events])
    # authgate's own log lines (the test's browser, driving the provider, logs its URLs).
    logs = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("authgate"))
    assert "/login/upstream/corp/callback" in logs  # the access log saw the callback
    for secret in secrets:
        assert secret not in trail
        assert secret not in logs
    assert "upstream_provider.created" in trail and "upstream.logged_in" in trail
    assert "'has_client_secret': True" in trail


def test_the_password_form_can_be_switched_off(
    services: Services, op: provider.OpenIdProvider, settings: Any
) -> None:

    add_provider(services, "corp", op.issuer, jit_create=True)
    off = settings.model_copy(update={"password_sign_in": False})
    with TestClient(create_app(off, services=services), base_url=str(settings.issuer)) as c:
        page = c.get("/login")
        assert "Sign in with Corp" in page.text and 'id="login-form"' not in page.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        resp = c.post(
            "/login",
            data={"username": "x", "password": "y" * 10, "csrf_token": token.group(1)},
            follow_redirects=False,
        )
        assert resp.status_code == 403 and "switched off" in resp.text
        assert "authgate_session" not in c.cookies
